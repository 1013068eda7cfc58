"""The state stores beside the audit log are built when first used on SQLite (and the memory
profile) and all at once on PostgreSQL; a command that reads one secret never loads them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_raw import raw_execute, raw_fetch
from helpers_settings import PG_URL, make_settings
from strongroom.core.errors import StoreUnavailableError
from strongroom.core.integrity import RowMac
from strongroom.core.keys import Purpose
from strongroom.core.policy import Action, Policy
from strongroom.db.audit_sqlite import SqliteAuditStore
from strongroom.db.revocation_store import PostgresRevocationStore
from strongroom.db.rotation_store import PostgresRotationStore
from strongroom.db.sqlite_db import SqliteDatabase
from strongroom.services.building import build_state_stores
from strongroom.services.state_stores import PARTS, StateStores
from strongroom.services.wiring import Strongroom, root_key

#: What a local ``secret get`` must not import: the stores it never touches, and what sits on
#: them (each was a share of the command's start-up).
UNUSED_BY_A_READ = (
    "strongroom.db.access_store",
    "strongroom.db.access_rows",
    "strongroom.db.rotation_store",
    "strongroom.db.revocation_store",
    "strongroom.db.session_store",
    "strongroom.db.subscription_store",
    "strongroom.services.access.control",
    "strongroom.services.audit.threats",
    "strongroom.core.edge_journal",
)

_READ_AND_REPORT = """
import sys
from strongroom.cli.main import main
unused = set(sys.argv[1:])
sys.argv = ["strongroom", "secret", "get", "kept"]
try:
    main()
except SystemExit as done:
    assert not done.code, done.code
sys.stdout.flush()
print("\\nloaded:", *sorted(unused & set(sys.modules)), file=sys.stderr)
"""


def test_a_local_secret_get_loads_none_of_the_stores_it_does_not_use(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGROOM_", "DATABASE"))}
    env["STRONGROOM_HOME"] = str(tmp_path)
    cli = [sys.executable, "-m", "strongroom.cli"]
    subprocess.run([*cli, "init", "-q"], env=env, check=True, capture_output=True)
    subprocess.run(
        [*cli, "secret", "create", "kept", "-"], input=b"v1", env=env, check=True,
        capture_output=True,
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _READ_AND_REPORT, *UNUSED_BY_A_READ],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert done.stdout == "v1"
    assert done.stderr.strip().endswith("loaded:"), done.stderr


@pytest.mark.stores("memory", "sqlite")
async def test_on_sqlite_a_store_is_built_on_first_use_and_shares_the_open_database(
    app: Strongroom,
) -> None:
    state = app._state
    assert state.built() == ()
    assert await app.rotation_store.list_all() == []
    assert await app.access.list_tokens() == []
    assert state.built() == ("rotation", "access")
    rotation = app.rotation_store
    assert app.rotation_store is rotation  # built once
    await app.close()
    with pytest.raises(StoreUnavailableError):
        await rotation.list_all()  # the shared database closed with the wiring
    with pytest.raises(StoreUnavailableError):
        await app.revocation_store.get(1)  # built after close: closed too


@pytest.mark.stores("postgres")
async def test_on_postgres_every_store_opens_with_the_wiring_and_closes_with_it(
    app: Strongroom,
) -> None:
    state = app._state
    assert state.built() == PARTS
    rotation = app.rotation_store
    assert await rotation.list_all() == []
    await app.close()
    with pytest.raises(StoreUnavailableError, match="closed"):
        await rotation.list_all()


async def test_a_store_that_fails_to_open_closes_the_ones_opened_before_it(
    tmp_path: Path, pg_schema: str
) -> None:
    rotation = PostgresRotationStore(PG_URL, schema=pg_schema)
    unreachable = PG_URL.replace("127.0.0.1:5432", "127.0.0.1:1").replace(
        "localhost:5432", "127.0.0.1:1"
    )
    assert unreachable != PG_URL
    state = StateStores(
        SqliteAuditStore(SqliteDatabase(tmp_path / "state.db")),
        {
            "rotation": lambda: rotation,
            "revocation": lambda: PostgresRevocationStore(unreachable, schema=pg_schema),
            "subscriptions": lambda: pytest.fail("never reached"),
            "access": lambda: pytest.fail("never reached"),
            "sessions": lambda: pytest.fail("never reached"),
        },
    )
    with pytest.raises(StoreUnavailableError):
        await state.open()
    with pytest.raises(StoreUnavailableError, match="closed"):
        await rotation.list_all()
    await state.close()  # nothing left to close: a second close is harmless


def test_state_stores_need_every_part(tmp_path: Path) -> None:
    audit = SqliteAuditStore(SqliteDatabase(tmp_path / "state.db"))
    with pytest.raises(ValueError, match="rotation"):
        StateStores(audit, {"rotation": lambda: None})


async def test_a_sqlite_state_database_closes_when_the_state_closes(tmp_path: Path) -> None:
    """The shared database is held once by the state, whatever was built meanwhile."""
    settings = make_settings("sqlite", tmp_path)
    state = build_state_stores(settings, RowMac(b"k" * 32))
    await state.audit.open()
    await state.open()
    await state.rotation.list_all()
    await state.sessions.get(b"nothing")
    await state.close()
    await state.audit.close()
    with pytest.raises(StoreUnavailableError, match="closed"):
        await state.rotation.list_all()


#: The access tables as the release before access-row MACs made them (migration 11 undone).
_PRE_ACCESS_MAC = (
    "ALTER TABLE strongroom_tokens DROP COLUMN mac",
    "ALTER TABLE strongroom_policies DROP COLUMN mac",
    "ALTER TABLE strongroom_identity_policies DROP COLUMN mac",
    "DELETE FROM schema_migrations WHERE number = 11",
)


async def test_state_opened_alone_macs_the_access_rows_made_before_row_macs(
    tmp_path: Path,
) -> None:
    """State kept in SQLite beside a store that is not (Key Vault's profile) has no secret
    store to run the access rows' migration step: opening the state runs it, with the row MAC
    key, and the token made before the step still authenticates afterwards."""
    settings = make_settings("sqlite", tmp_path)
    async with await Strongroom.open(settings) as app:
        await app.access.put_policy(Policy.build("reader", ["read:kept"]))
        token = (await app.access.create_token("svc", policies=["reader"])).token
    await raw_execute(settings, *_PRE_ACCESS_MAC)

    integrity = RowMac((await root_key(settings)).derive(Purpose.METADATA_MAC))
    state = build_state_stores(settings, integrity)
    await state.audit.open()
    try:
        await state.open()
        assert state.built() == ()  # the step ran without building the access store
    finally:
        await state.close()
        await state.audit.close()
    step = "SELECT count(*) FROM schema_migrations WHERE number = 11"
    assert await raw_fetch(settings, step) == [(1,)]
    unmaced = "SELECT count(*) FROM strongroom_tokens WHERE mac IS NULL"
    assert await raw_fetch(settings, unmaced) == [(0,)]
    async with await Strongroom.open(settings) as app:
        principal = await app.access.authenticate(token)
        assert principal.may(Action.READ, "kept")
