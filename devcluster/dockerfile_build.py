"""Our Dockerfiles interpreted as local commands: no Docker engine exists here.

COPY sources (filtered by .dockerignore) land in a scratch root, RUN steps run in bash with the stage's ENV
and WORKDIR (container paths under /opt, /src and /app mapped into the scratch root), and the final stage's
ENV, WORKDIR, ENTRYPOINT and CMD describe how the image runs. All stages share the one scratch root, so
`COPY --from=<stage> /path /path` is already in place. `python` is the project's base interpreter (the same
minor version as the images' base), standing in for the base image's; the image's other tools are the host's.

tests/unit/test_images.py builds each image this way and runs it; devcluster/image_cache.py builds the
operator image once into $TASKPOOL_CACHE for the node agent's pods.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser

CONTEXT = Path(__file__).resolve().parents[1]  # the build context: the repository root
FIND_PYTHON = CONTEXT / "scripts" / "find-python.sh"
# The PATH of our base images (python:*-slim, Debian) before any ENV of ours.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Container paths our Dockerfiles create; in the local build they live under the scratch root.
MAPPED = re.compile(r"(?<![\w.])(/(?:opt|src|app)(?:/[^\s:\"']*)?)")


class BuildError(RuntimeError):
    """A Dockerfile step failed."""


def dockerignore_patterns() -> list[str]:
    lines = (CONTEXT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins, `!` re-includes; a pattern covers what is below it."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        candidates = [relative] + [str(p) for p in Path(relative).parents if str(p) != "."]
        if any(fnmatch.fnmatch(c, body) or fnmatch.fnmatch(c, body.removesuffix("/**")) for c in candidates):
            result = not negate
    return result


def context_files(source: str) -> list[Path]:
    """The files a COPY of `source` takes from the build context, in a stable order."""
    src = CONTEXT / source
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    patterns = dockerignore_patterns()
    return [f for f in files if not ignored(str(f.relative_to(CONTEXT)), patterns)]


def copied_sources(dockerfile: Path) -> list[str]:
    """What the Dockerfile's COPY instructions take from the build context (not from another stage)."""
    sources: list[str] = []
    for ins in DockerfileParser(path=str(dockerfile)).structure:
        args = shlex.split(ins["value"]) if ins["instruction"] == "COPY" else []
        if args and not any(a.startswith("--from=") for a in args):
            sources.extend([a for a in args if not a.startswith("--")][:-1])
    return sources


def base_python() -> str:
    """The interpreter standing in for the base image's `python` (scripts/find-python.sh picks it)."""
    out = subprocess.run([str(FIND_PYTHON)], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


@dataclass
class LocalBuild:
    """One Dockerfile interpreted into a scratch root; `shims` (beside the root) holds `python`."""

    dockerfile: Path
    root: Path
    base_python: str
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    command: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # what ran, with its output

    @property
    def shims(self) -> Path:
        return self.root.parent / "shims"

    def host(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def map_paths(self, text: str) -> str:
        return MAPPED.sub(lambda m: str(self.host(m.group(1))), text)

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.env.get(m.group(1) or m.group(2), ""), text)

    def base_path(self) -> str:
        """The base image's PATH, its `python` in the shims."""
        self.shims.mkdir(exist_ok=True)
        for name in ("python", "python3"):
            link = self.shims / name
            if not link.exists():
                link.symlink_to(self.base_python)
        return f"{self.shims}:{SYSTEM_PATH}"

    def base_env(self) -> dict[str, str]:
        """What steps run with besides the stage's ENV: the host's environment (pip's index and certificates
        among it) without its virtualenv, the base image's PATH, HOME beside the root."""
        host = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
        return host | {"PATH": self.base_path(), "HOME": str(self.root.parent / "home")}

    def copy(self, args: list[str]) -> None:
        from_stage = next((a for a in args if a.startswith("--from=")), None)
        paths = [a for a in args if not a.startswith("--")]
        *sources, dest = paths
        dest_container = dest if dest.startswith("/") else f"{self.workdir.rstrip('/')}/{dest}"
        target = self.host(dest_container)
        if from_stage:
            for source in sources:
                if self.host(source) != target:  # one scratch root for all stages: same path, same files
                    shutil.copytree(self.host(source), target, dirs_exist_ok=True)
            return
        for source in sources:
            src = CONTEXT / source
            for file in context_files(source):
                if src.is_file():
                    out = target / src.name if dest.endswith("/") else target
                else:
                    out = target / file.relative_to(src)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, out)
                self.log.append(f"COPY {file.relative_to(CONTEXT)}")

    def run(
        self, argv: list[str] | str, *, check: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        env = self.base_env() | self.env
        cwd = self.host(self.workdir)
        cwd.mkdir(parents=True, exist_ok=True)
        cmd = ["bash", "-euo", "pipefail", "-c", argv] if isinstance(argv, str) else argv
        result = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise BuildError(
                f"{cmd!r} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def build(self, *, execute: bool = True) -> None:
        """Interprets the Dockerfile. Each stage starts from its base image's configuration (ENV PATH,
        WORKDIR /, no ENTRYPOINT or CMD of ours). Without `execute`, COPY and RUN are skipped: the root holds
        this Dockerfile's build already, and only how the image runs is read."""
        for ins in DockerfileParser(path=str(self.dockerfile)).structure:
            kind, value = ins["instruction"], ins["value"]
            if kind == "FROM":
                self.env = {"PATH": self.base_path()}
                self.workdir, self.entrypoint, self.command = "/", [], []
            elif kind == "ENV":
                for pair in shlex.split(value):
                    name, raw = pair.split("=", 1)
                    self.env[name] = self.expand(self.map_paths(raw))
            elif kind == "WORKDIR":
                self.workdir = value if value.startswith("/") else f"{self.workdir.rstrip('/')}/{value}"
                self.host(self.workdir).mkdir(parents=True, exist_ok=True)
            elif kind == "COPY" and execute:
                self.copy(shlex.split(value))
            elif kind == "RUN" and execute:
                result = self.run(self.map_paths(value))
                self.log += [f"RUN {value}", result.stdout, result.stderr]
            elif kind == "ENTRYPOINT":
                self.entrypoint = json.loads(value)
            elif kind == "CMD":
                self.command = json.loads(value)

    def container_command(self, *extra: str) -> list[str]:
        argv = [*self.entrypoint, *self.command, *extra]
        resolved = shutil.which(argv[0], path=(self.base_env() | self.env)["PATH"])
        if not resolved:
            raise BuildError(f"{argv[0]} is not on the image's PATH")
        return [resolved, *argv[1:]]
