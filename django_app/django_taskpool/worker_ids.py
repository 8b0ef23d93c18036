"""Worker ids: `<pod name>-<index>`, then `<pod name>-<index>.<restart>`, at most 64 characters; with
`--threads` each thread's id ends in `_<thread>` (`<pod name>-<index>[.<restart>]_<thread>`).

The operator parses these ids back to pod names to find orphaned tasks, so the rule is a contract
(docs/contracts.md): the part after the last `-` is the process index, optionally followed by `.<restart>`
(1, 2, ... for each restart of that process within one supervisor's life), so the ids of a restarted process
never match the rows its dead predecessor left RUNNING, then optionally by `_<thread>` (0 to threads - 1;
`_` never occurs in a pod name). When the id would exceed 64 characters, characters
are dropped from the START of the pod name, because pod names end in their unique part
(`<deployment>-<replicaset hash>-<random suffix>`).
"""

from __future__ import annotations

import os
import re
import socket

MAX_WORKER_ID_LENGTH = 64  # django-tasks-db rejects longer ids
# What follows the pod name (possibly trimmed) in every worker id.
PROCESS_SUFFIX = re.compile(r"-(?P<index>[0-9]+)(?:\.(?P<restart>[0-9]+))?(?:_(?P<thread>[0-9]+))?$")


def pod_name() -> str:
    """This pod's name (`POD_NAME`, from the downward API), falling back to the hostname."""
    return os.environ.get("POD_NAME", "").strip() or socket.gethostname()


def worker_id(pod: str, index: int, restart: int = 0, thread: int | None = None) -> str:
    """The id of process `index` of the pod after `restart` restarts of that process (0: its first run);
    `thread`: which of its threads (None: a process with one thread)."""
    if not pod:
        raise ValueError("the pod name must not be empty")
    if index < 0 or restart < 0 or (thread is not None and thread < 0):
        raise ValueError("the process index, restart count and thread must not be negative")
    suffix = f"-{index}" if restart == 0 else f"-{index}.{restart}"
    if thread is not None:
        suffix += f"_{thread}"
    room = MAX_WORKER_ID_LENGTH - len(suffix)
    return pod[-room:] + suffix


def is_worker_of_pod(worker: str, pod: str) -> bool:
    """Whether `worker` is the id of one of this pod's processes (any index, any restart)."""
    match = PROCESS_SUFFIX.search(worker)
    if match is None:
        return False
    prefix = worker[: match.start()]
    # A trimmed id (exactly 64 characters) keeps the end of the pod name; any other keeps all of it.
    return prefix == pod or (len(worker) == MAX_WORKER_ID_LENGTH and bool(prefix) and pod.endswith(prefix))


def worker_ids(pod: str, index: int, restart: int, threads: int) -> tuple[str, ...]:
    """The ids of every thread of process `index` (one id, without a thread suffix, for one thread)."""
    if threads == 1:
        return (worker_id(pod, index, restart),)
    return tuple(worker_id(pod, index, restart, thread) for thread in range(threads))
