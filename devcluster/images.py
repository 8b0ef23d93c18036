"""Which local environment stands in for which container image.

No image is pulled or unpacked: the node agent runs a container's `command` + `args` as a local process in the
environment the first matching entry below names. The entries are the whole mapping; extend `IMAGES` (or pass
`extra_images` to the launcher) to add one. A container whose image matches nothing stays Waiting with reason
`ErrImagePull` and a message naming this file, like a kubelet that cannot pull.

Every environment puts the repository's virtualenv first on PATH, so `python` is `.venv/bin/python`, the
interpreter with the project (and its editable packages) installed. `workingDir` in a pod spec refers to the
image's file system and is ignored; the entry's `cwd` is used instead. An entry's `user` is the image's
declared USER (read from our Dockerfiles): containers run as it unless their securityContext says otherwise.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ImageEnvironment:
    patterns: tuple[str, ...]  # fnmatch patterns over the full image reference
    cwd: Path | None  # None: /, as in an image without WORKDIR
    entrypoint: tuple[str, ...] = ()  # the image's ENTRYPOINT
    cmd: tuple[str, ...] = ()  # the image's CMD
    env: dict[str, str] = field(default_factory=dict)  # the image's ENV
    user: tuple[int, int] | None = None  # the image's USER (uid, gid); None: root, as for most images

    def matches(self, image: str) -> bool:
        return any(fnmatch.fnmatchcase(image, p) for p in self.patterns)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageEnvironment:
        """The inverse of dataclasses.asdict (the node agent's configuration carries extra images)."""
        user = data.get("user")
        return cls(
            patterns=tuple(data["patterns"]),
            cwd=Path(data["cwd"]) if data.get("cwd") else None,
            entrypoint=tuple(data.get("entrypoint", ())),
            cmd=tuple(data.get("cmd", ())),
            env=dict(data.get("env", {})),
            user=(int(user[0]), int(user[1])) if user else None,
        )


def declared_user(dockerfile: Path) -> tuple[int, int]:
    """The numeric `USER uid:gid` of a Dockerfile's final stage: the user our images run as by default."""
    users = re.findall(r"^USER\s+(\d+):(\d+)\s*$", dockerfile.read_text(), flags=re.MULTILINE)
    if not users:
        raise ValueError(f"{dockerfile} declares no numeric USER uid:gid")
    uid, gid = users[-1]
    return int(uid), int(gid)


# What every container reads from the host: the checkout (its .venv among it) and the interpreter behind the
# venv. Containers run as non-root users, so the launcher makes the folders above these traversable.
FILES_PODS_READ = (REPO, (REPO / ".venv" / "bin" / "python").resolve())

PYTHON_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}

IMAGES: list[ImageEnvironment] = [
    # worker_image/Dockerfile: the demo project and the worker runtime, WORKDIR = django_app/.
    ImageEnvironment(
        ("*taskpool-worker*",),
        REPO / "django_app",
        cmd=("python", "manage.py", "taskpool_worker", "--no-reload"),
        env=PYTHON_ENV,
        user=declared_user(REPO / "worker_image" / "Dockerfile"),
    ),
    # Dockerfile: the operator package. cwd operator/ keeps the repository root (and with it the `operator`
    # folder, which would shadow the stdlib module) off sys.path.
    ImageEnvironment(
        ("*taskpool-operator*",),
        REPO / "operator",
        ("taskpool-operator",),
        ("run",),
        {**PYTHON_ENV, "USER": "taskpool-operator"},  # the Dockerfile's ENV USER (no passwd entry for 10001)
        user=declared_user(REPO / "Dockerfile"),
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
