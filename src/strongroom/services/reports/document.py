"""A signed compliance report in one call: what the command line, the API and the console make
alike (collect the period's evidence, render it, sign it with the report key)."""

from __future__ import annotations

from datetime import datetime

from strongroom.core.errors import ValidationError
from strongroom.services.reports.collect import collect
from strongroom.services.reports.render import render
from strongroom.services.reports.signing import FORMATS, ReportSigner
from strongroom.services.wiring import Strongroom

__all__ = ["MEDIA_TYPES", "signed_report"]

#: The media type each format is served as.
MEDIA_TYPES = {"pdf": "application/pdf", "html": "text/html; charset=utf-8",
               "json": "application/json", "csv": "text/csv; charset=utf-8"}  # fmt: skip


async def signed_report(
    app: Strongroom, framework: str, since: datetime, until: datetime, fmt: str
) -> bytes:
    """The report for ``since <= t < until`` in ``fmt``, signed; a bad format or framework is
    a ValidationError before anything is read."""
    if fmt not in FORMATS:
        raise ValidationError(f"unknown report format; known: {', '.join(FORMATS)}")
    data = await collect(app, framework, since, until)
    return render(data, fmt, ReportSigner(app.report_signing_seed))
