"""Key Vault keys (``python -m bench --only keys``): wrapKey and unwrapKey through ``VaultKeys``
on the embedded SQLite store with the audit log on, against an audited secret read in the same
run, and RSA-OAEP-256 alone (``cryptography``) as the ceiling of an unwrap.

An unwrap reads the key's row (MAC checked), opens its private half from the envelope, loads
it and decrypts: what it costs beyond the RSA decryption is strongroom's.
"""

from __future__ import annotations

import base64
import secrets
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import SecretStr

from bench.harness import Measurement, ResultRow, run_async, run_sync
from strongroom import SecretsManager, Settings, Strongroom
from strongroom.core.config import Backend
from strongroom.services.keys.vault_keys import VaultKeys

__all__ = ["run_keys"]

SECTION = "keys"
KEY_SIZE = 3072
_OAEP = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)


async def run_keys(*, seconds: float, warmup_seconds: float, rounds: int = 5) -> list[ResultRow]:
    master = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-") as home:
        settings = Settings(
            STRONGROOM_BACKEND=Backend.SQLITE,
            STRONGROOM_HOME=Path(home),
            STRONGROOM_MASTER_KEY=SecretStr(master),
        )  # type: ignore[call-arg]
        app = await Strongroom.open(settings)
        try:
            return await _measure(app, seconds, warmup_seconds, rounds)
        finally:
            await app.close()


async def _measure(
    app: Strongroom, seconds: float, warmup_seconds: float, rounds: int
) -> list[ResultRow]:
    manager, keys = SecretsManager(app), VaultKeys(app)
    data_key = secrets.token_bytes(32)
    await manager.create_secret("bench-secret", "v" * 64)
    await keys.create_key("bench-key", key_size=KEY_SIZE)
    _, wrapped = await keys.wrap_key("bench-key", None, "RSA-OAEP-256", data_key)
    if (await keys.unwrap_key("bench-key", None, "RSA-OAEP-256", wrapped))[1] != data_key:
        raise RuntimeError("unwrapKey did not give the wrapped key back")
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    raw = private.public_key().encrypt(data_key, _OAEP)

    async def read(_i: int) -> object:
        return await manager.get_secret("bench-secret")

    async def wrap(_i: int) -> object:
        return await keys.wrap_key("bench-key", None, "RSA-OAEP-256", data_key)

    async def unwrap(_i: int) -> object:
        return await keys.unwrap_key("bench-key", None, "RSA-OAEP-256", wrapped)

    def rsa_decrypt(_i: int) -> object:
        return private.decrypt(raw, _OAEP)

    async def measure(label: str, op: object) -> Measurement:
        return await run_async(
            op,  # type: ignore[arg-type]
            label=label, seconds=seconds, warmup_seconds=warmup_seconds, rounds=rounds,
        )  # fmt: skip

    ceiling = run_sync(
        rsa_decrypt, label=f"RSA-OAEP-256 decrypt ({KEY_SIZE})", seconds=seconds,
        warmup_seconds=warmup_seconds, rounds=rounds,
    )  # fmt: skip
    reference = await measure("get_secret (audited)", read)
    rows = [
        ResultRow(SECTION, ceiling.label, ceiling),
        ResultRow(SECTION, reference.label, reference),
    ]
    for label, op in ((f"wrapKey ({KEY_SIZE}, audited)", wrap),
                      (f"unwrapKey ({KEY_SIZE}, audited)", unwrap)):  # fmt: skip
        m = await measure(label, op)
        ratio = m.ops_per_s / ceiling.ops_per_s if ceiling.ops_per_s else None
        rows.append(ResultRow(SECTION, label, m, reference=ceiling.label, ratio=ratio))
    return rows
