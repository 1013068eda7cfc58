"""Sealed start and m-of-n unseal over HTTP, on the embedded and the PostgreSQL profile.

A sealed service answers only health, readiness, seal status and unseal; key holders give
shares one at a time; refusals are clear and change nothing; every attempt reaches the audit
log once it can be written; sealing drops the key; no share ever reaches an answer, a log line
or an audit row.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from shamir_mnemonic import Share

from helpers_custody import initialise, sealed_settings, serve_sealed
from strongroom import SecretsAudit, SecretsManager, Settings, Strongroom
from strongroom.core.errors import CustodyError, SealedError
from strongroom.core.logging import configure_logging
from strongroom.core.shares import ShareSet, parse_share, split
from strongroom.services.custody.quorum_replace import replace_quorum_master


def _forged(text: str) -> str:
    real = parse_share(text)
    fake = Share(
        real.identifier, real.extendable, real.iteration_exponent, real.group_index,
        real.group_threshold, real.group_count, real.index, real.member_threshold,
        secrets.token_bytes(len(real.value)),
    )  # fmt: skip
    return str(fake.mnemonic())


def _pairs(shares: list[str]) -> list[str]:
    out = []
    for share in shares:
        words = share.split()
        out.extend(f"{a} {b}" for a, b in itertools.pairwise(words))
    return out


@pytest.fixture
def captured(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[pytest.CaptureFixture[str], pytest.LogCaptureFixture]]:
    caplog.set_level(logging.DEBUG)
    yield capsys, caplog
    structlog.reset_defaults()


@pytest.fixture(params=["sqlite", "postgres"])
def sealed_store(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    return sealed_settings(request.param, tmp_path, schema)


async def _only_custody_answers(c: httpx.AsyncClient) -> None:
    """Sealed: health, readiness (sealed), seal status and unseal answer; nothing else."""
    assert (await c.get("/healthz")).status_code == 200
    ready = await c.get("/readyz")
    assert (ready.status_code, ready.json()["status"]) == (503, "sealed")
    for method, path in [("GET", "/v1/secrets"), ("GET", "/metrics"), ("GET", "/ui"),
                         ("POST", "/v1/sys/seal"), ("GET", "/secrets/x")]:  # fmt: skip
        refused = await c.request(method, path)
        assert refused.status_code == 503, path
        error = refused.json()["error"]
        assert error["code"] == ("ServiceUnavailable" if path == "/secrets/x" else "sealed")
    status = (await c.get("/v1/sys/seal-status")).json()
    assert status | {"timeout_seconds": 0} == {
        "sealed": True, "type": "shamir", "threshold": 3, "shares": 5, "progress": 0,
        "timeout_seconds": 0,
    }  # fmt: skip


async def _refusals(c: httpx.AsyncClient, shares: list[str]) -> list[str]:
    """Each kind of refused share, answered clearly; none changes the progress."""
    first = await c.post("/v1/sys/unseal", json={"share": shares[3]})
    assert (first.status_code, first.json()["progress"]) == (200, 1)
    other = split(secrets.token_bytes(32), shares=5, threshold=3)
    corrupted = shares[0].split()
    corrupted[7] = "academic" if corrupted[7] != "academic" else "acid"
    refusals = {
        "duplicate_share": await c.post("/v1/sys/unseal", json={"share": shares[3].upper()}),
        "foreign_share": await c.post("/v1/sys/unseal", json={"share": other.shares[0]}),
        "bad_share": await c.post("/v1/sys/unseal", json={"share": " ".join(corrupted)}),
        "bad_parameter": await c.post("/v1/sys/unseal", json={"share": 42}),
    }
    for code, answer in refusals.items():
        assert answer.json()["error"]["code"] == code
    assert refusals["duplicate_share"].status_code == 409
    assert (await c.get("/v1/sys/seal-status")).json()["progress"] == 1  # nothing changed

    # Threshold met with a forged share: refused, and the unseal starts over.
    await c.post("/v1/sys/unseal", json={"share": shares[0]})
    wrong = await c.post("/v1/sys/unseal", json={"share": _forged(shares[1])})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (400, "wrong_shares")
    assert (await c.get("/v1/sys/seal-status")).json()["progress"] == 0
    assert (await c.get("/v1/secrets")).status_code == 503

    # A reset forgets a partial unseal.
    await c.post("/v1/sys/unseal", json={"share": shares[2]})
    assert (await c.post("/v1/sys/unseal", json={"reset": True})).json()["progress"] == 0
    return [r.text for r in (*refusals.values(), wrong)]


async def test_sealed_start_unseal_and_seal(
    sealed_store: Settings,
    captured: tuple[pytest.CaptureFixture[str], pytest.LogCaptureFixture],
) -> None:
    capsys, caplog = captured
    settings = sealed_store
    init = await initialise(settings)
    shares = list(init.shares.shares)
    with pytest.raises(CustodyError):  # once only
        await initialise(settings)
    with pytest.raises(SealedError):  # nothing opens the store without the quorum
        await Strongroom.open(settings)
    capsys.readouterr()
    configure_logging("DEBUG")
    bodies: list[str] = []
    async with serve_sealed(settings) as server, server.client(init.admin_token) as c:
        await _only_custody_answers(c)
        bodies.extend(await _refusals(c, shares))

        for share in (shares[4], shares[0], shares[2]):
            answer = (await c.post("/v1/sys/unseal", json={"share": share})).json()
            bodies.append(str(answer))
        assert answer["sealed"] is False
        assert (await c.get("/readyz")).json()["status"] == "ready"
        created = await c.post("/v1/secrets", json={"name": "app-db", "value": "v1"})
        assert created.status_code == 201
        trail = (await c.get("/v1/audit/events", params={"limit": 1000})).json()
        bodies.append(str(trail))
        unseals = [e for e in trail if e["action"] == "UNSEAL"]
        codes = sorted(str(e["error_code"]) for e in unseals)
        assert codes == sorted(
            ["None"] * 6 + ["duplicate_share", "foreign_share", "bad_share", "wrong_shares"]
        )
        assert {e["actor_ip"] for e in unseals} == {"127.0.0.1"}
        assert [e for e in trail if e["action"] == "CUSTODY_INIT"]

        # Sealing needs an admin token, is audited, and drops the key.
        assert (
            await c.post("/v1/sys/seal", headers={"Authorization": "Bearer x"})
        ).status_code == 401
        sealed = await c.post("/v1/sys/seal")
        assert (sealed.status_code, sealed.json()["sealed"]) == (200, True)
        assert (await c.get("/v1/secrets/app-db")).status_code == 503
        assert server.api.state.gate.custody.key is None

        # The same quorum (other members) unseals again, and the data is there.
        for share in (shares[1], shares[3], shares[4]):
            await c.post("/v1/sys/unseal", json={"share": share})
        got = await c.get("/v1/secrets/app-db")
        assert got.json()["value"] == "v1", got.text
        trail = (await c.get("/v1/audit/events", params={"limit": 1000})).json()
        assert [e for e in trail if e["action"] == "SEAL"]
        bodies.append(str(trail))
        # The audit chain, written across a seal and an unseal, verifies.
        assert (await c.post("/v1/audit/verify")).json()["valid"] is True

    out, err = capsys.readouterr()
    logs = out + err + caplog.text + "".join(bodies)
    leaked = [pair for pair in _pairs(shares) if pair in logs]
    assert not leaked
    assert "unseal share refused" in logs


async def test_unseal_attempts_are_rate_limited_per_address(tmp_path: Path) -> None:
    settings = sealed_settings("sqlite", tmp_path)
    init = await initialise(settings, shares=2, threshold=2)
    async with serve_sealed(settings) as server, server.client() as c:
        answers = [
            (await c.post("/v1/sys/unseal", json={"share": "not a share"})).status_code
            for _ in range(12)
        ]
        assert answers[:10] == [400] * 10
        assert answers[10:] == [429, 429]
        limited = await c.post("/v1/sys/unseal", json={"share": init.shares.shares[0]})
        assert limited.status_code == 429
        assert "retry-after" in limited.headers
        assert (await c.get("/v1/sys/seal-status")).json()["progress"] == 0


async def test_a_partial_unseal_resets_after_the_timeout(tmp_path: Path) -> None:
    settings = sealed_settings("sqlite", tmp_path, unseal_timeout_seconds=0.3)
    init = await initialise(settings, shares=3, threshold=2)
    async with serve_sealed(settings) as server, server.client() as c:
        given = await c.post("/v1/sys/unseal", json={"share": init.shares.shares[0]})
        assert given.json()["progress"] == 1
        for _ in range(300):  # wait on the condition, not for a fixed time
            if (await c.get("/v1/sys/seal-status")).json()["progress"] == 0:
                break
            await asyncio.sleep(0.05)
        assert (await c.get("/v1/sys/seal-status")).json()["progress"] == 0
        still = await c.post("/v1/sys/unseal", json={"share": init.shares.shares[1]})
        assert (still.json()["sealed"], still.json()["progress"]) == (True, 1)


async def test_init_splits_a_configured_key_and_keeps_the_data(tmp_path: Path) -> None:
    """Moving an existing store under a quorum: its key is split, nothing is re-encrypted."""
    keyed = sealed_settings("sqlite", tmp_path).model_copy(update={"seal": "key"})
    keyed = keyed.model_copy(update={"master_key": None})
    async with await Strongroom.open(keyed) as app:  # the embedded default: key file made
        await SecretsManager(app).create_secret("app-old", "kept")
    key_file = keyed.default_key_file
    with_file = keyed.model_copy(update={"master_key_file": key_file})
    init = await initialise(with_file, shares=3, threshold=2)
    assert init.new_key is False
    key_file.unlink()
    settings = keyed.model_copy(update={"seal": "shamir"})
    async with serve_sealed(settings) as server, server.client(init.admin_token) as c:
        for share in init.shares.shares[1:]:
            await c.post("/v1/sys/unseal", json={"share": share})
        assert (await c.get("/v1/secrets/app-old")).json()["value"] == "kept"
        verified = (await c.post("/v1/audit/verify")).json()
        assert verified["valid"] is True, verified
    assert SecretsAudit  # the seed facade stays importable beside custody


async def test_a_sealed_service_takes_the_share_set_of_a_replaced_master_key(
    sealed_store: Settings,
) -> None:
    init = await initialise(sealed_store, shares=3, threshold=2)
    assert init.shares is not None
    old = list(init.shares.shares)
    async with serve_sealed(sealed_store) as server, server.client() as c:
        given = await c.post("/v1/sys/unseal", json={"share": old[0]})
        assert given.json()["progress"] == 1
        announced: list[ShareSet] = []
        await replace_quorum_master(sealed_store, old[1:], announced.append)
        new = list(announced[0].shares)
        # The old set is foreign now; the partial unseal made with it is forgotten.
        stale = await c.post("/v1/sys/unseal", json={"share": old[1]})
        assert stale.json()["error"]["code"] == "foreign_share"
        assert (await c.get("/v1/sys/seal-status")).json()["progress"] == 0
        await c.post("/v1/sys/unseal", json={"share": new[2]})
        done = await c.post("/v1/sys/unseal", json={"share": new[0]})
        assert done.json()["sealed"] is False
        assert (await c.get("/readyz")).status_code == 200
