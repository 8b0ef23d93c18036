"""Loaded by the operator process when `benchmarks.operator_memory` puts this folder on PYTHONPATH: starts
tracemalloc and, on SIGUSR2, writes a snapshot and the live-object counts by type (objgraph-style) next to
$TASKPOOL_MEMORY_DUMP. Never part of the operator itself."""

import collections
import gc
import json
import os
import signal
import sys
import threading
import tracemalloc

_DUMP = os.environ.get("TASKPOOL_MEMORY_DUMP")

if _DUMP:
    tracemalloc.start(int(os.environ.get("TASKPOOL_MEMORY_FRAMES", "8")))
    _dumps = [0]

    def _type_name(obj: object) -> str:
        kind = type(obj)
        return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', kind.__name__)}"

    def _dump(signum: int, frame: object) -> None:
        # Runs inside the operator's event loop: an error here must never reach it.
        try:
            _dumps[0] += 1
            base = f"{_DUMP}.{_dumps[0]}"
            tracemalloc.take_snapshot().dump(base + ".snapshot")
            counts = collections.Counter(_type_name(o) for o in gc.get_objects())
            with open(base + ".json.tmp", "w") as out:
                json.dump({"types": counts.most_common(60), "threads": threading.active_count()}, out)
            os.replace(base + ".json.tmp", base + ".json")
        except Exception as exc:  # reported on stderr; the operator goes on
            print(f"memory dump failed: {exc!r}", file=sys.stderr)

    signal.signal(signal.SIGUSR2, _dump)
