"""Mapping worker ids back to the pods of a pool."""

from __future__ import annotations

from taskpool_operator import workers

POD = "emails-workers-7d9f8c6b5d-x2k4q"


def test_worker_ids_map_to_their_pod() -> None:
    assert workers.pod_of_worker(f"{POD}-0") == POD
    assert workers.pod_of_worker(f"{POD}-12") == POD
    # A restarted process: `<pod>-<index>.<restart>`.
    assert workers.pod_of_worker(f"{POD}-0.1") == POD
    assert workers.pod_of_worker(f"{POD}-3.17") == POD
    assert workers.is_pool_worker("emails", f"{POD}-3.17")
    assert workers.busy_pods([f"{POD}-1.2"], {POD}) == {POD}
    # A thread of a process (`--threads`): `<pod>-<index>[.<restart>]_<thread>`.
    assert workers.pod_of_worker(f"{POD}-0_7") == POD
    assert workers.pod_of_worker(f"{POD}-2.3_15") == POD
    assert workers.is_pool_worker("emails", f"{POD}-2.3_15")


def test_only_this_pools_pods_are_claimed() -> None:
    assert workers.is_pool_worker("emails", f"{POD}-3")
    # A pool whose name extends this one's owns a different Deployment.
    assert not workers.is_pool_worker("emails", "emails-workers-a-workers-7d9f8c6b5d-x2k4q-0")
    assert workers.is_pool_worker("emails-workers-a", "emails-workers-a-workers-7d9f8c6b5d-x2k4q-0")
    # db_worker's own random ids and ids without a process index are not pool workers.
    assert not workers.is_pool_worker("emails", "3f2a9c1d0b8e4f6a7c5d2e1b0a9f8e7d")
    assert not workers.is_pool_worker("emails", POD)


def test_busy_pods() -> None:
    other = "emails-workers-7d9f8c6b5d-abcde"
    assert workers.busy_pods([f"{POD}-0", f"{POD}-1", None, "gone-0"], {POD, other}) == {POD}


def test_orphans_are_ids_of_this_pool_without_a_live_pod() -> None:
    gone = "emails-workers-7d9f8c6b5d-zzzzz-0"
    foreign = "reports-workers-7d9f8c6b5d-zzzzz-0"
    assert workers.orphaned_worker_ids("emails", [f"{POD}-0", gone, foreign, None], {POD}) == {gone}


def test_ids_with_a_restart_generation_map_to_the_same_pod() -> None:
    assert workers.parse_worker_id(f"{POD}-3.2") == workers.WorkerId(POD, 3, 2, None, trimmed=False)
    assert workers.parse_worker_id(f"{POD}-3") == workers.WorkerId(POD, 3, None, None, trimmed=False)
    assert workers.pod_of_worker(f"{POD}-12.7") == POD
    assert workers.is_pool_worker("emails", f"{POD}-0.1")
    assert workers.busy_pods([f"{POD}-1.4"], {POD}) == {POD}
    assert workers.orphaned_worker_ids("emails", [f"{POD}-1.4"], set()) == {f"{POD}-1.4"}


def test_a_pod_whose_random_suffix_is_digits_keeps_it() -> None:
    pod = "emails-workers-7d9f8c6b5d-24567"
    assert workers.pod_of_worker(f"{pod}-0") == pod
    assert workers.pod_of_worker(f"{pod}-0.3") == pod


def test_a_trimmed_id_maps_to_the_pod_whose_name_ends_with_it() -> None:
    pool = "p" * 35
    pod = f"{pool}-workers-7d9f8c6b5d-x2k4q"  # 60 characters, the longest a pool's pod can have
    worker_id = f"{pod}-0.10"[-workers.WORKER_ID_MAX_LENGTH :]
    parsed = workers.parse_worker_id(worker_id)
    assert parsed is not None
    assert parsed.trimmed
    assert parsed.is_of(pod)
    assert workers.is_pool_worker(pool, worker_id)
    assert workers.busy_pods([worker_id], {pod}) == {pod}
    assert workers.orphaned_worker_ids(pool, [worker_id], {pod}) == set()


def test_values_that_are_not_worker_ids() -> None:
    assert workers.parse_worker_id("3f2a9c1d0b8e4f6a7c5d2e1b0a9f8e7d") is None
    assert workers.parse_worker_id(f"{POD}-x") is None
