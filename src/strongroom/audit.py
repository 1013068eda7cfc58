"""Audit: every operation recorded durably before it answers, group-committed, fail-closed.

``AuditLog`` is the recorder the services use; ``SecretsAudit`` is the seed's query API.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, Self

from strongroom.core.actor import Actor, current_actor, default_actor
from strongroom.core.audit import (
    GENESIS_HASH,
    AuditAction,
    AuditEvent,
    AuditResult,
    ChainKey,
    clean_details,
    clean_text,
)
from strongroom.core.clock import Clock
from strongroom.core.errors import AuditUnavailableError, StrongroomError, ValidationError
from strongroom.core.logging import get_logger
from strongroom.core.metrics import Metrics
from strongroom.db.audit_store import AuditStore, StoredEvent, TrailFilter

if TYPE_CHECKING:
    from strongroom.app import Strongroom
    from strongroom.core.config import Settings

__all__ = ["AuditLog", "Operation", "SecretsAudit"]

log = get_logger("strongroom.audit")
_MAX_BATCH = 1000
_MAX_LIMIT = 10_000
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(slots=True)
class Operation:
    """What an audited block reports about itself before it ends."""

    details: dict[str, Any] = field(default_factory=dict)
    result: AuditResult = AuditResult.SUCCESS
    resource_name: str | None = None
    actor: Actor = field(default_factory=default_actor)
    timestamp: datetime = _NEVER
    started: float = 0.0


def _resource(name: object) -> str | None:
    """Names are recorded in their canonical (lower-case) form, cleaned like any text."""
    if name is None:
        return None
    return clean_text(name.lower() if isinstance(name, str) else repr(name), 256)


class AuditLog:
    """Records events; each caller waits until the batch holding its event is committed."""

    def __init__(
        self,
        store: AuditStore | None,
        key: ChainKey,
        *,
        clock: Clock,
        metrics: Metrics,
        timeout: float = 5.0,
        fail_open: bool = False,
    ) -> None:
        self.store = store
        self.key = key
        self.clock = clock
        self.metrics = metrics
        self.timeout = timeout
        self.fail_open = fail_open
        self._pending: list[tuple[AuditEvent, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.store is not None

    async def open(self) -> None:
        if self.store is not None:
            await self.store.open()

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher}, timeout=self.timeout)
        if self.store is not None:
            await self.store.close()

    # -- recording -------------------------------------------------------------------------

    async def record(self, event: AuditEvent) -> None:
        """Return once ``event`` is committed; raise AuditUnavailableError if it cannot be
        (or log critically and return, when fail-open is configured)."""
        if self.store is None:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((event, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        # No per-call timer: the flusher bounds each batch by the timeout, so a caller waits at
        # most for the batch in flight and its own (twice the timeout when the store hangs).
        try:
            await future
        except AuditUnavailableError as exc:
            reason = str(exc)
            self._failed(event, reason)
            if not self.fail_open:
                raise AuditUnavailableError(
                    f"the audit log is unavailable ({reason}); the operation was refused"
                ) from None

    def _failed(self, event: AuditEvent, reason: str) -> None:
        self.metrics.inc("audit_write_failures_total")
        log.critical(
            "audit write failed" + (" (fail-open: continuing)" if self.fail_open else ""),
            action=event.action.value,
            name=event.resource_name,
            error=reason,
        )

    async def _flush(self) -> None:
        """Write what is pending, one batch at a time, until nothing is."""
        assert self.store is not None  # noqa: S101 (only started when a store exists)
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            self.metrics.set("audit_queue_depth", len(self._pending))
            started = time.perf_counter()
            try:
                await asyncio.wait_for(
                    self.store.append([event for event, _ in batch], self.key), self.timeout
                )
            except (StrongroomError, TimeoutError) as exc:
                reason = "write timed out" if isinstance(exc, TimeoutError) else "write failed"
                error = AuditUnavailableError(f"{reason}: {type(exc).__name__}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            elapsed = time.perf_counter() - started
            self.metrics.inc("audit_events_total", len(batch))
            self.metrics.inc("audit_batches_total")
            self.metrics.inc("audit_write_seconds_total", elapsed)
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    def operation(
        self, action: AuditAction, resource_name: object = None, **details: Any
    ) -> AuditedOperation:
        """Audit the block: SUCCESS when it ends, FAILURE with the error's code when it raises.

        The event is committed before control returns to the caller, so a value read inside the
        block is handed out only once its READ is on record.
        """
        return AuditedOperation(self, action, _resource(resource_name), details)

    def event_for(
        self, op: Operation, action: AuditAction, error: BaseException | None
    ) -> AuditEvent:
        """The event an operation leaves (fields cleaned here, on the hot path, not rebuilt)."""
        code: str | None = None
        message: str | None = None
        if isinstance(error, StrongroomError):
            code, message = error.code, clean_text(str(error))
        elif error is not None:
            code, message = "internal", type(error).__name__  # foreign errors: no message
        actor = op.actor
        return AuditEvent(
            action=action,
            resource_name=op.resource_name,
            timestamp=op.timestamp,
            result=AuditResult.FAILURE if error is not None else op.result,
            actor_id=actor.id,
            actor_ip=actor.ip,
            actor_user_agent=actor.user_agent,
            details=clean_details(op.details),
            error_message=message,
            error_code=code,
            duration_ms=int((time.perf_counter() - op.started) * 1000),
        )


class AuditedOperation:
    """``async with audit.operation(...) as op:`` (a plain class: this runs on every call)."""

    __slots__ = ("_action", "_log", "_op")

    def __init__(
        self, log: AuditLog, action: AuditAction, resource_name: str | None, details: Any
    ) -> None:
        self._log = log
        self._action = action
        self._op = Operation(details=details, resource_name=resource_name)

    async def __aenter__(self) -> Operation:
        op = self._op
        op.actor = current_actor()
        op.timestamp = self._log.clock()
        op.started = time.perf_counter()
        return op

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._log.store is None or (exc is not None and not isinstance(exc, Exception)):
            return  # no audit log, or cancellation / interpreter exit: nothing to record
        await self._log.record(self._log.event_for(self._op, self._action, exc))


class ChainVerifier:
    """Checks a chain one stored event at a time (pure; the caller does the reading)."""

    def __init__(self, key: ChainKey, anchor_seq: int, anchor_hash: bytes) -> None:
        self.key = key
        self.expected_id = anchor_seq + 1
        self.expected_prev = anchor_hash
        self.checked = 0
        self.first_id: int | None = None
        self.last_id = anchor_seq

    def check(self, stored: StoredEvent) -> tuple[int, str] | None:
        """None if ``stored`` extends the chain, else (id, reason) of the first break."""
        if stored.id != self.expected_id:
            if stored.id > self.expected_id:
                return self.expected_id, f"events {self.expected_id}..{stored.id - 1} are missing"
            return stored.id, "event id out of order"
        if stored.prev_hash != self.expected_prev:
            return stored.id, "link to the previous event is broken (event removed or replaced)"
        if self.key.link(self.expected_prev, stored.event, stored.id) != stored.chain_hash:
            return stored.id, "event content does not match its hash (modified or forged)"
        self.expected_id, self.expected_prev = stored.id + 1, stored.chain_hash
        self.checked += 1
        self.first_id = stored.id if self.first_id is None else self.first_id
        self.last_id = stored.id
        return None

    def report(self, broken: tuple[int, str] | None = None) -> dict[str, Any]:
        return {
            "valid": broken is None,
            "checked": self.checked,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "broken_at": broken[0] if broken else None,
            "reason": broken[1] if broken else None,
        }


class SecretsAudit:
    """The seed's audit API: trail, summary, threat detection, integrity, export, retention.

    ``SecretsAudit()`` uses the process default, so it sees what ``SecretsManager()`` did.
    """

    def __init__(self, app: Strongroom | None = None, *, settings: Settings | None = None) -> None:
        self._app = app
        self._settings = settings
        self._owns_app = False

    async def initialize(self) -> None:
        await self._ready()

    async def _ready(self) -> Strongroom:
        from strongroom.app import Strongroom, default_app  # noqa: PLC0415 (services -> wiring)

        if self._app is not None and not self._app.closed:
            return self._app
        if self._settings is not None:
            self._app = await Strongroom.open(self._settings)
            self._owns_app = True
            return self._app
        return await default_app()

    async def close(self) -> None:
        if self._app is not None and self._owns_app:
            await self._app.close()

    async def __aenter__(self) -> Self:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _store(self) -> tuple[Strongroom, AuditStore]:
        app = await self._ready()
        if app.audit.store is None:
            raise AuditUnavailableError("auditing is switched off for this instance")
        return app, app.audit.store

    # -- recording -------------------------------------------------------------------------

    async def log_event(
        self,
        action: AuditAction | str,
        resource_name: str | None = None,
        result: AuditResult | str = AuditResult.SUCCESS,
        *,
        details: dict[str, Any] | None = None,
        error_message: str | None = None,
        duration_ms: int | None = None,
    ) -> None:
        """Record an event for an action taken outside strongroom's own calls."""
        app = await self._ready()
        actor = current_actor()
        try:
            event = AuditEvent.build(
                action=action,
                resource_name=_resource(resource_name),
                timestamp=app.clock(),
                result=result,
                actor_id=actor.id,
                actor_ip=actor.ip,
                actor_user_agent=actor.user_agent,
                details=details,
                error_message=error_message,
                duration_ms=duration_ms,
            )
        except ValueError as exc:
            raise ValidationError(f"invalid audit event: {exc}") from None
        await app.audit.record(event)

    # -- queries ---------------------------------------------------------------------------

    async def get_audit_trail(
        self,
        resource_name: str | None = None,
        action: AuditAction | str | None = None,
        limit: int = 100,
        *,
        actor_id: str | None = None,
        result: AuditResult | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Events newest first, filtered and paginated in SQL."""
        _, store = await self._store()
        where = _trail_filter(resource_name, action, actor_id, result, since, until)
        if not 1 <= limit <= _MAX_LIMIT or offset < 0:
            raise ValidationError(f"limit must be 1-{_MAX_LIMIT} and offset at least 0")
        return [e.to_dict() for e in await store.trail(where, limit, offset)]

    async def count_events(
        self,
        resource_name: str | None = None,
        action: AuditAction | str | None = None,
        *,
        actor_id: str | None = None,
        result: AuditResult | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        _, store = await self._store()
        return await store.count(
            _trail_filter(resource_name, action, actor_id, result, since, until)
        )

    async def get_audit_summary(
        self, resource_name: str | None = None, days: int = 30
    ) -> dict[str, Any]:
        """Totals by action, result, actor and day; unique actors and IPs; failure rate."""
        app, store = await self._store()
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
            raise ValidationError("days must be a whole number from 1 to 3650")
        until = app.clock()
        since = until - timedelta(days=days)
        groups = await store.summary_groups(_resource(resource_name), since)
        by: dict[str, dict[str, int]] = {"action": {}, "result": {}, "actor": {}, "ip": {}}
        per_day: dict[str, dict[str, int]] = {}
        for dimension, key, events, failures in groups:
            if dimension == "day":
                per_day[str(key)] = {"events": events, "failures": failures}
            elif key is not None:
                by[dimension][key] = events
        total = sum(by["result"].values())
        failures = by["result"].get(AuditResult.FAILURE.value, 0)
        return {
            "resource_name": _resource(resource_name),
            "days": days,
            "since": since,
            "until": until,
            "total_events": total,
            "by_action": by["action"],
            "by_result": by["result"],
            "by_actor": dict(sorted(by["actor"].items(), key=lambda kv: (-kv[1], kv[0]))),
            "unique_actors": len(by["actor"]),
            "unique_ips": len(by["ip"]),
            "failure_rate": (failures / total) if total else 0.0,
            "per_day": [{"date": d, **per_day[d]} for d in sorted(per_day)],
        }

    async def detect_suspicious_activity(
        self,
        resource_name: str | None = None,
        failure_threshold: int = 5,
        time_window_minutes: int = 30,
        actor_id: str | None = None,
    ) -> dict[str, Any]:
        """Run every threat rule over the window; ``threats_detected`` counts what they found."""
        from strongroom.threats import detect  # noqa: PLC0415 (keeps audit import light)

        app, store = await self._store()
        return await detect(
            store,
            app.threat_rules,
            now=app.clock(),
            resource_name=_resource(resource_name),
            actor_id=actor_id,
            failure_threshold=failure_threshold,
            window_minutes=time_window_minutes,
        )

    async def verify_integrity(self, *, batch: int = 5000) -> dict[str, Any]:
        """Walk the hash chain; report the first event that was modified, removed or inserted.

        Reads the chain head first, so events appended meanwhile (by any process) are left for
        the next run rather than reported.
        """
        app, store = await self._store()
        state = await store.chain_state()
        anchor_hash = state.anchor_hash if state.anchor_seq else GENESIS_HASH
        verifier = ChainVerifier(app.audit.key, state.anchor_seq, anchor_hash)
        up_to = max(state.last_seq, await store.max_id())
        async for rows in store.scan(state.anchor_seq, up_to, batch):
            for stored in rows:
                if stored.id > state.last_seq:
                    return verifier.report((stored.id, "event is beyond the chain head"))
                broken = verifier.check(stored)
                if broken is not None:
                    return verifier.report(broken)
        if verifier.last_id < state.last_seq:
            missing = (
                verifier.last_id + 1,
                f"events {verifier.last_id + 1}..{state.last_seq} are missing",
            )
            return verifier.report(missing)
        if state.last_seq and verifier.expected_prev != state.last_hash:
            return verifier.report((verifier.last_id, "chain head does not match"))
        return verifier.report()

    async def export_lines(
        self,
        *,
        resource_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        batch: int = 5000,
    ) -> AsyncIterator[str]:
        """Events oldest first as JSON lines (one event a line, control characters escaped)."""
        _, store = await self._store()
        state = await store.chain_state()
        async for rows in store.scan(state.anchor_seq, state.last_seq, batch):
            for stored in rows:
                event = stored.event
                if resource_name is not None and event.resource_name != _resource(resource_name):
                    continue
                if since is not None and event.timestamp < since:
                    continue
                if until is not None and event.timestamp >= until:
                    continue
                record = stored.to_dict()
                record["timestamp"] = event.timestamp.isoformat()
                record["chain_hash"] = stored.chain_hash.hex()
                yield json.dumps(record, ensure_ascii=True, sort_keys=True, default=str)

    async def export(self, destination: IO[str], **filters: Any) -> int:
        """Write JSON lines to an open text stream; returns the number of events."""
        count = 0
        async for line in self.export_lines(**filters):
            destination.write(line + "\n")
            count += 1
        return count

    async def prune(self, older_than: timedelta | datetime) -> dict[str, Any]:
        """Delete events older than a cut-off; the chain stays verifiable from its new start."""
        app, store = await self._store()
        if isinstance(older_than, timedelta):
            cutoff = app.clock() - older_than
        elif isinstance(older_than, datetime) and older_than.tzinfo is not None:
            cutoff = older_than
        else:
            raise ValidationError("older_than must be a timedelta or a timezone-aware datetime")
        async with app.audit.operation(AuditAction.AUDIT_PRUNE) as op:
            deleted, anchor = await store.prune(cutoff)
            op.details.update(pruned=deleted, anchor_seq=anchor)
        return {"pruned": deleted, "anchor_id": anchor, "cutoff": cutoff}


def _trail_filter(
    resource_name: str | None,
    action: AuditAction | str | None,
    actor_id: str | None,
    result: AuditResult | str | None,
    since: datetime | None,
    until: datetime | None,
) -> TrailFilter:
    try:
        return TrailFilter(
            resource_name=_resource(resource_name),
            action=AuditAction(action.upper() if isinstance(action, str) else action)
            if action is not None
            else None,
            actor_id=actor_id,
            result=AuditResult(result.upper() if isinstance(result, str) else result)
            if result is not None
            else None,
            since=since,
            until=until,
        )
    except ValueError:
        raise ValidationError("unknown audit action or result") from None
