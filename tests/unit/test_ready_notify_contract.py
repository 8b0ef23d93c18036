"""The NOTIFY channel is one value in three places that cannot import each other: the migration's trigger,
the worker's listener and the operator's listener."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

from django_taskpool import wakeup
from taskpool_operator.probe import sql

pytestmark = pytest.mark.unit


def test_the_channel_prefix_is_the_same_everywhere() -> None:
    migration = importlib.import_module("django_taskpool.migrations.0004_ready_notify_trigger")
    assert wakeup.CHANNEL_PREFIX == sql.READY_CHANNEL_PREFIX
    assert wakeup.channel("bulk") == sql.READY_CHANNEL_PREFIX + "bulk"
    source = importlib.util.find_spec(migration.__name__)
    assert source is not None
    assert source.origin is not None
    with open(source.origin) as module:
        assert f"pg_notify('{sql.READY_CHANNEL_PREFIX}' || NEW.backend_name, NEW.queue_name)" in module.read()


@pytest.mark.parametrize(
    ("queues", "excluded", "queue", "wanted"),
    [
        (["default"], [], "default", True),
        (["default"], [], "emails", False),
        (["*"], ["slow"], "emails", True),
        (["*"], ["slow"], "slow", False),
    ],
)
def test_a_worker_wakes_only_for_its_own_queues(
    queues: list[str], excluded: list[str], queue: str, wanted: bool
) -> None:
    listener = wakeup.ReadyListener("default", "default", queues, excluded)
    assert listener.wants(queue) is wanted
