"""Worker ids: `<pod>-<index>[.<restart>][_<thread>]`, at most 64 characters, the pod name trimmed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_taskpool.worker_ids import MAX_WORKER_ID_LENGTH, is_worker_of_pod, pod_name, worker_id, worker_ids
from taskpool_operator.workers import pod_of_worker

pytestmark = pytest.mark.unit

# Pod names as Kubernetes makes them: DNS labels, `<deployment>-<replicaset hash>-<5 random chars>`.
dns = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=240)
suffix = st.text(alphabet="bcdfghjklmnpqrstvwxz2456789", min_size=5, max_size=5)


def test_short_names_are_kept_whole() -> None:
    assert worker_id("reports-workers-7d9f8c6b5d-x2x4q", 0) == "reports-workers-7d9f8c6b5d-x2x4q-0"
    assert worker_id("w", 12) == "w-12"


def test_long_names_lose_their_start() -> None:
    pod = "a-very-long-deployment-name-that-a-platform-team-chose-workers-7d9f8c6b5d-x2x4q"
    result = worker_id(pod, 3)
    assert len(result) == MAX_WORKER_ID_LENGTH
    assert result.endswith("-7d9f8c6b5d-x2x4q-3")
    assert pod.endswith(result.rpartition("-")[0])


@given(pod=dns, index=st.integers(min_value=0, max_value=10_000))
def test_never_longer_than_64_and_maps_back_to_the_pod(pod: str, index: int) -> None:
    result = worker_id(pod, index)
    assert len(result) <= MAX_WORKER_ID_LENGTH
    prefix, _, parsed_index = result.rpartition("-")
    assert parsed_index == str(index)
    assert pod.endswith(prefix)
    assert prefix == pod or len(result) == MAX_WORKER_ID_LENGTH


def test_restarted_processes_get_a_new_id() -> None:
    pod = "reports-workers-7d9f8c6b5d-x2x4q"
    assert worker_id(pod, 0, restart=0) == f"{pod}-0"
    assert worker_id(pod, 0, restart=1) == f"{pod}-0.1"
    assert worker_id(pod, 2, restart=13) == f"{pod}-2.13"


def test_threads_get_an_id_each() -> None:
    pod = "reports-workers-7d9f8c6b5d-x2x4q"
    assert worker_id(pod, 0, restart=0, thread=3) == f"{pod}-0_3"
    assert worker_id(pod, 2, restart=1, thread=0) == f"{pod}-2.1_0"
    assert worker_ids(pod, 1, 0, threads=1) == (f"{pod}-1",)  # one thread: the id of a plain process
    assert worker_ids(pod, 1, 2, threads=3) == (f"{pod}-1.2_0", f"{pod}-1.2_1", f"{pod}-1.2_2")


@given(
    pod=dns,
    index=st.integers(min_value=0, max_value=256),
    restart=st.integers(min_value=0, max_value=10**6),
    thread=st.none() | st.integers(min_value=0, max_value=63),
)
def test_every_generation_maps_back_to_its_pod_on_both_sides(
    pod: str, index: int, restart: int, thread: int | None
) -> None:
    result = worker_id(pod, index, restart, thread)
    assert len(result) <= MAX_WORKER_ID_LENGTH
    # The operator's parser (taskpool_operator.workers) and the contract's rpartition agree.
    prefix = pod_of_worker(result)
    assert prefix == result.rpartition("-")[0]
    assert pod.endswith(prefix)
    assert prefix == pod or len(result) == MAX_WORKER_ID_LENGTH
    assert is_worker_of_pod(result, pod)


def test_ids_of_other_pods_are_not_this_pods() -> None:
    pod = "emails-workers-7d9f8c6b5d-x2x4q"
    assert is_worker_of_pod(f"{pod}-1.4", pod)
    assert not is_worker_of_pod("emails-workers-7d9f8c6b5d-abcde-0", pod)
    # An untrimmed id names its whole pod: a pod whose name merely ends the same way is another pod.
    assert not is_worker_of_pod("x2x4q-0", pod)
    assert not is_worker_of_pod(pod, pod)  # no process index
    assert not is_worker_of_pod("3f2a9c1d0b8e4f6a7c5d2e1b0a9f8e7d", pod)  # db_worker's random ids


@given(
    deployment=st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=200),
    pods=st.lists(suffix, min_size=2, max_size=10, unique=True),
    concurrency=st.integers(min_value=1, max_value=64),
)
def test_unique_across_processes_and_pods(deployment: str, pods: list[str], concurrency: int) -> None:
    ids = [worker_id(f"{deployment}-7d9f8c6b5d-{pod}", index) for pod in pods for index in range(concurrency)]
    assert len(set(ids)) == len(ids)


def test_stable_for_the_same_pod_and_index() -> None:
    assert worker_id("pool-abc12", 1) == worker_id("pool-abc12", 1)


@pytest.mark.parametrize(("pod", "index"), [("", 0), ("pod", -1)])
def test_rejects_impossible_input(pod: str, index: int) -> None:
    with pytest.raises(ValueError, match="must not be"):
        worker_id(pod, index)


def test_pod_name_comes_from_the_downward_api_else_the_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "reports-workers-abc-x2x4q")
    assert pod_name() == "reports-workers-abc-x2x4q"
    monkeypatch.setenv("POD_NAME", "  ")
    monkeypatch.setattr("socket.gethostname", lambda: "laptop")
    assert pod_name() == "laptop"
