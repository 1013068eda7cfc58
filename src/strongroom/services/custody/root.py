"""The root key for the master key at hand (core.root), read when a process opens a store.

The master key is tried against the current wrapping, then against a pending one: a master
key that opens only the pending wrapping is the new key of a replacement that was interrupted
after the new key was put in place, so the replacement is finished here (the pending wrapping
becomes current). A master key that opens neither is refused.
"""

from __future__ import annotations

from strongroom.core.audit import ChainKey
from strongroom.core.config import Settings
from strongroom.core.crypto import MasterKey
from strongroom.core.errors import WrongMasterKeyError
from strongroom.core.logging import get_logger
from strongroom.core.root import RootSlots, unwrap_root
from strongroom.db.root_store import promote_pending, read_roots

__all__ = ["REPLACED", "resolve_root"]

log = get_logger("strongroom.custody")

REPLACED = (
    "the master key does not open this store's root key: it is the wrong key, or a key this "
    "store's master key was replaced from (strongroom key replace-master)"
)


async def resolve_root(
    settings: Settings, master: MasterKey, slots: RootSlots | None = None
) -> MasterKey:
    """The root key ``master`` opens (``master`` itself in a store never replaced)."""
    if slots is None:
        slots = await read_roots(settings)
    if slots.current is None:
        return master
    root = unwrap_root(slots.current, master)
    if root is not None:
        return root
    if slots.pending is not None:
        root = unwrap_root(slots.pending, master)
        if root is not None:
            await promote_pending(settings, slots.pending, ChainKey.of(root))
            log.warning("master key replacement finished at start", epoch=slots.pending.epoch)
            return root
    raise WrongMasterKeyError(REPLACED)
