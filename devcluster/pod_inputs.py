"""What a container gets from the API before it starts, resolved the way the kubelet resolves it: environment
variables (`env`, `envFrom`, `$(VAR)` expansion) and volumes written to the pod's folder (emptyDir, secret,
configMap, downwardAPI, projected with the bound service-account token, hostPath)."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from devcluster import security
from devcluster.rest import ApiError, Rest

TOKEN_REFRESH_FRACTION = 0.8  # the kubelet refreshes projected tokens at 80 % of their lifetime
DEFAULT_TOKEN_SECONDS = 3607  # what the ServiceAccount admission plugin puts in kube-api-access-* volumes


class InputError(RuntimeError):
    """A referenced Secret, ConfigMap or key is missing; the container waits (CreateContainerConfigError)."""


def _object(api: Rest, namespace: str, kind: str, name: str, optional: bool) -> dict[str, str] | None:
    resource = "secrets" if kind == "Secret" else "configmaps"
    try:
        obj = api.get(f"/api/v1/namespaces/{namespace}/{resource}/{name}")
    except ApiError as exc:
        if exc.status == 404:
            if optional:
                return None
            raise InputError(f'{kind.lower()} "{name}" not found') from None
        raise
    if kind == "Secret":
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
    data = dict(obj.get("data") or {})
    data.update(
        {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("binaryData") or {}).items()}
    )
    return data


def field_value(pod: dict[str, Any], path: str) -> str:
    """Value of a downward-API fieldRef (`metadata.labels['x']`, `status.podIP`...)."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
    }
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f"{k}={json.dumps(v)}" for k, v in items)
    if path not in simple:
        raise InputError(f"unsupported fieldRef {path!r}")
    return str(simple[path] or "")


def _resource_value(container: dict[str, Any], ref: dict[str, Any], capacity: dict[str, str]) -> str:
    section, _, name = ref["resource"].partition(".")
    value = ((container.get("resources") or {}).get(section) or {}).get(name) or capacity.get(name, "0")
    return str(value)


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion: defined variables are replaced, $$ escapes, anything else stays."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        text,
    )


def container_env(
    api: Rest, pod: dict[str, Any], container: dict[str, Any], base: dict[str, str], capacity: dict[str, str]
) -> dict[str, str]:
    namespace = pod["metadata"]["namespace"]
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
            if key in source:
                ref = source[key]
                data = _object(api, namespace, kind, ref["name"], bool(ref.get("optional")))
                env.update({prefix + k: v for k, v in (data or {}).items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            if key in source:
                ref = source[key]
                optional = bool(ref.get("optional"))
                data = _object(api, namespace, kind, ref["name"], optional)
                if data is not None and ref["key"] in data:
                    env[name] = data[ref["key"]]
                elif not optional:
                    raise InputError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in source:
            env[name] = _resource_value(container, source["resourceFieldRef"], capacity)
    return env


class Volumes:
    """Writes the pod's volumes under `folder/<volume name>` and keeps projected tokens fresh."""

    def __init__(self, api: Rest, pod: dict[str, Any], folder: Path) -> None:
        self.api, self.pod, self.folder = api, pod, folder
        self.refresh_at = float("inf")

    def source(self, volume_name: str) -> Path:
        for volume in self.pod["spec"].get("volumes") or []:
            if volume["name"] == volume_name and "hostPath" in volume:
                return Path(volume["hostPath"]["path"])
        return self.folder / volume_name

    def write_all(self) -> None:
        self.refresh_at = float("inf")
        for volume in self.pod["spec"].get("volumes") or []:
            self._write(volume)

    def refresh_if_due(self) -> None:
        if time.monotonic() >= self.refresh_at:
            self.write_all()

    def _write(self, volume: dict[str, Any]) -> None:
        name, target = volume["name"], self.folder / volume["name"]
        namespace = self.pod["metadata"]["namespace"]
        if "hostPath" in volume:
            return
        target.mkdir(parents=True, exist_ok=True)
        if "emptyDir" in volume:
            # As the kubelet makes them: writable by every user; with fsGroup, owned by that group and
            # setgid, so what the containers create there belongs to it too.
            group = security.fs_group(self.pod["spec"])
            if group is None:
                target.chmod(0o777)
            else:
                os.chown(target, -1, group)
                target.chmod(0o2777)
            return
        files: dict[str, str] = {}
        if "secret" in volume:
            src = volume["secret"]
            files = self._items("Secret", src.get("secretName", ""), src, namespace)
        elif "configMap" in volume:
            src = volume["configMap"]
            files = self._items("ConfigMap", src["name"], src, namespace)
        elif "downwardAPI" in volume:
            files = self._downward(volume["downwardAPI"])
        elif "projected" in volume:
            for source in volume["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    token = source["serviceAccountToken"]
                    files[token["path"]] = self._token(token)
                elif "secret" in source:
                    files.update(self._items("Secret", source["secret"]["name"], source["secret"], namespace))
                elif "configMap" in source:
                    files.update(
                        self._items("ConfigMap", source["configMap"]["name"], source["configMap"], namespace)
                    )
                elif "downwardAPI" in source:
                    files.update(self._downward(source["downwardAPI"]))
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise InputError(
                f"volume {name!r}: {', '.join(kinds)} volumes are not supported by the node agent"
            )
        for path, content in files.items():
            dest = target / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".tmp")
            tmp.write_text(content)
            tmp.replace(dest)

    def _items(self, kind: str, name: str, src: dict[str, Any], namespace: str) -> dict[str, str]:
        data = _object(self.api, namespace, kind, name, bool(src.get("optional")))
        if data is None:
            return {}
        if not src.get("items"):
            return data
        files = {}
        for item in src["items"]:
            if item["key"] in data:
                files[item["path"]] = data[item["key"]]
            elif not src.get("optional"):
                raise InputError(f"couldn't find key {item['key']} in {kind} {namespace}/{name}")
        return files

    def _downward(self, src: dict[str, Any]) -> dict[str, str]:
        return {
            item["path"]: field_value(self.pod, item["fieldRef"]["fieldPath"])
            for item in src.get("items") or []
            if "fieldRef" in item
        }

    def _token(self, spec: dict[str, Any]) -> str:
        meta = self.pod["metadata"]
        seconds = int(spec.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [spec["audience"]] if spec.get("audience") else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        account = self.pod["spec"].get("serviceAccountName") or "default"
        response = self.api.create(
            f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token", body
        )
        self.refresh_at = min(self.refresh_at, time.monotonic() + seconds * TOKEN_REFRESH_FRACTION)
        return str(response["status"]["token"])
