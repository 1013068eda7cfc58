"""SecretsAudit: the seed's audit API (trail, summary, threats, integrity, export, retention)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import IO, Any

from strongroom.core.actor import current_actor
from strongroom.core.anchors import ANCHOR_CHAIN, chain_base
from strongroom.core.audit import AuditAction, AuditEvent, AuditResult
from strongroom.core.edge_journal import EDGE_DETAIL_FIELDS
from strongroom.core.errors import AuditUnavailableError, ConfigurationError, ValidationError
from strongroom.core.validation import validate_aware, validate_text
from strongroom.db.audit_store import AuditStore, StoredEvent, TrailFilter
from strongroom.services.audit.checkpoints import SinkContents
from strongroom.services.audit.log import resource_key
from strongroom.services.audit.threats import detect
from strongroom.services.audit.verify import PARALLEL_FROM, verify_log
from strongroom.services.facade import StrongroomFacade
from strongroom.services.wiring import Strongroom

__all__ = ["SecretsAudit"]

_MAX_LIMIT = 10_000


class SecretsAudit(StrongroomFacade):
    """The seed's audit API: trail, summary, threat detection, integrity, export, retention.

    ``SecretsAudit()`` uses the process default, so it sees what ``SecretsManager()`` did.
    """

    _remote_counterpart = "strongroom.services.remote.audit:RemoteSecretsAudit"

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
                resource_name=resource_key(resource_name),
                timestamp=app.clock(),
                result=result,
                actor_id=actor.id,
                actor_ip=actor.ip,
                actor_user_agent=actor.user_agent,
                # Where an edge event came from is the centre's to say, never a caller's.
                details={k: v for k, v in (details or {}).items() if k not in EDGE_DETAIL_FIELDS},
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
        actor_ip: str | None = None,
    ) -> list[dict[str, Any]]:
        """Events newest first, filtered and paginated in SQL."""
        _, store = await self._store()
        where = _trail_filter(resource_name, action, actor_id, result, since, until, actor_ip)
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
        actor_ip: str | None = None,
    ) -> int:
        _, store = await self._store()
        return await store.count(
            _trail_filter(resource_name, action, actor_id, result, since, until, actor_ip)
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
        groups = await store.summary_groups(resource_key(resource_name), since)
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
            "resource_name": resource_key(resource_name),
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
        """Run every threat rule over the window; ``threats_detected`` counts what they found.

        A query only: it never notifies (however often it is asked). Alerts come from the
        detection schedule (:meth:`run_threat_detection`), once per threat."""
        app, store = await self._store()
        return await detect(
            store,
            app.threat_rules,
            now=app.clock(),
            resource_name=resource_key(resource_name),
            actor_id=_actor_filter(actor_id),
            failure_threshold=failure_threshold,
            window_minutes=time_window_minutes,
        )

    async def run_threat_detection(self) -> list[dict[str, Any]]:
        """One run of the detection schedule (the service runs it every
        ``STRONGROOM_THREAT_CHECK_SECONDS``): notify the security team of the threats not
        alerted on lately, and return them."""
        app, _ = await self._store()
        return await app.threat_alerts.run_once()

    async def verify_integrity(
        self,
        *,
        batch: int = 5000,
        parallel_from: int = PARALLEL_FROM,
        workers: int | None = None,
    ) -> dict[str, Any]:
        """Walk the hash chain; report the first event that was modified, removed or inserted,
        then compare the log with the signed checkpoints kept outside it (a log that ends
        before a checkpoint, or differs from one, was cut off or rewritten).

        Checkpoints are read first and the chain head next, so events appended meanwhile (by
        any process) are left for the next run rather than reported. From ``parallel_from``
        events on, ranges of the log are checked in ``workers`` processes (one per CPU), with
        the same verdict (see services.audit.chain_workers).
        """
        app, store = await self._store()
        contents = None
        if app.checkpoints is not None:
            contents = await app.checkpoints.sink.read(app.checkpoints.signer.public_key)
        report = await verify_log(
            store, app.audit.key, contents, batch, parallel_from=parallel_from, workers=workers
        )
        return {**report, "checkpoints": _checkpoint_summary(app, contents)}

    async def write_checkpoint(self) -> dict[str, Any] | None:
        """Sign and store a checkpoint of the log now (the service does so every
        ``STRONGROOM_AUDIT_CHECKPOINT_SECONDS``); None if nothing changed since the last one."""
        app, _ = await self._store()
        if app.checkpoints is None:
            raise ConfigurationError("audit checkpoints are switched off for this instance")
        written = await app.checkpoints.checkpoint()
        return written.summary() if written is not None else None

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
        for state in await store.chains():
            if state.chain == ANCHOR_CHAIN:
                continue
            base = chain_base(state.chain)
            async for rows in store.scan(base + state.anchor_seq, base + state.last_seq, batch):
                for stored in rows:
                    line = _export_line(stored, resource_name, since, until)
                    if line is not None:
                        yield line

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


def _export_line(
    stored: StoredEvent, resource_name: str | None, since: datetime | None, until: datetime | None
) -> str | None:
    event = stored.event
    if resource_name is not None and event.resource_name != resource_key(resource_name):
        return None
    if since is not None and event.timestamp < since:
        return None
    if until is not None and event.timestamp >= until:
        return None
    record = stored.to_dict()
    record["timestamp"] = event.timestamp.isoformat()
    record["chain_hash"] = stored.chain_hash.hex()
    return json.dumps(record, ensure_ascii=True, sort_keys=True, default=str)


def _checkpoint_summary(app: Strongroom, contents: SinkContents | None) -> dict[str, Any] | None:
    if app.checkpoints is None or contents is None:
        return None
    latest = contents.latest
    return {
        "sink": app.checkpoints.sink.description,
        "public_key": app.checkpoints.signer.public_key_text,
        "count": len(contents.checkpoints),
        "latest": latest.summary() if latest is not None else None,
    }


def _trail_filter(
    resource_name: str | None,
    action: AuditAction | str | None,
    actor_id: str | None,
    result: AuditResult | str | None,
    since: datetime | None,
    until: datetime | None,
    actor_ip: str | None = None,
) -> TrailFilter:
    try:
        return TrailFilter(
            resource_name=resource_key(resource_name),
            action=AuditAction(action.upper() if isinstance(action, str) else action)
            if action is not None
            else None,
            actor_id=_actor_filter(actor_id),
            result=AuditResult(result.upper() if isinstance(result, str) else result)
            if result is not None
            else None,
            since=_time_filter(since, "since"),
            until=_time_filter(until, "until"),
            actor_ip=_actor_filter(actor_ip),
        )
    except ValueError:
        raise ValidationError("unknown audit action or result") from None


def _actor_filter(actor_id: str | None) -> str | None:
    """An actor to filter by: text as any store can compare it (no NUL, no lone surrogate)."""
    return None if actor_id is None else validate_text(actor_id, "actor_id", 256)


def _time_filter(when: datetime | None, label: str) -> datetime | None:
    """A bound of the trail: a zoned time is checked for range (naive ones are taken as UTC
    by the stores, as before)."""
    if when is None or when.tzinfo is None:
        return when
    return validate_aware(when, label)
