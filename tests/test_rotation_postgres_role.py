"""PostgresRoleRotator against real PostgreSQL roles: the password really changes, a failed
verification puts the old one back, and role names are quoted safely.

The roles live in a private PostgreSQL cluster started for this module (helpers_pgcluster), where
every role but ``postgres`` logs in with SCRAM-SHA-256: the machine's own server is never
reconfigured and no role is left behind on it. The secrets themselves live in SQLite.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from helpers_pgcluster import PrivateCluster, private_cluster
from strongroom import (
    ManualClock,
    RotationConfig,
    SecretsAudit,
    SecretsManager,
    SecretsRotation,
    SecretType,
    Strongroom,
)
from strongroom.services.rotation.rotators import PostgresRoleRotator, scram_sha256_verifier
from strongroom.services.rotation.rotators.postgres_role import RotationTargetError

pytestmark = pytest.mark.stores("sqlite")

ROTATOR = "pg-app"


@dataclass(frozen=True)
class Target:
    """The private cluster as the rotator and the tests see it."""

    cluster: PrivateCluster

    @property
    def admin_dsn(self) -> str:
        return self.cluster.admin_url

    @property
    def login_params(self) -> dict[str, Any]:
        return {"host": self.cluster.host, "port": self.cluster.port, "database": "postgres"}

    def rotator(
        self, role: str, cls: type[PostgresRoleRotator] = PostgresRoleRotator, **kwargs: Any
    ) -> PostgresRoleRotator:
        login = {**self.login_params, **kwargs.pop("login", {})}
        return cls(admin_dsn=self.admin_dsn, role=role, login=login, **kwargs)

    async def admin_execute(self, query: str, *args: Any) -> None:
        """Run the statement that ``query`` formats (identifiers quoted by PostgreSQL)."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(await conn.fetchval(query, *args))
        finally:
            await conn.close()

    async def stored_verifier(self, role: str) -> str:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            stored: str = await conn.fetchval(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role
            )
        finally:
            await conn.close()
        return stored

    async def login(self, role: str, password: str) -> str:
        """Log in as ``role`` and return current_user (raises on a refused password)."""
        conn = await asyncpg.connect(user=role, password=password, **self.login_params)
        try:
            user: str = await conn.fetchval("SELECT current_user")
        finally:
            await conn.close()
        return user

    async def assert_refused(self, role: str, password: str) -> None:
        with pytest.raises(asyncpg.InvalidPasswordError):
            await self.login(role, password)


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with private_cluster() as cluster:
        yield Target(cluster)


@pytest.fixture
async def make_role(target: Target) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``await make_role(password, prefix=...)``: a uniquely named LOGIN role (its password
    stored as a SCRAM verifier), dropped afterwards."""
    made: list[str] = []

    async def make(password: str, prefix: str = "sr_app") -> str:
        role = f"{prefix}_{secrets.token_hex(4)}"
        await target.admin_execute(
            "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)",
            role,
            scram_sha256_verifier(password),
        )
        made.append(role)
        return role

    yield make
    for role in made:
        await target.admin_execute("SELECT format('DROP ROLE IF EXISTS %I', $1::text)", role)


async def setup_rotation(
    app: Strongroom,
    name: str,
    role: str,
    password: str,
    rotator: PostgresRoleRotator,
    **config: Any,
) -> tuple[SecretsManager, SecretsRotation, str]:
    """The secret seeded with the role's password and a config rotating it through ROTATOR."""
    manager, rotation = SecretsManager(app), SecretsRotation(app)
    created = await manager.create_secret(
        name, password, secret_type=SecretType.DATABASE_CREDENTIAL
    )
    await rotation.register_rotator(ROTATOR, rotator, secrets=[name])
    await rotation.register_secret(
        RotationConfig(
            name=name,
            generator="password",
            rotator=ROTATOR,
            secret_type=SecretType.DATABASE_CREDENTIAL,
            **config,
        )
    )
    return manager, rotation, created["version"]


async def test_rotation_changes_the_role_password(
    app: Strongroom,
    clock: ManualClock,
    make_role: Callable[..., Awaitable[str]],
    target: Target,
) -> None:
    initial = secrets.token_urlsafe(24)
    role = await make_role(initial)
    assert await target.login(role, initial) == role
    rotator = target.rotator(role)
    manager, rotation, first = await setup_rotation(app, "db-app", role, initial, rotator)

    clock.advance(days=90)
    assert (await rotation.run_check())["rotated"] == ["db-app"]
    new = await manager.get_secret("db-app")
    assert new != initial
    assert len(new) == 32
    await target.assert_refused(role, initial)
    assert await target.login(role, new) == role
    props = await manager.get_secret_properties("db-app")
    assert props["version"] != first
    assert props["secret_type"] == "database_credential"
    assert await manager.get_secret("db-app", version=first) == initial  # grace period

    # The server holds a SCRAM verifier, never the plaintext.
    stored = await target.stored_verifier(role)
    assert stored.startswith("SCRAM-SHA-256$4096:")
    assert new not in stored

    # And again: each rotation's password replaces the last.
    clock.advance(days=90)
    assert (await rotation.run_check())["rotated"] == ["db-app"]
    newer = await manager.get_secret("db-app")
    assert newer not in (initial, new)
    await target.assert_refused(role, new)
    assert await target.login(role, newer) == role


async def test_a_role_name_with_a_quote_and_capitals_is_quoted_safely(
    app: Strongroom,
    make_role: Callable[..., Awaitable[str]],
    target: Target,
) -> None:
    initial = secrets.token_urlsafe(24)
    role = await make_role(initial, prefix='App"Role')
    assert await target.login(role, initial) == role
    rotator = target.rotator(role)
    manager, rotation, _ = await setup_rotation(app, "db-quoted", role, initial, rotator)

    result = await rotation.rotate_secret("db-quoted", force=True)
    assert result["rotated"] is True, result
    new = await manager.get_secret("db-quoted")
    await target.assert_refused(role, initial)
    assert await target.login(role, new) == role


class RefusingRotator(PostgresRoleRotator):
    """Verifies for real, then refuses the first ``refusals`` new passwords anyway."""

    def __init__(self, *args: Any, refusals: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusals = refusals
        self.offered: list[str] = []

    async def verify(self, name: str, new: Any) -> None:
        self.offered.append(new)
        await super().verify(name, new)
        if len(self.offered) <= self.refusals:
            raise RotationTargetError("verification refused by the test")


async def test_a_failed_verification_puts_the_old_password_back(
    app: Strongroom,
    clock: ManualClock,
    make_role: Callable[..., Awaitable[str]],
    target: Target,
) -> None:
    initial = secrets.token_urlsafe(24)
    role = await make_role(initial)
    rotator = target.rotator(role, RefusingRotator)
    manager, rotation, first = await setup_rotation(app, "db-refused", role, initial, rotator)

    clock.advance(days=90)
    assert (await rotation.run_check())["failed"] == ["db-refused"]
    [refused] = rotator.offered
    assert await target.login(role, initial) == role  # rolled back
    await target.assert_refused(role, refused)
    assert (await manager.get_secret_properties("db-refused"))["version"] == first
    assert await manager.get_secret("db-refused") == initial
    status = await rotation.get_rotation_status("db-refused")
    assert status["last_result"] == "FAILURE"
    assert refused not in status["last_error"]
    [failure] = await SecretsAudit(app).get_audit_trail("db-refused", "ROTATE", result="FAILURE")
    assert failure["error_code"] == "rotation_target"

    # The retry, after the delay, generates a fresh password and succeeds.
    clock.advance(minutes=1)
    assert (await rotation.run_check())["rotated"] == ["db-refused"]
    assert len(rotator.offered) == 2
    new = rotator.offered[1]
    assert new not in (refused, initial)
    assert await manager.get_secret("db-refused") == new
    assert await target.login(role, new) == role
    await target.assert_refused(role, initial)
    await target.assert_refused(role, refused)


async def test_a_verification_login_that_cannot_connect_keeps_the_old_password(
    app: Strongroom,
    clock: ManualClock,
    make_role: Callable[..., Awaitable[str]],
    target: Target,
) -> None:
    initial = secrets.token_urlsafe(24)
    role = await make_role(initial)
    rotator = target.rotator(role, login={"port": 1})
    manager, rotation, first = await setup_rotation(app, "db-unreachable", role, initial, rotator)

    result = await rotation.rotate_secret("db-unreachable", force=True)
    assert result["rotated"] is False
    assert await target.login(role, initial) == role
    assert (await manager.get_secret_properties("db-unreachable"))["version"] == first
    assert len(await manager.get_secret_versions("db-unreachable")) == 1
    status = await rotation.get_rotation_status("db-unreachable")
    assert status["last_result"] == "FAILURE"
    assert "login" in status["last_error"]


async def test_a_failed_verify_callback_also_puts_the_old_password_back(
    app: Strongroom,
    clock: ManualClock,
    make_role: Callable[..., Awaitable[str]],
    target: Target,
) -> None:
    """The rotator accepted the new password but the config's own verification refused it:
    the secret keeps the old password, so the role must too."""
    initial = secrets.token_urlsafe(24)
    role = await make_role(initial)
    rotator = target.rotator(role)
    manager, rotation, first = await setup_rotation(
        app, "db-checked", role, initial, rotator, verify_callback=lambda name, value: False
    )

    result = await rotation.rotate_secret("db-checked", force=True)
    assert result["rotated"] is False
    assert (await manager.get_secret_properties("db-checked"))["version"] == first
    assert await target.login(role, initial) == role  # what the secret holds still logs in


async def test_a_rotator_serves_only_the_secrets_it_was_bound_to(
    app: Strongroom,
    make_role: Callable[..., Awaitable[str]],
    target: Target,
) -> None:
    """The operator binds a role rotator to the secret ``payments-db``. An identity that may
    rotate only ``team-b-*`` (and cannot read ``payments-db``) schedules its own readable
    secret through that rotator and forces a rotation: refused with 403 and audited, and the
    production role keeps the password the legitimate secret holds."""
    from helpers_serve import serve

    initial = secrets.token_urlsafe(24)
    role = await make_role(initial)
    manager, rotation = SecretsManager(app), SecretsRotation(app)
    await manager.create_secret("payments-db", initial, SecretType.DATABASE_CREDENTIAL)
    await rotation.register_rotator(
        "payments-db",
        target.rotator(role),
        secrets=["payments-db"],
    )
    await manager.create_secret("team-b-loot", "placeholder")
    async with serve(app) as served:
        attacker = await served.token_for("team-b", "read,write,rotate:team-b-*")
        async with served.client(attacker) as c:
            assert (await c.get("/v1/secrets/payments-db")).status_code == 403
            borrowed = await c.put(
                "/v1/rotation/team-b-loot", json={"generator": "password", "rotator": "payments-db"}
            )
            assert borrowed.status_code == 403, borrowed.text
            assert borrowed.json()["error"]["code"] == "forbidden"
            await c.post("/v1/rotation/team-b-loot/rotate")
            loot = (await c.get("/v1/secrets/team-b-loot")).json()["value"]
    assert loot == "placeholder"
    assert await target.login(role, initial) == role
    assert await manager.get_secret("payments-db") == initial
    refused = await SecretsAudit(app).get_audit_trail("team-b-loot", result="FAILURE")
    assert any(e["error_code"] == "forbidden" for e in refused), refused


async def test_a_stored_schedule_naming_an_unbound_rotator_is_refused_when_it_runs(
    app: Strongroom,
    make_role: Callable[..., Awaitable[str]],
    target: Target,
) -> None:
    """A schedule row that names a rotator outside its binding (written before the binding
    existed, or into the database by hand) never reaches the target system."""
    initial = secrets.token_urlsafe(24)
    role = await make_role(initial)
    manager, rotation = SecretsManager(app), SecretsRotation(app)
    await manager.create_secret("payments-db", initial, SecretType.DATABASE_CREDENTIAL)
    await rotation.register_secret(RotationConfig(name="team-b-loot", generator="password"))
    await rotation.register_rotator(
        "payments-db",
        target.rotator(role),
        secrets=["payments-db"],
    )
    row = await app.rotation_store.get("team-b-loot")
    assert row is not None
    await app.rotation_store.upsert({**row, "rotator": "payments-db"})
    outcome = await rotation.rotate_secret("team-b-loot", force=True)
    assert outcome["rotated"] is False
    assert "payments-db" in outcome["error"]
    assert await target.login(role, initial) == role
    failed = await SecretsAudit(app).get_audit_trail("team-b-loot", "ROTATE", result="FAILURE")
    assert failed
    assert failed[0]["error_code"] == "forbidden"
