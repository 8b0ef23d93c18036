"""Writing a Deployment the pool owns (its workers', its scheduler's): kube's one create-or-replace, with a
refusal that needs a human kept in the pool's memory, so that the scaling loop reports it (Stalled, and a
Warning Event with the API server's message), and retried slowly."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import kopf

from taskpool_operator import kube
from taskpool_operator.handlers.memory import PoolMemory

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
