"""Which local environment stands in for which container image.

No image is pulled or unpacked: the node agent runs a container's `command` + `args` as a local process in the
environment the first matching entry below names. The entries are the whole mapping; extend `IMAGES` (or pass
`extra_images` to the launcher) to add one. A container whose image matches nothing stays Waiting with reason
`ErrImagePull` and a message naming this file, like a kubelet that cannot pull.

Every environment puts the repository's virtualenv first on PATH, so `python` is `.venv/bin/python`, the
interpreter with the project (and its editable packages) installed. `workingDir` in a pod spec refers to the
image's file system and is ignored; the entry's `cwd` is used instead.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ImageEnvironment:
    patterns: tuple[str, ...]  # fnmatch patterns over the full image reference
    cwd: Path | None  # None: the pod's own scratch folder
    entrypoint: tuple[str, ...] = ()  # the image's ENTRYPOINT
    cmd: tuple[str, ...] = ()  # the image's CMD
    env: dict[str, str] = field(default_factory=dict)  # the image's ENV

    def matches(self, image: str) -> bool:
        return any(fnmatch.fnmatchcase(image, p) for p in self.patterns)


PYTHON_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}

IMAGES: list[ImageEnvironment] = [
    # worker_image/Dockerfile: the demo project and the worker runtime, WORKDIR = django_app/.
    ImageEnvironment(
        ("*taskpool-worker*",),
        REPO / "django_app",
        cmd=("python", "manage.py", "taskpool_worker", "--no-reload"),
        env=PYTHON_ENV,
    ),
    # Dockerfile: the operator package. cwd operator/ keeps the repository root (and with it the `operator`
    # folder, which would shadow the stdlib module) off sys.path.
    ImageEnvironment(
        ("*taskpool-operator*",), REPO / "operator", ("taskpool-operator",), ("run",), PYTHON_ENV
    ),
    # Plain Python images, for tests that run a small script (`python -c ...`).
    ImageEnvironment(
        ("python", "python:*", "*/python", "*/python:*"), None, cmd=("python3",), env=PYTHON_ENV
    ),
]


def command_line(entry: ImageEnvironment, command: list[str], args: list[str]) -> list[str]:
    """The argv by Kubernetes' rules: `command` replaces ENTRYPOINT and drops CMD, `args` replaces CMD."""
    if command:
        return command + args
    return list(entry.entrypoint) + (args or list(entry.cmd))


def resolve(image: str, extra: list[ImageEnvironment] | None = None) -> ImageEnvironment | None:
    for entry in [*(extra or []), *IMAGES]:
        if entry.matches(image):
            return entry
    return None
