"""Writing a Deployment the pool owns (its workers', its scheduler's): kube's one create-or-replace, with a
refusal that needs a human kept in the pool's memory, so that the scaling loop reports it (Stalled, and a
Warning Event with the API server's message), and retried slowly."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import kopf

from taskpool_operator import kube, objects
from taskpool_operator.handlers import memory
from taskpool_operator.handlers.memory import PoolMemory
from taskpool_operator.pool import InvalidPool, Pool

# A refused write needs a human (or a spec change, which runs the handler again at once): retried slowly.
REFUSED_RETRY_S = 60
CONFLICT_RETRY_S = 2


def write_deployment(
    mem: PoolMemory, manifest: dict[str, Any], live: dict[str, Any] | None
) -> dict[str, Any]:
    """Creates or replaces the Deployment (kube.write_deployment) and returns it as written. Raises
    kopf.TemporaryError when it was not written; the Deployment as it was, if any, keeps running."""
    name = manifest["metadata"]["name"]
    try:
        written = kube.write_deployment(manifest, live)
    except kube.WriteRefused as exc:
        mem.write_refusals[name] = exc.problem
        raise kopf.TemporaryError(exc.problem.message, delay=REFUSED_RETRY_S) from None
    except kube.ApiError as exc:
        if exc.status != HTTPStatus.CONFLICT:
            raise
        raise kopf.TemporaryError(
            f"the Deployment {name!r} changed meanwhile", delay=CONFLICT_RETRY_S
        ) from None
    mem.write_refusals.pop(name, None)
    return written


def changed_by_someone_else(event: Mapping[str, Any], own_generation: int) -> bool:
    """Whether a watch event of one of the pool's Deployments shows someone else's doing: it was deleted, or
    its generation is above `own_generation`, the one the operator's own last write of it left. The API
    server bumps the generation on every change of the spec and only then, so a `kubectl edit` or `kubectl
    scale` shows, and a status update or an event older than that write does not. Read `own_generation`
    under `PoolMemory.writing`: then a write whose event this may be has recorded its generation."""
    if event.get("type") == "DELETED":
        return True
    return int(event["object"]["metadata"].get("generation", 0)) > own_generation


def pool_of_event(event: Mapping[str, Any]) -> tuple[str, str, PoolMemory] | None:
    """The namespace, name and memory of the pool a watched Deployment belongs to (its pool label); None when
    it is no pool's, or the pool has not been reconciled since the operator started."""
    meta = (event.get("object") or {}).get("metadata", {})
    pool_name = (meta.get("labels") or {}).get(objects.POOL_LABEL)
    namespace = meta.get("namespace")
    if not pool_name or not namespace:
        return None
    mem = memory.get((namespace, pool_name))
    return None if mem is None else (namespace, pool_name, mem)


def pool_to_restore(namespace: str, pool_name: str) -> Pool | None:
    """The pool to write an edited or deleted Deployment again from, as the API server has it now; None when
    the pool is going away (its Deployments go with it) or its spec is invalid."""
    body = kube.read_pool(namespace, pool_name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    try:
        return Pool.from_body(body)
    except InvalidPool:
        return None
