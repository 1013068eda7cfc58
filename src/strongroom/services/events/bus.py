"""Events for the services that use a secret: subscriptions (webhook URL + name pattern + event
kinds), signed deliveries, and expiry warnings sent once per version (and audited, so they
reach the change feed too).

Deliveries run in the background: a write, a rotation or a revocation never waits for a
subscriber. Each leaves no sooner than the stores' read window after the change
(``hold_seconds``, see :mod:`strongroom.backends.recent_rows`), so a subscriber that reads the
secret back reaches a worker that already sees the change, whichever worker answers. Each
subscription has its own signing key, derived from the master key and the subscription's id
(so nothing secret is stored), and shown once when it is created.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, hmac

from strongroom.core.audit import AuditAction
from strongroom.core.clock import Clock
from strongroom.core.logging import get_logger
from strongroom.services.notify import Notification, UrlPolicy, WebhookNotifier

if TYPE_CHECKING:
    from strongroom.db.subscription_store import SubscriptionStore
    from strongroom.services.audit.log import AuditLog

__all__ = ["EVENT_KINDS", "EventBus"]

log = get_logger("strongroom.events")

EVENT_KINDS = frozenset(
    {
        "secret.created", "secret.updated", "secret.rotated", "secret.revoked",
        "secret.near_expiry", "secret.expired", "rotation.failed",
    }
)  # fmt: skip
_CACHE_SECONDS = 5.0


class EventBus:
    """Matches events to subscriptions and delivers them in the background."""

    # ``store`` gives the subscription store when first needed: a process that changes no
    # secret never builds it (see services.state_stores).

    def __init__(
        self,
        store: Callable[[], SubscriptionStore],
        key_root: bytes,
        *,
        policy: UrlPolicy,
        clock: Clock,
        timeout: float,
        audit: AuditLog | None = None,
        hold_seconds: float = 0.0,
    ) -> None:
        self._store = store
        self.hold_seconds = hold_seconds
        #: Where expiry notices are recorded, which puts them on the change feed.
        self.audit = audit
        self._root = key_root
        self.policy = policy
        self.clock = clock
        self.timeout = timeout
        self._cache: tuple[float, list[dict[str, Any]]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered: list[dict[str, Any]] = []  # recent outcomes, for status pages and tests

    @property
    def store(self) -> SubscriptionStore:
        return self._store()

    def signing_key(self, subscription_id: int) -> bytes:
        mac = hmac.HMAC(self._root, hashes.SHA256())
        mac.update(f"subscription/{subscription_id}".encode())
        return mac.finalize()

    def forget(self) -> None:
        self._cache = None

    async def _subscriptions(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        if self._cache is None or now - self._cache[0] > _CACHE_SECONDS:
            self._cache = (now, await self.store.list_all())
        return self._cache[1]

    async def emit(self, kind: str, name: str, **fields: Any) -> None:
        """Send ``kind`` about secret ``name`` to every matching subscription (in the
        background; fields name the secret, version and actor, never a value)."""
        targets = [
            s
            for s in await self._subscriptions()
            if kind in s["events"] and fnmatch.fnmatchcase(name.lower(), s["pattern"])
        ]
        if not targets:
            return
        notification = Notification(
            kind=kind,
            subject=f"strongroom: {kind} {name}",
            priority="high" if kind in ("secret.revoked", "rotation.failed") else "normal",
            fields={"secret_name": name, **fields},
            occurred_at=self.clock(),
        )
        for sub in targets:
            task = asyncio.get_running_loop().create_task(self._deliver(sub, notification))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, sub: dict[str, Any], n: Notification) -> None:
        if self.hold_seconds > 0:
            await asyncio.sleep(self.hold_seconds)
        notifier = WebhookNotifier(
            [sub["url"]],
            signing_key=self.signing_key(sub["id"]),
            timeout=self.timeout,
            url_policy=self.policy,
            clock=self.clock,
        )
        try:
            outcomes = await notifier.deliver(n)
        except Exception as exc:  # a subscriber's failure is logged, never the caller's
            log.warning("event not delivered", kind=n.kind, error=type(exc).__name__)
            return
        for outcome in outcomes:
            self.delivered.append(
                {"subscription_id": sub["id"], "kind": n.kind, **outcome.to_dict()}
            )
        del self.delivered[:-1000]

    async def drain(self) -> None:
        """Wait for deliveries in flight (at shutdown, and in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def check_expiry(self, secrets: Iterable[Any], warning: timedelta) -> int:
        """Warn once per version about secrets expiring within ``warning``, and once more when
        they have expired; returns how many notices were sent."""
        now = self.clock()
        sent = 0
        for props in secrets:
            expires = props.expires_at
            if expires is None or expires - now > warning:
                continue
            kind = "secret.expired" if expires <= now else "secret.near_expiry"
            if await self.store.claim_notice(props.name.lower(), props.version, kind, now):
                if self.audit is not None:
                    async with self.audit.operation(
                        AuditAction.EXPIRY, props.name, operation=kind.removeprefix("secret."),
                        version=props.version, expires_at=expires,
                    ):  # fmt: skip
                        pass
                await self.emit(
                    kind, props.name, version=props.version, expires_at=expires.isoformat()
                )
                sent += 1
        return sent
