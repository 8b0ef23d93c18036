"""The worker Deployment: created or replaced from the pool's spec, and restored after manual edits."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from taskpool_operator import kube, objects
from taskpool_operator.conditions import Problem, Reason
from taskpool_operator.handlers import memory, scheduler
from taskpool_operator.pool import InvalidPool, Pool, replicas_to_apply

logger = logging.getLogger(__name__)
# A refused write needs a human (or a spec change, which runs the handler again at once): retried slowly.
REJECTED_RETRY_S = 60


def _owned_by(deployment: Mapping[str, Any], pool: Pool) -> bool:
    owners = deployment.get("metadata", {}).get("ownerReferences") or []
    return any(o.get("uid") == pool.uid and o.get("controller") for o in owners)


def apply(pool: Pool) -> None:
    """Makes the pool's Deployment exactly what the builders say, keeping the operator's replica decision."""
    mem = memory.of(pool.key)
    name = objects.deployment_name(pool.name)
    live = kube.read_deployment(pool.namespace, name)
    if live is not None and not _owned_by(live, pool):
        mem.deployment_error = Problem(
            Reason.DEPLOYMENT_NOT_OWNED, f"Deployment {name!r} already exists and is not owned by this pool"
        )
        raise kopf.TemporaryError(mem.deployment_error.message, delay=REJECTED_RETRY_S)
    live_replicas = None if live is None else live["spec"].get("replicas")
    replicas = replicas_to_apply(pool, mem.desired, live_replicas)
    manifest = objects.build_worker_deployment(pool, replicas)
    try:
        if live is None:
            result = kube.create_deployment(manifest)
        else:
            # Annotations and labels other controllers keep on the Deployment itself (revision...) stay.
            metadata = manifest["metadata"]
            metadata["resourceVersion"] = live["metadata"]["resourceVersion"]
            metadata["annotations"] = dict(live["metadata"].get("annotations") or {})
            metadata["labels"] = {**(live["metadata"].get("labels") or {}), **metadata["labels"]}
            result = kube.replace_deployment(manifest)
    except kube.ApiError as exc:
        if exc.status == 409:  # changed meanwhile: retry soon
            raise kopf.TemporaryError(f"the Deployment {name!r} changed meanwhile", delay=2) from None
        rejection = kube.rejection_message(exc)
        if rejection is None:
            raise
        # Refused (invalid, forbidden by RBAC or an admission policy...): the scaling loop reports it as
        # Stalled with a Warning Event; the Deployment as it was, if any, keeps running.
        mem.deployment_error = Problem(
            Reason.DEPLOYMENT_REJECTED, f"the API server refused the Deployment {name!r}: {rejection}"
        )
        raise kopf.TemporaryError(mem.deployment_error.message, delay=REJECTED_RETRY_S) from None
    mem.desired = replicas
    mem.deployment_generation = max(mem.deployment_generation, int(result["metadata"].get("generation", 0)))
    mem.applied_generation = pool.generation
    mem.deployment_error = None
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
    deployment = event.get("object") or {}
    meta = deployment.get("metadata", {})
    pool_name = (meta.get("labels") or {}).get(objects.POOL_LABEL)
    namespace = meta.get("namespace")
    if not pool_name or not namespace:
        return
    mem = memory.get((namespace, pool_name))
    if mem is None or mem.applied_generation is None:
        return  # the pool's own reconciliation has not run yet; it will write the Deployment
    if event.get("type") != "DELETED" and int(meta.get("generation", 0)) <= mem.deployment_generation:
        return  # the operator's own write, or an older event
    body = kube.read_pool(namespace, pool_name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return  # the pool is going away: its Deployment goes with it
    try:
        pool = Pool.from_body(body)
    except InvalidPool:
        return
    if event.get("type") == "DELETED":
        logger.warning("Deployment %s was deleted; creating it again", objects.deployment_name(pool_name))
    else:
        logger.warning(
            "Deployment %s was changed by someone else; restoring it", objects.deployment_name(pool_name)
        )
    apply(pool)
