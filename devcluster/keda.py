"""KEDA on the local cluster: its operator and metrics adapter as pods, behind the aggregation layer.

The binaries come from kedabuild/build.sh (`make keda-binaries`, the benchmark's prerequisite only). The
manifests are KEDA's own install (`config/default` of the same module version, rendered with
`kubectl kustomize`: CRDs, RBAC, Services, Deployments, the APIService `v1beta1.external.metrics.k8s.io`),
changed only where this cluster differs from a real one:

- images map to the built binaries (`extra_images()`, pass them to `LocalCluster.start`), running as the
  images' USER 65532, and the containers' `command` (/keda, /keda-adapter in the images) names them;
- certificates are given rather than self-generated (`--enable-cert-rotation=false`, one of KEDA's two
  documented modes): the cluster CA issues `kedaorg-certs`, and the APIService's caBundle is that CA;
- no cluster DNS: the adapter dials the operator's gRPC metrics service at the operator pod's IP, with the
  Service name as TLS authority (`--metrics-service-address`, `--metrics-service-grpc-authority`);
- the admission webhooks (optional in KEDA) are left out.

The API server reaches the adapter through its endpoint IP (`--enable-aggregator-routing`, control_plane.py),
and the HPA controller of kube-controller-manager reads `external.metrics.k8s.io` through it, as in a real
cluster.

    with LocalCluster.start(extra_images=keda.extra_images()) as cluster:
        keda.install(cluster)
"""

from __future__ import annotations

import base64
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from devcluster import binaries, pki
from devcluster.control_plane import LocalCluster
from devcluster.images import ImageEnvironment
from devdb import demo_project

BUILD_SCRIPT = Path(__file__).with_name("kedabuild") / "build.sh"
BINARIES = ("keda-operator", "keda-adapter")
NAMESPACE = "keda"
IMAGE_USER = (65532, 65532)  # USER of KEDA's Dockerfile and Dockerfile.adapter (distroless nonroot)
OPERATOR_IMAGE = "ghcr.io/kedacore/keda"
ADAPTER_IMAGE = "ghcr.io/kedacore/keda-metrics-apiserver"
CERT_SECRET = "kedaorg-certs"
APISERVICE = "v1beta1.external.metrics.k8s.io"
# What KEDA's install has that KEDA does not need to scale (its validating webhooks are optional).
LEFT_OUT = {"ValidatingWebhookConfiguration", "keda-admission", "keda-admission-webhooks"}


class KedaMissing(RuntimeError):
    """KEDA's binaries have not been built."""


def bindir() -> Path:
    out = subprocess.run([str(BUILD_SCRIPT), "--print-bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def version() -> str:
    return bindir().parent.name


def require() -> Path:
    """The folder with both binaries, or a clear error saying how to build them."""
    folder = bindir()
    if subprocess.run([str(BUILD_SCRIPT), "--check"], check=False).returncode != 0:
        raise KedaMissing(f"KEDA's binaries are missing in {folder}: run `make keda-binaries`")
    return folder


def module_dir() -> Path:
    """KEDA's module source in the Go module cache the build used (CRDs and install manifests)."""
    return binaries.cache_root() / "go" / "mod" / "github.com" / "kedacore" / "keda" / f"v2@{version()}"


def extra_images() -> list[ImageEnvironment]:
    folder = require()
    return [
        ImageEnvironment((f"{OPERATOR_IMAGE}:*",), None, (str(folder / "keda-operator"),), user=IMAGE_USER),
        ImageEnvironment((f"{ADAPTER_IMAGE}:*",), None, (str(folder / "keda-adapter"),), user=IMAGE_USER),
    ]


def manifests() -> list[dict[str, Any]]:
    """KEDA's `config/default`, rendered by the cluster's kubectl, minus what is LEFT_OUT."""
    rendered = subprocess.run(
        [str(binaries.kubectl()), "kustomize", str(module_dir() / "config" / "default")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        doc
        for doc in yaml.safe_load_all(rendered)
        if doc and doc["kind"] not in LEFT_OUT and doc["metadata"]["name"] not in LEFT_OUT
    ]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _apply(cluster: LocalCluster, docs: list[dict[str, Any]]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump_all(docs, file)
        file.flush()
        # Server-side: KEDA's CRDs exceed the client-side last-applied annotation's size limit.
        applied = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", file.name, check=False)
    if applied.returncode != 0:
        raise RuntimeError(f"kubectl apply of KEDA's manifests failed: {applied.stderr.strip()}")


def _certificate_secret(cluster: LocalCluster) -> dict[str, Any]:
    names = [
        f"{service}.{NAMESPACE}.svc{suffix}"
        for service in ("keda-operator", "keda-metrics-apiserver")
        for suffix in ("", ".cluster.local")
    ]
    cert, key = pki.issue_service_cert(cluster.pki, "keda", names)

    def encoded(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CERT_SECRET, "namespace": NAMESPACE},
        "type": "kubernetes.io/tls",
        "data": {"ca.crt": encoded(cluster.pki.ca_cert), "tls.crt": encoded(cert), "tls.key": encoded(key)},
    }


def install(cluster: LocalCluster, timeout: float = 180) -> None:
    """Installs KEDA and waits until the external metrics API is served through the aggregation layer."""
    tag = version().removeprefix("v")
    docs = manifests()
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    operator = by_name[("Deployment", "keda-operator")]
    adapter = by_name[("Deployment", "keda-metrics-apiserver")]
    apiservice = by_name[("APIService", APISERVICE)]
    folder = require()
    # The manifests name the binaries' paths in the images (/keda, /keda-adapter); pods run host files.
    _container(operator)["command"] = [str(folder / "keda-operator")]
    _container(adapter)["command"] = [str(folder / "keda-adapter")]
    _container(operator)["image"] = f"{OPERATOR_IMAGE}:{tag}"
    _container(operator)["args"] = [
        "--enable-cert-rotation=false" if a.startswith("--enable-cert-rotation") else a
        for a in _container(operator)["args"]
    ]
    _container(adapter)["image"] = f"{ADAPTER_IMAGE}:{tag}"
    apiservice["spec"]["caBundle"] = base64.b64encode(cluster.pki.ca_cert.read_bytes()).decode()
    first = [d for d in docs if d is not adapter and d is not apiservice]
    _apply(cluster, [d for d in first if d["kind"] in ("Namespace", "CustomResourceDefinition")])
    _apply(cluster, [_certificate_secret(cluster)])
    _apply(cluster, [d for d in first if d["kind"] not in ("Namespace", "CustomResourceDefinition")])

    def operator_ip() -> str:
        pods = cluster.rest.get(f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector="app=keda-operator")
        running = [p for p in pods["items"] if p.get("status", {}).get("phase") == "Running"]
        return str(running[0]["status"].get("podIP", "")) if running else ""

    ip = demo_project.wait_until(operator_ip, timeout, "KEDA's operator pod to run", interval=0.5)
    _container(adapter)["args"] += [
        f"--metrics-service-address={ip}:9666",
        f"--metrics-service-grpc-authority=keda-operator.{NAMESPACE}.svc.cluster.local",
    ]
    _apply(cluster, [adapter, apiservice])

    def available() -> bool:
        found = cluster.rest.get(f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}")
        conditions = found.get("status", {}).get("conditions") or []
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

    demo_project.wait_until(available, timeout, f"APIService {APISERVICE} to be Available", interval=1)
