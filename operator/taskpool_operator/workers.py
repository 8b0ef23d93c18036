"""Which worker pod a worker id belongs to (pure). `parse_worker_id` is the operator's only reader of ids.

Worker ids are `<pod name>-<process index>`, or `<pod name>-<process index>.<restart>` for a restarted
process, each followed by `_<thread>` when the process runs threads (`--threads`); when longer than 64
characters, characters are dropped from the start of the pod name, keeping its unique end (docs/contracts.md,
django_taskpool.worker_ids). Pool names are at most 35 characters (the CRD), so the pods of `<pool>-workers`
have names of at most 60 characters.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Final

from taskpool_operator.objects import deployment_name

WORKER_ID_MAX_LENGTH: Final = 64
_WORKER_ID: Final = re.compile(
    r"(?P<pod>.+)-(?P<index>[0-9]+)(?:\.(?P<restart>[0-9]+))?(?:_(?P<thread>[0-9]+))?"
)
# A Deployment's pods are `<deployment>-<pod-template-hash>-<random suffix>` (up to 10 and exactly 5 chars).
_DEPLOYMENT_POD: Final = re.compile(r"(?P<deployment>.+)-[a-z0-9]{1,10}-[a-z0-9]{5}")


@dataclass(frozen=True)
class WorkerId:
    pod: str
    """The pod name, or its end when the id was trimmed (`trimmed`)."""
    index: int
    restart: int | None
    thread: int | None
    trimmed: bool

    def is_of(self, pod_name: str) -> bool:
        """Whether the id names this pod (the contract's rule: the pod whose name ends with the id's pod
        part, and equals it unless the id was trimmed)."""
        return pod_name == self.pod or (self.trimmed and pod_name.endswith(self.pod))


def parse_worker_id(worker_id: str) -> WorkerId | None:
    """The parts of a worker id, or None for a value that is not one."""
    match = _WORKER_ID.fullmatch(worker_id)
    if match is None:
        return None
    restart, thread = match["restart"], match["thread"]
    return WorkerId(
        pod=match["pod"],
        index=int(match["index"]),
        restart=None if restart is None else int(restart),
        thread=None if thread is None else int(thread),
        trimmed=len(worker_id) >= WORKER_ID_MAX_LENGTH,
    )


def pod_of_worker(worker_id: str) -> str:
    """The pod name part of a worker id (the id itself when it is not one)."""
    parsed = parse_worker_id(worker_id)
    return worker_id if parsed is None else parsed.pod


def is_pool_worker(pool_name: str, worker_id: str) -> bool:
    """Whether the id was claimed by a process in a pod of this pool's Deployment."""
    parsed = parse_worker_id(worker_id)
    pod = None if parsed is None else _DEPLOYMENT_POD.fullmatch(parsed.pod)
    if parsed is None or pod is None:
        return False
    owner = deployment_name(pool_name)
    return pod["deployment"] == owner or (parsed.trimmed and owner.endswith(pod["deployment"]))


def busy_pods(worker_ids: Iterable[str | None], pod_names: Collection[str]) -> set[str]:
    """The pods among `pod_names` with a process that owns a RUNNING task."""
    parsed = [p for p in (parse_worker_id(w) for w in worker_ids if w) if p is not None]
    return {pod for pod in pod_names if any(worker.is_of(pod) for worker in parsed)}


def orphaned_worker_ids(
    pool_name: str, worker_ids: Iterable[str | None], live_pods: Collection[str]
) -> set[str]:
    """Ids of this pool's workers owning RUNNING tasks whose pod no longer exists."""
    orphaned = set()
    for worker_id in worker_ids:
        parsed = None if worker_id is None else parse_worker_id(worker_id)
        if parsed is None or worker_id is None or not is_pool_worker(pool_name, worker_id):
            continue
        if not any(parsed.is_of(pod) for pod in live_pods):
            orphaned.add(worker_id)
    return orphaned
