"""Aggregates over the audit log for the console, compliance reports and analytics.

Run through ``AuditStore.analyse`` like the threat analyses: ``:name`` parameters only, fixed
SQL text. A query that differs between dialects is a mapping from dialect name to its text.
Time columns named ``hour``, ``first_seen`` and ``last_seen`` come back as datetimes.
"""

from __future__ import annotations

__all__ = ["CONSOLE_ANALYSES", "DENIED_CODES"]

#: Error codes of refused callers: no valid credential, or outside their policies.
DENIED_CODES = "('unauthorized', 'forbidden')"
_READ_OK = "action = 'READ' AND result = 'SUCCESS'"
_LAST_READ = (
    "(SELECT max(timestamp) FROM secrets_audit_log AS a WHERE a.resource_name = {name} "
    f"AND a.{_READ_OK.replace('result', 'a.result', 1)})"
)

CONSOLE_ANALYSES: dict[str, str | dict[str, str]] = {
    # The last successful read of each name in :names (a JSON array): one index probe a name.
    "console_last_reads": {
        "sqlite": (
            "SELECT j.value AS resource_name, "
            + _LAST_READ.format(name="j.value")
            + " AS last_seen FROM json_each(:names) AS j"
        ),
        "postgres": (
            "SELECT n.name AS resource_name, "
            + _LAST_READ.format(name="n.name")
            + " AS last_seen FROM jsonb_array_elements_text(CAST(:names AS jsonb)) AS n(name)"
        ),
    },
    # Successful reads of one secret per actor and day.
    "console_reads_by_actor": (
        "SELECT actor_id, {day} AS day, count(*) AS count FROM secrets_audit_log "
        "WHERE resource_name = :resource_name AND " + _READ_OK + " AND timestamp >= :since "
        "GROUP BY actor_id, {day}"
    ),
    # Activity in quarter-hour buckets: reads, failures and refusals.
    "console_activity": (
        "SELECT {hour} AS hour, count(*) AS count, "
        "sum(CASE WHEN " + _READ_OK + " THEN 1 ELSE 0 END) AS reads, "
        "sum(CASE WHEN result = 'FAILURE' THEN 1 ELSE 0 END) AS failures, "
        "sum(CASE WHEN result = 'FAILURE' AND error_code IN " + DENIED_CODES + " "
        "THEN 1 ELSE 0 END) AS unauthorized "
        "FROM secrets_audit_log WHERE timestamp >= :since GROUP BY {hour}"
    ),
    "console_top_actors": (
        "SELECT actor_id, count(*) AS count, "
        "sum(CASE WHEN result = 'FAILURE' THEN 1 ELSE 0 END) AS failures, "
        "count(DISTINCT resource_name) AS resources, max(timestamp) AS last_seen "
        "FROM secrets_audit_log WHERE timestamp >= :since "
        "GROUP BY actor_id ORDER BY count(*) DESC, actor_id LIMIT :limit"
    ),
    # Exposure of every secret over a window (rotation recommendations, lifecycle).
    "console_exposure": (
        "SELECT resource_name, "
        "count(DISTINCT CASE WHEN " + _READ_OK + " THEN actor_id END) AS readers, "
        "count(DISTINCT CASE WHEN action = 'READ' THEN actor_ip END) AS addresses, "
        "sum(CASE WHEN " + _READ_OK + " THEN 1 ELSE 0 END) AS reads, "
        "sum(CASE WHEN result = 'FAILURE' AND error_code IN "
        "('unauthorized', 'forbidden', 'revoked', 'disabled', 'deleted') "
        "THEN 1 ELSE 0 END) AS refused, "
        "max(CASE WHEN " + _READ_OK + " THEN timestamp END) AS last_seen "
        "FROM secrets_audit_log WHERE timestamp >= :since AND resource_name IS NOT NULL "
        "GROUP BY resource_name"
    ),
    # Who read which secret in a window (access review): the most-read pairs, and per reader.
    "console_did_read": (
        "SELECT actor_id, resource_name, count(*) AS count, max(timestamp) AS last_seen "
        "FROM secrets_audit_log WHERE " + _READ_OK + " AND timestamp >= :since "
        "AND timestamp < :until AND resource_name IS NOT NULL "
        "GROUP BY actor_id, resource_name ORDER BY count(*) DESC, actor_id, resource_name "
        "LIMIT :limit"
    ),
    "console_readers": (
        "SELECT actor_id, count(DISTINCT resource_name) AS resources, count(*) AS count, "
        "max(timestamp) AS last_seen FROM secrets_audit_log WHERE " + _READ_OK + " "
        "AND timestamp >= :since AND timestamp < :until GROUP BY actor_id"
    ),
    # Whether one identity used a grant in a window: a successful event of one of the grant's
    # audit actions (:act_a..:act_j, unused ones empty) on a name its pattern (as LIKE) matches.
    "console_grant_used": (
        "SELECT count(*) AS count FROM (SELECT 1 FROM secrets_audit_log "
        "WHERE actor_id = :who AND result = 'SUCCESS' AND timestamp >= :since "
        "AND timestamp < :until "
        "AND action IN (:act_a, :act_b, :act_c, :act_d, :act_e, :act_f, :act_g, :act_h, :act_i, "
        ":act_j) "
        "AND resource_name LIKE :pattern LIMIT 1) AS hit"
    ),
    # When each actor was last seen at all (tokens never used).
    "console_actor_activity": (
        "SELECT actor_id, count(*) AS count, min(timestamp) AS first_seen, "
        "max(timestamp) AS last_seen FROM secrets_audit_log WHERE timestamp >= :since "
        "AND actor_id <> 'anonymous' GROUP BY actor_id"
    ),
    "console_operation_counts": (
        "SELECT action, result, count(*) AS count FROM secrets_audit_log "
        "WHERE timestamp >= :since AND timestamp < :until GROUP BY action, result"
    ),
    "console_unauthorized": (
        "SELECT actor_id, actor_ip, resource_name, error_code, count(*) AS count, "
        "min(timestamp) AS first_seen, max(timestamp) AS last_seen FROM secrets_audit_log "
        "WHERE result = 'FAILURE' AND error_code IN " + DENIED_CODES + " "
        "AND timestamp >= :since AND timestamp < :until "
        "GROUP BY actor_id, actor_ip, resource_name, error_code "
        "ORDER BY count(*) DESC, actor_id LIMIT :limit"
    ),
}
