"""Audit checkpoints kept outside the audit database: where they go, and who writes them.

Every ``interval`` seconds (and when the service stops) the :class:`Checkpointer` reads the
chain heads, signs them (:mod:`strongroom.core.checkpoint`) and hands the checkpoint to a
sink. :class:`DirectorySink` is the sink built in: one file per checkpoint, created once and
never rewritten (``O_EXCL``, mode 0440, fsynced with its directory). Point it at storage the
database's administrators cannot write: another host's mount, a WORM bucket's gateway, or a
directory made append-only (``chattr +a``). Other sinks (syslog/SIEM, a webhook) need only
``write``; ``read`` is what ``verify`` compares against.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from strongroom.core.anchors import ANCHOR_CHAIN, chain_base, chain_name
from strongroom.core.checkpoint import (
    ChainHead,
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    check_sequence,
    load_checkpoint,
)
from strongroom.core.clock import Clock
from strongroom.core.errors import StrongroomError
from strongroom.core.logging import get_logger
from strongroom.core.metrics import Metrics
from strongroom.db.audit_store import AuditStore
from strongroom.services.notify import Notification

if TYPE_CHECKING:
    from strongroom.services.notify import Dispatcher

__all__ = ["CheckpointSink", "Checkpointer", "DirectorySink", "SinkContents"]

log = get_logger("strongroom.audit")
_NAME = re.compile(r"checkpoint-(\d{12})\.json")


@dataclass(frozen=True, slots=True)
class SinkContents:
    """What a sink holds: the checkpoints that verified, oldest first, and the problems met."""

    checkpoints: list[Checkpoint]
    problems: list[str]

    @property
    def latest(self) -> Checkpoint | None:
        return self.checkpoints[-1] if self.checkpoints else None


class CheckpointSink(Protocol):
    description: str

    async def write(self, checkpoint: Checkpoint, data: bytes) -> bool:
        """Store one signed checkpoint; False if its number is taken (another writer won)."""
        ...

    async def read(self, public_key: Ed25519PublicKey) -> SinkContents: ...

    async def latest(self, public_key: Ed25519PublicKey) -> SinkContents:
        """Only the newest checkpoint (what the next one must follow)."""
        ...


class DirectorySink:
    """Write-once files ``checkpoint-<number>.json`` in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = f"directory {directory}"

    async def write(self, checkpoint: Checkpoint, data: bytes) -> bool:
        return await asyncio.to_thread(self._write, checkpoint.number, data)

    def _write(self, number: int, data: bytes) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"checkpoint-{number:012d}.json"
        # Written under a temporary name, then linked into place: link() fails if the name
        # exists, so a checkpoint is never overwritten and never seen half-written.
        staging = self.directory / f".staging-{number:012d}-{secrets.token_hex(8)}"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o440)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(staging, path)
        except FileExistsError:
            return False
        finally:
            staging.unlink()
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True

    async def read(self, public_key: Ed25519PublicKey) -> SinkContents:
        return await asyncio.to_thread(self._read, public_key)

    async def latest(self, public_key: Ed25519PublicKey) -> SinkContents:
        return await asyncio.to_thread(self._read, public_key, newest_only=True)

    def _read(self, public_key: Ed25519PublicKey, *, newest_only: bool = False) -> SinkContents:
        found: list[Checkpoint] = []
        problems: list[str] = []
        if not self.directory.is_dir():
            return SinkContents(found, problems)
        named = sorted(
            (int(m.group(1)), e)
            for e in self.directory.iterdir()
            if (m := _NAME.fullmatch(e.name)) is not None
        )
        for number, entry in named[-1:] if newest_only else named:
            try:
                checkpoint = load_checkpoint(entry.read_bytes(), public_key)
            except (OSError, CheckpointError) as exc:
                problems.append(f"{entry.name}: {exc}")
                continue
            if checkpoint.number != number:
                problems.append(f"{entry.name}: holds checkpoint {checkpoint.number}")
                continue
            found.append(checkpoint)
        found.sort(key=lambda c: c.number)
        return SinkContents(found, problems)


class Checkpointer:
    """Writes a checkpoint whenever the log has grown since the last one, every ``interval``
    seconds while started, and once more when stopped."""

    def __init__(
        self,
        store: AuditStore,
        sink: CheckpointSink,
        signer: CheckpointSigner,
        *,
        clock: Clock,
        metrics: Metrics,
        interval: float,
        notifier: Dispatcher | None = None,
    ) -> None:
        self.store = store
        self.sink = sink
        self.signer = signer
        self.clock = clock
        self.metrics = metrics
        self.interval = interval
        self.notifier = notifier
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def heads(self) -> tuple[ChainHead, ...]:
        """Where every chain of the log has reached: each writer chain by the id of its last
        event (0 while empty), the anchor chain by its last anchor."""
        heads = []
        for state in await self.store.chains():
            if state.chain == ANCHOR_CHAIN:
                if state.last_seq:
                    heads.append(
                        ChainHead(chain_name(state.chain), state.last_seq, state.last_hash)
                    )
                continue
            last = chain_base(state.chain) + state.last_seq if state.last_seq else 0
            heads.append(ChainHead(chain_name(state.chain), last, state.last_hash))
        return tuple(heads)

    async def checkpoint(self) -> Checkpoint | None:
        """Sign and store the current heads if they moved; the checkpoint written, or None.

        A log that went backwards since the last checkpoint gets no new one (which would make
        the cut look legitimate): the refusal is logged critically and the security team is
        notified; ``verify`` reports it too."""
        async with self._lock:
            for _attempt in range(5):
                contents = await self.sink.latest(self.signer.public_key)
                # The heads are read after the newest checkpoint: another process may have
                # checkpointed heads newer than ours were a moment ago, which is no regression.
                heads = await self.heads()
                if contents.problems:
                    self._regressed(f"the newest checkpoint is not valid: {contents.problems[0]}")
                    return None
                latest = contents.latest
                if latest is not None and latest.heads == heads:
                    return None
                if latest is None and all(h.seq == 0 for h in heads):
                    return None
                if latest is not None:
                    draft = Checkpoint(latest.number + 1, latest.digest, self.clock(), heads)
                    problem = check_sequence([latest, draft])
                    if problem is not None:
                        self._regressed(problem)
                        return None
                else:
                    draft = Checkpoint(1, "", self.clock(), heads)
                signed, data = self.signer.sign(draft)
                if await self.sink.write(signed, data):
                    self.metrics.inc("audit_checkpoints_total")
                    return signed
            raise OSError("could not claim a checkpoint number (too many concurrent writers)")

    def _regressed(self, problem: str) -> None:
        self.metrics.inc("audit_integrity_alerts_total")
        log.critical("audit log went backwards; no checkpoint written", error=problem)
        if self.notifier is not None:
            self.notifier.send_later(
                Notification(
                    kind="integrity.tampered",
                    priority="critical",
                    subject="strongroom: the audit log went backwards",
                    fields={"reason": problem, "where": "audit log"},
                    occurred_at=self.clock(),
                )
            )

    async def _safely(self) -> None:
        try:
            await self.checkpoint()
        except (OSError, StrongroomError) as exc:
            self.metrics.inc("audit_checkpoint_failures_total")
            log.critical("audit checkpoint failed", error=f"{type(exc).__name__}: {exc}")

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._safely()

    async def stop(self) -> None:
        """Stop the schedule and write a last checkpoint of what this process did."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._safely()
