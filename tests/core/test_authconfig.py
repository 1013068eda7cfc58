"""The auth configuration: what a file may say, and the pure claim matching of roles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from strongroom.core.authconfig import (
    claim_value,
    claims_match,
    identity_for,
    load_auth_config,
    parse_auth_config,
)
from strongroom.core.errors import ConfigurationError


def config(**role: Any) -> dict[str, Any]:
    base_role = {"identity": "svc-{sub}", "claims": {"sub": "svc-*"}, **role}
    return {"jwt": {"k8s": {"issuer": "https://issuer.example", "audiences": ["strongroom"],
                            "jwks_url": "https://issuer.example/keys",
                            "roles": {"svc": base_role}}}}  # fmt: skip


def test_a_valid_configuration_parses_with_defaults() -> None:
    method = parse_auth_config(config()).jwt["k8s"]
    role = method.roles["svc"]
    assert (role.ttl_seconds, role.max_ttl_seconds) == (3600, 86400)
    assert role.algorithms == ("RS256", "ES256")
    assert method.jwks_max_age_seconds == 3600


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"algorithms": ["HS256"]}, "no HMAC"),
        ({"algorithms": ["none"]}, "no HMAC"),
        ({"claims": {}}, "bind at least one claim"),
        ({"ttl_seconds": 7200, "max_ttl_seconds": 3600}, "exceeds"),
        ({"identity": "bad name!"}, "identity"),
        ({"surprise": 1}, "unknown keys"),
    ],
)
def test_a_role_that_could_not_work_is_refused_at_start_up(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises((ConfigurationError, ValueError), match=message):
        parse_auth_config(config(**change))


def test_keys_come_from_exactly_one_https_source() -> None:
    both = config()
    both["jwt"]["k8s"]["discovery"] = True
    with pytest.raises(ConfigurationError, match="exactly one"):
        parse_auth_config(both)
    plain = config()
    plain["jwt"]["k8s"]["jwks_url"] = "http://issuer.example/keys"
    with pytest.raises(ConfigurationError, match="https"):
        parse_auth_config(plain)


def test_a_file_that_is_not_toml_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "auth.toml"
    path.write_text("[jwt\n")
    with pytest.raises(ConfigurationError, match="not TOML"):
        load_auth_config(path)
    assert load_auth_config(None).jwt == {}


def test_claims_match_exactly_by_glob_in_lists_and_nested() -> None:
    role = parse_auth_config(config(claims={
        "sub": "system:serviceaccount:dispatch:*", "groups": ["ops", "dispatch-*"],
        "kubernetes.io/namespace": "dispatch",
    })).jwt["k8s"].roles["svc"]  # fmt: skip
    claims = {"sub": "system:serviceaccount:dispatch:api", "groups": ["staff", "dispatch-rw"],
              "kubernetes.io": {"namespace": "dispatch"}}  # fmt: skip
    assert claims_match(role, claims)
    assert not claims_match(role, {**claims, "groups": ["staff"]})
    assert not claims_match(role, {**claims, "sub": "system:serviceaccount:billing:api"})
    assert not claims_match(role, {**claims, "kubernetes.io": {"namespace": "billing"}})
    assert not claims_match(role, {k: v for k, v in claims.items() if k != "groups"})
    assert not claims_match(role, {**claims, "sub": {"nested": "object"}})
    assert claim_value(claims, "kubernetes.io/namespace") == "dispatch"


def test_glob_brackets_are_literal_and_case_matters() -> None:
    role = parse_auth_config(config(claims={"sub": "svc-[a]*"})).jwt["k8s"].roles["svc"]
    assert claims_match(role, {"sub": "svc-[a]1"})
    assert not claims_match(role, {"sub": "svc-a1"})
    upper = parse_auth_config(config()).jwt["k8s"].roles["svc"]
    assert not claims_match(upper, {"sub": "SVC-1"})


def test_the_identity_is_filled_from_claims_and_never_malformed() -> None:
    role = parse_auth_config(config()).jwt["k8s"].roles["svc"]
    assert identity_for(role, {"sub": "svc-1"}) == "svc-svc-1"
    assert identity_for(role, {"sub": "svc 1/../admin"}) is None  # not an identity's shape
    assert identity_for(role, {}) is None


def cert_config(**rule: Any) -> dict[str, Any]:
    base = {"ca_file": "ca.pem", "identity": "terminal-{cn}", "policies": ["terminal-read"],
            "match": {"dns": "*.terminals.fleet.example"}, **rule}  # fmt: skip
    return {"cert": {"terminals": base}}


def test_a_certificate_rule_matches_cn_and_sans() -> None:
    rule = parse_auth_config(cert_config(match={"dns": "*.terminals.fleet.example",
                                                "cn": "term-*"})).cert["terminals"]  # fmt: skip
    fields = {"cn": "term-7", "dns": ["term-7.terminals.fleet.example"], "uri": [], "email": []}
    assert claims_match(rule, fields)
    assert identity_for(rule, fields) == "terminal-term-7"
    assert not claims_match(rule, {**fields, "dns": ["term-7.evil.example"]})
    assert not claims_match(rule, {**fields, "cn": "console-1"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"match": {}}, "match at least one"),
        ({"match": {"serial": "1"}}, "match at least one"),
        ({"ca_file": ""}, "ca_file"),
        ({"identity": "no spaces allowed"}, "identity"),
    ],
)
def test_a_certificate_rule_that_could_not_work_is_refused(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises((ConfigurationError, ValueError), match=message):
        parse_auth_config(cert_config(**change))
