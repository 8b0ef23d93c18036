"""Where the built Kubernetes binaries, control plane and kubectl, are (k8sbuild/build.sh builds them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BUILD_SCRIPT = Path(__file__).with_name("k8sbuild") / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


class BinariesMissing(RuntimeError):
    """The Kubernetes binaries have not been built yet."""


def cache_root() -> Path:
    """$TASKPOOL_CACHE (the Makefile's default when unset): built binaries, images and the Go module cache."""
    return Path(os.environ.get("TASKPOOL_CACHE", Path.home() / ".cache" / "taskpool"))


def bindir() -> Path:
    out = subprocess.run([str(BUILD_SCRIPT), "--print-bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def kube_version() -> str:
    return bindir().parent.name


def require() -> Path:
    """The folder with all four binaries, or a clear error saying how to build them."""
    folder = bindir()
    missing = [b for b in BINARIES if not (folder / b).is_file()]
    if missing or subprocess.run([str(BUILD_SCRIPT), "--check"], check=False).returncode != 0:
        raise BinariesMissing(
            f"Kubernetes binaries missing in {folder} ({', '.join(missing) or 'incomplete build'}): "
            "run `make k8s-binaries` (a cold build compiles them from the Go module proxy)"
        )
    return folder


def kubectl() -> Path:
    """The kubectl built from the control plane's own release (never whatever kubectl the machine has)."""
    return require() / "kubectl"


def build() -> Path:
    """Builds (or reuses) the binaries, streaming the build's progress to stderr."""
    out = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if out.returncode != 0:
        raise BinariesMissing(
            f"building the Kubernetes binaries failed (exit {out.returncode}); see the output above"
        )
    return Path(out.stdout.strip().splitlines()[-1])
