"""Rotate the password of a PostgreSQL role (the seed's "database credentials").

The new password is sent as a SCRAM-SHA-256 verifier computed here (RFC 5802/7677, what
``psql``'s ``\\password`` does), so the plaintext never reaches the server or its logs. The
statement is formatted by the server (``format('%I', ...)``/``%L``), never from Python strings.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

import asyncpg
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from strongroom.core.errors import RotationTargetError, ValidationError

__all__ = ["PostgresRoleRotator", "scram_sha256_verifier"]

SCRAM_ITERATIONS = 4096


def _hmac(key: bytes, message: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(message)
    return mac.finalize()


def scram_sha256_verifier(password: str, *, iterations: int = SCRAM_ITERATIONS) -> str:
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` for ``password``."""
    salt = secrets.token_bytes(16)
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
    salted = kdf.derive(password.encode("utf-8"))
    digest = hashes.Hash(hashes.SHA256())
    digest.update(_hmac(salted, b"Client Key"))
    stored_key = digest.finalize()
    server_key = _hmac(salted, b"Server Key")
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def _password_of(value: Any) -> str:
    """A secret holds a role's password as text, or as JSON with a ``password`` field."""
    if isinstance(value, dict):
        value = value.get("password")
    if not isinstance(value, str) or not value:
        raise ValidationError("a PostgreSQL role secret must hold a password")
    return value


class PostgresRoleRotator:
    """Changes ``role``'s password through an admin connection and verifies by logging in.

    ``admin_dsn`` connects as a role allowed to ALTER ROLE; ``login`` holds the connection
    arguments (host, port, database) the role itself uses, for the verification login.
    """

    def __init__(self, admin_dsn: str, role: str, *, login: dict[str, Any] | None = None) -> None:
        if not isinstance(role, str) or not role or len(role) > 63:
            raise ValidationError("role must be a PostgreSQL role name (1-63 characters)")
        self.admin_dsn = admin_dsn
        self.role = role
        self.login = dict(login or {})

    async def _set_password(self, password: str) -> None:
        verifier = scram_sha256_verifier(password)
        try:
            conn = await asyncpg.connect(self.admin_dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            raise RotationTargetError(f"cannot reach PostgreSQL ({type(exc).__name__})") from exc
        try:
            statement = await conn.fetchval(
                "SELECT format('ALTER ROLE %I WITH PASSWORD %L', $1::text, $2::text)",
                self.role,
                verifier,
            )
            await conn.execute(statement)
        except asyncpg.PostgresError as exc:
            raise RotationTargetError(
                f"PostgreSQL refused the new password for role {self.role!r} ({type(exc).__name__})"
            ) from None
        finally:
            await conn.close()

    async def apply(self, name: str, new: Any, old: Any | None) -> None:
        await self._set_password(_password_of(new))

    async def verify(self, name: str, new: Any) -> None:
        try:
            conn = await asyncpg.connect(user=self.role, password=_password_of(new), **self.login)
        except (OSError, asyncpg.PostgresError) as exc:
            raise RotationTargetError(
                f"login as {self.role!r} with the new password failed ({type(exc).__name__})"
            ) from None
        await conn.close()

    async def rollback(self, name: str, old: Any | None) -> None:
        if old is not None:
            await self._set_password(_password_of(old))
