"""Which worker pod a worker id belongs to (pure).

Worker ids are `<pod name>-<process index>`, or `<pod name>-<process index>.<restart>` for a restarted
process, each followed by `_<thread>` when the process runs threads (`--threads`), with characters dropped
from the start of the pod name past 64 (docs/contracts.md, django_taskpool.worker_ids). Pool names are at
most 35 characters (the CRD), so the pods of `<pool>-workers` have names of at most 60 characters and their
ids are never trimmed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from taskpool_operator.objects import deployment_name

# A Deployment's pods are `<deployment>-<pod-template-hash>-<random suffix>` (up to 10 and exactly 5 chars).
_POD_SUFFIX = r"-[a-z0-9]{1,10}-[a-z0-9]{5}"
_PROCESS_INDEX = re.compile(r"-[0-9]+(\.[0-9]+)?(_[0-9]+)?$")


def pod_of_worker(worker_id: str) -> str:
    """The pod name part of a worker id."""
    return _PROCESS_INDEX.sub("", worker_id)


def is_pool_worker(pool_name: str, worker_id: str) -> bool:
    """Whether the id was claimed by a process in a pod of this pool's Deployment."""
    pattern = re.escape(deployment_name(pool_name)) + _POD_SUFFIX
    return (
        _PROCESS_INDEX.search(worker_id) is not None
        and re.fullmatch(pattern, pod_of_worker(worker_id)) is not None
    )


def busy_pods(worker_ids: Iterable[str | None], pod_names: Collection[str]) -> set[str]:
    """The pods among `pod_names` with a process that owns a RUNNING task."""
    return {pod for pod in (pod_of_worker(w) for w in worker_ids if w) if pod in pod_names}


def orphaned_worker_ids(
    pool_name: str, worker_ids: Iterable[str | None], live_pods: Collection[str]
) -> set[str]:
    """Ids of this pool's workers owning RUNNING tasks whose pod no longer exists."""
    return {w for w in worker_ids if w and is_pool_worker(pool_name, w) and pod_of_worker(w) not in live_pods}
