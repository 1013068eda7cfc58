"""JWT/OIDC login against a real local issuer (discovery and JWKS over HTTPS, rotating keys):
a workload logs in, reads what its role's policy allows over /v1 and the Key Vault API and
nothing else; every bad token is a 401 with its own code, an audit row and no new token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from served import Served, serve, server_settings

from helpers_oidc import AUDIENCE, SUB, Issuer, new_key, run_issuer
from strongroom import Strongroom
from strongroom.core.policy import Policy


def auth_toml(issuer: Issuer) -> str:
    """The test configuration: method k8s (discovery) and one method per outage scenario."""
    ca = json.dumps(str(issuer.ca_path))
    common = f'issuer = "{issuer.url}"\naudiences = ["{AUDIENCE}"]\nca_file = {ca}\n'
    role = (
        'identity = "k8s-{kubernetes.io/serviceaccount/name}"\npolicies = ["dispatch-read"]\n'
        "ttl_seconds = 60\nmax_ttl_seconds = 90\n"
        '[jwt.METHOD.roles.dispatch.claims]\nsub = "system:serviceaccount:dispatch:*"\n'
        '"kubernetes.io/namespace" = "dispatch"\n'
    )
    parts = [
        f"[jwt.k8s]\n{common}discovery = true\njwks_refresh_seconds = 0.001\n"
        "[jwt.k8s.roles.dispatch]\n" + role.replace("METHOD", "k8s"),
        '[jwt.k8s.roles.ops]\nidentity = "staff-{sub}"\npolicies = ["ops"]\n'
        'algorithms = ["ES256"]\n[jwt.k8s.roles.ops.claims]\ngroups = "ops-*"\n',
    ]
    for name, extra in {"steady": "jwks_refresh_seconds = 3600\n", "down": "",
                        "slow": "http_timeout_seconds = 0.5\n", "garbage": ""}.items():  # fmt: skip
        parts.append(
            f'[jwt.{name}]\n{common}jwks_url = "{issuer.url}/keys"\n{extra}'
            f"[jwt.{name}.roles.dispatch]\n" + role.replace("METHOD", name)
        )
    return "\n".join(parts)


@dataclass
class World:
    served: Served
    issuer: Issuer
    app: Strongroom

    async def login(self, token: str, role: str = "dispatch", method: str | None = "k8s") -> Any:
        async with self.served.client() as c:
            return await c.post(
                "/v1/auth/jwt/login", json={"jwt": token, "role": role, "method": method}
            )

    async def audit(self, **params: str) -> list[dict[str, Any]]:
        async with self.served.admin() as c:
            found = await c.get("/v1/audit/events", params={"limit": "1000", **params})
        assert found.status_code == 200, found.text
        rows: list[dict[str, Any]] = found.json()
        return rows


K8S_CLAIMS = {"kubernetes.io": {"namespace": "dispatch", "serviceaccount": {"name": "api"}}}


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    home = tmp_path_factory.mktemp("jwt")
    async with run_issuer(home) as issuer:
        config = home / "auth.toml"
        config.write_text(auth_toml(issuer))
        settings = server_settings("sqlite", home, auth_config=config, login_failure_burst=10_000)
        app = await Strongroom.open(settings)
        try:
            await app.access.put_policy(Policy.build("dispatch-read", ["read,list:dispatch-*"]))
            async with serve(app) as served:
                async with served.admin() as c:
                    for name in ("dispatch-db", "fleet-key"):
                        made = await c.post("/v1/secrets", json={"name": name, "value": "v-1"})
                        assert made.status_code == 201, made.text
                yield World(served, issuer, app)
        finally:
            await app.close()


@pytest.fixture(autouse=True)
def issuer_up(world: World) -> Iterator[None]:
    yield
    world.issuer.mode = "up"


async def test_a_workload_logs_in_and_reads_what_its_role_allows_and_nothing_else(
    world: World,
) -> None:
    token = world.issuer.token(**K8S_CLAIMS)
    answer = await world.login(token)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["identity"], body["auth_method"], body["role"]) == ("k8s-api", "jwt", "dispatch")
    issued = body["token"]
    async with world.served.client(issued) as c:
        assert (await c.get("/v1/secrets/dispatch-db")).json()["value"] == "v-1"
        refused = await c.get("/v1/secrets/fleet-key")
        assert refused.status_code == 403
        listing = await c.get("/v1/secrets")
        assert [s["name"] for s in listing.json()] == ["dispatch-db"]
        kv = await c.get("/secrets/dispatch-db", params={"api-version": "7.5"})
        assert kv.status_code == 200, kv.text
        assert kv.json()["value"] == "v-1"
        assert (await c.get("/secrets/fleet-key", params={"api-version": "7.5"})).status_code == 403
        me = (await c.get("/v1/auth/self")).json()
        assert me["policies"] == ["dispatch-read"]
    # The read is on record with how the caller authenticated, never the credential.
    reads = [r for r in await world.audit(secret="dispatch-db", action="READ")
             if r["actor_id"] == "k8s-api"]  # fmt: skip
    assert reads
    auth = reads[-1]["details"]["auth"]
    assert auth == {"method": "jwt", "accessor": body["id"], "mount": "k8s", "role": "dispatch",
                    "sub": SUB, "iss": world.issuer.url}  # fmt: skip
    everything = json.dumps(await world.audit())
    assert token not in everything
    assert issued not in everything
    assert issued.split("_", 2)[2] not in everything  # srt_<id>_<secret>; the secret may hold "_"


async def test_a_login_token_renews_up_to_its_max_ttl_and_a_static_token_does_not(
    world: World,
) -> None:
    answer = await world.login(world.issuer.token(**K8S_CLAIMS))
    body = answer.json()
    first = body["expires_at"]
    async with world.served.client(body["token"]) as c:
        renewed = await c.post("/v1/auth/self/renew")
        assert renewed.status_code == 200, renewed.text
        assert renewed.json()["expires_at"] >= first
        assert renewed.json()["expires_at"] <= body["max_expires_at"]
    async with world.served.admin() as c:
        static = await c.post("/v1/auth/self/renew")
        assert static.status_code == 400
        assert static.json()["error"]["code"] == "bad_parameter"


async def test_claims_and_globs_pick_the_role_and_the_identity(world: World) -> None:
    es = new_key("ES256")
    world.issuer.keys.insert(0, es)  # published, not current
    try:
        ops = world.issuer.token("alice", key=es, groups=["staff", "ops-oncall"])
        answer = await world.login(ops, role="ops")
        assert answer.status_code == 201, answer.text
        assert answer.json()["identity"] == "staff-alice"
        outsider = world.issuer.token("mallory", key=es, groups=["staff"])
        refused = await world.login(outsider, role="ops")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "role_mismatch"
    finally:
        world.issuer.keys.remove(es)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forged(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(signature)}"


def _truncated(token: str) -> str:
    """``token`` with 40-odd characters cut from its signature, at a length no base64 text has
    (1 more than a multiple of 4): cut anywhere else, the rest of a signature can still decode
    (about one time in eight) and the refusal is then a bad signature, not a malformed token."""
    head, signature = token.rsplit(".", 1)
    keep = len(signature) - 40
    keep -= (keep - 1) % 4
    return f"{head}.{signature[:keep]}"


def bad_tokens(issuer: Issuer) -> dict[str, tuple[str, str, str]]:
    """label -> (token, role, expected error code)."""
    now = int(time.time())
    good = issuer.token(**K8S_CLAIMS)
    public_pem = issuer.current.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {**issuer.claims(), **K8S_CLAIMS}
    stranger = new_key("RS256")
    return {
        "malformed": ("not.a.jwt", "dispatch", "jwt_malformed"),
        "garbage": ("%%%", "dispatch", "jwt_malformed"),
        "truncated": (_truncated(good), "dispatch", "jwt_malformed"),
        "two parts": (good.rsplit(".", 1)[0], "dispatch", "jwt_malformed"),
        "oversized": (good + "A" * 17_000, "dispatch", "jwt_too_large"),
        "wrong audience": (issuer.token(**{**K8S_CLAIMS, "aud": "other"}), "dispatch",
                           "jwt_audience"),
        "wrong issuer": (issuer.token(**{**K8S_CLAIMS, "iss": "https://evil.example"}),
                         "dispatch", "jwt_issuer"),
        "expired": (issuer.token(**K8S_CLAIMS, exp=now - 3600, iat=now - 7200, nbf=now - 7200),
                    "dispatch", "jwt_expired"),
        "not yet valid": (issuer.token(**K8S_CLAIMS, nbf=now + 3600), "dispatch",
                          "jwt_not_yet_valid"),
        "no expiry": (jwt.encode({k: v for k, v in claims.items() if k != "exp"},
                                 issuer.current.private, algorithm="RS256",
                                 headers={"kid": issuer.current.kid}), "dispatch", "jwt_claims"),
        "unknown kid": (issuer.token(**K8S_CLAIMS, key=stranger), "dispatch", "jwt_unknown_kid"),
        "known kid, other key": (jwt.encode(claims, stranger.private, algorithm="RS256",
                                            headers={"kid": issuer.current.kid}),
                                 "dispatch", "jwt_signature"),
        "alg none": (_forged({"alg": "none", "kid": issuer.current.kid}, claims, None),
                     "dispatch", "jwt_algorithm"),
        "HS256 with the public key": (
            _forged({"alg": "HS256", "kid": issuer.current.kid}, claims, public_pem),
            "dispatch", "jwt_algorithm",
        ),
        "RS256 on an ES256-only role": (issuer.token("alice", groups=["ops-1"]), "ops",
                                        "jwt_algorithm"),
        "claims do not match": (issuer.token(**{**K8S_CLAIMS, "kubernetes.io": {
            "namespace": "billing", "serviceaccount": {"name": "api"}}}), "dispatch",
            "role_mismatch"),
        "unknown role": (good, "nobody", "unknown_role"),
    }  # fmt: skip


async def test_every_bad_token_is_a_401_with_its_code_an_audit_row_and_no_token(
    world: World,
) -> None:
    cases = bad_tokens(world.issuer)
    before_tokens = len(await world.app.access.list_tokens())
    before_audit = len(await world.audit(action="AUTHENTICATE", result="FAILURE"))
    for label, (token, role, code) in cases.items():
        answer = await world.login(token, role=role)
        assert answer.status_code == 401, (label, answer.text)
        assert answer.json()["error"]["code"] == code, (label, answer.text)
        assert token[-30:] not in answer.text, label
    assert len(await world.app.access.list_tokens()) == before_tokens  # nothing issued
    failures = await world.audit(action="AUTHENTICATE", result="FAILURE")
    new = failures[: len(failures) - before_audit]
    assert sorted(r["error_code"] for r in new) == sorted(c for _, _, c in cases.values())
    recorded = json.dumps(new)
    for token, _, _ in cases.values():
        assert token[-30:] not in recorded


async def test_a_rotated_key_is_fetched_on_its_unknown_kid(world: World) -> None:
    assert (await world.login(world.issuer.token(**K8S_CLAIMS))).status_code == 201
    world.issuer.rotate("RS256")
    answer = await world.login(world.issuer.token(**K8S_CLAIMS))
    assert answer.status_code == 201, answer.text


async def test_unknown_kids_refetch_the_keys_at_most_once_per_interval(world: World) -> None:
    first = await world.login(world.issuer.token(**K8S_CLAIMS), method="steady")
    assert first.status_code == 201, first.text
    fetched = world.issuer.jwks_requests
    for _ in range(5):
        forged = world.issuer.token(**K8S_CLAIMS, key=new_key("RS256"))
        answer = await world.login(forged, method="steady")
        assert answer.json()["error"]["code"] == "jwt_unknown_kid"
    assert world.issuer.jwks_requests == fetched


@pytest.mark.parametrize("mode", ["down", "slow", "garbage"])
async def test_an_issuer_that_is_down_slow_or_garbled_fails_closed(world: World, mode: str) -> None:
    world.issuer.mode = mode
    before = len(await world.app.access.list_tokens())
    answer = await world.login(world.issuer.token(**K8S_CLAIMS), method=mode)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "jwks_unavailable"
    assert len(await world.app.access.list_tokens()) == before
    rows = await world.audit(action="AUTHENTICATE", result="FAILURE")
    assert rows[0]["error_code"] == "jwks_unavailable"
    assert rows[0]["details"]["mount"] == mode


async def test_failed_logins_are_limited_per_address_and_per_role_never_a_valid_one(
    tmp_path: Path,
) -> None:
    async with run_issuer(tmp_path) as issuer:
        config = tmp_path / "auth.toml"
        config.write_text(auth_toml(issuer))
        # A slow refill (one per 100 s), so no attempt here is let through by elapsed time.
        settings = server_settings("sqlite", tmp_path, auth_config=config,
                                   trusted_proxies="127.0.0.1/32",
                                   login_failures_per_second=0.01)  # fmt: skip
        app = await Strongroom.open(settings)
        try:
            async with serve(app) as served:
                bad = issuer.token(**K8S_CLAIMS, aud="other")
                good = issuer.token(**K8S_CLAIMS)

                async def login(token: str, address: str, role: str = "dispatch") -> int:
                    async with served.client(headers={"X-Forwarded-For": address}) as c:
                        body = {"jwt": token, "role": role, "method": "k8s"}
                        answer = await c.post("/v1/auth/jwt/login", json=body)
                        if answer.status_code == 429:
                            assert int(answer.headers["retry-after"]) >= 1
                        return answer.status_code

                # One address: a burst of 10 refusals, then 429; a valid token still logs in.
                statuses = [await login(bad, "198.51.100.1", "ops") for _ in range(12)]
                assert statuses[:10] == [401] * 10
                assert statuses[-1] == 429
                assert await login(good, "198.51.100.1") == 201
                # One role from many addresses: limited too.
                spread = [await login(bad, f"203.0.113.{i}") for i in range(12)]
                assert spread[:10] == [401] * 10
                assert spread[-1] == 429
                assert await login(good, "203.0.113.200") == 201
                # Throttled attempts leave no audit row each (nobody can flood the log).
                async with served.admin() as c:
                    rows = (
                        await c.get(
                            "/v1/audit/events",
                            params={"action": "AUTHENTICATE", "result": "FAILURE", "limit": "1000"},
                        )
                    ).json()
                assert len(rows) == statuses.count(401) + spread.count(401)
        finally:
            await app.close()


async def test_a_key_vault_sdks_first_unauthenticated_challenge_is_no_failed_login(
    world: World,
) -> None:
    before = len(await world.audit(action="AUTHENTICATE", result="FAILURE"))
    async with world.served.client() as c:
        challenge = await c.get("/secrets/dispatch-db", params={"api-version": "7.5"})
        assert challenge.status_code == 401
        assert challenge.headers["www-authenticate"].startswith("Bearer authorization=")
        assert len(await world.audit(action="AUTHENTICATE", result="FAILURE")) == before
        forged = await c.get("/secrets/dispatch-db", params={"api-version": "7.5"},
                             headers={"Authorization": "Bearer srt_forged"})  # fmt: skip
        assert forged.status_code == 401
    assert len(await world.audit(action="AUTHENTICATE", result="FAILURE")) == before + 1
