"""The operator's kopf handlers: only decorators here; each concern lives in its own module."""

from __future__ import annotations

import kopf

from taskpool_operator import crd, metrics, objects
from taskpool_operator.handlers import deployment, indexes, lifecycle, scaling, scheduler

POOLS = (crd.GROUP, crd.VERSION, crd.PLURAL)
OWNED = {"app.kubernetes.io/managed-by": objects.MANAGER}
# The pool's worker pods and Deployment; its scheduler's (same pool label) are handled on their own.
WORKERS = {**OWNED, objects.COMPONENT_LABEL: "worker"}
SCHEDULERS = {**OWNED, objects.COMPONENT_LABEL: "scheduler"}
# kopf's default retry delay is a minute; a Deployment write that failed is worth retrying sooner.
RETRY_BACKOFF_S = 5

kopf.on.startup()(lifecycle.configure)
kopf.on.startup()(lifecycle.start_probe)
kopf.on.cleanup()(lifecycle.stop_probe)
kopf.on.login()(lifecycle.login)
kopf.on.probe(id="databases")(lifecycle.liveness)

kopf.index("pods", labels=WORKERS)(indexes.worker_pods)
kopf.index("apps", "v1", "deployments", labels=WORKERS)(indexes.worker_deployments)

reconcile = metrics.counting_errors("reconcile")(deployment.reconcile)
kopf.on.create(*POOLS, backoff=RETRY_BACKOFF_S)(reconcile)
kopf.on.update(*POOLS, field="spec", backoff=RETRY_BACKOFF_S)(reconcile)
kopf.on.resume(*POOLS, backoff=RETRY_BACKOFF_S)(reconcile)
kopf.on.event("apps", "v1", "deployments", labels=WORKERS)(
    metrics.counting_errors("restore")(deployment.restore)
)
kopf.on.event("apps", "v1", "deployments", labels=SCHEDULERS)(
    metrics.counting_errors("scheduler")(scheduler.on_event)
)

# A pool's daemon returns at the end of its round once stopped (pool deleted, operator exiting); without a
# grace kopf cancels it after a few event-loop cycles, mid-round (a scale write, a status patch, the Event
# announcing busy pods that drain when the pool is deleted).
DAEMON_EXIT_GRACE_S = 10
kopf.daemon(
    *POOLS, backoff=RETRY_BACKOFF_S, cancellation_backoff=DAEMON_EXIT_GRACE_S, cancellation_timeout=30
)(scaling.run)
