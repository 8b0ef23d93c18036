"""Per-process liveness shared between a worker process and its supervisor through a tiny mmap'd file.

The child writes the wall-clock time of its last poll (each turn of django-tasks-db's worker loop), when
its current task started (0 when idle) and that task's hard deadline (`time.monotonic()`, shared by the
processes of a host; 0 when none); the supervisor reads them for `/healthz` and to enforce hard time
limits. A long task is not a hang: a busy child is alive whatever its last poll. Writing is a memory
store, cheap enough for every loop turn.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

# last poll (epoch s), busy since (epoch s, 0 = idle), hard deadline (monotonic s, 0 = none)
_LAYOUT = struct.Struct("ddd")


@dataclass(frozen=True)
class Pulse:
    last_poll: float
    busy_since: float
    deadline: float = 0.0

    @property
    def busy(self) -> bool:
        return self.busy_since > 0


class Heartbeat:
    """One process slot's heartbeat file; the supervisor creates it, the child opens it for writing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _LAYOUT.size:
                os.ftruncate(fd, _LAYOUT.size)
            self._map = mmap.mmap(fd, _LAYOUT.size)
        finally:
            os.close(fd)

    def reset(self, now: float) -> None:
        _LAYOUT.pack_into(self._map, 0, now, 0.0, 0.0)

    def poll(self, now: float) -> None:
        struct.pack_into("d", self._map, 0, now)

    def busy(self, since: float, deadline: float = 0.0) -> None:
        struct.pack_into("dd", self._map, 8, since, deadline)

    def idle(self) -> None:
        struct.pack_into("dd", self._map, 8, 0.0, 0.0)

    def read(self) -> Pulse:
        last_poll, busy_since, deadline = _LAYOUT.unpack_from(self._map, 0)
        return Pulse(last_poll=last_poll, busy_since=busy_since, deadline=deadline)

    def close(self) -> None:
        self._map.close()
