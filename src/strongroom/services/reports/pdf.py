"""PDF rendering of a compliance report with ReportLab (pure Python, no system libraries)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from reportlab.graphics.charts.barcharts import HorizontalBarChart
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle

if TYPE_CHECKING:
    from strongroom.services.reports.render import Table

__all__ = ["render_pdf"]

_CELL = 48  # characters shown per cell; the JSON and CSV formats carry everything
_STYLE = TableStyle(
    [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 7),
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f4")),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#c9d1d9")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
)


def _cell(value: Any) -> str:
    from strongroom.services.reports.render import _t  # noqa: PLC0415

    text = _t(value)
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


def _compliance_chart(rows: list[tuple[Any, ...]]) -> Drawing:
    """Compliant and overdue secrets per type, as horizontal bars."""
    counts: dict[str, list[int]] = {}
    for row in rows:
        entry = counts.setdefault(str(row[1]), [0, 0])
        entry[0 if row[6] == "compliant" else 1] += 1
    types = sorted(counts) or ["none"]
    drawing = Drawing(160 * mm, 12 * mm + 9 * mm * len(types))
    chart = HorizontalBarChart()
    chart.x, chart.y = round(40 * mm), round(8 * mm)
    chart.width, chart.height = round(110 * mm), round(8 * mm * len(types))
    chart.data = [[counts.get(t, [0, 0])[0] for t in types],
                  [counts.get(t, [0, 0])[1] for t in types]]  # fmt: skip
    chart.categoryAxis.categoryNames = types
    chart.categoryAxis.labels.fontSize = 7
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.bars[0].fillColor = colors.HexColor("#2da44e")
    chart.bars[1].fillColor = colors.HexColor("#cf222e")
    drawing.add(chart)
    return drawing


def render_pdf(
    meta: dict[str, Any], shown: list[tuple[Table, list[tuple[Any, ...]], int]], digest: str
) -> bytes:
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=landscape(A4),
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=12 * mm,
        title=f"strongroom compliance report: {meta['framework_title']}",
        author="strongroom",
    )
    styles = getSampleStyleSheet()
    body, small = styles["BodyText"], styles["Italic"]
    story: list[Any] = [
        Paragraph(f"Compliance report: {meta['framework_title']}", styles["Title"]),
        Paragraph(
            f"Period {_cell(meta['from'])} to {_cell(meta['to'])}; generated "
            f"{_cell(meta['generated_at'])} by {_cell(meta['generated_by'])} "
            f"(strongroom {meta['strongroom_version']}, {meta['profile']} profile).",
            body,
        ),
        Paragraph(f"Report data SHA-256: {digest}", body),
        Paragraph(
            "The file carries an Ed25519 signature by strongroom's report key: check it with "
            "strongroom report verify FILE.",
            small,
        ),
        Spacer(1, 4 * mm),
    ]
    controls = [("section", "evidence for"), *meta["controls"].items()]
    story += [LongTable(controls, style=_STYLE, hAlign="LEFT"), Spacer(1, 4 * mm)]
    for table, rows, left in shown:
        story.append(Paragraph(table.title, styles["Heading2"]))
        if table.note:
            story.append(Paragraph(table.note, small))
        if table.section == "rotation" and rows:
            story.append(_compliance_chart(rows))
        if rows:
            data = [list(table.columns), *([_cell(v) for v in row] for row in rows)]
            story.append(LongTable(data, repeatRows=1, style=_STYLE, hAlign="LEFT"))
        else:
            story.append(Paragraph("None.", small))
        if left:
            story.append(Paragraph(f"{left} more rows in the JSON and CSV formats.", small))
        story.append(Spacer(1, 3 * mm))
    doc.build(story)
    return buffer.getvalue()
