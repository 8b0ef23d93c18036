"""The node agent's pure parts: who a container runs as (security.py), its configuration's round trip
(node_config.py) and the images' declared users (images.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devcluster import images, security
from devcluster.node_config import NodeAgentConfig

pytestmark = pytest.mark.unit

POD = "web_shop(1234)"


def run_as(
    pod_context: dict[str, Any], context: dict[str, Any], image_user: tuple[int, int] | None = None
) -> security.RunAs:
    return security.run_as(
        POD, {"securityContext": pod_context}, {"name": "c", "securityContext": context}, image_user
    )


def test_the_containers_settings_win_over_the_pods_field_by_field() -> None:
    got = run_as({"runAsUser": 2000, "runAsGroup": 3000}, {"runAsUser": 1000})
    assert (got.uid, got.gid) == (1000, 3000)


def test_the_images_user_is_the_default_and_root_without_one() -> None:
    assert (run_as({}, {}, (10001, 10002)).uid, run_as({}, {}, (10001, 10002)).gid) == (10001, 10002)
    assert (run_as({}, {}).uid, run_as({}, {}).gid) == (0, 0)
    assert run_as({"runAsUser": 5}, {}, (10001, 10001)).uid == 5


def test_run_as_non_root_refuses_uid_0_with_the_kubelets_messages() -> None:
    with pytest.raises(
        security.SecurityContextError, match=r"image will run as root \(pod: 'web_shop\(1234\)'"
    ):
        run_as({"runAsNonRoot": True}, {})
    with pytest.raises(security.SecurityContextError, match="container's runAsUser breaks non-root policy"):
        run_as({}, {"runAsNonRoot": True, "runAsUser": 0}, (10001, 10001))
    assert run_as({"runAsNonRoot": True}, {}, (10001, 10001)).uid == 10001


def test_groups_read_only_root_and_no_new_privileges() -> None:
    got = run_as(
        {"fsGroup": 4000, "supplementalGroups": [5000, 4000]},
        {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
    )
    assert got.groups == (4000, 5000)
    assert got.read_only_root
    assert got.no_new_privileges
    assert not run_as({}, {}).read_only_root
    assert not run_as({}, {}).no_new_privileges


def test_our_images_run_as_the_user_their_dockerfiles_declare() -> None:
    # The operator image's entry comes from its build: tests/unit/test_image_cache.py.
    worker = images.resolve("registry.local/taskpool-worker:e2e")
    assert worker is not None
    assert worker.user == images.declared_user(images.REPO / "worker_image" / "Dockerfile") == (10001, 10001)
    plain = images.resolve("python:3.12-slim")
    assert plain is not None
    assert plain.user is None


def test_the_node_agent_configuration_reads_back_what_was_written(tmp_path: Path) -> None:
    extra = images.ImageEnvironment(("example/*",), tmp_path, ("run",), ("x",), {"A": "1"}, (7, 8), tmp_path)
    config = NodeAgentConfig(
        api_url="https://10.213.0.1:6443",
        api_host="10.213.0.1",
        api_port=6443,
        ca=tmp_path / "ca.crt",
        cert=tmp_path / "a.crt",
        key=tmp_path / "a.key",
        serving_cert=tmp_path / "s.crt",
        serving_key=tmp_path / "s.key",
        nodes=("node-1", "node-2"),
        slot=3,
        state_dir=tmp_path,
        kube_version="v1.36.3",
        ready_file=tmp_path / "ready",
        backoff_initial_s=0.5,
        extra_images=(extra, images.ImageEnvironment(("other",), None)),
    )
    config.write(tmp_path / "node-agent.json")
    assert NodeAgentConfig.read(tmp_path / "node-agent.json") == config
