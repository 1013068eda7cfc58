"""A rotation worker: claims due rotations from the server (long-poll), makes each new value
here (a registered callback, or a built-in generator), and submits it; the server verifies,
promotes and audits it. ``SecretsRotation`` in the remote profile runs one for the callbacks
it holds; ``strongroom rotation worker`` runs one for generators.

Leases make it safe to run many: a rotation is claimed by one worker at a time, and a worker
that dies leaves leases that expire and are claimed by another. Stopping is graceful: the
rotations already started finish, and claimed rotations not yet started are released at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strongroom.backends.base import name_key
from strongroom.client.transport import segment
from strongroom.core.errors import (
    AccessError,
    ConfigurationError,
    StrongroomError,
    ValidationError,
)
from strongroom.core.logging import get_logger
from strongroom.core.rotation import RotationCallback
from strongroom.services.rotation.generators import generate

if TYPE_CHECKING:
    from strongroom.client.transport import RemoteClient

__all__ = ["RotationWorker", "WorkerOptions"]

log = get_logger("strongroom.rotation.worker")
MAX_NAMES = 1000
MAX_WAIT_SECONDS = 8
Verifier = Callable[[str, Any], Any]


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """What a worker claims and how: ``generated`` takes generator schedules (filtered by
    ``name_glob`` and ``secret_type``); a callback worker takes its callbacks' secrets."""

    generated: bool = False
    name_glob: str | None = None
    secret_type: str | None = None
    concurrency: int = 4
    batch: int | None = None  # claimed at once; default: ``concurrency``
    lease_seconds: int = 60
    wait_seconds: float = 5.0
    retry_seconds: float = 2.0  # after the server could not be reached

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 100 or not 1 <= (self.batch or 1) <= 100:
            raise ValidationError("concurrency and batch must be from 1 to 100")
        if not 2 <= self.lease_seconds <= 3600:
            raise ValidationError("lease_seconds must be from 2 to 3600")
        if not 0 <= self.wait_seconds <= MAX_WAIT_SECONDS:
            raise ValidationError(f"wait_seconds must be from 0 to {MAX_WAIT_SECONDS}")


@dataclass
class RotationWorker:
    """One worker process's claim loop against one server (see the module docstring)."""

    client: RemoteClient
    options: WorkerOptions = field(default_factory=WorkerOptions)
    callbacks: dict[str, RotationCallback] = field(default_factory=dict)
    verifiers: dict[str, Verifier] = field(default_factory=dict)
    #: Called with each outcome (the CLI prints them); never given a value.
    on_result: Callable[[dict[str, Any]], None] | None = None
    worker_id: str = field(default_factory=lambda: secrets.token_hex(16))
    rotated: int = 0
    failed: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def attach(self, name: str, callback: RotationCallback, verifier: Verifier | None) -> None:
        if len(self.callbacks) >= MAX_NAMES and name_key(name) not in self.callbacks:
            raise ConfigurationError(f"one worker serves at most {MAX_NAMES} callbacks")
        self.callbacks[name_key(name)] = callback
        if verifier is not None:
            self.verifiers[name_key(name)] = verifier

    def detach(self, name: str) -> None:
        self.callbacks.pop(name_key(name), None)
        self.verifiers.pop(name_key(name), None)

    def stop(self) -> None:
        """Ask the loop to end: running rotations finish, unstarted claims are released."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        """Claim and rotate until :meth:`stop`. An unreachable server is waited out; a refused
        credential or grant (401, 403) ends the loop with its typed error."""
        while not self.stopping:
            try:
                claimed = await self.claim()
            except AccessError:
                raise
            except StrongroomError as exc:
                log.warning("rotation claim failed", addr=self.client.addr, error=exc.code)
                await self._pause(self.options.retry_seconds)
                continue
            if claimed:
                await self.rotate_all(claimed)

    async def run_once(self) -> list[dict[str, Any]]:
        """One claim (long-polled) and its rotations; their outcomes."""
        return await self.rotate_all(await self.claim())

    async def claim(self) -> list[dict[str, Any]]:
        opts = self.options
        body: dict[str, Any] = {
            "worker": self.worker_id,
            "limit": opts.batch or opts.concurrency,
            "lease_seconds": opts.lease_seconds,
            "wait_seconds": opts.wait_seconds,
        }
        if opts.generated:
            body.update(generated=True, name_glob=opts.name_glob, secret_type=opts.secret_type)
        elif not self.callbacks:
            await self._pause(opts.wait_seconds)  # nothing to serve yet
            return []
        else:
            body["names"] = sorted(self.callbacks)
        found = await self.client.request(
            "POST", "/v1/rotation/workers/claim", json=body,
            long_poll=opts.wait_seconds,
        )  # fmt: skip
        claimed: list[dict[str, Any]] = found["claimed"]
        return claimed

    async def rotate_all(self, claimed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(item: dict[str, Any]) -> dict[str, Any]:
            async with gate:
                if self.stopping:
                    return await self._release(item["name"])
                return await self._rotate(item)

        return list(await asyncio.gather(*(one(item) for item in claimed)))

    async def _rotate(self, item: dict[str, Any]) -> dict[str, Any]:
        name = item["name"]
        heartbeat = asyncio.get_running_loop().create_task(self._renew_every(name))
        try:
            value = await self._make(item)
        except _Refused as refused:
            await _stopped(heartbeat)
            outcome = await self._report(name, "fail", {"message": refused.reason})
        else:
            await _stopped(heartbeat)  # the submission renews the lease itself
            outcome = await self._report(name, "complete", {"value": value})
        finally:
            heartbeat.cancel()
        if outcome.get("rotated"):
            self.rotated += 1
        else:
            self.failed += 1
        if self.on_result is not None:
            self.on_result(outcome)
        return outcome

    async def _renew_every(self, name: str) -> None:
        """While a value is being made, renew its lease at half its length (a slow callback
        keeps its rotation); a lost lease is logged, and the submission will be refused."""
        lease = self.options.lease_seconds
        path = f"/v1/rotation/{segment(name)}/renew"
        while True:
            await asyncio.sleep(lease / 2)
            try:
                await self.client.request(
                    "POST", path, json={"worker": self.worker_id, "lease_seconds": lease}
                )
            except StrongroomError as exc:
                log.warning("rotation lease not renewed", name=name, error=exc.code)
                return

    async def _make(self, item: dict[str, Any]) -> Any:
        """The new value; a refusal (never with a callback's message, which may quote a value)."""
        name = item["name"]
        key = name_key(name)
        callback = self.callbacks.get(key)
        try:
            if callback is not None:
                value = callback(name)
                if inspect.isawaitable(value):
                    value = await value
            elif item.get("generator"):
                value = generate(item["generator"], item.get("generator_options") or {})
            else:
                raise _Refused("this worker holds no callback and no generator is configured")
        except _Refused:
            raise
        except Exception as exc:  # user code: only the type travels on
            raise _Refused(f"rotation callback raised {type(exc).__name__}") from None
        verifier = self.verifiers.get(key)
        if verifier is not None:
            try:
                verdict = verifier(name, value)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
            except Exception as exc:
                raise _Refused(f"verify callback raised {type(exc).__name__}") from None
            if not verdict:
                raise _Refused("the new value did not pass verification")
        return value

    async def _report(self, name: str, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/v1/rotation/{segment(name)}/{verb}"
        try:
            found: dict[str, Any] = await self.client.request(
                "POST", path, json={"worker": self.worker_id, **body}
            )
        except StrongroomError as exc:  # a lost lease, a refusal, the server gone
            log.warning("rotation not submitted", name=name, error=exc.code)
            return {"name": name, "rotated": False, "error": str(exc)}
        if verb == "fail":
            found.setdefault("error", body["message"])
        return found

    async def _release(self, name: str) -> dict[str, Any]:
        try:
            await self.client.request(
                "POST", f"/v1/rotation/{segment(name)}/release", json={"worker": self.worker_id}
            )
        except StrongroomError as exc:
            log.warning("rotation lease not released", name=name, error=exc.code)
        return {"name": name, "rotated": False, "reason": "released"}

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)


async def _stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class _Refused(Exception):
    """The worker could not make a value; ``reason`` is safe to record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
