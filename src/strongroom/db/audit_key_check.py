"""What a writer does when it finds the anchor chain at an older key epoch than its own."""

from __future__ import annotations

from strongroom.core.logging import get_logger

__all__ = ["behind"]

log = get_logger("strongroom.audit")


def behind(stored: int, held: int) -> None:
    """The anchor chain moves to a new key only in the transaction that makes the new root key
    record current (db.audit_key_epoch): found behind, it was rolled back behind strongroom's
    back. That is logged critically and the writer goes on under its own key, never moving the
    chain again, so `audit verify` reports the break where the rolled-back chain resumes
    (refusing every write would only turn tampering into an outage)."""
    log.critical("audit anchor chain rolled back to an older key epoch", stored=stored, held=held)
