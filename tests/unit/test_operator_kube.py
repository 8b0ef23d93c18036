"""kube.py's requests over real TLS: a local HTTPS server that demands a client certificate stands in for the
API server, reached with the credentials of a kubeconfig (file paths or inline data) or a service account."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from devcluster import pki as pki_module
from taskpool_operator import kube
from taskpool_operator.handlers import lifecycle


@dataclass
class FakeApiServer:
    """Answers every request with `answers[path]` (status, body); records what it received."""

    url: str
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> pki_module.Pki:
    return pki_module.create(tmp_path_factory.mktemp("pki"), ["127.0.0.1"], ["localhost"])


@pytest.fixture
def server(pki: pki_module.Pki) -> Iterator[FakeApiServer]:
    fake = FakeApiServer(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            fake.received.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": json.loads(self.rfile.read(length)) if length else None,
                }
            )
            status, body = fake.answers.get(self.path.split("?")[0], (404, {"kind": "Status", "code": 404}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_cert))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(pki.serving_cert), str(pki.serving_key))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    fake.url = f"https://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield fake
    httpd.shutdown()
    httpd.server_close()


def kubeconfig(path: Path, server: str, pki: pki_module.Pki, *, inline: bool) -> Path:
    def data(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    if inline:
        cluster = {"server": server, "certificate-authority-data": data(pki.ca_cert)}
        user = {
            "client-certificate-data": data(pki.client_cert("admin")),
            "client-key-data": data(pki.client_key("admin")),
        }
    else:
        cluster = {"server": server, "certificate-authority": str(pki.ca_cert)}
        user = {
            "client-certificate": str(pki.client_cert("admin")),
            "client-key": str(pki.client_key("admin")),
        }
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("inline", [False, True], ids=["file-paths", "inline-data"])
def test_the_kubeconfigs_client_certificate_reaches_the_server(
    server: FakeApiServer, pki: pki_module.Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", server.url, pki, inline=inline)))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    info = lifecycle.login(settings=kopf.OperatorSettings())
    assert info.server == server.url
    deployment = {"metadata": {"name": "shop-workers", "namespace": "shop", "generation": 7}}
    server.answers["/apis/apps/v1/namespaces/shop/deployments/shop-workers"] = (200, deployment)
    assert kube.read_deployment("shop", "shop-workers") == deployment
    assert kube.scale_deployment("shop", "shop-workers", 3) == 7
    patch = server.received[-1]
    assert patch["method"] == "PATCH"
    assert patch["headers"]["Content-Type"] == kube.MERGE_PATCH
    assert "fieldManager=taskpool-operator" in patch["path"]
    assert patch["body"] == {"spec": {"replicas": 3}}
    assert kube.read_deployment("shop", "gone") is None


def test_a_kubeconfig_user_with_an_exec_plugin_is_refused_at_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"exec": {"command": "aws", "args": ["eks", "get-token"]}}}],
    }
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(kopf.LoginError, match="exec plugins and auth providers are not supported"):
        lifecycle.login(settings=kopf.OperatorSettings())


def test_errors_carry_the_servers_status_and_message(
    server: FakeApiServer, pki: pki_module.Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", server.url, pki, inline=False)))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    lifecycle.login(settings=kopf.OperatorSettings())
    refusal = {"kind": "Status", "code": 422, "message": 'Deployment "x" is invalid'}
    server.answers["/apis/apps/v1/namespaces/shop/deployments"] = (422, refusal)
    with pytest.raises(kube.ApiError) as raised:
        kube.create_deployment({"metadata": {"name": "x", "namespace": "shop"}})
    assert raised.value.status == 422
    assert kube.rejection_message(raised.value) == 'Deployment "x" is invalid'
    server.answers["/api/v1/namespaces/shop/secrets/db"] = (403, {"kind": "Status", "code": 403})
    with pytest.raises(kube.SecretProblem, match="may not read Secret 'db'"):
        kube.read_secret_value("shop", "db", "DATABASE_URL")


def test_a_service_account_logs_in_again_after_a_401_with_the_rotated_token(
    server: FakeApiServer, pki: pki_module.Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    (account / "token").write_text("old-token\n")
    (account / "namespace").write_text("taskpool-system")
    monkeypatch.setattr(lifecycle, "SERVICE_ACCOUNT", account)
    host, port = server.url.removeprefix("https://").split(":")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    # The fake server demands a client certificate: the service account's requests carry the admin's too.
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", server.url, pki, inline=False)))
    original = kube._ssl_context

    def with_client_certificate(info: kopf.ConnectionInfo) -> ssl.SSLContext:
        context = original(info)
        context.load_cert_chain(str(pki.client_cert("admin")), str(pki.client_key("admin")))
        return context

    monkeypatch.setattr(kube, "_ssl_context", with_client_certificate)
    info = lifecycle.login(settings=kopf.OperatorSettings())
    assert (info.server, info.token, info.default_namespace) == (server.url, "old-token", "taskpool-system")
    (account / "token").write_text("new-token\n")
    server.answers["/apis/taskpool.dev/v1alpha1/namespaces/shop/taskworkerpools/emails"] = (
        401,
        {"code": 401},
    )
    with pytest.raises(kube.ApiError):
        kube.read_pool("shop", "emails")
    tokens = [r["headers"]["Authorization"] for r in server.received]
    assert tokens == ["Bearer old-token", "Bearer new-token"]
