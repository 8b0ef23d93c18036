"""The node agent's configuration: written by the launcher (control_plane.py), read by the agent.

One typed structure for both sides, stored as JSON in the cluster's state folder (node-agent.json), so a field
added, renamed or retyped on one side is a type error on the other, not a KeyError in a background process.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devcluster.images import ImageEnvironment


@dataclass(frozen=True)
class NodeAgentConfig:
    api_url: str  # https://<api_host>:<api_port>
    api_host: str  # what pods see as KUBERNETES_SERVICE_HOST
    api_port: int
    ca: Path  # the cluster CA (verifies the API server)
    cert: Path  # the agent's client certificate and key
    key: Path
    serving_cert: Path  # the log server's certificate and key (`kubectl logs`)
    serving_key: Path
    nodes: tuple[str, ...]  # the Node names this agent registers and runs pods for
    slot: int  # the network slot (network.Slot)
    state_dir: Path  # pods/<namespace>_<name>_<uid>/ lives here
    kube_version: str
    ready_file: Path  # written once the agent serves; the launcher waits for it
    backoff_initial_s: float = 10.0  # the kubelet's container restart back-off
    backoff_max_s: float = 300.0
    shutdown_grace_s: float = 5.0  # what every pod gets when the node stops
    max_pods: int = 110
    extra_images: tuple[ImageEnvironment, ...] = field(default_factory=tuple)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, default=str))

    @classmethod
    def read(cls, path: Path) -> NodeAgentConfig:
        raw: dict[str, Any] = json.loads(path.read_text())
        paths = ("ca", "cert", "key", "serving_cert", "serving_key", "state_dir", "ready_file")
        return cls(
            **{
                **raw,
                **{name: Path(raw[name]) for name in paths},
                "nodes": tuple(raw["nodes"]),
                "extra_images": tuple(ImageEnvironment.from_json(e) for e in raw["extra_images"]),
            }
        )
