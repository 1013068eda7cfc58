"""Development TLS: a private CA and a server certificate signed by it, for trying HTTPS on one
machine (``strongroom dev-cert``). Never for production: the CA's key sits beside it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from strongroom.core.errors import ValidationError

__all__ = ["DEFAULT_HOSTS", "DevCertificates", "make_dev_certificates"]

#: Names a local server answers to; ``vault.localhost`` has the two labels the Azure SDK's
#: challenge check wants (a vault's host must end with the resource's host).
DEFAULT_HOSTS = ("localhost", "vault.localhost", "127.0.0.1", "::1")
_VALID_DAYS = 365


@dataclass(frozen=True, slots=True)
class DevCertificates:
    """PEM text of the CA certificate and key, and of the server certificate and key."""

    ca_cert: bytes
    ca_key: bytes
    server_cert: bytes
    server_key: bytes
    not_after: datetime

    def __repr__(self) -> str:
        return f"DevCertificates(not_after={self.not_after:%Y-%m-%d})"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or any(c.isspace() for c in host) or len(host) > 253:
                raise ValidationError(f"{host!r} is not a host name or an IP address") from None
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_dev_certificates(
    hosts: tuple[str, ...] = DEFAULT_HOSTS, *, now: datetime | None = None
) -> DevCertificates:
    """A fresh CA (P-256) and a server certificate for ``hosts``, valid for a year."""
    now = now or datetime.now(UTC)
    not_after = now + timedelta(days=_VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "strongroom development CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return DevCertificates(
        ca_cert=ca.public_bytes(serialization.Encoding.PEM),
        ca_key=_key_pem(ca_key),
        server_cert=server.public_bytes(serialization.Encoding.PEM),
        server_key=_key_pem(server_key),
        not_after=not_after,
    )
