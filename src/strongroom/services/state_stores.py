"""The state beside the secrets: audit, rotation, revocation, event subscriptions, access and
console sessions, in the SQLite file (or the memory profile's in-process database) or in
PostgreSQL.

On SQLite every store shares one database, which this object holds open; only the audit store
is built up front and the others on first use. A command that reads one secret touches the
audit log alone, and importing the other five stores' modules was a tenth of its start-up.
On PostgreSQL each store keeps its own pool: all are built and opened with the wiring, so a
server with a bad database fails at start, not at its first rotation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from strongroom.db.migrate import deferred_hook

if TYPE_CHECKING:
    from strongroom.core.integrity import RowMac
    from strongroom.db.access_store import AccessStore
    from strongroom.db.audit_store import AuditStore
    from strongroom.db.revocation_store import RevocationStore
    from strongroom.db.rotation_store import RotationStore
    from strongroom.db.session_store import SessionStore
    from strongroom.db.sqlite_db import SqliteDatabase
    from strongroom.db.subscription_store import SubscriptionStore

__all__ = ["PARTS", "StateStores"]

#: Migration 11's hook (the access store's): MAC the access rows made before row MACs.
_ACCESS_MACS = ("strongroom.db.access_rows", "sqlite_access_hook")
#: The stores besides the audit store, in the order they open (and close in reverse).
T = TypeVar("T")
PARTS = ("rotation", "revocation", "subscriptions", "access", "sessions")


class _Part(Generic[T]):
    """A state store read as an attribute: built by the owner's factory on first use."""

    def __set_name__(self, owner: type[StateStores], name: str) -> None:
        self._name = name

    def __get__(self, state: StateStores, owner: type[StateStores] | None = None) -> T:
        part: T = state._part(self._name)
        return part


class StateStores:
    """The audit store and, built on first use, the other state stores.

    ``factories`` builds each of :data:`PARTS`. ``shared`` is the SQLite database they all
    use: held open from :meth:`open` to :meth:`close`, so a store built later needs no opening
    of its own. Without it (PostgreSQL) every store is built and opened in :meth:`open`.
    """

    def __init__(
        self,
        audit: AuditStore,
        factories: dict[str, Callable[[], Any]],
        *,
        shared: SqliteDatabase | None = None,
        mac: RowMac | None = None,
    ) -> None:
        if set(factories) != set(PARTS):
            raise ValueError(f"state stores need exactly {PARTS}")
        self.audit = audit
        self._factories = factories
        self._built: dict[str, Any] = {}
        self._shared = shared
        self._mac = mac
        self._opened: list[Any] = []

    def _part(self, name: str) -> Any:
        part = self._built.get(name)
        if part is None:
            part = self._built[name] = self._factories[name]()
        return part

    rotation: _Part[RotationStore] = _Part()
    revocation: _Part[RevocationStore] = _Part()
    subscriptions: _Part[SubscriptionStore] = _Part()
    access: _Part[AccessStore] = _Part()
    sessions: _Part[SessionStore] = _Part()

    def built(self) -> tuple[str, ...]:
        """The parts built so far (for tests and diagnostics)."""
        return tuple(name for name in PARTS if name in self._built)

    async def open(self) -> None:
        """Open the shared database (SQLite) or every store (PostgreSQL); on failure, close
        what was opened."""
        try:
            if self._shared is None:
                for name in PARTS:
                    part = self._part(name)
                    await part.open()
                    self._opened.append(part)
                return
            await self._shared.open()
            self._opened.append(self._shared)
            if self._mac is not None:
                # What the access store's own opening would do: the step that MACs rows made
                # before row MACs runs here, so later steps are never held up.
                await self._shared.migrate({11: deferred_hook(*_ACCESS_MACS, self._mac)})
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close what :meth:`open` opened, newest first; safe to call again."""
        while self._opened:
            await self._opened.pop().close()
