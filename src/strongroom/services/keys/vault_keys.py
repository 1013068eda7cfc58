"""VaultKeys: Key Vault keys over the configured store, every call audited.

Keys are made here (never imported), so a private half exists only sealed in the store and, for
the length of one unwrap, in this process. What callers get back is the public half
(:class:`KeyProperties`) or the result of an operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from strongroom.backends.vault_keys import KeyStore
from strongroom.core.audit import AuditAction
from strongroom.core.errors import KeyNotFoundError, UnsupportedError, ValidationError
from strongroom.core.validation import validate_name, validate_tags, validate_version
from strongroom.core.vault_keys import (
    KeyProperties,
    NewKey,
    check_key_ops,
    check_usable,
    generate_rsa,
    unwrap,
    wrap,
)
from strongroom.services.wiring import Strongroom

__all__ = ["VaultKeys"]

_KEY_TYPES = ("RSA",)


class VaultKeys:
    """Create, describe, list, enable or disable keys, and wrap and unwrap with them."""

    def __init__(self, app: Strongroom) -> None:
        self.app = app

    def _store(self) -> KeyStore:
        found = getattr(self.app.store, "vault_keys", None)
        if found is None:
            raise UnsupportedError(
                f"the {self.app.store.backend} store keeps no Key Vault keys: they live in "
                "SQLite, PostgreSQL or memory"
            )
        store: KeyStore = found()
        return store

    async def create_key(
        self,
        name: str,
        *,
        kty: str = "RSA",
        key_size: int | None = None,
        key_ops: list[str] | None = None,
        enabled: bool = True,
        tags: dict[str, str] | None = None,
    ) -> KeyProperties:
        """A new key, or a new current version of an existing one (as Key Vault's create)."""
        app = self.app
        size = 2048 if key_size is None else key_size
        async with app.audit.operation(
            AuditAction.KEY_CREATE, name, key_type=kty, key_size=size
        ) as op:
            validate_name(name)
            if kty not in _KEY_TYPES:
                raise ValidationError("kty must be RSA (the key types strongroom makes)")
            ops = check_key_ops(key_ops)
            checked_tags = validate_tags(tags)
            store = self._store()
            with contextlib.suppress(KeyNotFoundError):  # a new version keeps the first
                name = (await store.get(name)).name  # spelling (names compare without case)
            private, public = await asyncio.to_thread(generate_rsa, size)
            new = NewKey(
                name=name, version=secrets.token_hex(16), kty=kty, key_size=size, key_ops=ops,
                public_der=public, enabled=bool(enabled), tags=checked_tags,
                created_at=app.clock(),
            )  # fmt: skip
            props = await store.add_version(new, private)
            op.details.update(version=props.version, key_ops=list(ops), enabled=props.enabled)
        return props

    async def get_key(self, name: str, version: str | None = None) -> KeyProperties:
        """A version's public half (the current one without ``version``); refused if disabled,
        as Key Vault refuses to hand out a disabled key."""
        async with self.app.audit.operation(AuditAction.KEY_DESCRIBE, name) as op:
            props = await self._find(name, version)
            op.details["version"] = props.version
            check_usable(props, None)
        return props

    async def list_keys(self) -> list[KeyProperties]:
        async with self.app.audit.operation(AuditAction.KEY_LIST) as op:
            found = await self._store().list_keys()
            op.details["count"] = len(found)
        return found

    async def list_versions(self, name: str) -> list[KeyProperties]:
        async with self.app.audit.operation(AuditAction.KEY_LIST, name, operation="versions"):
            validate_name(name)
            return await self._store().list_versions(name)

    async def update_key(
        self,
        name: str,
        version: str | None,
        *,
        enabled: bool | None = None,
        tags: dict[str, str] | None = None,
    ) -> KeyProperties:
        """Enable or disable a version, or replace its tags."""
        async with self.app.audit.operation(AuditAction.KEY_UPDATE, name) as op:
            props = await self._find(name, version)
            op.details["version"] = props.version
            if enabled is not None:
                op.details["enabled"] = bool(enabled)
            new_tags = validate_tags(tags) if tags is not None else props.tags
            return await self._store().update(
                props,
                enabled=props.enabled if enabled is None else bool(enabled),
                tags=new_tags,
                updated_at=self.app.clock(),
            )

    async def wrap_key(
        self, name: str, version: str | None, algorithm: str, plaintext: bytes
    ) -> tuple[KeyProperties, bytes]:
        """``plaintext`` wrapped with the version's public key (it never leaves the server)."""
        async with self.app.audit.operation(
            AuditAction.KEY_WRAP, name, algorithm=algorithm[:20]
        ) as op:
            props = await self._find(name, version)
            op.details["version"] = props.version
            check_usable(props, "wrapKey")
            return props, wrap(props, algorithm, plaintext)

    async def unwrap_key(
        self, name: str, version: str | None, algorithm: str, wrapped: bytes
    ) -> tuple[KeyProperties, bytes]:
        """The key inside ``wrapped``; UnwrapError when it does not unwrap with this version."""
        async with self.app.audit.operation(
            AuditAction.KEY_UNWRAP, name, algorithm=algorithm[:20]
        ) as op:
            props = await self._find(name, version)
            op.details["version"] = props.version
            check_usable(props, "unwrapKey")
            private = await self._store().private_key(props)
            return props, unwrap(private, algorithm, wrapped)

    async def _find(self, name: str, version: str | None) -> KeyProperties:
        validate_name(name)
        if version is not None:
            validate_version(version)
        return await self._store().get(name, version)
