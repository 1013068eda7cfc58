"""``strongroom key replace-master``: a new master key, the same root key (core.root), and a
new audit chain key.

Nothing else below the root changes, so reads and writes go on in every process (each holds
the root key in memory) and no row is rewritten. The audit chain moves to its new key as soon
as a process holding it writes (this one at once; see services.audit.log for the others).
Each step leaves a store that opens:

1. the new key is written where the deployment keeps it under a new name (``<file>.new``,
   0600, fsynced), or, for ``STRONGROOM_MASTER_KEY``, handed back to be printed once;
2. the root key wrapped by the new key is stored as *pending* beside the current wrapping, in
   one transaction (a first replacement also records the current key's wrapping then);
3. the new key file is renamed over the old one (atomic);
4. the pending wrapping becomes current and the old one is dropped, in one transaction.

Before step 3 the old key opens the store; after it, the new key, which finishes step 4 itself
when a process starts with it (services.custody.root). Running the command again after a crash
resumes at step 3 when ``<file>.new`` opens the pending wrapping, and otherwise starts over.
With ``STRONGROOM_MASTER_KEY`` the replacement stops after step 2: the operator sets the new
key, and the first process started with it finishes.

Under an HSM's or a Key Vault key's custody the new master key is wrapped by that key, as at
init, and lives in the seal record: the new seal record and the new wrapping of the root key
are written in one transaction, which is all there is to it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from strongroom.core.audit import AuditAction, ChainKey
from strongroom.core.config import Backend, Settings
from strongroom.core.crypto import KEY_BYTES, MasterKey
from strongroom.core.errors import ConfigurationError, CustodyError
from strongroom.core.keyfile import (
    install_key_file,
    pending_key_path,
    read_key_file,
    write_new_key_file,
)
from strongroom.core.root import RootRecord, RootSlots, next_root, unwrap_root, wrap_root
from strongroom.core.unseal import SEAL_AZURE, SEAL_PKCS11
from strongroom.db.root_store import promote_pending, read_roots, replace_with_seal, stage_pending
from strongroom.db.seal_store import read_seal
from strongroom.services.building import load_master_key
from strongroom.services.custody.root import resolve_root
from strongroom.services.wiring import Strongroom, custody_master_key, root_key

__all__ = ["PAUSE_VARIABLE", "Replacement", "pause", "replace_master", "replacement_status"]

#: Test-only (the crash tests): ``<step>:<file>`` makes a replacement stop at ``<step>``
#: (``key-written``, ``pending-stored``, ``key-in-place``; ``shares-announced`` for a
#: quorum), create ``<file>`` and wait there
#: to be killed. It pauses and nothing else: it cannot change what is written.
PAUSE_VARIABLE = "STRONGROOM_TEST_PAUSE_AT"


@dataclass(frozen=True, slots=True)
class Replacement:
    """What a replacement did. ``new_key`` (base64) only for ``STRONGROOM_MASTER_KEY``: the
    operator must set it; it is shown once and stored nowhere."""

    epoch: int
    custody: str
    key_file: Path | None
    new_key: str | None
    finished: bool
    resumed: bool

    def __repr__(self) -> str:
        return f"Replacement(epoch={self.epoch}, custody={self.custody!r})"


def _custody(settings: Settings) -> str:
    if settings.seal in (SEAL_PKCS11, SEAL_AZURE):
        return settings.seal
    if settings.seal != "key":
        raise CustodyError(
            "a quorum's master key is replaced with the current shares "
            "(services.custody.quorum_replace; `strongroom key replace-master` reads them)"
        )
    if settings.backend is Backend.MEMORY:
        raise CustodyError("the memory profile keeps nothing: there is no master key to replace")
    return "environment" if settings.master_key is not None else "key file"


def _key_file(settings: Settings) -> Path:
    return settings.master_key_file or settings.default_key_file


def pause(step: str) -> None:
    """Test-only: wait to be killed at ``step`` when PAUSE_VARIABLE names it."""
    spec = os.environ.get(PAUSE_VARIABLE)
    if not spec:
        return
    name, _, marker = spec.partition(":")
    if name != step:
        return
    Path(marker).touch()
    while True:  # waits to be killed: the test's crash
        time.sleep(1)


async def replace_master(app: Strongroom) -> Replacement:
    """Replace the configured master key of ``app``'s store (opened with it, so a wrong key
    was refused before anything changed)."""
    settings = app.settings
    custody = _custody(settings)
    old = await custody_master_key(settings) or load_master_key(settings)
    root = await resolve_root(settings, old)
    slots = await read_roots(settings)
    async with app.audit.operation(AuditAction.MASTER_REPLACE, None, custody=custody) as op:
        now = app.clock()
        if custody in (SEAL_PKCS11, SEAL_AZURE):
            result = await _replace_sealed(settings, now, root, slots)
        elif custody == "environment":
            result = await _replace_variable(settings, now, old, root, slots)
        else:
            result = await _replace_file(settings, now)
        op.details["epoch"] = result.epoch
        if result.finished:  # this event is the first under the new audit chain key
            app.audit.rekey(await root_key(settings))
    return result


def _records(
    now: datetime, old: MasterKey, root: MasterKey, new: MasterKey, slots: RootSlots
) -> tuple[RootRecord, RootRecord]:
    current = slots.current or wrap_root(root, old, epoch=0, now=now)
    return current, wrap_root(next_root(root), new, epoch=current.epoch + 1, now=now)


async def _replace_sealed(
    settings: Settings, now: datetime, root: MasterKey, slots: RootSlots
) -> Replacement:
    record = await read_seal(settings)
    if record is None or record.kind != settings.seal:
        raise CustodyError("this store's seal record does not match STRONGROOM_SEAL")
    new = MasterKey(bytearray(secrets.token_bytes(KEY_BYTES)))
    try:
        if settings.seal == SEAL_PKCS11:
            # Imported on use, as at init: only these custodies load their bindings.
            from strongroom.services.custody.pkcs11 import wrap_master  # noqa: PLC0415

            wrapped, label = await wrap_master(settings, new), settings.pkcs11_key_label
        else:
            from strongroom.services.custody import azure_seal  # noqa: PLC0415

            label, wrapped = await azure_seal.wrap_master(settings, new)
        seal = dataclasses.replace(
            record, check=new.check_value(), wrapped=wrapped, key_label=label, created_at=now
        )
        epoch = (slots.current.epoch if slots.current is not None else 0) + 1
        ring = next_root(root)
        current = wrap_root(ring, new, epoch=epoch, now=now)
    finally:
        new.wipe()
    await replace_with_seal(settings, current, seal.to_json(), ChainKey.of(ring))
    return Replacement(epoch, settings.seal, None, None, finished=True, resumed=False)


async def _replace_variable(
    settings: Settings, now: datetime, old: MasterKey, root: MasterKey, slots: RootSlots
) -> Replacement:
    new, text = MasterKey.generate()
    current, pending = _records(now, old, root, new, slots)
    await stage_pending(settings, current=current, pending=pending)
    pause("pending-stored")
    return Replacement(pending.epoch, "environment", None, text, finished=False, resumed=False)


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One replacement of a key file at a time (``<file>.lock``, never waited on)."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CustodyError(
                f"another replacement of the master key in {path} is under way"
            ) from None
        yield
    finally:
        os.close(fd)


async def _replace_file(settings: Settings, now: datetime) -> Replacement:
    path = _key_file(settings)
    with _exclusive(path):
        # Read again under the lock: another replacement may have finished meanwhile.
        old = read_key_file(path)
        root = await resolve_root(settings, old)
        return await _replace_file_locked(
            settings, now, path, old, root, await read_roots(settings)
        )


async def _replace_file_locked(
    settings: Settings, now: datetime, path: Path, old: MasterKey, root: MasterKey,
    slots: RootSlots,
) -> Replacement:  # fmt: skip
    new_path = pending_key_path(path)
    pending, ring = slots.pending, None
    if pending is not None and new_path.exists():
        try:
            ring = unwrap_root(pending, read_key_file(new_path))
        except ConfigurationError:
            ring = None
    resumed = ring is not None
    if ring is None:
        new = write_new_key_file(new_path)  # step 1
        pause("key-written")
        current, pending = _records(now, old, root, new, slots)
        await stage_pending(settings, current=current, pending=pending)  # step 2
        pause("pending-stored")
        ring = unwrap_root(pending, new)
    assert pending is not None  # noqa: S101 (set on both paths above; for mypy)
    assert ring is not None  # noqa: S101
    install_key_file(new_path, path)  # step 3
    pause("key-in-place")
    await promote_pending(settings, pending, ChainKey.of(ring))  # step 4
    return Replacement(pending.epoch, "key file", path, None, finished=True, resumed=resumed)


async def replacement_status(settings: Settings) -> dict[str, Any]:
    """How far the master key was replaced, and what an interrupted replacement needs next
    (for ``strongroom status``)."""
    if settings.backend is Backend.MEMORY:
        return {"epoch": 0, "pending": False, "next_step": None}
    slots = await read_roots(settings)
    epoch = slots.current.epoch if slots.current is not None else 0
    step: str | None = None
    stray = (
        settings.seal == "key"
        and settings.master_key is None
        and pending_key_path(_key_file(settings)).exists()
    )
    if slots.pending is not None and settings.master_key is not None:
        step = (
            "a new master key is waiting: set STRONGROOM_MASTER_KEY to the key "
            "`strongroom key replace-master` printed and restart; the first process started "
            "with it finishes the replacement (until then the current key keeps working)"
        )
    elif slots.pending is not None:
        step = (
            "a master key replacement was interrupted: run `strongroom key replace-master` "
            "again to finish it (until then the current key keeps working)"
        )
    elif stray:
        step = (
            f"an interrupted master key replacement left {pending_key_path(_key_file(settings))}, "
            "which opens nothing: delete it, or run `strongroom key replace-master` again"
        )
    return {"epoch": epoch, "pending": slots.pending is not None, "next_step": step}
