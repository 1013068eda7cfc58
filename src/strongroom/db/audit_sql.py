"""The audit queries, written once for SQLite and PostgreSQL.

Queries use ``:name`` parameters; a dialect turns them into its own placeholders and converts
timestamps (SQLite keeps UTC microseconds, PostgreSQL ``timestamptz``). Only fixed fragments are
ever joined into SQL text; every value travels as a parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from strongroom.db.audit_store import TrailFilter
from strongroom.db.console_sql import CONSOLE_ANALYSES
from strongroom.db.dialect import POSTGRES, SQLITE, Dialect

__all__ = [
    "ANALYSES",
    "ANCHORS",
    "ANCHOR_COVERING",
    "CHAINS",
    "CHAIN_ANCHORS",
    "CHANGE_ANCHORS",
    "POSTGRES",
    "SCAN",
    "SQLITE",
    "Dialect",
    "summary_sql",
    "trail_sql",
]

EVENT_COLUMNS = (
    "id, action, resource_name, timestamp, result, actor_id, actor_ip, actor_user_agent, "
    "details, error_message, error_code, duration_ms, prev_hash, chain_hash"
)
#: Result columns holding times, converted back to datetimes.
TIME_COLUMNS = frozenset({"first_seen", "last_seen", "hour"})
#: One page of the chain, oldest first (verification and export).
SCAN = (
    "SELECT " + EVENT_COLUMNS + " FROM secrets_audit_log "
    "WHERE id > :after AND id <= :upto ORDER BY id LIMIT :batch"
)

ANCHOR_COLUMNS = (
    "seq, chain_id, first_seq, last_seq, chain_hash, changes, anchored_at, prev_hash, anchor_hash"
)
#: A page of the anchor chain, oldest first; and the same, only anchors of changes.
ANCHORS = (
    "SELECT " + ANCHOR_COLUMNS + " FROM secrets_audit_anchors "
    "WHERE seq > :after AND seq <= :upto ORDER BY seq LIMIT :batch"
)
CHANGE_ANCHORS = (
    "SELECT " + ANCHOR_COLUMNS + " FROM secrets_audit_anchors "
    "WHERE seq > :after AND seq <= :upto AND changes ORDER BY seq LIMIT :batch"
)
#: The anchors of one writer chain ending in a range of its positions.
CHAIN_ANCHORS = (
    "SELECT " + ANCHOR_COLUMNS + " FROM secrets_audit_anchors "
    "WHERE chain_id = :chain AND last_seq > :after AND last_seq <= :upto ORDER BY seq"
)
#: The first anchor of a chain reaching a position.
ANCHOR_COVERING = (
    "SELECT min(seq) AS seq FROM secrets_audit_anchors WHERE chain_id = :chain "
    "AND last_seq >= :position"
)
CHAINS = (
    "SELECT id, last_seq, last_hash, anchor_seq, anchor_hash, key_epoch FROM secrets_audit_chain "
    "ORDER BY id"
)


def _filters(where: TrailFilter) -> tuple[str, dict[str, Any]]:
    parts: list[str] = []
    params: dict[str, Any] = {}
    if where.resource_name is not None:
        parts.append("resource_name = :resource_name")
        params["resource_name"] = where.resource_name
    if where.action is not None:
        parts.append("action = :action")
        params["action"] = where.action.value
    if where.actor_id is not None:
        parts.append("actor_id = :actor_id")
        params["actor_id"] = where.actor_id
    if where.result is not None:
        parts.append("result = :result")
        params["result"] = where.result.value
    if where.actor_ip is not None:
        parts.append("actor_ip = :actor_ip")
        params["actor_ip"] = where.actor_ip
    if where.since is not None:
        parts.append("timestamp >= :since")
        params["since"] = where.since
    if where.until is not None:
        parts.append("timestamp < :until")
        params["until"] = where.until
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


def trail_sql(where: TrailFilter, limit: int, offset: int) -> tuple[str, dict[str, Any]]:
    clause, params = _filters(where)
    params.update(limit=limit, offset=offset)
    return (
        f"SELECT {EVENT_COLUMNS} FROM secrets_audit_log{clause} "
        "ORDER BY timestamp DESC, id DESC LIMIT :limit OFFSET :offset",
        params,
    )


def count_sql(where: TrailFilter) -> tuple[str, dict[str, Any]]:
    clause, params = _filters(where)
    return f"SELECT count(*) AS n FROM secrets_audit_log{clause}", params


def summary_sql(dialect: Dialect, resource_name: str | None) -> str:
    """(dimension, key, events, failures) per action, result, actor, IP and UTC day."""
    scope = "timestamp >= :since"
    if resource_name is not None:
        scope += " AND resource_name = :resource_name"
    failures = "sum(CASE WHEN result = 'FAILURE' THEN 1 ELSE 0 END)"
    if dialect.name == "postgres":
        # Two stages: one hash aggregate over the scanned rows down to a few thousand groups,
        # then the grouping sets over those (planning the sets straight over a million rows
        # sorts them all, because the day expression has no statistics).
        return (
            "SELECT CASE WHEN GROUPING(action) = 0 THEN 'action' "
            "WHEN GROUPING(result) = 0 THEN 'result' WHEN GROUPING(actor_id) = 0 THEN 'actor' "
            "WHEN GROUPING(actor_ip) = 0 THEN 'ip' ELSE 'day' END AS dimension, "
            "COALESCE(action, result, actor_id, actor_ip, to_char(day, 'YYYY-MM-DD')) AS key, "
            "sum(n) AS events, sum(f) AS failures FROM ("
            "SELECT action, result, actor_id, actor_ip, "
            "(timestamp AT TIME ZONE 'UTC')::date AS day, count(*) AS n, "
            f"{failures} AS f FROM secrets_audit_log WHERE {scope} "
            "GROUP BY action, result, actor_id, actor_ip, (timestamp AT TIME ZONE 'UTC')::date"
            ") AS grouped "
            "GROUP BY GROUPING SETS ((action), (result), (actor_id), (actor_ip), (day))"
        )
    selects = [
        f"SELECT '{dim}' AS dimension, {expr} AS key, count(*) AS events, {failures} AS failures "
        f"FROM secrets_audit_log WHERE {scope} GROUP BY {expr}"
        for dim, expr in (
            ("action", "action"),
            ("result", "result"),
            ("actor", "actor_id"),
            ("ip", "actor_ip"),
            ("day", dialect.day),
        )
    ]
    return " UNION ALL ".join(selects)


# -- threat analyses ------------------------------------------------------------------------
# Each takes :since (window start) and optional :resource_name / :actor_id filters, appended as
# "{scope}". Thresholds are parameters too.

_SCOPE = "{scope}"

ANALYSES: dict[str, str | dict[str, str]] = {
    # Who read a secret lately, and whether it is still being read (revocation risk).
    "readers": (
        "SELECT count(DISTINCT actor_id) AS readers, "
        "sum(CASE WHEN timestamp >= :recent THEN 1 ELSE 0 END) AS recent_reads "
        "FROM secrets_audit_log WHERE resource_name = :resource_name AND action = 'READ' "
        "AND result = 'SUCCESS' AND timestamp >= :since"
    ),
    "failures_by_actor": (
        "SELECT actor_id AS key, count(*) AS count, min(timestamp) AS first_seen, "
        "max(timestamp) AS last_seen, count(DISTINCT resource_name) AS resources, "
        "max(actor_ip) AS actor_ip FROM secrets_audit_log "
        "WHERE result = 'FAILURE' AND timestamp >= :since" + _SCOPE + " "
        "GROUP BY actor_id HAVING count(*) >= :threshold"
    ),
    "failures_by_ip": (
        "SELECT actor_ip AS key, count(*) AS count, min(timestamp) AS first_seen, "
        "max(timestamp) AS last_seen, count(DISTINCT actor_id) AS actors, "
        "max(actor_id) AS actor_id FROM secrets_audit_log "
        "WHERE result = 'FAILURE' AND actor_ip IS NOT NULL AND timestamp >= :since" + _SCOPE + " "
        "GROUP BY actor_ip HAVING count(*) >= :threshold"
    ),
    "unavailable_access": (
        "SELECT actor_id, actor_ip, resource_name, error_code, count(*) AS count, "
        "min(timestamp) AS first_seen, max(timestamp) AS last_seen FROM secrets_audit_log "
        "WHERE result = 'FAILURE' AND error_code IN ('deleted', 'disabled', 'revoked') "
        "AND timestamp >= :since" + _SCOPE + " "
        "GROUP BY actor_id, actor_ip, resource_name, error_code"
    ),
    "enumeration": (
        "SELECT actor_id, count(DISTINCT resource_name) AS resources, "
        "count(DISTINCT CASE WHEN error_code = 'not_found' THEN resource_name END) AS not_found, "
        "count(*) AS count, min(timestamp) AS first_seen, max(timestamp) AS last_seen, "
        "max(actor_ip) AS actor_ip FROM secrets_audit_log "
        "WHERE timestamp >= :since AND resource_name IS NOT NULL" + _SCOPE + " "
        "GROUP BY actor_id HAVING count(DISTINCT resource_name) >= :max_resources "
        "OR count(DISTINCT CASE WHEN error_code = 'not_found' THEN resource_name END) "
        ">= :max_not_found"
    ),
    "new_ip": (
        "SELECT w.actor_id, w.origin, w.count, w.first_seen, w.last_seen FROM ("
        "SELECT actor_id, actor_ip AS origin, count(*) AS count, min(timestamp) AS first_seen, "
        "max(timestamp) AS last_seen FROM secrets_audit_log "
        "WHERE timestamp >= :since AND actor_ip IS NOT NULL" + _SCOPE + " "
        "GROUP BY actor_id, actor_ip) AS w "
        "WHERE (SELECT count(*) FROM (SELECT 1 FROM secrets_audit_log AS h "
        "WHERE h.actor_id = w.actor_id AND h.timestamp >= :baseline AND h.timestamp < :since "
        "LIMIT :min_history) AS history) >= :min_history "
        "AND NOT EXISTS (SELECT 1 FROM secrets_audit_log AS h WHERE h.actor_id = w.actor_id "
        "AND h.actor_ip = w.origin AND h.timestamp >= :baseline AND h.timestamp < :since)"
    ),
    "new_user_agent": (
        "SELECT w.actor_id, w.origin, w.count, w.first_seen, w.last_seen FROM ("
        "SELECT actor_id, actor_user_agent AS origin, count(*) AS count, "
        "min(timestamp) AS first_seen, max(timestamp) AS last_seen FROM secrets_audit_log "
        "WHERE timestamp >= :since AND actor_user_agent IS NOT NULL" + _SCOPE + " "
        "GROUP BY actor_id, actor_user_agent) AS w "
        "WHERE (SELECT count(*) FROM (SELECT 1 FROM secrets_audit_log AS h "
        "WHERE h.actor_id = w.actor_id AND h.timestamp >= :baseline AND h.timestamp < :since "
        "LIMIT :min_history) AS history) >= :min_history "
        "AND NOT EXISTS (SELECT 1 FROM secrets_audit_log AS h WHERE h.actor_id = w.actor_id "
        "AND h.actor_user_agent = w.origin AND h.timestamp >= :baseline "
        "AND h.timestamp < :since)"
    ),
    # Quarter-hour buckets: every time zone's offset is a multiple of 15 minutes, so all events
    # of a bucket share one local hour wherever business hours are defined.
    "hourly": (
        "SELECT actor_id, {hour} AS hour, count(*) AS count, max(actor_ip) AS actor_ip "
        "FROM secrets_audit_log WHERE timestamp >= :since" + _SCOPE + " "
        "GROUP BY actor_id, {hour}"
    ),
    "rates": (
        "SELECT actor_id, sum(CASE WHEN timestamp >= :since THEN 1 ELSE 0 END) AS window_count, "
        "sum(CASE WHEN timestamp < :since THEN 1 ELSE 0 END) AS baseline_count, "
        "min(timestamp) AS first_seen, "
        "max(actor_ip) AS actor_ip FROM secrets_audit_log "
        "WHERE timestamp >= :baseline" + _SCOPE + " GROUP BY actor_id"
    ),
    **CONSOLE_ANALYSES,
}


def analysis_sql(dialect: Dialect, name: str, params: dict[str, Any]) -> str:
    """The named analysis with the optional resource/actor scope and dialect expressions."""
    scope = ""
    if params.get("resource_name") is not None:
        scope += " AND resource_name = :resource_name"
    if params.get("actor_id") is not None:
        scope += " AND actor_id = :actor_id"
    text = ANALYSES[name]
    if isinstance(text, dict):
        text = text[dialect.name]
    return text.replace(_SCOPE, scope).replace("{hour}", dialect.hour).replace("{day}", dialect.day)


def as_datetime_params(params: dict[str, Any], convert: Any) -> dict[str, Any]:
    return {k: convert(v) if isinstance(v, datetime) else v for k, v in params.items()}
