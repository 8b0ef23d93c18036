"""The chart's pre-delete hook (`taskpool-operator delete-pools`): every pool deleted, then waited for; the
pools still there at the timeout are named."""

from __future__ import annotations

from typing import Any

import pytest

from taskpool_operator import uninstall


class FakeCluster:
    """Pools that disappear `polls_to_go` reads after their deletion (the operator removing the finalizer)."""

    def __init__(self, pools: list[uninstall.PoolRef], polls_to_go: int | None) -> None:
        self.present = set(pools)
        self.deleted: list[uninstall.PoolRef] = []
        self.reads_after_delete: dict[uninstall.PoolRef, int] = {}
        self.polls_to_go = polls_to_go
        self.now = 0.0
        self.said: list[str] = []

    def delete(self, namespace: str, name: str) -> None:
        self.deleted.append((namespace, name))

    def read(self, namespace: str, name: str) -> dict[str, Any] | None:
        pool = (namespace, name)
        if pool not in self.present:
            return None
        seen = self.reads_after_delete.get(pool, 0) + 1
        self.reads_after_delete[pool] = seen
        if pool in self.deleted and self.polls_to_go is not None and seen > self.polls_to_go:
            self.present.discard(pool)
            return None
        return {"metadata": {"namespace": namespace, "name": name}}

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def run(self, pools: list[uninstall.PoolRef], timeout_s: float) -> None:
        uninstall.delete_pools(
            pools,
            timeout_s,
            delete=self.delete,
            read=self.read,
            say=self.said.append,
            sleep=self.sleep,
            clock=lambda: self.now,
        )


POOLS = [("shop", "a"), ("analytics", "b")]


def test_every_pool_is_deleted_then_waited_for() -> None:
    cluster = FakeCluster(POOLS, polls_to_go=3)
    cluster.run(POOLS, timeout_s=600)
    assert cluster.deleted == POOLS
    assert not cluster.present
    assert cluster.now == 3 * uninstall.POLL_S
    assert cluster.said[-1] == "2 TaskWorkerPools deleted"


def test_pools_gone_already_end_at_once() -> None:
    cluster = FakeCluster([], polls_to_go=None)
    cluster.run(POOLS, timeout_s=600)
    assert cluster.deleted == POOLS
    assert cluster.now == 0


def test_pools_still_there_at_the_timeout_are_named() -> None:
    cluster = FakeCluster(POOLS, polls_to_go=None)  # no operator removes the finalizers
    named = r"after 10s \(is the operator running\?\): shop/a, analytics/b"
    with pytest.raises(uninstall.PoolsRemain, match=named):
        cluster.run(POOLS, timeout_s=10)
    assert cluster.now > 10


@pytest.mark.parametrize("text", ["shop", "/a", "shop/", "a/b/c", ""])
def test_a_pool_is_namespace_slash_name(text: str) -> None:
    with pytest.raises(ValueError, match="is not NAMESPACE/NAME"):
        uninstall.parse_pool_ref(text)
    assert uninstall.parse_pool_ref("shop/a") == ("shop", "a")
