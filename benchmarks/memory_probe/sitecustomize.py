"""Loaded by the operator process when `benchmarks.operator_memory` puts this folder on PYTHONPATH: starts
tracemalloc and, on SIGUSR2, writes a snapshot and the live-object counts by type (objgraph-style) next to
$TASKPOOL_MEMORY_DUMP. Never part of the operator itself."""

import collections
import gc
import json
import os
import signal
import threading
import tracemalloc

_DUMP = os.environ.get("TASKPOOL_MEMORY_DUMP")

if _DUMP:
    tracemalloc.start(int(os.environ.get("TASKPOOL_MEMORY_FRAMES", "8")))
    _dumps = [0]

    def _dump(signum: int, frame: object) -> None:
        _dumps[0] += 1
        base = f"{_DUMP}.{_dumps[0]}"
        tracemalloc.take_snapshot().dump(base + ".snapshot")
        counts = collections.Counter(
            type(o).__module__ + "." + type(o).__qualname__ for o in gc.get_objects()
        )
        with open(base + ".json.tmp", "w") as out:
            json.dump({"types": counts.most_common(60), "threads": threading.active_count()}, out)
        os.replace(base + ".json.tmp", base + ".json")

    signal.signal(signal.SIGUSR2, _dump)
