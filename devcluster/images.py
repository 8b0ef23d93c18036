"""Which local environment stands in for which container image.

No image is pulled or unpacked: the node agent runs a container's `command` + `args` as a local process in the
environment the first matching entry names. A container whose image matches nothing stays Waiting with reason
`ErrImagePull` and a message naming this file, like a kubelet that cannot pull.

The operator image is built from its Dockerfile (`built_images`): the Dockerfile's install steps run once
into $TASKPOOL_CACHE/images (image_cache.py: reused while the Dockerfile, the constraints and the operator's
sources are unchanged, rebuilt when one changes), and its containers run with the final stage's ENV (the
image's venv first on PATH, its malloc settings), its ENTRYPOINT and CMD, and in its working folder (/, as it
has none). So they have the image's packages only (no `kubernetes` client, which the dev venv has) and run the
installed operator, not the checkout's. The launcher builds it when a cluster starts and hands it to the node
agent with the extra images.

The other entries (`IMAGES`) put the repository's virtualenv first on PATH, so `python` is `.venv/bin/python`,
the interpreter with the project (and its editable packages) installed: plain Python images, and the worker
image, whose pods almost every end-to-end test runs (it could be built the same way: one more entry in
`built_images`). `workingDir` in a pod
spec refers to the image's file system and is ignored; the entry's `cwd` is used instead. An entry's `user` is
the image's declared USER (read from our Dockerfiles): containers run as it unless their securityContext says
otherwise. Extend `IMAGES` (or pass `extra_images` to the launcher) to add an entry.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devcluster import image_cache
from devcluster.dockerfile_build import LocalBuild

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ImageEnvironment:
    patterns: tuple[str, ...]  # fnmatch patterns over the full image reference
    cwd: Path | None  # None: /, as in an image without WORKDIR
    entrypoint: tuple[str, ...] = ()  # the image's ENTRYPOINT
    cmd: tuple[str, ...] = ()  # the image's CMD
    env: dict[str, str] = field(default_factory=dict)  # the image's ENV
    user: tuple[int, int] | None = None  # the image's USER (uid, gid); None: root, as for most images
    built: Path | None = None  # a built image's folder in the cache (image_cache.py), which its pods read

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
            built=Path(data["built"]) if data.get("built") else None,
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
    # Plain Python images, for tests that run a small script (`python -c ...`).
    ImageEnvironment(
        ("python", "python:*", "*/python", "*/python:*"), None, cmd=("python3",), env=PYTHON_ENV
    ),
]


def operator_image(log: Callable[[str], None]) -> LocalBuild:
    """The operator image as its Dockerfile builds it, from the cache (built first if its inputs changed)."""
    return image_cache.built(REPO / "Dockerfile", "operator", log)


def built_images(log: Callable[[str], None]) -> list[ImageEnvironment]:
    """The entries of the images built from our Dockerfiles, each built first if the cache has no build of
    its inputs: the operator's."""
    return [from_build(("*taskpool-operator*",), operator_image(log))]


def from_build(patterns: tuple[str, ...], image: LocalBuild) -> ImageEnvironment:
    """How a built image runs: its final stage's ENV, WORKDIR, ENTRYPOINT and CMD, as its USER."""
    return ImageEnvironment(
        patterns,
        None if image.workdir == "/" else image.host(image.workdir),
        tuple(image.entrypoint),
        tuple(image.command),
        dict(image.env),
        user=declared_user(image.dockerfile),
        built=image.root.parent,
    )


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
