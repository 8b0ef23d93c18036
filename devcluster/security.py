"""How the node agent runs a container's process: its user, groups and root file system, as a kubelet does.

The container-level securityContext wins over the pod-level one, field by field. Without runAsUser the image's
declared USER applies (images.py reads it from our Dockerfiles; other images run as root), and without
runAsGroup the image's group (or 0). runAsNonRoot with uid 0 is refused before the container starts, as the
kubelet refuses it (the container stays Waiting with reason CreateContainerConfigError). The supplementary
groups are fsGroup and supplementalGroups; fsGroup also owns the pod's emptyDir volumes (pod_inputs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class SecurityContextError(ValueError):
    """The container cannot be started as its securityContext asks (CreateContainerConfigError)."""


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups: fsGroup, then supplementalGroups
    read_only_root: bool  # readOnlyRootFilesystem: writable only where volumes are mounted
    no_new_privileges: bool  # allowPrivilegeEscalation: false (the kernel's no_new_privs)


def fs_group(pod_spec: dict[str, Any]) -> int | None:
    value = (pod_spec.get("securityContext") or {}).get("fsGroup")
    return None if value is None else int(value)


def run_as(
    pod: str, pod_spec: dict[str, Any], container: dict[str, Any], image_user: tuple[int, int] | None
) -> RunAs:
    """`pod` names the pod in messages (`<name>_<namespace>(<uid>)`, as the kubelet formats it)."""
    pod_context = pod_spec.get("securityContext") or {}
    context = container.get("securityContext") or {}

    def setting(key: str) -> Any:
        return context[key] if context.get(key) is not None else pod_context.get(key)

    default_uid, default_gid = image_user or (0, 0)
    uid = int(setting("runAsUser") if setting("runAsUser") is not None else default_uid)
    gid = int(setting("runAsGroup") if setting("runAsGroup") is not None else default_gid)
    if setting("runAsNonRoot") and uid == 0:
        # The kubelet's own messages (pkg/kubelet/kuberuntime/security_context_others.go).
        where = f"(pod: {pod!r}, container: {container['name']})"
        if setting("runAsUser") is not None:
            raise SecurityContextError(f"container's runAsUser breaks non-root policy {where}")
        raise SecurityContextError(f"container has runAsNonRoot and image will run as root {where}")
    group = fs_group(pod_spec)
    groups = ([group] if group is not None else []) + [
        int(g) for g in pod_context.get("supplementalGroups") or []
    ]
    return RunAs(
        uid=uid,
        gid=gid,
        groups=tuple(dict.fromkeys(groups)),
        read_only_root=bool(context.get("readOnlyRootFilesystem")),
        no_new_privileges=context.get("allowPrivilegeEscalation") is False,
    )
