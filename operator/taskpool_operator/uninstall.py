"""`taskpool-operator delete-pools`: the chart's pre-delete hook. It runs in the operator's image, so it uses
the operator's own API client (the image has no other).

Helm deletes the operator after this hook: the pools are deleted first, while the operator still runs and
removes each pool's finalizer once its workers are gone; a pool left behind would hang in Terminating."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from taskpool_operator import kube

PoolRef = tuple[str, str]
POLL_S = 2.0


class PoolsRemain(Exception):
    """Pools still exist when the timeout ran out; the message names them."""


def parse_pool_ref(text: str) -> PoolRef:
    """NAMESPACE/NAME, both non-empty. Raises ValueError."""
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"{text!r} is not NAMESPACE/NAME")
    return namespace, name


def delete_pools(
    pools: Sequence[PoolRef],
    timeout_s: float,
    *,
    delete: Callable[[str, str], None] = kube.delete_pool,
    read: Callable[[str, str], dict[str, Any] | None] = kube.read_pool,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Deletes every pool, then waits until none exists. Raises PoolsRemain after `timeout_s`."""
    for namespace, name in pools:
        delete(namespace, name)
        say(f"deleting TaskWorkerPool {namespace}/{name}")
    deadline = clock() + timeout_s
    remaining = list(pools)
    while True:
        remaining = [pool for pool in remaining if read(*pool) is not None]
        if not remaining:
            break
        if clock() > deadline:
            names = ", ".join(f"{namespace}/{name}" for namespace, name in remaining)
            raise PoolsRemain(
                f"TaskWorkerPools still present after {timeout_s:g}s (is the operator running?): {names}"
            )
        sleep(POLL_S)
    say(f"{len(pools)} TaskWorkerPools deleted")
