"""Auto-unseal by a PKCS#11 HSM: the master key is stored wrapped (AES-256-GCM, computed inside
the HSM by a non-extractable key of its own) and unwrapped by the HSM when a process starts.

python-pkcs11 drives the module (SoftHSM2 in the tests, a network HSM in production). Calls
block, so they run in a thread. Every failure becomes an ``HsmError`` that says what failed
(module, token, PIN, key, unwrap) and never carries a key byte or the PIN.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import threading
from pathlib import Path
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams

from strongroom.core.config import Settings
from strongroom.core.crypto import KEY_BYTES, MasterKey
from strongroom.core.errors import ConfigurationError, HsmError
from strongroom.core.unseal import SealRecord
from strongroom.db.seal_store import read_seal

__all__ = ["hsm_master_key", "unwrap_master", "wrap_master"]

#: Binds a wrapped key to its use: the HSM's key wraps nothing else under this label.
_AAD = b"strongroom/pkcs11-seal/1"
_NONCE_BYTES = 12
_TAG_BITS = 128
_libraries: dict[str, Any] = {}
_lock = threading.Lock()


def _library(path: Path) -> Any:
    """One loaded module per path and process (a module is initialised once)."""
    with _lock:
        found = _libraries.get(str(path))
        if found is None:
            try:
                found = _libraries[str(path)] = pkcs11.lib(str(path))
            except (p11.PKCS11Error, OSError) as exc:
                raise HsmError(
                    f"cannot load the PKCS#11 module {path} ({type(exc).__name__})"
                ) from None
        return found


def _session(settings: Settings) -> Any:
    if settings.pkcs11_library is None or not settings.pkcs11_token_label:
        raise ConfigurationError(
            "STRONGROOM_SEAL=pkcs11 needs STRONGROOM_PKCS11_LIBRARY and "
            "STRONGROOM_PKCS11_TOKEN_LABEL (and STRONGROOM_PKCS11_PIN)"
        )
    pin = settings.pkcs11_pin.get_secret_value() if settings.pkcs11_pin is not None else None
    label = settings.pkcs11_token_label
    try:
        token = _library(settings.pkcs11_library).get_token(token_label=label)
        return token.open(user_pin=pin, rw=True)
    except p11.NoSuchToken:
        raise HsmError(f"the HSM has no token labelled {label!r}") from None
    except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
        raise HsmError("the HSM refused the PIN (STRONGROOM_PKCS11_PIN)") from None
    except (p11.PinLocked, p11.PinExpired):
        raise HsmError("the HSM's PIN is locked or expired") from None
    except p11.PKCS11Error as exc:
        raise HsmError(f"the HSM cannot be used ({type(exc).__name__})") from None


def _wrap(settings: Settings, key: MasterKey) -> str:
    label = settings.pkcs11_key_label
    with _session(settings) as session:
        try:
            wrapping = session.get_key(key_type=KeyType.AES, label=label)
        except p11.NoSuchKey:
            wrapping = session.generate_key(
                KeyType.AES, 256, label=label, store=True,
                template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True},
            )  # fmt: skip
        except p11.PKCS11Error as exc:
            raise HsmError(f"the HSM cannot find its key ({type(exc).__name__})") from None
        nonce = secrets.token_bytes(_NONCE_BYTES)
        try:
            sealed = wrapping.encrypt(
                key.raw_for_custody(),
                mechanism=Mechanism.AES_GCM,
                mechanism_param=GCMParams(nonce, _AAD, _TAG_BITS),
            )
        except p11.PKCS11Error as exc:
            raise HsmError(f"the HSM cannot wrap the key ({type(exc).__name__})") from None
    return base64.b64encode(nonce + bytes(sealed)).decode("ascii")


def _unwrap(settings: Settings, record: SealRecord) -> MasterKey:
    try:
        blob = base64.b64decode(record.wrapped, validate=True)
    except (binascii.Error, ValueError):
        raise HsmError("the stored wrapped master key is not well formed") from None
    with _session(settings) as session:
        try:
            wrapping = session.get_key(key_type=KeyType.AES, label=record.key_label)
        except p11.NoSuchKey:
            raise HsmError(f"the HSM holds no key labelled {record.key_label!r}") from None
        except p11.PKCS11Error as exc:
            raise HsmError(f"the HSM cannot find its key ({type(exc).__name__})") from None
        try:
            raw = bytearray(
                wrapping.decrypt(
                    blob[_NONCE_BYTES:],
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(blob[:_NONCE_BYTES], _AAD, _TAG_BITS),
                )
            )
        except p11.PKCS11Error:
            raise HsmError("the HSM's key does not unwrap the stored master key") from None
    if len(raw) != KEY_BYTES:
        raise HsmError("the HSM's key does not unwrap the stored master key")
    key = MasterKey(raw)
    if not key.matches(record.check):
        key.wipe()
        raise HsmError("the HSM unwrapped a key that is not this store's master key")
    return key


async def wrap_master(settings: Settings, key: MasterKey) -> str:
    """``key`` wrapped by the HSM's key (made in the HSM, non-extractable, if missing)."""
    return await asyncio.to_thread(_wrap, settings, key)


async def unwrap_master(settings: Settings, record: SealRecord) -> MasterKey:
    """The master key, unwrapped by the HSM and checked against the seal record."""
    return await asyncio.to_thread(_unwrap, settings, record)


async def hsm_master_key(settings: Settings) -> MasterKey:
    """The master key of a store sealed by the HSM (its seal record read, then unwrapped)."""
    record = await read_seal(settings)
    if record is None or record.kind != "pkcs11":
        raise HsmError(
            "this store has no master key wrapped by an HSM yet: run "
            "`strongroom operator init` with STRONGROOM_SEAL=pkcs11"
        )
    return await unwrap_master(settings, record)
