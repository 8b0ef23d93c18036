"""Our images built once into $TASKPOOL_CACHE/images/<name>-<key>/, keyed by what goes into them.

The key hashes the Dockerfile, every file its COPY instructions take from the build context (after
.dockerignore) and the base interpreter (path and version): the same inputs find the same folder and reuse it
as it is; an edited source or a new pin gives a new folder, built afresh (dockerfile_build.py interprets the
Dockerfile). Two processes may want the same image at once (two test runs starting clusters): a build runs
under a lock per key and a folder counts only once its `built` stamp exists, so an interrupted build is redone
and a finished one is never rebuilt. The build's output goes to build.log in the folder; the caller's `log`
gets a line when a build starts and one when it ends. A new build removes those unused for two days.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devcluster import binaries, dockerfile_build
from devcluster.dockerfile_build import BuildError, LocalBuild

# A build of an image unused this long is removed when another build of it is made (a cluster that has run
# for longer without restarting its operator pod would then find none: restart it).
UNUSED_S = 2 * 24 * 3600


def cache_dir() -> Path:
    return binaries.cache_root() / "images"


def key(dockerfile: Path, python: str) -> str:
    """A digest of what goes into the image: the Dockerfile, the files it copies (path, mode and content),
    and the interpreter that stands in for the base image's."""
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    digest = hashlib.sha256(f"{python}\0{version}\0".encode())
    digest.update(dockerfile.read_bytes())
    for source in dockerfile_build.copied_sources(dockerfile):
        for file in dockerfile_build.context_files(source):
            executable = os.access(file, os.X_OK)
            digest.update(f"\0{file.relative_to(dockerfile_build.CONTEXT)}\0{executable}\0".encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def built(dockerfile: Path, name: str, log: Callable[[str], None]) -> LocalBuild:
    """The image `name` built from `dockerfile` (its final stage's ENV, WORKDIR, ENTRYPOINT and CMD read),
    built now if no finished build of the same inputs is in the cache."""
    python = dockerfile_build.base_python()
    folder = cache_dir() / f"{name}-{key(dockerfile, python)}"
    stamp = folder / "built"
    image = LocalBuild(dockerfile, folder / "root", python)
    if stamp.exists():
        stamp.touch()  # when it was last used (`_prune`)
    else:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _lock(folder).open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
            if not stamp.exists():
                _build(image, folder, name, log)
                stamp.touch()
        _prune(name, keep=folder)
    image.build(execute=False)
    return image


def _lock(folder: Path) -> Path:
    return folder.parent / f"{folder.name}.lock"


def _prune(name: str, keep: Path) -> None:
    """Removes the builds of `name` unused for UNUSED_S (each is tens of MB, and every edit of a source makes
    another), but none that is being built."""
    for folder in keep.parent.glob(f"{name}-*"):
        used = folder / "built" if (folder / "built").exists() else folder
        if folder == keep or not folder.is_dir() or time.time() - used.stat().st_mtime < UNUSED_S:
            continue
        with _lock(folder).open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(folder, ignore_errors=True)  # the empty lock file stays: another may wait on it


def _build(image: LocalBuild, folder: Path, name: str, log: Callable[[str], None]) -> None:
    shutil.rmtree(folder, ignore_errors=True)  # what an interrupted build left
    image.root.mkdir(parents=True)
    build_log = folder / "build.log"
    log(f"{name} image: building {folder.name} from {image.dockerfile.name} (full log: {build_log})")
    started = time.monotonic()
    try:
        image.build()
    except BuildError as exc:
        build_log.write_text("\n".join([*image.log, str(exc)]))
        raise BuildError(f"building the {name} image failed; see {build_log}:\n{exc}") from exc
    build_log.write_text("\n".join(image.log))
    _readable_by_all(folder)
    log(f"{name} image: built in {time.monotonic() - started:.0f} s")


def _readable_by_all(folder: Path) -> None:
    """Pods run as non-root users (the images' USER): like an image's files, these are world-readable,
    whatever the umask of the build was."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        wanted = mode | stat.S_IRGRP | stat.S_IROTH
        if path.is_dir() or mode & stat.S_IXUSR:
            wanted |= stat.S_IXGRP | stat.S_IXOTH
        if wanted != mode:
            path.chmod(wanted)
