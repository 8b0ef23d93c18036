"""Per-process liveness shared between a worker process and its supervisor through a tiny mmap'd file.

The child writes the wall-clock time of its last poll (each turn of django-tasks-db's worker loop) and when
its current task started (0 when idle); the supervisor reads both for `/healthz`. A long task is not a hang:
a busy child is alive whatever its last poll. Writing is a memory store, cheap enough for every loop turn.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

_LAYOUT = struct.Struct("dd")  # last poll (epoch s), busy since (epoch s, 0 = idle)


@dataclass(frozen=True)
class Pulse:
    last_poll: float
    busy_since: float

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
        _LAYOUT.pack_into(self._map, 0, now, 0.0)

    def poll(self, now: float) -> None:
        struct.pack_into("d", self._map, 0, now)

    def busy(self, since: float) -> None:
        struct.pack_into("d", self._map, 8, since)

    def idle(self) -> None:
        struct.pack_into("d", self._map, 8, 0.0)

    def read(self) -> Pulse:
        last_poll, busy_since = _LAYOUT.unpack_from(self._map, 0)
        return Pulse(last_poll=last_poll, busy_since=busy_since)

    def close(self) -> None:
        self._map.close()
