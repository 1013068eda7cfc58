"""Audit: every operation recorded durably before it answers, group-committed, fail-closed.

``AuditLog`` is the recorder the services use; ``SecretsAudit`` is the seed's query API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from strongroom.core.actor import Actor, current_actor, default_actor
from strongroom.core.audit import (
    AuditAction,
    AuditEvent,
    AuditResult,
    ChainKey,
    clean_details,
    clean_text,
)
from strongroom.core.clock import Clock
from strongroom.core.crypto import MasterKey
from strongroom.core.deadline import within
from strongroom.core.errors import AuditUnavailableError, ChainKeyStaleError, StrongroomError
from strongroom.core.logging import get_logger
from strongroom.core.metrics import LabelKey, Metrics
from strongroom.db.audit_store import AuditStore
from strongroom.services.audit.batches import Batch, Pending, settle
from strongroom.services.audit.chain_check import ChainVerifier

__all__ = ["AuditLog", "AuditedOperation", "ChainVerifier", "Operation", "resource_key"]

log = get_logger("strongroom.audit")
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


@cache
def _operation_key(action: AuditAction, result: AuditResult) -> LabelKey:
    """The labels of ``operations_total`` for one action and result, built once per pair."""
    return (("action", action.value), ("result", result.value))


def resource_key(name: object) -> str | None:
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
        reload: Callable[[], Awaitable[MasterKey]] | None = None,
    ) -> None:
        self.store = store
        self.key = key
        #: The root key as custody holds it now (a key file read again, an HSM or a Key Vault
        #: key asked again): where a newer audit chain key comes from when another process
        #: replaced the master key. None: this process cannot learn it (an environment
        #: variable, a quorum), so it stops writing until it is restarted or unsealed.
        self.reload = reload
        self.clock = clock
        self.metrics = metrics
        self.timeout = timeout
        self.fail_open = fail_open
        #: Why the last batch failed, until one succeeds (``health`` reports it).
        self.last_error: str | None = None
        self._pending: Pending = Pending()
        self._flusher: asyncio.Task[None] | None = None
        self._batch_started: float | None = None
        #: A store that can commit at once, on this thread, when its file is free (SQLite
        #: without fsync): its ``append_now`` (None when it cannot, now).
        self._append_now: Callable[[list[AuditEvent], ChainKey], list[int] | None] | None = getattr(
            store, "append_now", None
        )

    @property
    def enabled(self) -> bool:
        return self.store is not None

    async def open(self) -> None:
        if self.store is not None:
            await self.store.open()

    def rekey(self, root: MasterKey) -> None:
        """Link with ``root``'s newest audit chain key from now on (never an older one)."""
        key = ChainKey.of(root)
        if key.epoch >= self.key.epoch:
            self.key = key

    async def _append(self, batch: Batch) -> None:
        """Append a batch; when the log moved to a newer chain key than this process holds,
        fetch it from custody once and try again (or fail the batch: fail-closed).

        A store with ``append_taking`` takes the batch's events itself once its writer holds
        the log (SQLite: after waiting for another process's commit); others get them now.
        """
        store = self.store
        assert store is not None  # noqa: S101 (called when a store exists)
        taking = getattr(store, "append_taking", None)
        try:
            if taking is None:
                await store.append(batch(), self.key)
            else:
                await taking(batch, self.key)
            if not batch.took:  # a store that answered without taking: nothing was written
                raise AuditUnavailableError("the store took no events")
            return
        except ChainKeyStaleError as stale:
            held = self.key.epoch
            if self.reload is not None:
                try:
                    self.rekey(await self.reload())
                except StrongroomError as exc:
                    log.warning("custody did not give the new key", error=type(exc).__name__)
            if self.key.epoch < stale.stored:
                log.critical("audit chain key is stale", stored=stale.stored, held=held)
                raise
        await store.append([event for event, _ in batch.close(failed=True)], self.key)

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
        self.metrics.add("operations_total", _operation_key(event.action, event.result))
        if (
            self._append_now is not None
            and not self._pending
            and (self._flusher is None or self._flusher.done())
        ):
            try:
                if self._record_now(event, self._append_now):
                    return
            except AuditUnavailableError as exc:
                self._refuse(event, exc)
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
            self._refuse(event, exc)

    def _record_now(
        self,
        event: AuditEvent,
        append_now: Callable[[list[AuditEvent], ChainKey], list[int] | None],
    ) -> bool:
        """Commit ``event`` at once, without the flusher's two tasks: True when committed,
        False when the store cannot now (the flusher does it, and reloads a stale chain key);
        AuditUnavailableError when the store failed."""
        started = time.perf_counter()
        try:
            if append_now([event], self.key) is None:
                return False
        except ChainKeyStaleError:
            return False
        except Exception as exc:  # as in _flush: a store failure refuses this event
            self.last_error = "write_failed"
            detail = str(exc) if isinstance(exc, StrongroomError) else type(exc).__name__
            raise AuditUnavailableError(f"write failed: {detail}") from None
        self._committed(1, started)
        return True

    def _committed(self, events: int, started: float) -> None:
        """A batch of ``events`` committed, begun at ``started`` (perf_counter)."""
        self.metrics.inc("audit_events_total", events)
        self.metrics.inc("audit_batches_total")
        self.metrics.observe("audit_write_seconds", time.perf_counter() - started)
        self.last_error = None

    def _refuse(self, event: AuditEvent, exc: AuditUnavailableError) -> None:
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

    def health(self) -> str:
        """``ok``, or why the last batch failed (``write_failed``, ``write_timed_out``,
        ``writer_stopped``), or ``write_stalled`` while a batch outlives the timeout: what
        ``/readyz`` reports."""
        if self.store is None:
            return "ok"
        if self.last_error is not None:
            return self.last_error
        started = self._batch_started
        if started is not None and time.perf_counter() - started > self.timeout:
            return "write_stalled"
        return "ok"

    async def _flush(self) -> None:
        """Write what is pending, one batch at a time, until nothing is.

        Whatever the store raises fails that batch's callers with AuditUnavailableError and
        the writer goes on with the next batch. If the writer itself is stopped (cancelled,
        or anything else that is not an ``Exception``), every caller it holds is failed before
        it ends, so nobody waits on a writer that is gone; the next event starts a new one.
        """
        assert self.store is not None  # noqa: S101 (only started when a store exists)
        batch: Batch | None = None
        try:
            while self._pending:
                batch = Batch(self._pending)
                started = self._batch_started = time.perf_counter()
                try:
                    # within(), not wait_for(): a store that hangs may hang its cancellation
                    # too, and the batch's callers must have their answer within the timeout.
                    await within(self.timeout, self._append(batch))
                except (
                    Exception
                ) as exc:  # any failure of the store fails this batch, never the writer
                    timed_out = isinstance(exc, TimeoutError)
                    self.last_error = "write_timed_out" if timed_out else "write_failed"
                    reason = "write timed out" if timed_out else "write failed"
                    # Strongroom errors name their cause without values; others by type only.
                    detail = str(exc) if isinstance(exc, StrongroomError) else type(exc).__name__
                    settle(batch.close(failed=True), AuditUnavailableError(f"{reason}: {detail}"))
                    continue
                finally:
                    self._batch_started = None
                written = batch.close(failed=False)
                self.metrics.set("audit_queue_depth", len(self._pending))
                self._committed(len(written), started)
                settle(written, None)
        except BaseException:
            self.last_error = "writer_stopped"
            taken = batch.close(failed=True) if batch is not None else []
            stranded, self._pending = [*taken, *self._pending], Pending()
            settle(stranded, AuditUnavailableError("write failed: the audit writer stopped"))
            raise

    def operation(
        self, action: AuditAction, resource_name: object = None, **details: Any
    ) -> AuditedOperation:
        """Audit the block: SUCCESS when it ends, FAILURE with the error's code when it raises.

        The event is committed before control returns to the caller, so a value read inside the
        block is handed out only once its READ is on record.
        """
        return AuditedOperation(self, action, resource_key(resource_name), details)

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
        details = op.details
        if actor.auth is not None and "auth" not in details:
            details = {**details, "auth": actor.auth}
        return AuditEvent(
            action=action,
            resource_name=op.resource_name,
            timestamp=op.timestamp,
            result=AuditResult.FAILURE if error is not None else op.result,
            actor_id=actor.id,
            actor_ip=actor.ip,
            actor_user_agent=actor.user_agent,
            details=clean_details(details),
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
