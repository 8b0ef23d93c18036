"""What README.md's Quickstart tells a new user: what to install, what the first run builds and where."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
QUICKSTART = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]


def make_plan(target: str) -> str:
    return subprocess.run(
        ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_the_go_version_asked_for_builds_every_go_module_we_build() -> None:
    asked = re.search(r"Go (\d+\.\d+)\+", QUICKSTART)
    assert asked is not None
    for go_mod in ("devcluster/k8sbuild/go.mod", "devcluster/kedabuild/go.mod"):
        directive = re.search(r"^go (\d+\.\d+)", (ROOT / go_mod).read_text(), re.MULTILINE)
        assert directive is not None
        assert directive.group(1) == asked.group(1), go_mod
    # Helm's go.mod is not in the repository: the script that builds it names the version.
    assert f"install Go >= {asked.group(1)}" in (ROOT / "scripts" / "install-tools.sh").read_text()


def test_the_system_packages_named_are_the_ones_the_script_installs() -> None:
    script = (ROOT / "scripts" / "install-system-deps.sh").read_text()
    listed = re.search(r"^packages=\(([^)]*)\)", script, re.MULTILINE)
    assert listed is not None
    line = next(x for x in QUICKSTART.splitlines() if x.startswith("scripts/install-system-deps.sh"))
    for package in listed.group(1).split():
        assert package in line


def test_built_tools_go_to_the_home_cache_unless_taskpool_cache_is_set(tmp_path: Path) -> None:
    assert "`~/.cache/taskpool` (`TASKPOOL_CACHE`)" in QUICKSTART
    env = {k: v for k, v in os.environ.items() if k != "TASKPOOL_CACHE"} | {"HOME": str(tmp_path)}
    printed = subprocess.run(
        ["make", "-s", "--eval", "print-cache: ; @echo $(TASKPOOL_CACHE)", "print-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert printed.stdout.strip() == str(tmp_path / ".cache" / "taskpool")
    for script in ("devcluster/k8sbuild/build.sh", "scripts/install-tools.sh"):
        bindir = subprocess.run(
            [str(ROOT / script), "--print-bindir"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert Path(bindir).is_relative_to(tmp_path / ".cache" / "taskpool"), script


def test_make_demo_builds_the_tools_and_make_demo_local_builds_nothing() -> None:
    assert "`make demo-local` for processes only, which builds nothing" in QUICKSTART
    demo, local = make_plan("demo"), make_plan("demo-local")
    for build in ("devcluster/k8sbuild/build.sh", "scripts/install-tools.sh"):
        assert build in demo
        assert build not in local


def test_the_local_cluster_refuses_to_start_without_root() -> None:
    assert "root (the local control plane creates network namespaces" in QUICKSTART
    start = "from devcluster.control_plane import LocalCluster\nwith LocalCluster.start(): pass"
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    result = subprocess.run(
        [*as_nobody, str(ROOT / ".venv" / "bin" / "python"), "-c", start],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ClusterError: the local cluster needs root" in result.stderr


def test_the_first_run_figures_are_the_committed_measurement() -> None:
    cited = "[benchmarks/results/demo_first_run.json](benchmarks/results/demo_first_run.json)"
    assert cited in QUICKSTART
    assert "bench-demo_first_run:" in (ROOT / "mk" / "demo.mk").read_text()
    measured = json.loads((ROOT / "benchmarks" / "results" / "demo_first_run.json").read_text())
    figures = re.search(r"the first run took (\d+) minutes\s+and (\d+) GB", QUICKSTART)
    assert figures is not None
    assert int(figures.group(1)) == round(measured["wall_time_s"] / 60)
    assert measured["cold_cache_size"].endswith("G")
    assert int(figures.group(2)) == round(float(measured["cold_cache_size"].removesuffix("G")))
