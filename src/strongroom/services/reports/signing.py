"""Digest and Ed25519 signature of a rendered report, and their verification.

The key is strongroom's own: an Ed25519 key whose seed is derived from the master key (HKDF,
purpose ``strongroom/report-signing/1``), so every replica signs with the same key and nothing
extra is stored. Auditors without the master key verify with the public key
(``strongroom report public-key``).

What is signed: ``strongroom-report/1 <format> <sha256 hex of the content>``. The signature
travels with the file:

- JSON: ``{"report": ..., "signature": {...}}``, the digest taken over the canonical JSON of
  ``report`` (sorted keys, no spaces, ASCII);
- HTML, CSV, PDF: the content, then one trailer line (an HTML comment, a ``#`` line, a PDF
  comment after ``%%EOF``) holding the signature as JSON; the digest covers every byte before
  that line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from strongroom.core.errors import ConfigurationError, ReportSignatureError

__all__ = [
    "FORMATS",
    "ReportSigner",
    "Verified",
    "canonical_json",
    "load_public_key",
    "sign_document",
    "verify_document",
]

FORMATS = ("json", "html", "csv", "pdf")
_TRAILERS = {
    "html": (b"<!-- strongroom-signature ", b" -->\n"),
    "csv": (b"# strongroom-signature ", b"\n"),
    "pdf": (b"%strongroom-signature ", b"\n"),
}
_ALGORITHM = "Ed25519"


def canonical_json(data: Any) -> bytes:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _statement(fmt: str, digest: str) -> bytes:
    return f"strongroom-report/1 {fmt} {digest}".encode("ascii")


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class ReportSigner:
    """Signs reports with the Ed25519 key derived from strongroom's master key."""

    __slots__ = ("_key",)

    def __init__(self, seed: bytes | None) -> None:
        if seed is None or len(seed) != 32:
            raise ConfigurationError("reports are signed only by a strongroom with a master key")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    @property
    def key_id(self) -> str:
        return _key_id(self.public_key)

    def public_key_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def signature_for(self, fmt: str, content: bytes) -> dict[str, str]:
        digest = hashlib.sha256(content).hexdigest()
        signature = self._key.sign(_statement(fmt, digest))
        return {
            "format": fmt,
            "algorithm": _ALGORITHM,
            "sha256": digest,
            "key_id": self.key_id,
            "signature": base64.b64encode(signature).decode("ascii"),
        }

    def __repr__(self) -> str:
        return f"ReportSigner(key_id={self.key_id!r})"


def sign_document(signer: ReportSigner, fmt: str, body: bytes | dict[str, Any]) -> bytes:
    """The file to hand out: ``body`` (report data for JSON, else rendered bytes) signed."""
    if fmt == "json":
        if not isinstance(body, dict):
            raise TypeError("a JSON report is signed from its data")
        signature = signer.signature_for("json", canonical_json(body))
        text = json.dumps({"report": body, "signature": signature}, indent=2, sort_keys=True)
        return text.encode("ascii") + b"\n"
    if not isinstance(body, bytes) or fmt not in _TRAILERS:
        raise TypeError(f"cannot sign a {fmt} report")
    head, tail = _TRAILERS[fmt]
    if not body.endswith(b"\n"):
        body += b"\n"
    signature = signer.signature_for(fmt, body)
    return body + head + canonical_json(signature) + tail


@dataclass(frozen=True, slots=True)
class Verified:
    format: str
    sha256: str
    key_id: str


def _split(data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        try:
            document = json.loads(data)
            report, signature = document["report"], document["signature"]
        except (ValueError, KeyError, TypeError):
            raise ReportSignatureError("not a signed strongroom report (JSON)") from None
        return "json", canonical_json(report), signature
    for fmt, (head, tail) in _TRAILERS.items():
        at = data.rfind(head)
        if at < 0 or not data.endswith(tail) or (at > 0 and data[at - 1 : at] != b"\n"):
            continue
        try:
            signature = json.loads(data[at + len(head) : len(data) - len(tail)])
        except ValueError:
            continue
        if isinstance(signature, dict) and signature.get("format") == fmt:
            return fmt, data[:at], signature
    raise ReportSignatureError("not a signed strongroom report: no signature found")


def verify_document(data: bytes, public_key: Ed25519PublicKey) -> Verified:
    """Check a signed report against ``public_key``; ReportSignatureError says what failed."""
    fmt, content, signature = _split(data)
    if signature.get("algorithm") != _ALGORITHM or signature.get("format") != fmt:
        raise ReportSignatureError("the report's signature block is not strongroom's")
    digest = hashlib.sha256(content).hexdigest()
    if digest != signature.get("sha256"):
        raise ReportSignatureError("the report was changed: its digest does not match")
    if signature.get("key_id") != _key_id(public_key):
        raise ReportSignatureError("the report was signed by another key")
    try:
        raw = base64.b64decode(str(signature.get("signature", "")), validate=True)
        public_key.verify(raw, _statement(fmt, digest))
    except (InvalidSignature, binascii.Error, ValueError):
        raise ReportSignatureError("the report's signature does not verify") from None
    return Verified(format=fmt, sha256=digest, key_id=str(signature["key_id"]))


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise ReportSignatureError("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReportSignatureError("not an Ed25519 public key")
    return key
