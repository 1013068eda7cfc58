"""The centre's side of edge journals: take a site's shipped events, exactly once, in order.

A batch is checked against the site's head (see :mod:`strongroom.core.edge_journal`), then
stored in the centre's own chain together with the new head, in one transaction: a retry whose
answer was lost finds the head moved and stores nothing twice. A gap or a forged link is refused,
stores nothing, and raises the integrity alarm (a critical log line, a notification, an
``INTEGRITY`` audit event). The site is the authenticated identity that shipped, never a claim.
"""

from __future__ import annotations

from strongroom.core.audit import AuditEvent
from strongroom.core.edge_journal import JournalHead, ShippedEvent, accept, edge_details
from strongroom.core.errors import AuditUnavailableError, EdgeJournalBrokenError
from strongroom.core.logging import get_logger
from strongroom.db.audit_store import AuditStore
from strongroom.services.wiring import Strongroom

__all__ = ["EdgeIntake"]

log = get_logger("strongroom.edge")


class EdgeIntake:
    """Receives edge journals for one centre."""

    def __init__(self, app: Strongroom) -> None:
        self.app = app

    def _store(self) -> AuditStore:
        store = self.app.audit.store
        if store is None:
            raise AuditUnavailableError("auditing is switched off for this instance")
        return store

    async def head(self, site: str) -> JournalHead:
        """The last event of ``site``'s journal stored here."""
        return (await self._store().edge_heads()).get(site, JournalHead())

    async def receive(
        self, site: str, after: JournalHead, events: list[ShippedEvent]
    ) -> tuple[int, JournalHead]:
        """Store what of the batch is new; (events stored, the site's head after)."""
        store = self._store()
        head = await self.head(site)
        try:
            fresh, new = accept(head, after, events)
        except EdgeJournalBrokenError as exc:
            self.app.metrics.inc("edge_journal_refused_total")
            if self.app.alarm is not None:
                self.app.alarm("edge_journal", f"the audit journal shipped by site {site} ({exc})")
            raise
        central = [
            AuditEvent.build(**{**s.event.to_dict(), "details": edge_details(site, s)})
            for s in fresh
        ]
        await store.append_shipped(site, head, new, central, self.app.audit.key)
        self.app.metrics.inc("edge_journal_events_received_total", len(central))
        log.info("edge journal received", site=site, events=len(central), last_seq=new.seq)
        return len(central), new
