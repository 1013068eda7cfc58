"""Break-glass reviews in ``break_glass_reviews`` (SQLite or PostgreSQL), beside the
revocation log whose connections they share.

A review is opened once per break-glass revocation and closed by one conditional UPDATE
(``WHERE status = 'OPEN'``), so two reviewers racing never both acknowledge it; an overdue
notice is claimed the same way (``AND escalations = <seen>``), so several service processes
sharing one database escalate each step once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from strongroom.db.dialect import POSTGRES, SQLITE, Dialect
from strongroom.db.pg import pooled
from strongroom.db.rows import from_micros, to_micros
from strongroom.db.sqlite_db import SqliteDatabase

__all__ = ["OPEN", "PostgresReviews", "ReviewStore", "SqliteReviews"]

OPEN = "OPEN"
ACKNOWLEDGED = "ACKNOWLEDGED"
_COLUMNS = (
    "revocation_id", "secret_name", "used_by", "opened_at", "due_at", "status",
    "acknowledged_by", "acknowledged_at", "note", "escalations", "escalated_at",
)  # fmt: skip
_TIMES = ("opened_at", "due_at", "acknowledged_at", "escalated_at")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM break_glass_reviews"  # noqa: S608 (fixed)
_INSERT = (
    "INSERT INTO break_glass_reviews (revocation_id, secret_name, used_by, opened_at, due_at, "
    "status, escalations) VALUES (:revocation_id, :secret_name, :used_by, :opened_at, :due_at, "
    "'OPEN', 0) ON CONFLICT DO NOTHING"
)
_ACKNOWLEDGE = (
    "UPDATE break_glass_reviews SET status = 'ACKNOWLEDGED', acknowledged_by = :by, "
    "acknowledged_at = :at, note = :note WHERE revocation_id = :id AND status = 'OPEN'"
)
_ESCALATE = (
    "UPDATE break_glass_reviews SET escalations = :seen + 1, escalated_at = :at "
    "WHERE revocation_id = :id AND status = 'OPEN' AND escalations = :seen"
)


class ReviewStore:
    """The review queries, on top of one dialect's way to run a statement."""

    _dialect: Dialect

    async def _rows(self, sql: str, values: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    async def _change(self, sql: str, values: dict[str, Any]) -> int:
        raise NotImplementedError

    def _param(self, value: Any) -> Any:
        if isinstance(value, datetime) and self._dialect is SQLITE:
            return to_micros(value)
        return value

    def _row(self, row: Any) -> dict[str, Any]:
        out = {c: row[c] for c in _COLUMNS}
        if self._dialect is SQLITE:
            for key in _TIMES:
                out[key] = from_micros(out[key])
        out["revocation_id"] = int(out["revocation_id"])
        return out

    def _values(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: self._param(v) for k, v in values.items()}

    async def open_review(
        self, revocation_id: int, secret_name: str, used_by: str, opened_at: datetime,
        due_at: datetime,
    ) -> None:  # fmt: skip
        """Open the review of one break-glass revocation (a second call changes nothing)."""
        await self._change(_INSERT, {
            "revocation_id": revocation_id, "secret_name": secret_name, "used_by": used_by,
            "opened_at": opened_at, "due_at": due_at,
        })  # fmt: skip

    async def get_review(self, revocation_id: int) -> dict[str, Any] | None:
        rows = await self._rows(f"{_SELECT} WHERE revocation_id = :id", {"id": revocation_id})
        return self._row(rows[0]) if rows else None

    async def list_reviews(self, *, open_only: bool, limit: int) -> list[dict[str, Any]]:
        """Open reviews oldest due first; with ``open_only=False`` every review, newest first."""
        if open_only:
            sql = f"{_SELECT} WHERE status = 'OPEN' ORDER BY due_at, revocation_id LIMIT :limit"
        else:
            sql = f"{_SELECT} ORDER BY opened_at DESC, revocation_id DESC LIMIT :limit"
        return [self._row(r) for r in await self._rows(sql, {"limit": limit})]

    async def overdue_reviews(self, now: datetime) -> list[dict[str, Any]]:
        sql = f"{_SELECT} WHERE status = 'OPEN' AND due_at <= :now ORDER BY due_at, revocation_id"
        return [self._row(r) for r in await self._rows(sql, {"now": now})]

    async def acknowledge_review(
        self, revocation_id: int, by: str, at: datetime, note: str
    ) -> bool:
        """Close an open review; False if it was not open (acknowledged meanwhile)."""
        values = {"id": revocation_id, "by": by, "at": at, "note": note}
        return await self._change(_ACKNOWLEDGE, values) == 1

    async def claim_escalation(self, revocation_id: int, seen: int, at: datetime) -> bool:
        """Count one more overdue notice, only if nobody counted it since ``seen``."""
        values = {"id": revocation_id, "seen": seen, "at": at}
        return await self._change(_ESCALATE, values) == 1


class SqliteReviews(ReviewStore):
    db: SqliteDatabase
    _dialect = SQLITE

    async def _rows(self, sql: str, values: dict[str, Any]) -> list[Any]:
        text, params = SQLITE.compile(sql, self._values(values))
        rows: list[Any] = await self.db.read(lambda c: c.execute(text, params).fetchall())
        return rows

    async def _change(self, sql: str, values: dict[str, Any]) -> int:
        text, params = SQLITE.compile(sql, self._values(values))
        return int(await self.db.write(lambda c: c.execute(text, params).rowcount))


class PostgresReviews(ReviewStore):
    _pool: Any
    _dialect = POSTGRES
    _WHAT = "the PostgreSQL revocation log"

    async def _rows(self, sql: str, values: dict[str, Any]) -> list[Any]:
        text, params = POSTGRES.compile(sql, values)
        async with pooled(self._pool, self._WHAT) as conn:
            rows: list[Any] = await conn.fetch(text, *params)
        return rows

    async def _change(self, sql: str, values: dict[str, Any]) -> int:
        text, params = POSTGRES.compile(sql, values)
        async with pooled(self._pool, self._WHAT) as conn:
            status: str = await conn.execute(text, *params)
        return int(status.rsplit(" ", 1)[-1])
