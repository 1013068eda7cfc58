"""Replacing the master key (services.custody.replace) on SQLite and PostgreSQL: the root key
stays, so secrets, tokens, policies and the audit chain are unchanged; the old key is refused."""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers_hsm import hsm_changes
from helpers_serve import server_settings
from helpers_settings import custody_settings, new_master_key
from strongroom import SecretsAudit, SecretsManager, Settings
from strongroom.core.crypto import MasterKey
from strongroom.core.errors import (
    CustodyError,
    ForeignShareError,
    WrongMasterKeyError,
    WrongSharesError,
)
from strongroom.core.keyfile import create_key_file
from strongroom.core.policy import Policy
from strongroom.core.root import RootSlots, wrap_root
from strongroom.core.shares import ShareSet, split
from strongroom.core.unseal import SealRecord, UnsealProgress
from strongroom.db.root_store import read_roots, stage_pending
from strongroom.db.seal_store import read_seal
from strongroom.services.custody.init import init_custody
from strongroom.services.custody.pkcs11 import unwrap_master
from strongroom.services.custody.quorum_replace import replace_quorum_master
from strongroom.services.custody.replace import replace_master, replacement_status
from strongroom.services.wiring import Strongroom

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])


@pytest.fixture
def configure(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> Callable[..., Settings]:
    schema = request.getfixturevalue("pg_schema") if backend == "postgres" else "strongroom"
    return custody_settings(backend, tmp_path, schema)


async def _populate(settings: Settings, master: MasterKey | None = None) -> tuple[str, str]:
    """A token (with a policy) and the first version of ``app-db``."""
    async with await Strongroom.open(settings, master=master) as app:
        manager = SecretsManager(app)
        first = (await manager.create_secret("app-db", "first-value"))["version"]
        await manager.update_secret("app-db", "second-value")
        await manager.create_secret("radio-key", {"k": "v"})
        await app.access.put_policy(Policy.build("readers", ["read:app-*"]))
        return (await app.access.create_token("ci", policies=["readers"])).token, first


async def _check_unchanged(
    settings: Settings, made: tuple[str, str], master: MasterKey | None = None
) -> None:
    token, first = made
    async with await Strongroom.open(settings, master=master) as app:
        manager = SecretsManager(app)
        assert await manager.get_secret("app-db") == "second-value"
        assert await manager.get_secret("app-db", version=first) == "first-value"
        assert await manager.get_secret("radio-key") == {"k": "v"}
        principal = await app.access.authenticate(token)
        assert principal.identity == "ci"
        assert principal.may("read", "app-db")
        assert not principal.may("read", "radio-key")
        report = await SecretsAudit(app).verify_integrity()
        assert report["valid"], report


def _b64(path: Path) -> str:
    return path.read_text().strip()


async def test_a_key_file_is_replaced_and_the_old_key_no_longer_opens(
    configure: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "keys" / "master.key"
    create_key_file(path)
    settings = configure(STRONGROOM_MASTER_KEY_FILE=path)
    made = await _populate(settings)
    old = tmp_path / "old.key"
    shutil.copy(path, old)

    for epoch in (1, 2):
        before = _b64(path)
        if epoch == 2:
            shutil.copy(path, tmp_path / "epoch1.key")
        async with await Strongroom.open(settings) as app:
            result = await replace_master(app)
            assert (result.epoch, result.finished, result.new_key) == (epoch, True, None)
            assert before not in repr(result)
        assert _b64(path) != before
        assert path.stat().st_mode & 0o777 == 0o600
        assert not path.with_name("master.key.new").exists()
        await _check_unchanged(settings, made)
        slots = await read_roots(settings)
        assert slots.pending is None
        assert slots.current is not None
        assert slots.current.epoch == epoch

    for retired in (old, tmp_path / "epoch1.key"):
        with pytest.raises(WrongMasterKeyError, match="replaced") as caught:
            await Strongroom.open(configure(STRONGROOM_MASTER_KEY_FILE=retired))
        assert _b64(retired) not in str(caught.value)
        raw = base64.b64decode(_b64(retired))
        assert raw.hex() not in str(caught.value)
    async with await Strongroom.open(settings) as app:
        events = await SecretsAudit(app).get_audit_trail(action="MASTER_REPLACE")
    assert sorted(e["details"]["epoch"] for e in events) == [1, 2]
    status = await replacement_status(settings)
    assert status == {"epoch": 2, "pending": False, "next_step": None}


async def test_a_variable_key_waits_for_the_first_process_with_the_new_key(
    configure: Callable[..., Settings],
) -> None:
    old_key = new_master_key()
    settings = configure(STRONGROOM_MASTER_KEY=old_key)
    made = await _populate(settings)
    async with await Strongroom.open(settings) as app:
        result = await replace_master(app)
    assert result.new_key is not None
    assert result.new_key != old_key
    assert not result.finished
    # Until a process starts with the new key, the old one keeps working, and status says so.
    await _check_unchanged(settings, made)
    step = (await replacement_status(settings))["next_step"]
    assert "STRONGROOM_MASTER_KEY" in step
    assert result.new_key not in step
    new_settings = configure(STRONGROOM_MASTER_KEY=result.new_key)
    await _check_unchanged(new_settings, made)  # the first start finishes the replacement
    assert (await read_roots(settings)).pending is None
    with pytest.raises(WrongMasterKeyError):
        await Strongroom.open(settings)
    assert (await replacement_status(new_settings))["next_step"] is None


async def test_a_wrong_current_key_is_refused_and_changes_nothing(
    configure: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "master.key"
    create_key_file(path)
    settings = configure(STRONGROOM_MASTER_KEY_FILE=path)
    made = await _populate(settings)
    wrong = configure(STRONGROOM_MASTER_KEY=new_master_key())
    # A store never replaced: the keyring refuses the key before a replacement can start.
    with pytest.raises(WrongMasterKeyError):
        await Strongroom.open(wrong)
    assert await read_roots(settings) == await read_roots(wrong)
    assert (await read_roots(settings)).current is None
    async with await Strongroom.open(settings) as app:
        await replace_master(app)
    slots = await read_roots(settings)
    # A replaced store: the root record refuses it, and nothing is written.
    with pytest.raises(WrongMasterKeyError):
        await Strongroom.open(wrong)
    assert await read_roots(settings) == slots
    assert not path.with_name("master.key.new").exists()
    await _check_unchanged(settings, made)


@pytest.fixture
def hsm_settings(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Settings:
    schema = request.getfixturevalue("pg_schema") if backend == "postgres" else None
    return server_settings(backend, tmp_path, schema, master_key=None, **hsm_changes())


async def test_an_hsm_wrapped_master_key_is_replaced(hsm_settings: Settings) -> None:
    settings = hsm_settings
    await init_custody(settings, shares=0, threshold=0)
    made = await _populate(settings)
    old_seal = await read_seal(settings)
    assert old_seal is not None
    async with await Strongroom.open(settings) as app:
        result = await replace_master(app)
    assert (result.epoch, result.custody, result.finished) == (1, "pkcs11", True)
    new_seal = await read_seal(settings)
    assert new_seal is not None
    assert (new_seal.kind, new_seal.key_label) == (old_seal.kind, old_seal.key_label)
    assert new_seal.check != old_seal.check
    assert new_seal.wrapped != old_seal.wrapped
    await _check_unchanged(settings, made)  # the HSM unwraps the new key at each start
    # The old master key, which the HSM still unwraps from the old record, opens nothing.
    old = await unwrap_master(settings, old_seal)
    with pytest.raises(WrongMasterKeyError, match="replaced"):
        await Strongroom.open(settings, master=old)
    assert (await replacement_status(settings))["epoch"] == 1


def _unsealed(record: SealRecord, shares: list[str]) -> MasterKey:
    progress = UnsealProgress(record, timeout=60)
    keys = [progress.submit(share, 0.0) for share in shares]
    assert keys[-1] is not None
    return keys[-1]


class _Crash(Exception):
    pass


@pytest.fixture
def quorum_settings(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Settings:
    schema = request.getfixturevalue("pg_schema") if backend == "postgres" else None
    return server_settings(backend, tmp_path, schema, master_key=None, seal="shamir")


async def test_a_quorum_replaces_its_master_key_with_a_new_share_set(
    quorum_settings: Settings,
) -> None:
    settings = quorum_settings
    init = await init_custody(settings, shares=3, threshold=2)
    assert init.shares is not None
    old_shares = list(init.shares.shares)
    old_record = await read_seal(settings)
    assert old_record is not None
    made = await _populate(settings, _unsealed(old_record, old_shares[:2]))

    def refuse(share_set: ShareSet) -> None:
        raise AssertionError("no share set may be made")

    foreign = split(bytes(32), shares=3, threshold=2).shares
    with pytest.raises(ForeignShareError):
        await replace_quorum_master(settings, foreign[:2], refuse)
    with pytest.raises(WrongSharesError):
        await replace_quorum_master(settings, old_shares[:1], refuse)
    # Crashed after the new shares were handed out, before they were put in force.
    void: list[ShareSet] = []

    def crash(share_set: ShareSet) -> None:
        void.append(share_set)
        raise _Crash

    with pytest.raises(_Crash):
        await replace_quorum_master(settings, old_shares[1:], crash)
    assert await read_seal(settings) == old_record
    assert (await read_roots(settings)).current is None
    await _check_unchanged(settings, made, _unsealed(old_record, old_shares[1:]))

    announced: list[ShareSet] = []
    result = await replace_quorum_master(settings, old_shares[:2], announced.append)
    assert (result.custody, result.epoch) == ("shamir", 1)
    new_record = await read_seal(settings)
    assert new_record is not None
    assert (new_record.threshold, new_record.shares) == (2, 3)
    (new_set,) = announced
    assert new_set.identifier == new_record.identifier != void[0].identifier
    await _check_unchanged(settings, made, _unsealed(new_record, list(new_set.shares[1:])))
    with pytest.raises(ForeignShareError):
        _unsealed(new_record, old_shares[:2])
    with pytest.raises(WrongMasterKeyError):
        await Strongroom.open(settings, master=_unsealed(old_record, old_shares[:2]))


async def test_one_replacement_at_a_time_and_never_over_a_newer_wrapping(
    configure: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "master.key"
    create_key_file(path)
    settings = configure(STRONGROOM_MASTER_KEY_FILE=path)
    made = await _populate(settings)
    old = MasterKey.from_base64(_b64(path))
    lock = os.open(tmp_path / "master.key.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another replacement holds it
        async with await Strongroom.open(settings) as app:
            with pytest.raises(CustodyError, match="under way"):
                await replace_master(app)
    finally:
        os.close(lock)
    assert _b64(path) == base64.b64encode(old.raw_for_custody()).decode()
    assert await read_roots(settings) == RootSlots()
    assert not path.with_name("master.key.new").exists()

    async with await Strongroom.open(settings) as app:
        await replace_master(app)
    newer = await read_roots(settings)
    assert newer.current is not None
    # A replacement that read the slots before this one finished stages over nothing newer.
    stale = wrap_root(old, old, epoch=0, now=newer.current.created_at)
    await stage_pending(settings, current=stale, pending=stale)
    assert (await read_roots(settings)).current == newer.current
    await _check_unchanged(settings, made)
