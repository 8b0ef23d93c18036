"""Worker ids: `<pod name>-<process index>`, at most 64 characters.

The operator parses these ids back to pod names to find orphaned tasks, so the rule is a contract
(docs/contracts.md): when the id would exceed 64 characters, characters are dropped from the START of the
pod name, because pod names end in their unique part (`<deployment>-<replicaset hash>-<random suffix>`).
"""

from __future__ import annotations

import os
import socket

MAX_WORKER_ID_LENGTH = 64  # django-tasks-db rejects longer ids


def pod_name() -> str:
    """This pod's name (`POD_NAME`, from the downward API), falling back to the hostname."""
    return os.environ.get("POD_NAME", "").strip() or socket.gethostname()


def worker_id(pod: str, index: int) -> str:
    if not pod:
        raise ValueError("the pod name must not be empty")
    if index < 0:
        raise ValueError("the process index must not be negative")
    suffix = f"-{index}"
    room = MAX_WORKER_ID_LENGTH - len(suffix)
    return pod[-room:] + suffix
