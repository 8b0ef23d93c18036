"""The launcher opens the folders above what pods read for traversal by group and others
(devcluster/control_plane.py): a pod with runAsUser but no runAsGroup runs with gid 0."""

from __future__ import annotations

import stat
from pathlib import Path

from devcluster.control_plane import _made_traversable


def test_folders_above_get_group_and_other_traversal_and_keep_their_other_bits(tmp_path: Path) -> None:
    private = tmp_path / "home"
    inner = private / "venv"
    inner.mkdir(parents=True)
    private.chmod(0o701)  # what an o+x-only fix leaves: gid-0 processes still cannot enter
    target = inner / "python"
    target.touch()

    changed = _made_traversable(target)

    assert private in changed
    assert stat.S_IMODE(private.stat().st_mode) == 0o711
    assert _made_traversable(target) == []  # nothing left to change
