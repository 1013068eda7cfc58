"""Auto-unseal by an Azure Key Vault key: the master key is stored wrapped (RSA-OAEP-256) by an
RSA key in Key Vault, or in another strongroom's Key Vault-compatible API, and unwrapped by it
when a process starts.

``azure-keyvault-keys``'s ``CryptographyClient`` does the calls, with the credentials of the
Azure profile (``credential_from``). Every failure becomes a ``KeyVaultSealError`` that says
what failed (unreachable, credential refused, no such key, key disabled, does not unwrap) and
never carries a key byte, a token or Key Vault's own message.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from strongroom.backends.azure_sdk import credential_from
from strongroom.core.config import Settings
from strongroom.core.crypto import KEY_BYTES, MasterKey
from strongroom.core.errors import ConfigurationError, KeyVaultSealError
from strongroom.core.unseal import SEAL_AZURE, SealRecord
from strongroom.db.seal_store import read_seal

__all__ = ["keyvault_master_key", "unwrap_master", "wrap_master"]

ALGORITHM = "RSA-OAEP-256"


def _options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "verify_challenge_resource": settings.azure_verify_challenge_resource,
        "retry_total": settings.azure_retries,
        "connection_timeout": settings.azure_timeout_seconds,
        "read_timeout": settings.azure_timeout_seconds,
    }
    if settings.azure_ca_bundle is not None:
        options["connection_verify"] = str(settings.azure_ca_bundle)
    return options


def _refusal(exc: Exception, key_id: str) -> KeyVaultSealError:
    """What went wrong, in our words (Key Vault's message is not repeated)."""
    from azure.core.exceptions import (  # noqa: PLC0415 (loaded with the SDK, on use)
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    if isinstance(exc, ClientAuthenticationError):
        return KeyVaultSealError(f"Key Vault refused the credential for {key_id}")
    if isinstance(exc, ResourceNotFoundError):
        return KeyVaultSealError(f"Key Vault has no key {key_id}")
    if isinstance(exc, HttpResponseError):
        inner = _inner_code(exc)
        if exc.status_code == 403 and inner == "KeyDisabled":
            return KeyVaultSealError(f"the Key Vault key {key_id} is disabled")
        if exc.status_code == 403:
            return KeyVaultSealError(f"Key Vault does not let this identity use {key_id}")
        if exc.status_code == 400:
            return KeyVaultSealError(
                f"the Key Vault key {key_id} does not unwrap the stored master key"
            )
        return KeyVaultSealError(f"Key Vault answered {exc.status_code} for {key_id}")
    if isinstance(exc, ServiceRequestError):
        return KeyVaultSealError(f"cannot reach Key Vault for {key_id}")
    return KeyVaultSealError(f"Key Vault cannot be used for {key_id} ({type(exc).__name__})")


def _inner_code(exc: Any) -> str | None:
    try:
        inner = exc.response.json()["error"].get("innererror") or {}
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    code = inner.get("code")
    return code if isinstance(code, str) else None


async def _call(settings: Settings, key_id: str, operation: str, data: bytes) -> tuple[str, bytes]:
    from azure.core.exceptions import AzureError  # noqa: PLC0415
    from azure.keyvault.keys.crypto import KeyWrapAlgorithm  # noqa: PLC0415
    from azure.keyvault.keys.crypto.aio import CryptographyClient  # noqa: PLC0415

    credential = credential_from(settings)
    try:
        client = CryptographyClient(key_id, credential, **_options(settings))
    except ValueError:
        raise ConfigurationError(
            "STRONGROOM_AZURE_SEAL_KEY_ID must be a Key Vault key identifier "
            "(https://<vault>/keys/<name>[/<version>])"
        ) from None
    try:
        async with client:
            if operation == "wrap":
                wrapped = await client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, data)
                return str(wrapped.key_id or key_id), bytes(wrapped.encrypted_key)
            unwrapped = await client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, data)
            return str(unwrapped.key_id or key_id), bytes(unwrapped.key)
    except AzureError as exc:
        raise _refusal(exc, key_id) from None
    finally:
        close = getattr(credential, "close", None)
        if close is not None:
            await close()


async def wrap_master(settings: Settings, key: MasterKey) -> tuple[str, str]:
    """``key`` wrapped by the configured Key Vault key: the key's versioned identifier and the
    wrapped key (base64). The vault is asked to unwrap it once, so a key this identity may
    wrap with but not unwrap with is refused now rather than at the next start."""
    if not settings.azure_seal_key_id:
        raise ConfigurationError(
            "STRONGROOM_SEAL=azurekeyvault needs STRONGROOM_AZURE_SEAL_KEY_ID (a Key Vault key "
            "identifier) and Azure credentials"
        )
    raw = key.raw_for_custody()
    key_id, wrapped = await _call(settings, settings.azure_seal_key_id, "wrap", raw)
    record_id = key_id if "/keys/" in key_id else settings.azure_seal_key_id
    _, back = await _call(settings, record_id, "unwrap", wrapped)
    if back != raw:
        raise KeyVaultSealError(f"the Key Vault key {record_id} does not unwrap what it wrapped")
    return record_id, base64.b64encode(wrapped).decode("ascii")


async def unwrap_master(settings: Settings, record: SealRecord) -> MasterKey:
    """The master key, unwrapped by the Key Vault key the seal record names, and checked."""
    try:
        blob = base64.b64decode(record.wrapped, validate=True)
    except (binascii.Error, ValueError):
        raise KeyVaultSealError("the stored wrapped master key is not well formed") from None
    _, raw = await _call(settings, record.key_label, "unwrap", blob)
    if len(raw) != KEY_BYTES:
        raise KeyVaultSealError(
            f"the Key Vault key {record.key_label} does not unwrap the stored master key"
        )
    key = MasterKey(bytearray(raw))
    if not key.matches(record.check):
        key.wipe()
        raise KeyVaultSealError(
            f"the Key Vault key {record.key_label} unwrapped a key that is not this store's "
            "master key"
        )
    return key


async def keyvault_master_key(settings: Settings) -> MasterKey:
    """The master key of a store sealed by a Key Vault key (its seal record read, unwrapped)."""
    record = await read_seal(settings)
    if record is None or record.kind != SEAL_AZURE:
        raise KeyVaultSealError(
            "this store has no master key wrapped by a Key Vault key yet: run "
            "`strongroom operator init` with STRONGROOM_SEAL=azurekeyvault"
        )
    return await unwrap_master(settings, record)
