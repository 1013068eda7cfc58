"""A collected report as JSON-ready data, CSV, HTML (Jinja2) and PDF (ReportLab), signed.

Every format shows the same tables (:func:`tables`); HTML and PDF cap long tables at
``MAX_ROWS`` rows and say how many were left out (JSON and CSV carry every row).
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2

from strongroom.core.errors import ValidationError
from strongroom.services.reports.signing import FORMATS, ReportSigner, canonical_json, sign_document

__all__ = ["MAX_ROWS", "Table", "jsonable", "render", "tables"]

MAX_ROWS = 200


def jsonable(value: Any) -> Any:
    """Datetimes as ISO 8601 text, enums as their values, tuples as lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Table:
    section: str
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    note: str = ""


def _t(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        return value[:16].replace("T", " ") + "Z"
    return str(value)


def tables(data: dict[str, Any]) -> list[Table]:
    """The report's tables, from JSON-ready data."""
    rot, acc, rev, una = data["rotation"], data["access"], data["revocations"], data["unauthorized"]
    integ = data["integrity"]
    return [
        Table("rotation", "Rotation compliance per secret",
              ("secret", "type", "policy", "every (days)", "last rotation", "due", "status",
               "rotations in period", "failed"),
              [(e["name"], e["secret_type"], e["policy"], e["rotation_days"], e["last_rotation"],
                e["due_at"], e["status"], e["rotations_in_period"],
                e["failed_rotations_in_period"])
               for e in sorted(rot["entries"], key=lambda e: (e["status"] != "overdue",
                                                              e["name"].lower()))],
              f"{rot['compliant']} of {rot['secrets']} secrets compliant, {rot['overdue']} overdue,"
              f" {rot['without_policy']} on their type's default policy"),
        Table("rotation_evidence", "Rotation events (evidence)",
              ("secret", "event id", "at", "result", "version", "actor"),
              [(e["name"], ev["id"], ev["at"], ev["result"], ev["version"], ev["actor"])
               for e in rot["entries"] for ev in e["evidence"]]),
        Table("can_read", "Who can read what (policies x identities)",
              ("identity", "policy", "pattern"),
              [(r["identity"], r["policy"], r["pattern"]) for r in acc["can_read"]]),
        Table("readers", "Readers", ("identity", "secrets read", "reads", "last read"),
              [(r["identity"], r["secrets"], r["reads"], r["last_read"]) for r in acc["readers"]]),
        Table("did_read", "Who did read what (most-read first)",
              ("identity", "secret", "reads", "last read"),
              [(r["identity"], r["secret"], r["reads"], r["last_read"]) for r in acc["did_read"]],
              f"the {acc['did_read_limit']:,} most-read identity and secret pairs at most; the "
              "audit export has every read"),
        Table("grants_never_used", "Grants never used in the period",
              ("identity", "policy", "grant"),
              [(g["identity"], g["policy"], g["grant"]) for g in acc["grants_never_used"]]),
        Table("wildcard_grants", "Wildcard grants", ("identity", "policy", "grant", "every secret"),
              [(g["identity"], g["policy"], g["grant"], g["everything"])
               for g in acc["wildcard_grants"]]),
        Table("tokens", "Tokens never used or never expiring",
              ("token id", "identity", "created", "expires", "used"),
              [(t["id"], t["identity"], t["created_at"], t["expires_at"], t["used"])
               for t in _unique_tokens(acc)]),
        Table("revocations", "Revocations and their approval chains",
              ("id", "secret", "reason", "severity", "status", "requested by", "requested",
               "approvals", "revoked", "minutes", "break-glass"),
              [(e["id"], e["secret"], e["reason"], e["severity"], e["status"],
                e["requested_by"], e["requested_at"],
                "; ".join(f"{a['by']} {_t(a['at'])}" for a in e["approvals"]) or "-",
                e["revoked_at"], e["minutes_to_revoke"], e["break_glass"])
               for e in rev["entries"]],
              f"{len(rev['break_glass'])} break-glass uses; reviews: "
              f"{rev['break_glass_reviews']['acknowledged']} acknowledged, "
              f"{rev['break_glass_reviews']['open']} open "
              f"({rev['break_glass_reviews']['overdue']} overdue)"),
        Table("unauthorized", "Unauthorized attempts",
              ("identity", "address", "secret", "code", "count", "first", "last"),
              [(r["actor_id"], r["actor_ip"], r["resource_name"], r["error_code"], r["count"],
                r["first_seen"], r["last_seen"]) for r in una["sources"]],
              f"{una['attempts']} attempts"),
        Table("threats", "Threat detections",
              ("type", "severity", "identity", "address", "secret", "count", "first", "last"),
              [(t["type"], t["severity"], t.get("actor_id"), t.get("actor_ip"),
                t.get("resource_name"), t.get("count"), t.get("first_seen"), t.get("last_seen"))
               for t in una["threats"]],
              f"{una['detections']} detections"),
        Table("integrity", "Audit integrity", ("check", "value"),
              [("chain valid", integ.get("valid")), ("events checked", integ.get("checked")),
               ("first id", integ.get("first_id")), ("last id", integ.get("last_id")),
               ("broken at", integ.get("broken_at")), ("reason", integ.get("reason")),
               ("head id", integ.get("head_id")), ("head hash", integ.get("head_hash"))]),
    ]  # fmt: skip


def _unique_tokens(access: dict[str, Any]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for token in [*access["tokens_never_used"], *access["tokens_never_expiring"]]:
        seen[token["id"]] = token
    return list(seen.values())


def _csv(data: dict[str, Any]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    meta = data["meta"]
    writer.writerow(["section", "title", "row"])
    writer.writerow(["meta", "framework", meta["framework_title"]])
    writer.writerow(["meta", "period", f"{meta['from']} .. {meta['to']}"])
    writer.writerow(["meta", "data sha256", data_digest(data)])
    for table in tables(data):
        writer.writerow([table.section, "columns", *table.columns])
        for row in table.rows:
            writer.writerow([table.section, "", *(_t(v) for v in row)])
    return buffer.getvalue().encode("utf-8")


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("strongroom.services.reports", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["t"] = _t


def data_digest(data: dict[str, Any]) -> str:
    """SHA-256 of the report's data (its canonical JSON): the same in every format."""
    return hashlib.sha256(canonical_json(data)).hexdigest()


def _html(data: dict[str, Any]) -> bytes:
    shown = []
    for table in tables(data):
        left = max(0, len(table.rows) - MAX_ROWS)
        shown.append((table, table.rows[:MAX_ROWS], left))
    text = _ENV.get_template("report.html").render(
        meta=data["meta"], tables=shown, digest=data_digest(data)
    )
    return text.encode("utf-8")


def render(data: dict[str, Any], fmt: str, signer: ReportSigner) -> bytes:
    """The signed file of ``data`` (as collected) in ``fmt``."""
    if fmt not in FORMATS:
        raise ValidationError(f"unknown report format; known: {', '.join(FORMATS)}")
    ready = jsonable(data)
    if fmt == "json":
        return sign_document(signer, "json", ready)
    if fmt == "csv":
        return sign_document(signer, "csv", _csv(ready))
    if fmt == "html":
        return sign_document(signer, "html", _html(ready))
    from strongroom.services.reports.pdf import render_pdf  # noqa: PLC0415 (ReportLab on use)

    shown = [(t, t.rows[:MAX_ROWS], max(0, len(t.rows) - MAX_ROWS)) for t in tables(ready)]
    return sign_document(signer, "pdf", render_pdf(ready["meta"], shown, data_digest(ready)))
