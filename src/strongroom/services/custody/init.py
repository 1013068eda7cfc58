"""``strongroom operator init``: the master key split among key holders.

A new store gets a new key; a store whose key is configured today (key file or
``STRONGROOM_MASTER_KEY``) has that key split, so moving an existing deployment under a
quorum's custody changes no stored row. The shares are returned once and stored nowhere.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from strongroom.core.audit import AuditAction
from strongroom.core.config import Settings
from strongroom.core.crypto import KEY_BYTES, MasterKey
from strongroom.core.errors import CustodyError
from strongroom.core.shares import ShareSet, split
from strongroom.core.unseal import SEAL_AZURE, SEAL_PKCS11, SEAL_SHAMIR, SealRecord
from strongroom.db.seal_store import read_seal, write_seal
from strongroom.services.wiring import Strongroom, load_master_key

__all__ = ["InitResult", "init_custody"]

#: The identity of the first admin token init hands out (as Vault's root token).
INIT_ADMIN = "initial-admin"


@dataclass(frozen=True, slots=True)
class InitResult:
    """What init hands back, once: the shares and a first admin token."""

    record: SealRecord
    shares: ShareSet | None  # None: the key is wrapped by an HSM, not split
    admin_token: str
    new_key: bool

    def __repr__(self) -> str:
        return f"InitResult({self.record.kind}, <hidden>)"


async def init_custody(settings: Settings, *, shares: int, threshold: int) -> InitResult:
    """Split the master key (new, or the configured one) among key holders, or, with
    ``STRONGROOM_SEAL=pkcs11`` or ``azurekeyvault``, have the HSM or Key Vault key wrap it;
    then record the seal."""
    if await read_seal(settings) is not None:
        raise CustodyError("custody is already initialised for this store: it has its share set")
    configured = settings.master_key is not None or settings.master_key_file is not None
    key = (
        load_master_key(settings)
        if configured
        else MasterKey(bytearray(secrets.token_bytes(KEY_BYTES)))
    )
    hsm = settings.seal in (SEAL_PKCS11, SEAL_AZURE)
    try:
        share_set, wrapped, label = None, "", ""
        if settings.seal == SEAL_PKCS11:
            from strongroom.services.custody.pkcs11 import wrap_master  # noqa: PLC0415

            wrapped, label = await wrap_master(settings, key), settings.pkcs11_key_label
        elif settings.seal == SEAL_AZURE:
            # Imported on use, as the HSM's binding: only this custody loads the keys SDK.
            from strongroom.services.custody import azure_seal  # noqa: PLC0415

            label, wrapped = await azure_seal.wrap_master(settings, key)
        else:
            share_set = split(key.raw_for_custody(), shares=shares, threshold=threshold)
        # Opening with the key makes the keyring of a new store, and proves an existing
        # store's key (a wrong one is refused here, before any share is handed out).
        app = await Strongroom.open(settings, master=key)
        try:
            record = SealRecord(
                kind=settings.seal if hsm else SEAL_SHAMIR,
                identifier=share_set.identifier if share_set is not None else 0,
                threshold=0 if hsm else threshold,
                shares=0 if hsm else shares,
                check=key.check_value(),
                created_at=app.clock(),
                wrapped=wrapped,
                key_label=label,
            )
            async with app.audit.operation(
                AuditAction.CUSTODY_INIT, None, seal=record.kind, threshold=record.threshold,
                shares=record.shares,
            ):  # fmt: skip
                await write_seal(settings, record)
            issued = await app.access.create_token(
                INIT_ADMIN, policies=["admin"], description="made by operator init"
            )
        finally:
            await app.close()
    finally:
        key.wipe()
    return InitResult(record, share_set, issued.token, new_key=not configured)
