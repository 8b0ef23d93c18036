"""The worker Deployment: created or replaced from the pool's spec, and restored after manual edits."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from taskpool_operator import kube, objects
from taskpool_operator.handlers import memory, scheduler, writes
from taskpool_operator.pool import InvalidPool, Pool, replicas_to_apply

logger = logging.getLogger(__name__)


def apply(pool: Pool) -> None:
    """Makes the pool's Deployment exactly what the builders say, keeping the operator's replica decision."""
    mem = memory.of(pool.key)
    name = objects.deployment_name(pool.name)
    with mem.writing:  # read, decide and write as one: the scaling loop's replicas cannot change meanwhile
        live = kube.read_deployment(pool.namespace, name)
        live_replicas = None if live is None else live["spec"].get("replicas")
        replicas = replicas_to_apply(pool, mem.desired, live_replicas)
        result = writes.write_deployment(mem, objects.build_worker_deployment(pool, replicas), live)
        mem.desired = replicas
        generation = int(result["metadata"].get("generation", 0))
        mem.deployment_generation = max(mem.deployment_generation, generation)
        mem.applied_generation = pool.generation
    logger.info(
        "%s Deployment %s/%s (%d replicas)",
        "created" if live is None else "applied",
        pool.namespace,
        name,
        replicas,
    )


def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """On create, spec change and operator start: the Deployment follows the pool's spec. The scaling loop
    writes the status (observedGeneration with the conditions, in one patch: kstatus must never see the new
    generation observed without the conditions saying whether it is done)."""
    try:
        pool = Pool.from_body(body)
    except InvalidPool as exc:
        raise kopf.PermanentError(f"invalid spec: {exc}") from None
    apply(pool)
    # The scheduler's status only: no observedGeneration here (see above).
    patch.status["scheduler"] = scheduler.apply(pool)


def restore(event: Mapping[str, Any], **_: Any) -> None:
    """An owned Deployment changed or vanished: put back the pool's version when someone else did it."""
    found = writes.pool_of_event(event)
    if found is None:
        return
    namespace, pool_name, mem = found
    with mem.writing:  # after the operator's writes in flight (PoolMemory.writing)
        applied, own_generation = mem.applied_generation, mem.deployment_generation
    if applied is None:
        return  # the pool's own reconciliation has not run yet; it will write the Deployment
    if not writes.changed_by_someone_else(event, own_generation):
        return  # the operator's own write, or an older event
    pool = writes.pool_to_restore(namespace, pool_name)
    if pool is None:
        return
    if event.get("type") == "DELETED":
        logger.warning("Deployment %s was deleted; creating it again", objects.deployment_name(pool_name))
    else:
        logger.warning(
            "Deployment %s was changed by someone else; restoring it", objects.deployment_name(pool_name)
        )
    apply(pool)
