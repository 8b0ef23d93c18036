"""The heartbeat file a worker process writes and its supervisor reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from django_taskpool.heartbeat import Heartbeat

pytestmark = pytest.mark.unit


def test_writer_and_reader_share_the_file(tmp_path: Path) -> None:
    supervisor_side = Heartbeat(tmp_path / "process-0")
    supervisor_side.reset(100.0)
    child_side = Heartbeat(tmp_path / "process-0")
    assert supervisor_side.read().last_poll == 100.0
    child_side.poll(105.5)
    child_side.busy(106.0)
    pulse = supervisor_side.read()
    assert (pulse.last_poll, pulse.busy_since, pulse.busy) == (105.5, 106.0, True)
    child_side.idle()
    assert not supervisor_side.read().busy
    supervisor_side.reset(200.0)  # a restarted process starts idle, whatever the dead one left
    assert (child_side.read().last_poll, child_side.read().busy) == (200.0, False)
    child_side.close()
    supervisor_side.close()
