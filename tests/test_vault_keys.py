"""Key Vault keys through the service, on every store that keeps them (memory, SQLite,
PostgreSQL): versions, the enabled flag, wrap and unwrap, and bad input refused unchanged."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from strongroom import SecretsAudit, SecretsManager, Strongroom
from strongroom.core.errors import (
    KeyDisabledError,
    KeyNotFoundError,
    UnwrapError,
    ValidationError,
)
from strongroom.core.vault_keys import NewKey, PrivateKeyBytes, generate_rsa
from strongroom.services.keys.vault_keys import VaultKeys

pytestmark = pytest.mark.stores("memory", "sqlite", "postgres")

DATA_KEY = bytes(range(32))


async def test_versions_wrap_unwrap_and_the_enabled_flag(app: Strongroom) -> None:
    keys = VaultKeys(app)
    first = await keys.create_key("site-key", tags={"site": "a"})
    second = await keys.create_key("Site-Key", key_size=3072)  # names compare case-insensitively
    assert (first.key_size, second.key_size) == (2048, 3072)
    assert [v.version for v in await keys.list_versions("site-key")] == [
        first.version,
        second.version,
    ]
    assert (await keys.get_key("site-key")).version == second.version
    assert [k.name for k in await keys.list_keys()] == ["site-key"]
    for algorithm in ("RSA-OAEP-256", "RSA-OAEP"):
        props, wrapped = await keys.wrap_key("site-key", first.version, algorithm, DATA_KEY)
        assert props.version == first.version
        assert (await keys.unwrap_key("site-key", first.version, algorithm, wrapped))[1] == DATA_KEY
        with pytest.raises(UnwrapError):  # another version's private half does not open it
            await keys.unwrap_key("site-key", second.version, algorithm, wrapped)

    _, wrapped = await keys.wrap_key("site-key", first.version, "RSA-OAEP-256", DATA_KEY)
    disabled = await keys.update_key("site-key", first.version, enabled=False)
    assert disabled.enabled is False
    assert disabled.tags == {"site": "a"}
    with pytest.raises(KeyDisabledError):
        await keys.unwrap_key("site-key", first.version, "RSA-OAEP-256", wrapped)
    with pytest.raises(KeyDisabledError):
        await keys.get_key("site-key", first.version)
    await keys.update_key("site-key", first.version, enabled=True)
    assert (await keys.unwrap_key("site-key", first.version, "RSA-OAEP-256", wrapped))[1] == (
        DATA_KEY
    )
    # Keys and secrets are apart: a key is no secret, and a secret of the name can coexist.
    manager = SecretsManager(app)
    with pytest.raises(LookupError):
        await manager.get_secret("site-key")
    await manager.create_secret("site-key", "a secret")
    assert (await keys.get_key("site-key")).version == second.version


async def test_bad_input_is_refused_and_changes_nothing(app: Strongroom) -> None:
    keys = VaultKeys(app)
    made = await keys.create_key("k-ok", key_ops=["unwrapKey"])
    assert made.key_ops == ("unwrapKey",)
    bad: list[tuple[dict[str, object], str]] = [
        ({"name": "bad name"}, "invalid secret name"),
        ({"name": "k-bad", "kty": "EC"}, "kty must be RSA"),
        ({"name": "k-bad", "key_size": 1024}, "key_size must be one of"),
        ({"name": "k-bad", "key_size": True}, "key_size must be one of"),
        ({"name": "k-bad", "key_ops": ["sign"]}, "unsupported key operations"),
        ({"name": "k-bad", "tags": {"t": 5}}, "metadata value"),
    ]
    for options, words in bad:
        with pytest.raises(ValidationError, match=words):
            await keys.create_key(**options)  # type: ignore[arg-type]
    with pytest.raises(KeyNotFoundError):
        await keys.get_key("k-bad")
    with pytest.raises(ValidationError, match="does not allow wrapKey"):
        await keys.wrap_key("k-ok", None, "RSA-OAEP-256", DATA_KEY)
    with pytest.raises(ValidationError, match="unsupported algorithm"):
        await keys.unwrap_key("k-ok", None, "RSA1_5", b"x" * 256)
    with pytest.raises(ValidationError, match="invalid version id"):
        await keys.get_key("k-ok", "not-a-version")
    with pytest.raises(KeyNotFoundError, match="has no version"):
        await keys.get_key("k-ok", "0" * 32)
    with pytest.raises(UnwrapError) as caught:
        await keys.unwrap_key("k-ok", None, "RSA-OAEP-256", b"\x07" * 256)
    assert str(caught.value) == "the value does not unwrap with this key"
    assert [k.name for k in await keys.list_keys()] == ["k-ok"]
    assert len(await keys.list_versions("k-ok")) == 1
    trail = await SecretsAudit(app).get_audit_trail(limit=100)
    failures = [e for e in trail if e["action"] == "KEY_CREATE" and e["result"] == "FAILURE"]
    assert len(failures) == len(bad)


async def test_concurrent_creates_make_distinct_versions(app: Strongroom) -> None:
    keys = VaultKeys(app)
    made = await asyncio.gather(*(keys.create_key("busy-key") for _ in range(4)))
    listed = await keys.list_versions("busy-key")
    assert sorted(v.version for v in listed) == sorted(m.version for m in made)
    assert (await keys.get_key("busy-key")).version == listed[-1].version


async def test_more_concurrent_versions_than_retries_all_land(app: Strongroom) -> None:
    """Sixteen versions of one key stored at once, more writers than a version's retries: each
    lands (on PostgreSQL they take turns on the key's lock rather than race for its next
    sequence number, which lost writers after three collisions)."""
    store = VaultKeys(app)._store()
    private, public = generate_rsa(2048)
    news = [
        NewKey(
            name="crowded-key",
            version=f"{n:032x}",
            kty="RSA",
            key_size=2048,
            key_ops=("wrapKey",),
            public_der=public,
            enabled=True,
            tags={},
            created_at=app.clock(),
        )
        for n in range(16)
    ]
    stored = await asyncio.gather(*(store.add_version(new, private) for new in news))
    assert sorted(p.version for p in stored) == sorted(new.version for new in news)
    listed = await store.list_versions("crowded-key")
    assert sorted(p.version for p in listed) == sorted(new.version for new in news)


def test_a_private_key_never_shows_itself() -> None:
    private = PrivateKeyBytes(b"\x30\x82secret-der")
    assert "secret" not in repr(private)
    assert "secret" not in str(private)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(private)
