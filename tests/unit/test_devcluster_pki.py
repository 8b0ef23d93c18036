"""The local control plane's PKI: the aggregation layer's front-proxy pair and certificates for in-cluster
servers such as KEDA's (devcluster/pki.py)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devcluster import pki


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_front_proxy_client_is_signed_by_its_own_ca_not_the_cluster_ca(tmp_path: Path) -> None:
    created = pki.create(tmp_path, server_ips=["127.0.0.1"], server_names=["localhost"])
    client = _load(created.front_proxy_client_cert)
    front_proxy_ca = _load(created.front_proxy_ca_cert)
    assert created.complete()
    assert _common_name(client) == pki.FRONT_PROXY_CLIENT
    client.verify_directly_issued_by(front_proxy_ca)
    assert client.issuer != _load(created.ca_cert).subject
    usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_state_folder_without_the_front_proxy_pair_is_incomplete(tmp_path: Path) -> None:
    created = pki.create(tmp_path, server_ips=["127.0.0.1"], server_names=["localhost"])
    created.front_proxy_client_cert.unlink()
    assert not created.complete()


def test_service_certificate_serves_its_names_and_is_a_client_of_the_cluster_ca(tmp_path: Path) -> None:
    created = pki.create(tmp_path, server_ips=["127.0.0.1"], server_names=["localhost"])
    names = ["keda-operator.keda.svc", "keda-operator.keda.svc.cluster.local"]
    cert_path, key_path = pki.issue_service_cert(created, "keda", names)
    cert = _load(cert_path)
    cert.verify_directly_issued_by(_load(created.ca_cert))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == names
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert key_path.stat().st_mode & 0o077 == 0
