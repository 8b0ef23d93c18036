"""The operator image the local cluster's pods run: built from its Dockerfile into $TASKPOOL_CACHE once per
change of its inputs (devcluster/image_cache.py), and run with the image's packages, ENV, ENTRYPOINT and CMD.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from devcluster import dockerfile_build, image_cache, images

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def operator_entry() -> images.ImageEnvironment:
    (entry,) = images.built_images(print)
    return entry


def in_image(entry: images.ImageEnvironment, *argv: str) -> subprocess.CompletedProcess[str]:
    """argv as the node agent starts it: the entry's ENV (PATH among it) and working folder."""
    resolved = shutil.which(argv[0], path=entry.env["PATH"])
    assert resolved, f"{argv[0]} is not on the image's PATH"
    return subprocess.run(
        [resolved, *argv[1:]],
        cwd=entry.cwd or "/",
        env={**entry.env, "HOME": "/nonexistent", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_operator_pods_have_the_image_packages_not_the_dev_venv(
    operator_entry: images.ImageEnvironment,
) -> None:
    assert operator_entry.built is not None
    assert operator_entry.built.is_relative_to(image_cache.cache_dir())
    found = in_image(operator_entry, "python", "-c", "import taskpool_operator as t; print(t.__file__)")
    assert found.returncode == 0, found.stderr
    installed = Path(found.stdout.strip())
    assert installed.is_relative_to(operator_entry.built), "the installed package, from the cache"
    assert not installed.is_relative_to(ROOT), "not the checkout's sources"
    absent = in_image(operator_entry, "python", "-c", "import kubernetes")
    assert "No module named 'kubernetes'" in absent.stderr, "the dev venv's extras are not in the image"
    console = shutil.which("taskpool-operator", path=operator_entry.env["PATH"])
    assert console is not None
    assert Path(console).is_relative_to(operator_entry.built)
    assert in_image(operator_entry, "taskpool-operator", "crd").returncode == 0
    assert "Successfully installed" in (operator_entry.built / "build.log").read_text(), "pip's output"


def test_operator_pods_run_with_the_dockerfiles_env_entrypoint_cmd_user_and_folder(
    operator_entry: images.ImageEnvironment,
) -> None:
    dockerfile = DockerfileParser(path=str(ROOT / "Dockerfile"))
    final_env = dockerfile.envs  # the final stage's ENV
    assert final_env["MALLOC_ARENA_MAX"]
    for name in ("MALLOC_ARENA_MAX", "USER", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"):
        assert operator_entry.env[name] == final_env[name], name
    venv = Path(operator_entry.env["VIRTUAL_ENV"])
    assert venv.is_relative_to(operator_entry.built or ROOT / "missing")
    assert operator_entry.env["PATH"].split(":")[0] == str(venv / "bin")
    assert ".venv" not in operator_entry.env["PATH"]
    assert images.command_line(operator_entry, [], []) == ["taskpool-operator", "run"]
    assert operator_entry.user == images.declared_user(ROOT / "Dockerfile") == (10001, 10001)
    assert operator_entry.cwd is None, "the image has no WORKDIR: its containers start in /"
    assert images.resolve("ghcr.io/taskpool/taskpool-operator:0.1.0", [operator_entry]) == operator_entry
    as_json = dataclasses.asdict(operator_entry)  # as the node agent's configuration carries it
    assert images.ImageEnvironment.from_json(as_json) == operator_entry


def test_a_second_start_reuses_the_build(operator_entry: images.ImageEnvironment) -> None:
    printed: list[str] = []
    (again,) = images.built_images(printed.append)
    assert again == operator_entry
    assert printed == [], "nothing is built (or printed) when nothing changed"


def copy_of_the_build_context(tmp_path: Path) -> Path:
    context = tmp_path / "context"
    for name in ("Dockerfile", ".dockerignore", "requirements/constraints.txt", "README.md"):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, context / name)
    shutil.copytree(ROOT / "operator", context / "operator")
    return context


def test_the_key_changes_with_what_the_image_copies_and_only_with_that(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = dockerfile_build.base_python()
    real = image_cache.key(ROOT / "Dockerfile", python)
    context = copy_of_the_build_context(tmp_path)
    monkeypatch.setattr(dockerfile_build, "CONTEXT", context)
    dockerfile = context / "Dockerfile"
    assert image_cache.key(dockerfile, python) == real, "the same inputs elsewhere: the same key"

    (context / "README.md").write_text("not copied into the image\n")
    cache = context / "operator" / "taskpool_operator" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "x.cpython-312.pyc").write_bytes(b"ignored by .dockerignore")
    assert image_cache.key(dockerfile, python) == real

    source = context / "operator" / "taskpool_operator" / "cli.py"
    source.write_text(source.read_text() + "\n# edited\n")
    edited = image_cache.key(dockerfile, python)
    assert edited != real, "an edited operator source"
    constraints = context / "requirements" / "constraints.txt"
    constraints.write_text(constraints.read_text() + "\n")
    assert image_cache.key(dockerfile, python) not in {real, edited}, "changed constraints"
    dockerfile.write_text(dockerfile.read_text() + "\nENV MALLOC_ARENA_MAX=4\n")
    assert image_cache.key(dockerfile, python) not in {real, edited}, "a changed Dockerfile"
    assert image_cache.key(ROOT / "Dockerfile", sys.executable) != real, "another base interpreter"


# A Dockerfile that builds in a moment and counts its builds in $BUILDS (outside the image).
COUNTED = """\
FROM python:3.12-slim
RUN mkdir -p /opt/app && sleep 1 && echo built >> "$BUILDS"
ENV GREETING=hello
"""
BUILD_ONE = "import sys; from pathlib import Path; from devcluster import image_cache; " + (
    "image = image_cache.built(Path(sys.argv[1]), 'counted', print); print(image.env['GREETING'])"
)


def build_in_background(dockerfile: Path, cache: Path, builds: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", BUILD_ONE, str(dockerfile)],
        cwd=ROOT,
        env={**os.environ, "TASKPOOL_CACHE": str(cache), "BUILDS": str(builds)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_processes_wanting_the_same_image_build_it_once(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(COUNTED)
    builds = tmp_path / "builds"
    first, second = (build_in_background(dockerfile, tmp_path / "cache", builds) for _ in range(2))
    outputs = [p.communicate(timeout=120)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    assert builds.read_text() == "built\n"
    assert sum("counted image: building" in out for out in outputs) == 1, outputs
    assert all(out.rstrip().endswith("hello") for out in outputs), outputs


def test_an_interrupted_build_is_redone_and_a_failed_one_names_its_log(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(COUNTED)
    cache, builds = tmp_path / "cache", tmp_path / "builds"
    build = build_in_background(dockerfile, cache, builds)
    started, done, greeting = build.communicate(timeout=120)[0].splitlines()
    assert started.startswith("counted image: building counted-"), started
    assert started.endswith("/build.log)"), started
    assert done.startswith("counted image: built in "), done
    assert greeting == "hello"
    (built,) = (cache / "images").glob("counted-*/built")
    built.unlink()  # as if the process had died before finishing
    again = build_in_background(dockerfile, cache, builds)
    assert "counted image: building" in again.communicate(timeout=120)[0]
    assert builds.read_text() == "built\nbuilt\n"

    dockerfile.write_text(COUNTED.replace("sleep 1", "echo the step broke >&2; exit 7"))
    failed = build_in_background(dockerfile, cache, builds)
    out = failed.communicate(timeout=120)[0]
    assert failed.returncode != 0
    assert "building the counted image failed; see" in out
    assert "the step broke" in out
    assert "build.log" in out


def test_a_new_build_removes_the_builds_unused_for_two_days(tmp_path: Path) -> None:
    images_dir = tmp_path / "cache" / "images"
    old, recent, other = images_dir / "counted-0ld", images_dir / "counted-recent", images_dir / "other-0ld"
    for folder in (old, recent, other):
        (folder / "root").mkdir(parents=True)
        (folder / "built").touch()
    long_ago = time.time() - image_cache.UNUSED_S - 60
    for stamp in (old / "built", other / "built"):
        os.utime(stamp, (long_ago, long_ago))
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(COUNTED)
    build = build_in_background(dockerfile, tmp_path / "cache", tmp_path / "builds")
    assert build.communicate(timeout=120)[0]
    assert not old.exists()
    assert recent.exists(), "used lately"
    assert other.exists(), "another image's build"
    assert len(list(images_dir.glob("counted-*/built"))) == 2
