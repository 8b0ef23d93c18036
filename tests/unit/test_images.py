"""The images' Dockerfiles: policy checks, and their install steps and command run as local commands.

No Docker engine exists here, so each Dockerfile is interpreted (devcluster/dockerfile_build.py): its
COPY sources (filtered by .dockerignore) land in a scratch root, its RUN steps run in bash with the
Dockerfile's ENV and WORKDIR (container paths mapped into the scratch root), and its ENTRYPOINT/CMD is then
run the same way.
`python` is the project's base interpreter (the same minor version as the image's base), so the install
resolves the same pinned requirements. The operator image is the build the local cluster's operator pods run
(devcluster/image_cache.py); the worker image is built into a scratch folder.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

import taskpool_operator
from charts import checks
from devcluster import images
from devcluster.dockerfile_build import LocalBuild, base_python, dockerignore_patterns, ignored

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {"operator": ROOT / "Dockerfile", "worker": ROOT / "worker_image" / "Dockerfile"}
OCI_LABELS = ("title", "description", "source", "licenses", "version", "vendor")


def parse(dockerfile: Path) -> list[dict[str, str]]:
    return DockerfileParser(path=str(dockerfile)).structure


def stages(instructions: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    result: list[list[dict[str, str]]] = []
    for ins in instructions:
        if ins["instruction"] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def global_args(instructions: list[dict[str, str]]) -> dict[str, str]:
    args = {}
    for ins in instructions:
        if ins["instruction"] == "FROM":
            break
        if ins["instruction"] == "ARG" and "=" in ins["value"]:
            name, value = ins["value"].split("=", 1)
            args[name] = value
    return args


@pytest.fixture(scope="module")
def operator_image() -> LocalBuild:
    """The build the node agent's operator pods run (from the cache, built first if its inputs changed)."""
    return images.operator_image(print)


@pytest.fixture(scope="module")
def worker_image(tmp_path_factory: pytest.TempPathFactory) -> LocalBuild:
    build = LocalBuild(IMAGES["worker"], tmp_path_factory.mktemp("worker") / "root", base_python())
    build.build()
    return build


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_is_multi_stage_pinned_and_non_root(name: str) -> None:
    instructions = parse(IMAGES[name])
    all_stages = stages(instructions)
    assert len(all_stages) >= 2, "the image is built in a build stage and copied into a clean final stage"
    base = global_args(instructions)["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), (
        f"base not pinned: {base}"
    )
    assert base.split(":")[1].startswith(f"{sys.version_info.major}.{sys.version_info.minor}."), (
        "the base image's Python must be the minor version the project is tested with"
    )
    final = all_stages[-1]
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users, "the final stage sets a USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "numeric uid"
    assert gid.isdigit(), "numeric gid"
    assert int(uid) > 0, "non-root uid"
    assert int(gid) > 0, "non-root gid"
    labels = " ".join(i["value"] for i in final if i["instruction"] == "LABEL")
    for label in OCI_LABELS:
        assert f"org.opencontainers.image.{label}=" in labels


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_final_stage_has_no_build_steps_and_installs_without_cache(name: str) -> None:
    all_stages = stages(parse(IMAGES[name]))
    final = all_stages[-1]
    assert not [i for i in final if i["instruction"] == "RUN"], (
        "the final stage only copies (no compilers, no caches)"
    )
    copies_from = [i["value"] for i in final if i["instruction"] == "COPY" and "--from=" in i["value"]]
    assert copies_from == ["--from=build /opt/taskpool /opt/taskpool"], "only the built venv crosses stages"
    for stage in all_stages:
        for ins in stage:
            if ins["instruction"] == "RUN" and re.search(r"\bpip\b.* install\b", ins["value"]):
                assert "--no-cache-dir" in ins["value"]
                assert "-c requirements/constraints.txt" in ins["value"], (
                    "installs use the pinned constraints"
                )


def test_dockerignore_keeps_caches_and_secrets_out_of_the_context() -> None:
    patterns = dockerignore_patterns()
    for path in (".venv/bin/python", ".git/config", "operator/taskpool_operator/__pycache__/x.pyc", ".env"):
        assert ignored(path, patterns), path
    for path in (
        "operator/taskpool_operator/crd.yaml",
        "django_app/manage.py",
        "requirements/constraints.txt",
    ):
        assert not ignored(path, patterns), path


def test_operator_image_installs_and_runs(operator_image: LocalBuild) -> None:
    venv = Path(operator_image.env["VIRTUAL_ENV"])
    assert not (venv / "bin" / "pip").exists(), "the runtime venv carries no pip"
    version = operator_image.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import taskpool_operator as t; print(t.__file__, t.__version__)",
        ]
    )
    path, installed_version = version.stdout.split()
    assert path.startswith(str(venv)), "the image runs the installed package, not the repository's sources"
    assert installed_version == taskpool_operator.__version__
    # ENTRYPOINT + CMD ("taskpool-operator run") with --help: the same command line, parsed and accepted.
    help_text = operator_image.run(operator_image.container_command("--help")).stdout
    assert "--namespace" in help_text
    assert "--all-namespaces" in help_text
    crd = operator_image.run([*operator_image.container_command()[:1], "crd"]).stdout
    assert yaml.safe_load(crd) == yaml.safe_load(
        (ROOT / "operator" / "taskpool_operator" / "crd.yaml").read_text()
    )


def test_the_uninstall_hook_runs_in_the_operator_image(operator_image: LocalBuild, tmp_path: Path) -> None:
    """The chart's pre-delete hook runs in the operator's image, which has no official Kubernetes client:
    its command, as the chart renders it, gets as far as logging in (no credentials here) and says why."""
    python = str(Path(operator_image.env["VIRTUAL_ENV"]) / "bin" / "python")
    absent = operator_image.run([python, "-c", "import kubernetes"], check=False)
    assert "No module named 'kubernetes'" in absent.stderr
    pool = {"queues": ["q"], "database": {"secretName": "db"}, "worker": {"image": "w:1"}}
    pools = json.dumps([{"name": "a", "spec": pool}])
    docs = checks.documents(checks.template(set_values=[f"pools={pools}"]))
    (job,) = [d for d in docs if d["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("ghcr.io/taskpool/taskpool-operator:")
    argv = [*container["command"], *container["args"]]
    resolved = shutil.which(argv[0], path=(operator_image.base_env() | operator_image.env)["PATH"])
    assert resolved, f"{argv[0]} is not on the image's PATH"
    operator_image.env["KUBECONFIG"] = str(tmp_path / "no-kubeconfig")
    try:
        hook = operator_image.run([resolved, *argv[1:]], check=False)
    finally:
        del operator_image.env["KUBECONFIG"]
    assert hook.returncode == 1, hook.stderr
    assert hook.stderr.startswith("taskpool-operator: delete-pools failed:"), hook.stderr
    assert "no-kubeconfig" in hook.stderr


def test_worker_image_installs_and_runs(worker_image: LocalBuild) -> None:
    venv = Path(worker_image.env["VIRTUAL_ENV"])
    assert not (venv / "bin" / "pip").exists(), "the runtime venv carries no pip"
    worker_image.env["DATABASE_URL"] = "postgresql://taskpool@127.0.0.1:1/taskpool"
    help_text = worker_image.run(worker_image.container_command("--help")).stdout
    assert "--no-reload" in help_text
    assert "--queue-name" in help_text
    check = worker_image.run([*worker_image.container_command()[:2], "check", "--fail-level", "ERROR"])
    assert "System check identified no issues" in check.stdout
