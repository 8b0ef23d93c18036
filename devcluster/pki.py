"""Certificates and keys for the local control plane: one CA, the API server's serving certificate, client
certificates for each component, the service-account signing key, and the aggregation layer's pair (a
front-proxy CA and the client certificate the API server presents to extension API servers such as KEDA's
metrics adapter, as kubeadm sets it up). Written once per state folder."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# (file stem, common name, organisation): the API server maps CN to the user and O to the groups.
CLIENTS = (
    ("admin", "taskpool-admin", "system:masters"),
    ("controller-manager", "system:kube-controller-manager", None),
    ("scheduler", "system:kube-scheduler", None),
    # The node agent registers Nodes and updates pods of several nodes; a kubelet per node would use
    # system:node:<name>, one agent for many nodes needs a broader identity.
    ("node-agent", "taskpool-node-agent", "system:masters"),
)
VALIDITY = datetime.timedelta(days=30)
# The aggregation layer's proxy identity: extension API servers trust requests carrying X-Remote-User headers
# only from a client certificate of the front-proxy CA with this common name (--requestheader-allowed-names).
FRONT_PROXY_CLIENT = "front-proxy-client"


@dataclass(frozen=True)
class Pki:
    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def serving_cert(self) -> Path:
        return self.folder / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.folder / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.folder / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.folder / "sa.pub"

    @property
    def front_proxy_ca_cert(self) -> Path:
        return self.folder / "front-proxy-ca.crt"

    @property
    def front_proxy_client_cert(self) -> Path:
        return self.folder / f"{FRONT_PROXY_CLIENT}.crt"

    @property
    def front_proxy_client_key(self) -> Path:
        return self.folder / f"{FRONT_PROXY_CLIENT}.key"

    def complete(self) -> bool:
        """Every file `create` writes is there (state folders from before the aggregation layer lack some)."""
        return all(
            p.exists() for p in (self.ca_cert, self.serving_cert, self.sa_key, self.front_proxy_client_cert)
        )

    def client_cert(self, name: str) -> Path:
        return self.folder / f"{name}.crt"

    def client_key(self, name: str) -> Path:
        return self.folder / f"{name}.key"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organisation: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _write_ca(
    folder: Path, stem: str, common_name: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(folder / f"{stem}.key", key)
    return key, cert


def _issue(
    folder: Path,
    stem: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    subject: x509.Name,
    usages: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName] | None = None,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(subject, ca.subject, key.public_key()).add_extension(
        x509.ExtendedKeyUsage(usages), critical=False
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(folder / f"{stem}.key", key)


def issue_service_cert(pki: Pki, stem: str, dns_names: list[str]) -> tuple[Path, Path]:
    """A certificate of the cluster CA for an in-cluster server that is also a client of its peers (KEDA's
    operator and metrics adapter share one for the adapter's HTTPS and their mutual-TLS gRPC): server and
    client usage, the Service's DNS names as SANs. Returns (certificate, key) paths in the PKI folder."""
    ca_key = serialization.load_pem_private_key((pki.folder / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    _issue(pki.folder, stem, ca_key, ca, _name(dns_names[0]), usages, sans)
    return pki.client_cert(stem), pki.client_key(stem)


def create(folder: Path, server_ips: list[str], server_names: list[str]) -> Pki:
    """Writes a fresh CA, serving and client certificates and the service-account key pair into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    pki = Pki(folder)
    ca_key, ca = _write_ca(folder, "ca", "taskpool-local-ca")
    for stem, common_name, organisation in CLIENTS:
        _issue(folder, stem, ca_key, ca, _name(common_name, organisation), [ExtendedKeyUsageOID.CLIENT_AUTH])
    proxy_ca_key, proxy_ca = _write_ca(folder, "front-proxy-ca", "taskpool-front-proxy-ca")
    _issue(
        folder,
        FRONT_PROXY_CLIENT,
        proxy_ca_key,
        proxy_ca,
        _name(FRONT_PROXY_CLIENT),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
    )

    server_sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
    server_sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
    _issue(
        folder,
        "apiserver",
        ca_key,
        ca,
        _name("kube-apiserver"),
        [ExtendedKeyUsageOID.SERVER_AUTH],
        server_sans,
    )

    # Service-account tokens are signed with RSA (RS256), as the API server's default expects.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki.sa_key, sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki
