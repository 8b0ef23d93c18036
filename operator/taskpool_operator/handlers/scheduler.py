"""The scheduler Deployment (spec.scheduler): created, replaced or deleted with the pool's spec, restored
after someone else's edit, and reported in status.scheduler."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from taskpool_operator import kube, objects
from taskpool_operator.handlers import memory
from taskpool_operator.pool import InvalidPool, Pool

logger = logging.getLogger(__name__)


def _owned_by(deployment: Mapping[str, Any], pool: Pool) -> bool:
    owners = deployment.get("metadata", {}).get("ownerReferences") or []
    return any(o.get("uid") == pool.uid and o.get("controller") for o in owners)


def apply(pool: Pool) -> dict[str, Any] | None:
    """Makes the scheduler Deployment what the pool's spec says (deleted when disabled); status.scheduler."""
    mem = memory.of((pool.namespace, pool.name))
    name = objects.scheduler_deployment_name(pool.name)
    live = kube.read_deployment(pool.namespace, name)
    if live is not None and not _owned_by(live, pool):
        raise kopf.TemporaryError(
            f"Deployment {name!r} already exists and is not owned by this pool", delay=30
        )
    if not pool.scheduler_enabled:
        mem.scheduler_generation = None
        if live is not None:
            kube.delete_deployment(pool.namespace, name)
            logger.info("deleted scheduler Deployment %s/%s", pool.namespace, name)
        return None
    manifest = objects.build_scheduler_deployment(pool)
    try:
        if live is None:
            result = kube.create_deployment(manifest)
        else:
            metadata = manifest["metadata"]
            metadata["resourceVersion"] = live["metadata"]["resourceVersion"]
            metadata["annotations"] = dict(live["metadata"].get("annotations") or {})
            metadata["labels"] = {**(live["metadata"].get("labels") or {}), **metadata["labels"]}
            result = kube.replace_deployment(manifest)
    except kube.ApiError as exc:
        if exc.status in (409, 422):
            raise kopf.TemporaryError(
                f"the Deployment {name!r} was not written: {exc.reason}", delay=2 if exc.status == 409 else 30
            ) from None
        raise
    mem.scheduler_generation = int(result["metadata"].get("generation", 0))
    logger.info(
        "%s scheduler Deployment %s/%s", "created" if live is None else "applied", pool.namespace, name
    )
    return objects.build_scheduler_status(result)


def on_event(event: Mapping[str, Any], **_: Any) -> None:
    """A scheduler Deployment changed: report it in the pool's status, and put back the pool's version when
    someone else edited or deleted it."""
    deployment = event.get("object") or {}
    meta = deployment.get("metadata", {})
    pool_name = (meta.get("labels") or {}).get(objects.POOL_LABEL)
    namespace = meta.get("namespace")
    if not pool_name or not namespace:
        return
    mem = memory.get((namespace, pool_name))
    if mem is None or mem.scheduler_generation is None:
        return  # the pool's reconciliation has not run yet, or it runs no scheduler
    deleted = event.get("type") == "DELETED"
    if deleted or int(meta.get("generation", 0)) > mem.scheduler_generation:
        body = kube.read_pool(namespace, pool_name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return  # the pool is going away: its scheduler goes with it
        try:
            pool = Pool.from_body(body)
        except InvalidPool:
            return
        logger.warning(
            "scheduler Deployment of %s was %s; restoring it", pool_name, "deleted" if deleted else "changed"
        )
        kube.patch_pool_status(namespace, pool_name, {"scheduler": apply(pool)})
        return
    kube.patch_pool_status(namespace, pool_name, {"scheduler": objects.build_scheduler_status(deployment)})
