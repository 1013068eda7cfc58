"""Overview, inventory, one secret's detail and the audited reveal of its value."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from strongroom.backends.base import name_key
from strongroom.core.audit import AuditAction
from strongroom.core.errors import RotationNotConfiguredError
from strongroom.core.models import SecretType
from strongroom.core.policy import Action
from strongroom.core.rotation import policy_days
from strongroom.server.ui import charts
from strongroom.server.ui.web import page, render, ui
from strongroom.services.analytics.queries import analyse, last_reads
from strongroom.services.rotation.secrets_rotation import policy_due
from strongroom.services.wiring import Strongroom

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)
PAGE_SIZE = 50
Text = Annotated[str | None, Query(max_length=128)]


@router.get("/")
@page
async def overview(request: Request, hours: Annotated[int, Query(ge=1, le=720)] = 24) -> Response:
    console = ui(request)
    await console.require(Action.AUDIT_READ, None)
    app = console.services.app
    now = app.clock()
    since = now - timedelta(hours=hours)
    activity, actors = await asyncio.gather(
        analyse(app, "console_activity", since=since),
        analyse(app, "console_top_actors", since=since, limit=10),
    )
    buckets: dict[datetime, dict[str, float]] = {}
    for row in activity:
        hour = row["hour"].replace(minute=0, second=0, microsecond=0)
        slot = buckets.setdefault(hour, {"reads": 0, "other": 0, "unauthorized": 0})
        slot["reads"] += int(row["reads"])
        slot["unauthorized"] += int(row["unauthorized"])
        slot["other"] += int(row["count"]) - int(row["reads"]) - int(row["unauthorized"])
    start = since.replace(minute=0, second=0, microsecond=0)
    series = [
        (f"{start + timedelta(hours=i):%H}h", buckets.get(start + timedelta(hours=i), {}))
        for i in range(hours + 1)
    ]
    totals = {k: sum(v.get(k, 0) for _, v in series) for k in ("reads", "other", "unauthorized")}
    return render(
        request, "overview.html", ui=console, active="overview", hours=hours, totals=totals,
        activity=charts.stacked_bars(
            f"Events per hour, last {hours} hours", series, ["reads", "other", "unauthorized"],
            css=["c0", "c2", "sev-high"]),
        refused=charts.bars(f"Unauthorized attempts per hour, last {hours} hours",
                            [(label, v.get("unauthorized", 0)) for label, v in series],
                            css="sev-high"),
        top=charts.bars("Top actors by events", [(str(a["actor_id"])[:12], int(a["count"]))
                                                 for a in actors], css="c1"),
        actors=actors,
    )  # fmt: skip


def _compliance(
    props: dict[str, Any], config: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    if config is not None:
        due = policy_due(config, now)
        return {"policy_days": config["rotation_days"], "last_rotation": config["last_rotation"],
                "due": due, "overdue": due <= now, "configured": True,
                "failing": config["last_result"] == "FAILURE"}  # fmt: skip
    days = policy_days(SecretType(props["secret_type"]))
    due = props["created_at"] + timedelta(days=days)
    return {"policy_days": days, "last_rotation": props["created_at"], "due": due,
            "overdue": due <= now, "configured": False, "failing": False}  # fmt: skip


async def _inventory(app: Strongroom) -> list[dict[str, Any]]:
    """Every live secret's properties with its rotation compliance, sorted by name."""
    now = app.clock()
    configs = {r["secret_name"]: r for r in await app.rotation_store.list_all()}
    rows = []
    for found in await app.store.list_secrets():
        props = found.to_dict()
        rotation = _compliance(props, configs.get(name_key(found.name)), now)
        expired = found.expires_at is not None and found.expires_at <= now
        state = ("disabled" if not found.enabled else "expired" if expired
                 else "overdue" if rotation["overdue"] else "compliant")  # fmt: skip
        rows.append({**props, "key": found.name.lower(), "rotation": rotation, "state": state})
    rows.sort(key=lambda r: r["key"])
    return rows


@router.get("/secrets")
@page
async def inventory(
    request: Request,
    q: Text = None,
    type: Text = None,
    status: Text = None,
    tag: Text = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    console = ui(request)
    caller = console.principal
    if not caller.holds(Action.LIST):
        await console.require(Action.LIST, None)
    svc = console.services
    app = svc.app
    # The listing is audited per view, as the API's is; the properties come from a snapshot
    # at most a few seconds old (see snapshots.py), filtered here by the caller's policies.
    async with app.audit.operation(AuditAction.LIST, None, operation="console.inventory"):
        snapshot = await console.snapshots("inventory").get(
            "all", lambda: _inventory(app), app.clock
        )
    needle = (q or "").strip().lower()
    tag_key, _, tag_value = (tag or "").partition("=")
    rows = []
    for row in snapshot.value:
        if needle and needle not in row["key"]:
            continue
        if type and row["secret_type"] != type:
            continue
        if status and row["state"] != status:
            continue
        tags = row["metadata"]
        if tag_key and (tag_key not in tags or (tag_value and tags[tag_key] != tag_value)):
            continue
        if caller.may(Action.LIST, row["name"]):
            rows.append(row)
    now = snapshot.taken_at
    shown = [dict(r) for r in rows[offset : offset + PAGE_SIZE]]
    audited = [r["name"] for r in shown if caller.may(Action.AUDIT_READ, r["name"])]
    reads = await last_reads(svc.app, audited) if audited else {}
    for row in shown:
        row["last_read"] = reads.get(row["name"].lower(), "hidden")
    template = "partials/inventory_rows.html" if request.headers.get("hx-request") else (
        "inventory.html")  # fmt: skip
    return render(
        request, template, ui=console, active="secrets", rows=shown, total=len(rows),
        offset=offset, page_size=PAGE_SIZE, now=now, types=[t.value for t in SecretType],
        query={"q": q or "", "type": type or "", "status": status or "", "tag": tag or ""},
        overdue=sum(1 for r in rows if r["state"] == "overdue"), taken_at=snapshot.taken_at,
    )  # fmt: skip


@router.get("/secrets/{name}")
@page
async def detail(request: Request, name: str) -> Response:
    console = ui(request)
    await console.require(Action.LIST, name)
    svc = console.services
    app = svc.app
    now = app.clock()
    versions = await svc.manager.get_secret_versions(name)
    current = next((v for v in versions if v.get("current")), versions[0])
    audit_ok = console.may(Action.AUDIT_READ, name)
    history, chart, readers = [], None, []
    if audit_ok:
        try:
            history = await svc.rotation.get_rotation_history(name, 20)
        except RotationNotConfiguredError:  # never rotated and no schedule: nothing to show
            history = []
        rows = await analyse(app, "console_reads_by_actor", resource_name=name.lower(),
                             since=now - timedelta(days=30))  # fmt: skip
        per_actor: dict[str, int] = {}
        for row in rows:
            per_actor[row["actor_id"]] = per_actor.get(row["actor_id"], 0) + int(row["count"])
        readers = sorted(per_actor.items(), key=lambda kv: -kv[1])
        top = [a for a, _ in readers[:7]]
        days = [(now - timedelta(days=29 - i)).strftime("%Y-%m-%d") for i in range(30)]
        buckets = {d: {} for d in days}  # type: dict[str, dict[str, float]]
        for row in rows:
            actor = row["actor_id"] if row["actor_id"] in top else "others"
            slot = buckets.setdefault(str(row["day"]), {})
            slot[actor] = slot.get(actor, 0) + int(row["count"])
        keys = [*top, *(["others"] if len(readers) > len(top) else [])]
        chart = charts.stacked_bars(f"Reads of {name} per day by actor (30 days)",
                                    [(d[5:], buckets[d]) for d in days], keys)  # fmt: skip
    revocations = []
    if console.may(Action.REVOKE_REQUEST, name) or console.may(Action.REVOKE_APPROVE, name):
        revocations = await svc.revoke.get_revocation_history(name, 20)
    return render(
        request, "secret.html", ui=console, active="secrets", name=current["name"],
        current=current, versions=versions, history=history, chart=chart, readers=readers,
        audit_ok=audit_ok, revocations=revocations, now=now,
        may_read=console.may(Action.READ, name), revealed=None,
    )  # fmt: skip


@router.post("/secrets/{name}/reveal")
@page
async def reveal(request: Request, name: str) -> Response:
    """The value, once the read grant allows it; the read is audited like any other, and the
    answer is never stored by the browser (Cache-Control: no-store on every console answer)."""
    console = ui(request)
    await console.require(Action.READ, name)
    bundle = await console.services.manager.get_secret_bundle(name)
    value = bundle.value.reveal()
    shown = value if isinstance(value, str) else json.dumps(value, indent=2)
    return render(request, "partials/reveal.html", ui=console, name=bundle.properties.name,
                  version=bundle.properties.version, value=shown)  # fmt: skip
