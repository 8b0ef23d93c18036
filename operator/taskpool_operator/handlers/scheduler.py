"""The scheduler Deployment (spec.scheduler): created, replaced or deleted with the pool's spec, restored
after someone else's edit, and reported in status.scheduler."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from taskpool_operator import kube, metrics, objects
from taskpool_operator.handlers import memory, writes
from taskpool_operator.pool import Pool

logger = logging.getLogger(__name__)


def apply(pool: Pool) -> dict[str, Any] | None:
    """Makes the scheduler Deployment what the pool's spec says (deleted when disabled); status.scheduler."""
    status = _apply(pool)
    metrics.record_scheduler(pool.namespace, pool.name, status)
    return status


def _apply(pool: Pool) -> dict[str, Any] | None:
    mem = memory.of(pool.key)
    name = objects.scheduler_deployment_name(pool.name)
    live = kube.read_deployment(pool.namespace, name)
    if not pool.scheduler_enabled:
        mem.scheduler_generation = None
        mem.write_refusals.pop(name, None)
        if live is not None and objects.controller_uid(live) == pool.uid:  # someone else's is left alone
            kube.delete_deployment(pool.namespace, name)
            logger.info("deleted scheduler Deployment %s/%s", pool.namespace, name)
        return None
    with mem.writing:
        result = writes.write_deployment(mem, objects.build_scheduler_deployment(pool), live)
        mem.scheduler_generation = int(result["metadata"].get("generation", 0))
    logger.info(
        "%s scheduler Deployment %s/%s", "created" if live is None else "applied", pool.namespace, name
    )
    return objects.build_scheduler_status(result)


def on_event(event: Mapping[str, Any], **_: Any) -> None:
    """A scheduler Deployment changed: report it in the pool's status, and put back the pool's version when
    someone else edited or deleted it."""
    found = writes.pool_of_event(event)
    if found is None:
        return
    namespace, pool_name, mem = found
    with mem.writing:  # after the operator's writes in flight (PoolMemory.writing)
        own_generation = mem.scheduler_generation
    if own_generation is None:
        return  # the pool's reconciliation has not run yet, or it runs no scheduler
    deployment = event["object"]
    deleted = event.get("type") == "DELETED"
    if writes.changed_by_someone_else(event, own_generation):
        pool = writes.pool_to_restore(namespace, pool_name)
        if pool is None:
            return
        logger.warning(
            "scheduler Deployment of %s was %s; restoring it", pool_name, "deleted" if deleted else "changed"
        )
        kube.patch_pool_status(namespace, pool_name, {"scheduler": apply(pool)})
        return
    status = objects.build_scheduler_status(deployment)
    metrics.record_scheduler(namespace, pool_name, status)
    kube.patch_pool_status(namespace, pool_name, {"scheduler": status})
