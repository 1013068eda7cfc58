"""The edge's offline bound (monotonic, pure) and the sync time it carries across restarts."""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from helpers_ticks import Ticks
from strongroom.backends.base import WriteMode
from strongroom.backends.memory import MemoryStore
from strongroom.backends.replica import ReplicaStore
from strongroom.core.clock import ManualClock
from strongroom.core.crypto import MasterKey
from strongroom.core.errors import ConfigurationError, EdgeOfflineTooLongError, EdgeReadOnlyError
from strongroom.core.models import NewVersion, SecretType, VersionProperties
from strongroom.core.offline import EDGE_BOUND_TAG, OfflineBound, OfflineLimits
from strongroom.services.edge import EdgeState, in_scope


def test_online_serves_and_offline_counts_from_the_last_moment_heard() -> None:
    ticks = Ticks(50.0)
    bound = OfflineBound(100, carried=0.0, monotonic=ticks)
    bound.mark_online()
    ticks.now += 1000  # online: time does not count
    bound.check()
    assert bound.offline_for() == 0
    bound.heard()
    ticks.now += 30  # silence before the loss is noticed counts too
    bound.mark_offline()
    assert bound.offline_for() == 30
    ticks.now += 70
    bound.check()  # exactly at the bound: still served
    assert bound.remaining() == 0
    ticks.now += 0.5
    with pytest.raises(EdgeOfflineTooLongError, match="past its bound of 100 s") as caught:
        bound.check()
    assert caught.value.code == "edge_offline_too_long"
    bound.mark_online()
    bound.check()


def test_a_replica_that_never_synchronised_serves_nothing() -> None:
    bound = OfflineBound(100, carried=None, monotonic=Ticks(50.0))
    assert math.isinf(bound.offline_for())
    with pytest.raises(EdgeOfflineTooLongError, match="not synchronised"):
        bound.check()


def test_time_down_before_a_restart_is_charged_against_the_bound() -> None:
    ticks = Ticks(50.0)
    bound = OfflineBound(100, carried=99.0, monotonic=ticks)
    bound.check()
    ticks.now += 2
    with pytest.raises(EdgeOfflineTooLongError):
        bound.check()


def test_a_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        OfflineBound(0, carried=0.0)


def test_the_state_file_carries_the_last_sync_and_distrusts_a_clock_gone_back(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    state = EdgeState(tmp_path / "edge-state.json", clock)
    assert state.carried_offline() is None  # never synchronised
    state.record_sync()
    assert (tmp_path / "edge-state.json").stat().st_mode & 0o077 == 0
    clock.advance(seconds=90)
    assert state.carried_offline() == 90
    clock.now -= timedelta(seconds=120)  # the wall clock was set back
    assert state.carried_offline() is None
    (tmp_path / "edge-state.json").write_text("not json")
    assert state.carried_offline() is None


def test_scopes_are_globs_that_ignore_case() -> None:
    assert in_scope("Dispatch-North-Radio", ["dispatch-north-*"])
    assert not in_scope("dispatch-south-radio", ["dispatch-north-*"])
    assert in_scope("b", ["a*", "b"])


def _props(secret_type: SecretType, tags: dict[str, str]) -> VersionProperties:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return VersionProperties(
        name="db-main", version="0" * 32, secret_type=secret_type, content_type=None,
        tags=tags, enabled=True, created_at=now, updated_at=now, expires_at=None,
        not_before=None, current=True, revoked_at=None,
    )  # fmt: skip


def test_shorter_bounds_per_type_and_per_secret() -> None:
    limits = OfflineLimits.parse("database_credential=3600, api_key=60")
    assert limits.for_version(_props(SecretType.GENERIC, {})) == (None, "")
    limit, source = limits.for_version(_props(SecretType.DATABASE_CREDENTIAL, {}))
    assert (limit, "database_credential" in source) == (3600, True)
    tagged = _props(SecretType.DATABASE_CREDENTIAL, {EDGE_BOUND_TAG: "120"})
    assert limits.for_version(tagged)[0] == 120
    longer = _props(SecretType.API_KEY, {EDGE_BOUND_TAG: "600"})
    assert limits.for_version(longer)[0] == 60  # the shortest applies
    for bad in ("nonsense", "-5", "nan", "0"):
        assert limits.for_version(_props(SecretType.GENERIC, {EDGE_BOUND_TAG: bad}))[0] == 0
    for text in ("password=10", "api_key=0", "api_key=x", "api_key=inf", "api_key"):
        with pytest.raises(ConfigurationError, match="MAX_OFFLINE_BY_TYPE"):
            OfflineLimits.parse(text)


def test_a_shorter_bound_refuses_first_and_names_its_source() -> None:
    ticks = Ticks(50.0)
    bound = OfflineBound(1000, carried=100.0, monotonic=ticks)
    bound.check()
    bound.check(200, source="the secret's tag")
    with pytest.raises(EdgeOfflineTooLongError, match=r"bound of 50 s \(the secret's tag\)"):
        bound.check(50, source="the secret's tag")
    with pytest.raises(EdgeOfflineTooLongError, match="STRONGROOM_EDGE_MAX_OFFLINE"):
        OfflineBound(10, carried=100.0, monotonic=ticks).check(5000, source="ignored")


async def test_the_replica_applies_a_secret_s_own_bound_only_offline() -> None:
    bound = OfflineBound(1000, carried=100.0, monotonic=Ticks(50.0))
    inner = MemoryStore(MasterKey.generate()[0])
    replica = ReplicaStore(inner, bound, limits=OfflineLimits.parse("api_key=50"))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for name, kind in (("short", SecretType.API_KEY), ("plain", SecretType.GENERIC)):
        new = NewVersion(name=name, version=secrets.token_hex(16), secret_type=kind,
                         content_type=None, tags={}, created_at=now)  # fmt: skip
        await inner.write_version(new, b"value", WriteMode.CREATE)
    assert (await replica.get_version("plain")).value.reveal_bytes() == b"value"
    with pytest.raises(EdgeOfflineTooLongError, match="api_key"):
        await replica.get_version("short")
    bound.mark_online()
    assert (await replica.get_version("short")).value.reveal_bytes() == b"value"
    with pytest.raises(EdgeReadOnlyError):
        await replica.write_version(new, b"x", WriteMode.UPDATE)
