"""Policies: which actions an identity may take on which secret names (pure: no I/O).

A policy is a list of grants; a grant names actions and one secret-name pattern
(``*`` and ``?`` wildcards, compared case-insensitively as names are). Nothing is allowed
unless a grant of one of the identity's policies allows it (deny by default). ``admin``
implies every action on its pattern; operations that concern no single secret (tokens,
policies, key rotation, audit-wide queries) need a grant whose pattern is ``*``.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from strongroom.core.errors import ValidationError
from strongroom.core.validation import validate_text

__all__ = [
    "Action",
    "Grant",
    "Policy",
    "allowed",
    "builtin_policies",
    "glob_match",
    "parse_grant",
    "revocation_grant",
    "validate_identity",
    "validate_pattern",
    "validate_policy_name",
]

_IDENTITY = re.compile(r"[0-9A-Za-z._@:-]{1,128}")
_POLICY_NAME = re.compile(r"[0-9A-Za-z._-]{1,64}")
_PATTERN = re.compile(r"[0-9A-Za-z*?-]{1,127}")
MAX_GRANTS = 100


class Action(enum.StrEnum):
    READ = "read"
    LIST = "list"
    WRITE = "write"
    DELETE = "delete"
    ROTATE = "rotate"
    REVOKE_REQUEST = "revoke-request"
    REVOKE_APPROVE = "revoke-approve"
    #: Break-glass: a revocation executed at once, without the configured approvals.
    REVOKE_BREAK_GLASS = "revoke-break-glass"
    AUDIT_READ = "audit-read"
    #: An edge site's credential ships the site's audit journal to the centre (on ``*``).
    EDGE_SYNC = "edge-sync"
    ADMIN = "admin"


@lru_cache(maxsize=4096)
def _matcher(pattern: str) -> re.Pattern[str]:
    """The pattern as a regular expression that cannot backtrack catastrophically.

    A plain ``.*`` per star lets a pattern such as twelve ``*-`` then ``prod`` take minutes on
    one 81-character name. The standard library's glob translation puts every star but the
    last in an atomic group (each segment is matched once, leftmost, never retried), so a match
    costs at most the name's length times the pattern's. Patterns hold only letters, digits,
    ``-``, ``*`` and ``?`` (checked in ``_grant``), so no ``[...]`` class ever reaches it.
    """
    return re.compile(fnmatch.translate(pattern.lower()))


def glob_match(pattern: str, name: str) -> bool:
    """True if ``name`` matches ``pattern`` (``*`` and ``?``; case-insensitive, as names)."""
    return _matcher(pattern).match(name.lower()) is not None


@dataclass(frozen=True, slots=True)
class Grant:
    """``actions`` on secrets whose name matches ``pattern``."""

    actions: frozenset[Action]
    pattern: str

    def permits(self, action: Action, name: str | None) -> bool:
        if action not in self.actions and Action.ADMIN not in self.actions:
            return False
        if name is None:
            return self.pattern == "*"
        return glob_match(self.pattern, name)

    def to_dict(self) -> dict[str, Any]:
        return {"actions": sorted(a.value for a in self.actions), "pattern": self.pattern}


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    grants: tuple[Grant, ...]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "grants": [g.to_dict() for g in self.grants],
        }

    @classmethod
    def build(
        cls, name: str, grants: Sequence[Mapping[str, Any] | str], description: str = ""
    ) -> Policy:
        """A validated policy from grants given as dicts or ``"read,list:app-*"`` strings."""
        validate_policy_name(name)
        validate_text(description, "a policy description", 512)
        if not grants:
            raise ValidationError("a policy needs at least one grant")
        if len(grants) > MAX_GRANTS:
            raise ValidationError(f"a policy holds at most {MAX_GRANTS} grants")
        built = tuple(
            parse_grant(g) if isinstance(g, str) else _grant(g.get("actions"), g.get("pattern"))
            for g in grants
        )
        return cls(name=name, grants=built, description=description)


def validate_pattern(pattern: object) -> str:
    """A secret name with ``*`` and ``?`` wildcards (what grants and bindings are made of)."""
    if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
        raise ValidationError(
            "a secret-name pattern is a secret name with * and ? wildcards (1-127 characters)"
        )
    return pattern


def _grant(actions: object, pattern: object) -> Grant:
    checked = validate_pattern(pattern)
    if isinstance(actions, str) or not isinstance(actions, Iterable):
        raise ValidationError("a grant's actions are a list of action names")
    chosen: set[Action] = set()
    for action in actions:
        try:
            chosen.add(Action(action))
        except ValueError:
            known = ", ".join(a.value for a in Action)
            raise ValidationError(f"unknown action {str(action)[:40]!r}; known: {known}") from None
    if not chosen:
        raise ValidationError("a grant names at least one action")
    return Grant(actions=frozenset(chosen), pattern=checked)


def parse_grant(text: str) -> Grant:
    """``"read,list:app-*"``: actions, a colon, a name pattern."""
    actions, sep, pattern = text.partition(":")
    if not sep:
        raise ValidationError("a grant looks like ACTION[,ACTION...]:PATTERN, e.g. read,list:app-*")
    return _grant([a.strip() for a in actions.split(",") if a.strip()], pattern.strip())


def allowed(policies: Iterable[Policy], action: Action, name: str | None) -> bool:
    """True if any grant of ``policies`` permits ``action`` on ``name`` (None: every secret)."""
    return any(g.permits(action, name) for p in policies for g in p.grants)


def revocation_grant(*, immediate: bool) -> Action:
    """The grant a revocation request needs. Break-glass (``immediate``: executed at once,
    skipping the approvals) has its own, so asking for a revocation does not imply forcing
    one."""
    return Action.REVOKE_BREAK_GLASS if immediate else Action.REVOKE_REQUEST


def validate_identity(identity: object) -> str:
    if not isinstance(identity, str) or not _IDENTITY.fullmatch(identity):
        raise ValidationError("an identity is 1-128 characters of letters, digits and . _ @ : -")
    return identity


def validate_policy_name(name: object) -> str:
    if not isinstance(name, str) or not _POLICY_NAME.fullmatch(name):
        raise ValidationError("a policy name is 1-64 characters of letters, digits and . _ -")
    return name


def builtin_policies() -> dict[str, Policy]:
    """Policies every store has; they cannot be changed or deleted."""
    every = frozenset(Action)
    return {
        "admin": Policy("admin", (Grant(every, "*"),), "every action on every secret"),
        "auditor": Policy(
            "auditor",
            (Grant(frozenset({Action.AUDIT_READ, Action.LIST}), "*"),),
            "read the audit trail and list secrets (never values)",
        ),
    }
