"""Console sessions in ``strongroom_ui_sessions`` (SQLite or PostgreSQL).

Rows are found by the SHA-256 of the session id the cookie carries; the id itself is never
stored. Expired rows are deleted whenever a session is created. Each row carries a MAC under
the metadata key over every column but ``last_seen``: a row changed in the database (pointed
at another identity's token, its expiry pushed back) is refused as tampered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from strongroom.core.integrity import RowMac
from strongroom.db.dialect import POSTGRES, SQLITE
from strongroom.db.pg import open_pool, pooled
from strongroom.db.rows import from_micros, to_micros
from strongroom.db.sqlite_db import SqliteDatabase

__all__ = ["PostgresSessionStore", "SessionRecord", "SessionStore", "SqliteSessionStore"]

_COLUMNS = "id_hash, identity, method, subject, csrf, created_at, last_seen, expires_at"
TABLE = "strongroom_ui_sessions"
_TIMES = ("created_at", "last_seen", "expires_at")
_GET = f"SELECT {_COLUMNS}, mac FROM strongroom_ui_sessions WHERE id_hash = :id_hash"
_ADD = (
    f"INSERT INTO strongroom_ui_sessions ({_COLUMNS}, mac) VALUES (:id_hash, :identity, "
    ":method, :subject, :csrf, :created_at, :last_seen, :expires_at, :mac)"
)
_TOUCH = "UPDATE strongroom_ui_sessions SET last_seen = :last_seen WHERE id_hash = :id_hash"
_DELETE = "DELETE FROM strongroom_ui_sessions WHERE id_hash = :id_hash"
_EXPIRE = "DELETE FROM strongroom_ui_sessions WHERE expires_at <= :now"


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id_hash: bytes
    identity: str
    method: str
    subject: str
    csrf: str
    created_at: datetime
    last_seen: datetime
    expires_at: datetime

    def __repr__(self) -> str:
        return f"SessionRecord(identity={self.identity!r}, method={self.method!r})"

    def mac_fields(self) -> tuple[object, ...]:
        return (self.id_hash.hex(), self.identity, self.method, self.subject, self.csrf,
                self.created_at, self.expires_at)  # fmt: skip


class SessionStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def add(self, record: SessionRecord, now: datetime) -> None: ...
    async def get(self, id_hash: bytes) -> SessionRecord | None: ...
    async def touch(self, id_hash: bytes, at: datetime) -> None: ...
    async def delete(self, id_hash: bytes) -> None: ...


class _SessionSql:
    micros: bool
    mac: RowMac

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    async def _change(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> None:
        raise NotImplementedError

    def _param(self, value: Any) -> Any:
        return to_micros(value) if self.micros and isinstance(value, datetime) else value

    def _params(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: self._param(v) for k, v in values.items()}

    async def add(self, record: SessionRecord, now: datetime) -> None:
        row = {name: getattr(record, name) for name in _COLUMNS.split(", ")}
        row["mac"] = self.mac.mac(TABLE, record.mac_fields())
        await self._change([(_EXPIRE, self._params({"now": now})), (_ADD, self._params(row))])

    async def get(self, id_hash: bytes) -> SessionRecord | None:
        """The session, or None; TamperedError when its row was changed outside strongroom."""
        rows = await self._rows(_GET, {"id_hash": id_hash})
        if not rows:
            return None
        data = dict(rows[0])
        stored = data.pop("mac")
        if self.micros:
            for key in _TIMES:
                data[key] = from_micros(data[key])
        data["id_hash"] = bytes(data["id_hash"])
        record = SessionRecord(**data)
        self.mac.check(TABLE, record.mac_fields(), stored, "a console session")
        return record

    async def touch(self, id_hash: bytes, at: datetime) -> None:
        await self._change([(_TOUCH, self._params({"id_hash": id_hash, "last_seen": at}))])

    async def delete(self, id_hash: bytes) -> None:
        await self._change([(_DELETE, {"id_hash": id_hash})])


class SqliteSessionStore(_SessionSql):
    micros = True

    def __init__(self, db: SqliteDatabase, mac: RowMac) -> None:
        self.db = db
        self.mac = mac

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        text, values = SQLITE.compile(sql, params)
        return await self.db.read(lambda c: c.execute(text, values).fetchall())

    async def _change(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> None:
        compiled = [SQLITE.compile(sql, params) for sql, params in statements]

        def run(conn: Any) -> None:
            for text, values in compiled:
                conn.execute(text, values)

        await self.db.write(run)


class PostgresSessionStore(_SessionSql):
    micros = False
    _what = "the PostgreSQL session store"

    def __init__(self, dsn: str, *, schema: str, mac: RowMac) -> None:
        self._dsn = dsn
        self.schema = schema
        self.mac = mac
        self._pool: Any = None

    async def open(self) -> None:
        self._pool = await open_pool(
            self._dsn, self.schema, min_size=1, max_size=4, what=self._what
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        text, values = POSTGRES.compile(sql, params)
        async with pooled(self._pool, self._what) as conn:
            return list(await conn.fetch(text, *values))

    async def _change(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> None:
        compiled = [POSTGRES.compile(sql, params) for sql, params in statements]
        async with pooled(self._pool, self._what) as conn, conn.transaction():
            for text, values in compiled:
                await conn.execute(text, *values)
