"""Loaded by the operator process when a benchmark (operator_memory, many_pools) puts this folder on its
PYTHONPATH: starts tracemalloc with $TASKPOOL_MEMORY_FRAMES frames (0: not at all) and, on SIGUSR2, writes
a snapshot (with tracemalloc), the live-object counts by type (objgraph-style), the Python allocator's live
blocks and glibc's heap figures (in use, free but kept) next to $TASKPOOL_MEMORY_DUMP. Never part of the
operator."""

import collections
import ctypes
import gc
import json
import os
import signal
import sys
import threading
import tracemalloc

_DUMP = os.environ.get("TASKPOOL_MEMORY_DUMP")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
            "keepcost",
        )
    ]  # fmt: skip


def _heap() -> dict[str, float]:
    """glibc's view of the C heap (every arena): bytes handed out, and bytes free but not given back."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return {
        "in_use_mb": info.uordblks / 2**20,
        "free_mb": info.fordblks / 2**20,
        "mmap_mb": info.hblkhd / 2**20,
    }


if _DUMP:
    _FRAMES = int(os.environ.get("TASKPOOL_MEMORY_FRAMES", "8"))
    if _FRAMES:
        tracemalloc.start(_FRAMES)
    _dumps = [0]

    def _type_name(obj: object) -> str:
        kind = type(obj)
        return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', kind.__name__)}"

    def _dump(signum: int, frame: object) -> None:
        # Runs inside the operator's event loop: an error here must never reach it.
        try:
            _dumps[0] += 1
            base = f"{_DUMP}.{_dumps[0]}"
            if _FRAMES:
                tracemalloc.take_snapshot().dump(base + ".snapshot")
            counts = collections.Counter(_type_name(o) for o in gc.get_objects())
            with open(base + ".json.tmp", "w") as out:
                json.dump(
                    {
                        "types": counts.most_common(60),
                        "threads": threading.active_count(),
                        "heap": _heap(),
                        "python_blocks": sys.getallocatedblocks(),
                    },
                    out,
                )
            os.replace(base + ".json.tmp", base + ".json")
        except Exception as exc:  # reported on stderr; the operator goes on
            print(f"memory dump failed: {exc!r}", file=sys.stderr)

    signal.signal(signal.SIGUSR2, _dump)
