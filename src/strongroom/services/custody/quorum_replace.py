"""Replacing a master key held by a quorum (``STRONGROOM_SEAL=shamir``): the current holders'
shares give the current key, a new key is split into a new share set of the same shape, and the
new seal record and the root key's new wrapping are stored in one transaction.

The new shares are handed out (``announce``) *before* that transaction: a crash before it
leaves the old share set in force and the new one unused (never a store whose shares were
lost); once it commits, the new share set is in force and the old one is refused.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Sequence

from strongroom.core.audit import AuditAction, ChainKey
from strongroom.core.config import Settings
from strongroom.core.crypto import KEY_BYTES, MasterKey
from strongroom.core.errors import CustodyError, WrongSharesError
from strongroom.core.root import next_root, wrap_root
from strongroom.core.shares import ShareSet, split
from strongroom.core.unseal import SEAL_SHAMIR, UnsealProgress
from strongroom.db.root_store import read_roots, replace_with_seal
from strongroom.db.seal_store import read_seal
from strongroom.services.custody.replace import Replacement, pause
from strongroom.services.custody.root import resolve_root
from strongroom.services.wiring import Strongroom

__all__ = ["replace_quorum_master"]


def _current_key(shares: Sequence[str], progress: UnsealProgress) -> MasterKey:
    key = None
    for text in shares:
        key = progress.submit(text, 0.0)
        if key is not None:
            return key
    raise WrongSharesError(
        f"{progress.record.threshold} distinct shares of the current share set are needed"
    )


async def replace_quorum_master(
    settings: Settings, shares: Sequence[str], announce: Callable[[ShareSet], None]
) -> Replacement:
    """Replace the quorum's master key; ``shares`` are the current holders' (the threshold of
    them). Wrong, foreign or too few shares are refused before anything is made."""
    record = await read_seal(settings)
    if settings.seal != SEAL_SHAMIR or record is None or record.kind != SEAL_SHAMIR:
        raise CustodyError("this store's master key is not held by a quorum (operator init)")
    old = _current_key(shares, UnsealProgress(record, timeout=float("inf")))
    try:
        app = await Strongroom.open(settings, master=old)  # refuses a key of another store
        try:
            async with app.audit.operation(
                AuditAction.MASTER_REPLACE, None, custody=SEAL_SHAMIR
            ) as op:
                slots = await read_roots(settings)
                root_old = slots.current
                new = MasterKey(bytearray(secrets.token_bytes(KEY_BYTES)))
                try:
                    share_set = split(
                        new.raw_for_custody(), shares=record.shares, threshold=record.threshold
                    )
                    epoch = (root_old.epoch if root_old is not None else 0) + 1
                    ring = next_root(await resolve_root(settings, old))
                    wrapped = wrap_root(ring, new, epoch=epoch, now=app.clock())
                    seal = dataclasses.replace(
                        record,
                        identifier=share_set.identifier,
                        check=new.check_value(),
                        created_at=app.clock(),
                    )
                finally:
                    new.wipe()
                announce(share_set)  # handed out first: lost shares would lose the store
                pause("shares-announced")
                chain = ChainKey.of(ring)
                await replace_with_seal(settings, wrapped, seal.to_json(), chain)
                op.details["epoch"] = epoch
                app.audit.rekey(ring)  # this event is the first under the new chain key
        finally:
            await app.close()
    finally:
        old.wipe()
    return Replacement(epoch, SEAL_SHAMIR, None, None, finished=True, resumed=False)
