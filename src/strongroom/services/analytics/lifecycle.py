"""Lifecycle and cost: what is stored but not used, and what Key Vault operations cost.

- secrets never read in N days (none of their reads in the window, and older than it);
- versions kept past need (older, still-enabled versions that outlived the grace period);
- secrets never rotated (one version, older than their type's policy);
- tokens unused (their identity left no audit event since the token was made) and tokens
  that never expire;
- for the Azure profile, Key Vault operations estimated from the audit's operation counts at a
  price per 10,000 operations, with what the read-through cache saved.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from strongroom.core.rotation import policy_days
from strongroom.services.analytics.queries import analyse

if TYPE_CHECKING:
    from strongroom.core.models import VersionProperties
    from strongroom.services.wiring import Strongroom

__all__ = ["CostEstimate", "LifecycleOptions", "estimate_cost", "lifecycle"]

#: Actions that reach the secret store (each one Key Vault operation on the Azure profile).
STORE_ACTIONS = frozenset(
    {"CREATE", "READ", "UPDATE", "DELETE", "LIST", "DESCRIBE", "RECOVER", "PURGE", "ROTATE",
     "REVOKE"}
)  # fmt: skip
#: Azure Key Vault's list price for secret operations (standard tier), USD per 10,000.
DEFAULT_PRICE_PER_10K = 0.03
_VERSION_LISTING_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class LifecycleOptions:
    unused_days: int = 90
    grace_hours: int = 24
    window_days: int = 30
    price_per_10k: float = DEFAULT_PRICE_PER_10K


@dataclass(frozen=True, slots=True)
class CostEstimate:
    window_days: int
    operations: dict[str, int]
    store_operations: int
    cache_hits: int
    cache_misses: int
    price_per_10k: float

    @property
    def hit_ratio(self) -> float:
        total = self.cache_hits + self.cache_misses
        return self.cache_hits / total if total else 0.0

    @property
    def reads(self) -> int:
        return self.operations.get("READ", 0)

    @property
    def vault_operations(self) -> int:
        """Operations that reached the vault: reads the cache answered did not."""
        return self.store_operations - round(self.reads * self.hit_ratio)

    def cost(self, operations: int) -> float:
        return operations / 10_000 * self.price_per_10k

    def to_dict(self) -> dict[str, Any]:
        saved = self.store_operations - self.vault_operations
        return {
            "window_days": self.window_days,
            "operations": self.operations,
            "store_operations": self.store_operations,
            "cache_hit_ratio": round(self.hit_ratio, 4),
            "cache_hits_counted": self.cache_hits,
            "vault_operations": self.vault_operations,
            "operations_saved_by_cache": saved,
            "price_per_10k": self.price_per_10k,
            "cost_without_cache": round(self.cost(self.store_operations), 4),
            "cost": round(self.cost(self.vault_operations), 4),
            "saved": round(self.cost(saved), 4),
            "monthly_cost": round(self.cost(self.vault_operations) * 30 / self.window_days, 4),
        }


async def estimate_cost(app: Strongroom, *, window_days: int, price_per_10k: float) -> CostEstimate:
    """Key Vault operations over the window from the audit's counts. The cache's hit ratio is
    this process's since it started (the audit records every read, hit or miss)."""
    now = app.clock()
    # The window includes this instant: events stamped "now" count.
    rows = await analyse(
        app, "console_operation_counts", since=now - timedelta(days=window_days),
        until=now + timedelta(microseconds=1),
    )  # fmt: skip
    operations: dict[str, int] = {}
    for row in rows:
        operations[row["action"]] = operations.get(row["action"], 0) + int(row["count"])
    return CostEstimate(
        window_days=window_days,
        operations=dict(sorted(operations.items())),
        store_operations=sum(n for a, n in operations.items() if a in STORE_ACTIONS),
        cache_hits=int(app.metrics.value("cache_hits_total")),
        cache_misses=int(app.metrics.value("cache_misses_total")),
        price_per_10k=price_per_10k,
    )


async def _versions(app: Strongroom, names: list[str]) -> dict[str, list[VersionProperties]]:
    gate = asyncio.Semaphore(_VERSION_LISTING_CONCURRENCY)
    found: dict[str, list[VersionProperties]] = {}

    async def one(name: str) -> None:
        async with gate:
            found[name] = await app.store.list_versions(name)

    async with asyncio.TaskGroup() as group:
        for name in names:
            group.create_task(one(name))
    return found


def _stale_versions(
    versions: list[VersionProperties], now: datetime, grace: timedelta
) -> list[VersionProperties]:
    """Older versions still enabled (readable by id) after the grace period of their
    successor; revoked or disabled ones are not counted."""
    ordered = sorted(versions, key=lambda v: v.created_at)
    stale = []
    for older, newer in itertools.pairwise(ordered):
        if older.enabled and older.revoked_at is None and newer.created_at + grace <= now:
            stale.append(older)
    return stale


async def lifecycle(app: Strongroom, options: LifecycleOptions | None = None) -> dict[str, Any]:
    """Everything the lifecycle view and report show, in one dict."""
    options = options or LifecycleOptions()
    now = app.clock()
    since = now - timedelta(days=options.unused_days)
    secrets = await app.store.list_secrets()
    exposure = {
        str(r["resource_name"]): r for r in await analyse(app, "console_exposure", since=since)
    }
    versions = await _versions(app, [p.name for p in secrets])
    grace = timedelta(hours=options.grace_hours)
    never_read, kept, never_rotated = [], [], []
    for props in secrets:
        reads = int(exposure.get(props.name.lower(), {}).get("reads") or 0)
        history = versions.get(props.name, [])
        first = min((v.created_at for v in history), default=props.created_at)
        if reads == 0 and first <= since:
            never_read.append({"name": props.name, "secret_type": props.secret_type.value,
                               "created_at": first})  # fmt: skip
        stale = _stale_versions(history, now, grace)
        if stale:
            kept.append({"name": props.name, "versions": len(history), "stale": len(stale),
                         "oldest": min(v.created_at for v in stale)})  # fmt: skip
        days = policy_days(props.secret_type)
        if len(history) <= 1 and (now - first).days >= days:
            never_rotated.append({"name": props.name, "secret_type": props.secret_type.value,
                                  "age_days": (now - first).days, "policy_days": days})  # fmt: skip
    tokens = await token_usage(app)
    cost = None
    if app.profile == "azure":
        cost = (
            await estimate_cost(
                app, window_days=options.window_days, price_per_10k=options.price_per_10k
            )
        ).to_dict()
    return {
        "computed_at": now,
        "unused_days": options.unused_days,
        "secrets": len(secrets),
        "never_read": never_read,
        "versions_kept": kept,
        "never_rotated": never_rotated,
        "tokens_unused": [t for t in tokens if t["live"] and not t["used"]],
        "tokens_never_expiring": [t for t in tokens if t["live"] and t["expires_at"] is None],
        "cost": cost,
    }


async def token_usage(app: Strongroom) -> list[dict[str, Any]]:
    """Every token with whether its identity acted since the token was made. The audit names
    identities, not tokens, so an identity with several tokens counts as using all of them."""
    tokens = await app.access.list_tokens()
    if not tokens:
        return []
    now = app.clock()
    oldest = min(t.created_at for t in tokens)
    rows = await analyse(app, "console_actor_activity", since=oldest)
    last_seen = {str(r["actor_id"]): r["last_seen"] for r in rows}
    found = []
    for token in tokens:
        seen = last_seen.get(token.identity)
        live = token.revoked_at is None and (token.expires_at is None or token.expires_at > now)
        found.append({
            "id": token.id,
            "identity": token.identity,
            "description": token.description,
            "created_at": token.created_at,
            "expires_at": token.expires_at,
            "live": live,
            "last_seen": seen,
            "used": seen is not None and seen >= token.created_at,
        })  # fmt: skip
    return found
