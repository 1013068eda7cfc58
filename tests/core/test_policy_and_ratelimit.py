"""Policies (deny by default, patterns, admin) and the token bucket: pure rules, no I/O."""

from __future__ import annotations

import pytest

from strongroom.core.errors import ValidationError
from strongroom.core.policy import (
    MAX_GRANTS,
    Action,
    Policy,
    allowed,
    builtin_policies,
    parse_grant,
    revocation_grant,
)
from strongroom.core.ratelimit import RateLimiter


def test_nothing_is_allowed_without_a_grant() -> None:
    assert not allowed([], Action.READ, "anything")
    empty_pattern = Policy.build("p", ["read:other-*"])
    assert not allowed([empty_pattern], Action.READ, "dispatch-db")


def test_a_grant_allows_its_actions_on_matching_names_case_insensitively() -> None:
    policy = Policy.build("dispatch", ["read,list:Dispatch-*"])
    assert allowed([policy], Action.READ, "dispatch-db")
    assert allowed([policy], Action.LIST, "DISPATCH-radio")
    assert not allowed([policy], Action.WRITE, "dispatch-db")
    assert not allowed([policy], Action.READ, "billing-db")
    assert not allowed([policy], Action.READ, "xdispatch-db")  # anchored at both ends


def test_question_mark_matches_one_character() -> None:
    policy = Policy.build("p", ["read:key-?"])
    assert allowed([policy], Action.READ, "key-1")
    assert not allowed([policy], Action.READ, "key-10")


def test_admin_implies_every_action_on_its_pattern_only() -> None:
    scoped = Policy.build("scoped-admin", ["admin:team-*"])
    assert allowed([scoped], Action.DELETE, "team-db")
    assert allowed([scoped], Action.REVOKE_APPROVE, "team-db")
    assert not allowed([scoped], Action.READ, "other-db")


def test_operations_on_every_secret_need_the_star_pattern() -> None:
    assert not allowed([Policy.build("p", ["audit-read:app-*"])], Action.AUDIT_READ, None)
    assert allowed([Policy.build("p", ["audit-read:*"])], Action.AUDIT_READ, None)
    assert allowed([builtin_policies()["admin"]], Action.ADMIN, None)
    assert not allowed([builtin_policies()["auditor"]], Action.READ, "any")


@pytest.mark.parametrize(
    "grant",
    ["read", "read:", ":app-*", "fly:app-*", "read:app_*", "read:app-*;drop", "read:" + "a" * 128],
)
def test_malformed_grants_are_refused(grant: str) -> None:
    with pytest.raises(ValidationError):
        parse_grant(grant)


def test_policy_names_and_grant_counts_are_checked() -> None:
    with pytest.raises(ValidationError):
        Policy.build("bad name", ["read:*"])
    with pytest.raises(ValidationError):
        Policy.build("p", [])
    with pytest.raises(ValidationError):
        Policy.build("p", ["read:*"] * 101)
    policy = Policy.build("p", [{"actions": ["read", "list"], "pattern": "a-*"}])
    assert policy.to_dict()["grants"] == [{"actions": ["list", "read"], "pattern": "a-*"}]


def test_the_built_in_policies_grant_what_they_say() -> None:
    admin, auditor = builtin_policies()["admin"], builtin_policies()["auditor"]
    assert admin.to_dict() == {
        "name": "admin",
        "description": "every action on every secret",
        "grants": [{"actions": sorted(a.value for a in Action), "pattern": "*"}],
    }
    assert auditor.to_dict() == {
        "name": "auditor",
        "description": "read the audit trail and list secrets (never values)",
        "grants": [{"actions": ["audit-read", "list"], "pattern": "*"}],
    }
    assert allowed([auditor], Action.AUDIT_READ, "any-secret")
    assert allowed([auditor], Action.AUDIT_READ, None)  # the whole trail
    assert not allowed([auditor], Action.WRITE, "any-secret")


def test_a_policy_keeps_its_description_within_its_limit() -> None:
    assert Policy.build("p", ["read:*"]).description == ""
    kept = Policy.build("p", ["read:*"], description="d" * 512)
    assert kept.to_dict()["description"] == "d" * 512
    with pytest.raises(ValidationError, match="a policy description must be text of at most 512"):
        Policy.build("p", ["read:*"], description="d" * 513)


def test_a_policy_may_hold_exactly_the_most_grants() -> None:
    assert len(Policy.build("p", ["read:*"] * MAX_GRANTS).grants) == MAX_GRANTS


def test_grant_errors_say_what_is_wrong() -> None:
    with pytest.raises(ValidationError, match="list of action names"):
        Policy.build("p", [{"actions": "read", "pattern": "*"}])  # a string, not a list
    with pytest.raises(ValidationError) as unknown:
        Policy.build("p", [{"actions": ["fly"], "pattern": "*"}])
    assert "known: " + ", ".join(a.value for a in Action) in str(unknown.value)
    with pytest.raises(ValidationError, match="secret-name pattern"):
        parse_grant("read:app:x")  # the actions end at the first colon


def test_break_glass_needs_its_own_grant() -> None:
    assert revocation_grant(immediate=True) is Action.REVOKE_BREAK_GLASS
    assert revocation_grant(immediate=False) is Action.REVOKE_REQUEST


def test_bucket_allows_a_burst_then_waits_for_refill() -> None:
    limiter = RateLimiter(rate=10, burst=3)
    assert [limiter.take("alice", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("alice", 0.0)
    assert wait == pytest.approx(0.1)
    assert limiter.take("bob", 0.0) == 0.0  # each key has its own bucket
    assert limiter.take("alice", 0.1) == 0.0  # one token back after 1/rate seconds
    assert limiter.peek("alice", 0.1) > 0


def test_an_idle_period_refills_no_more_than_the_burst() -> None:
    limiter = RateLimiter(rate=10, burst=3)
    assert limiter.take("alice", 0.0) == 0.0
    waits = [limiter.take("alice", 3600.0) for _ in range(10)]  # idle for an hour
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert all(wait > 0 for wait in waits[3:])
    assert limiter.peek("alice", 3600.0) > 0
    assert limiter.peek("bob", 3600.0) == 0.0  # a key never seen may send


def test_peek_reports_the_wait_without_spending_a_token() -> None:
    limiter = RateLimiter(rate=2, burst=2)
    assert [limiter.take("k", 0.0) for _ in range(2)] == [0.0, 0.0]
    assert limiter.peek("k", 0.25) == pytest.approx(0.25)  # half a token back, half to go
    assert limiter.peek("k", 0.75) == 0.0  # a token and a half: may send
    assert limiter.peek("k", 1000.0) == 0.0
    assert limiter.take("k", 1000.0) == 0.0
    assert limiter.take("k", 1000.0) == 0.0
    assert limiter.take("k", 1000.0) == pytest.approx(0.5)  # burst 2: the third waits


def test_the_wait_counts_the_part_of_a_token_already_back() -> None:
    limiter = RateLimiter(rate=10, burst=1)
    assert limiter.take("k", 0.0) == 0.0
    assert limiter.take("k", 0.05) == pytest.approx(0.05)  # half a token back
    slow = RateLimiter(rate=0.5, burst=1)  # one request every two seconds
    assert slow.take("k", 0.0) == 0.0
    assert slow.peek("k", 1.0) == pytest.approx(1.0)


def test_eviction_drops_refilled_buckets_and_keeps_draining_ones() -> None:
    limiter = RateLimiter(rate=2, burst=1, max_keys=2)
    assert limiter.take("full", 99.5) == 0.0  # exactly one token back by 100.0: full again
    assert limiter.take("draining", 99.9) == 0.0  # 0.2 of a token back by 100.0
    assert limiter.take("new", 100.0) == 0.0  # at the cap: the full bucket makes room
    assert limiter.take("draining", 100.0) == pytest.approx(0.4)  # still owes what it spent


def test_at_the_cap_with_every_bucket_draining_all_are_dropped() -> None:
    """Memory stays bounded however many keys send: the buckets start over instead."""
    limiter = RateLimiter(rate=1, burst=1, max_keys=2)
    assert limiter.take("a", 0.0) == 0.0
    assert limiter.take("b", 0.0) == 0.0
    assert limiter.take("c", 0.5) == 0.0
    assert limiter.take("a", 0.5) == 0.0  # a's bucket was dropped, not kept half-empty


def test_the_default_cap_is_one_hundred_thousand_keys() -> None:
    limiter = RateLimiter(rate=1, burst=1)
    for key in range(100_000):
        limiter.take(str(key), 0.0)
    assert limiter.take("0", 0.5) > 0  # under the cap: its bucket is kept
    assert limiter.take("one-more", 0.5) == 0.0  # the cap: every bucket is draining, dropped
    assert limiter.take("1", 0.5) == 0.0


def test_a_zero_rate_turns_the_limit_off() -> None:
    limiter = RateLimiter(rate=0, burst=1)
    assert not limiter.enabled
    assert all(limiter.take("k", 0.0) == 0.0 for _ in range(1000))


def test_full_buckets_are_evicted_when_there_are_too_many_keys() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_keys=2)
    limiter.take("a", 0.0)
    limiter.take("b", 0.0)
    limiter.take("c", 100.0)  # a and b refilled long ago: dropped, c kept
    assert limiter.take("c", 100.0) > 0
    assert limiter.take("a", 100.0) == 0.0


_WORST_CASE = (
    "from strongroom.core.policy import Action, Policy, allowed\n"
    "policy = Policy.build('p', ['read:' + '*-' * 60 + 'prod'])\n"
    "assert not allowed([policy], Action.READ, 'a-' * 63 + 'x')\n"
    "assert allowed([policy], Action.READ, 'a-' * 60 + 'prod')\n"
    "print('matched')\n"
)


def test_a_pattern_built_to_backtrack_matches_at_once() -> None:
    """Sixty ``*-`` then ``prod`` against a 127-character name: a backtracking matcher tries
    more combinations than it could finish before the sun goes out. Run in a child process,
    because a regular expression stuck in C cannot be interrupted from Python: the test waits
    for it (generously) and fails if it does not come back."""
    import subprocess
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-c", _WORST_CASE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("matching one name against one policy pattern did not finish")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "matched"


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "anything", True),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "aXbY", False),
        ("*-prod", "team-prod", True),
        ("*-prod", "team-prod-x", False),
        ("?-*", "a-", True),
        ("?-*", "-", False),
        ("*a*a*a", "aaa", True),
        ("*a*a*a", "aa", False),
        ("team-*-db", "TEAM-x-DB", True),
    ],
)
def test_patterns_match_as_globs(pattern: str, name: str, expected: bool) -> None:
    assert allowed([Policy.build("p", [f"read:{pattern}"])], Action.READ, name) is expected
