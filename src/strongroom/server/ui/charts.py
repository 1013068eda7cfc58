"""Charts as server-rendered SVG: no script, no inline style (the CSP forbids both).

Shapes carry classes (``c0``..``c7``, ``sev-high``...) that the console's stylesheet colours;
each chart has a title and a text description for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

__all__ = ["bars", "stacked_bars", "timeline"]

_W, _H = 720, 220
_LEFT, _BOTTOM, _TOP, _RIGHT = 48, 36, 16, 12
PALETTE = 8


def _frame(title: str, body: list[str], height: int = _H, legend: str = "") -> Markup:
    text = escape(title)
    return Markup(  # noqa: S704 (every text part is escaped above or below)
        f'<svg class="chart" viewBox="0 0 {_W} {height}" role="img" aria-label="{text}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{text}</title>{"".join(body)}</svg>{legend}'
    )


def _nice_max(value: float) -> float:
    """The axis top: four grid steps of 1, 2 or 5 times a power of ten, covering ``value``."""
    wanted = max(1.0, value / 4)
    magnitude = float(10 ** (len(str(int(wanted))) - 1))
    for step in (1.0, 2.0, 5.0, 10.0):
        if wanted <= step * magnitude:
            return 4 * step * magnitude
    return 4 * wanted


def _axis(top: float, height: int) -> list[str]:
    plot_h = height - _TOP - _BOTTOM
    out = []
    for i in range(5):
        value = top * i / 4
        y = height - _BOTTOM - plot_h * i / 4
        out.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        label = f"{value:,.0f}"
        out.append(f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f"{label}</text>")  # fmt: skip
    return out


def _labels(labels: Sequence[str], slot: float, height: int) -> list[str]:
    every = max(1, len(labels) // 12)
    out = []
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = _LEFT + slot * (i + 0.5)
        out.append(f'<text class="tick" x="{x:.1f}" y="{height - _BOTTOM + 16}" '
                   f'text-anchor="middle">{escape(label)}</text>')  # fmt: skip
    return out


def bars(title: str, points: Sequence[tuple[str, float]], *, css: str = "c0") -> Markup:
    """One series of vertical bars."""
    return stacked_bars(title, [(label, {"": value}) for label, value in points], [""], css=[css])


def stacked_bars(
    title: str,
    buckets: Sequence[tuple[str, dict[str, float]]],
    keys: Sequence[str],
    *,
    css: Sequence[str] | None = None,
) -> Markup:
    """Bars stacked by ``keys`` (e.g. reads per day by actor), with a legend."""
    classes = list(css) if css else [f"c{i % PALETTE}" for i in range(len(keys))]
    # At least 4, so the five grid lines fall on whole counts.
    top = _nice_max(max(4.0, max((sum(v.values()) for _, v in buckets), default=0)))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(1, len(buckets))
    body = _axis(top, _H)
    for i, (label, values) in enumerate(buckets):
        y = float(_H - _BOTTOM)
        for k, key in enumerate(keys):
            value = values.get(key, 0)
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            tip = escape(f"{label} {key}: {value:,.0f}".replace("  ", " "))
            body.append(
                f'<rect class="{classes[k]}" x="{_LEFT + slot * i + slot * 0.1:.1f}" '
                f'y="{y:.1f}" width="{max(1.0, slot * 0.8):.1f}" height="{h:.1f}">'
                f"<title>{tip}</title></rect>"
            )
    body += _labels([label for label, _ in buckets], slot, _H)
    legend = ""
    if any(keys):
        items = "".join(
            f'<li><span class="swatch {classes[k]}"></span>{escape(key)}</li>'
            for k, key in enumerate(keys)
        )
        legend = f'<ul class="legend">{items}</ul>'
    return _frame(title, body, legend=legend)


def timeline(
    title: str,
    rows: Sequence[tuple[str, datetime, datetime, str, str]],
    start: datetime,
    end: datetime,
) -> Markup:
    """One lane per label; each item a bar from its first to its last event, classed by
    severity (label, first, last, severity, tooltip)."""
    lanes = sorted({r[0] for r in rows})
    height = _TOP + _BOTTOM + 26 * max(1, len(lanes))
    span = max(1.0, (end - start).total_seconds())
    left = 150
    plot_w = _W - left - _RIGHT
    body = []
    for i, lane in enumerate(lanes):
        y = _TOP + 26 * i
        body.append(f'<text class="tick" x="{left - 6}" y="{y + 15}" text-anchor="end">'
                    f"{escape(lane)}</text>")  # fmt: skip
        body.append(f'<line class="grid" x1="{left}" x2="{_W - _RIGHT}" y1="{y + 22}" '
                    f'y2="{y + 22}"/>')  # fmt: skip
    for lane, first, last, severity, tip in rows:
        y = _TOP + 26 * lanes.index(lane)
        x0 = left + plot_w * max(0.0, (first - start).total_seconds()) / span
        x1 = left + plot_w * min(span, (last - start).total_seconds()) / span
        body.append(
            f'<rect class="sev-{escape(severity)}" x="{x0:.1f}" y="{y + 4}" '
            f'width="{max(4.0, x1 - x0):.1f}" height="16"><title>{escape(tip)}</title></rect>'
        )
    for i in range(5):
        moment = start + (end - start) * i / 4
        x = left + plot_w * i / 4
        anchor = "end" if i == 4 else "middle"
        body.append(f'<text class="tick" x="{x:.1f}" y="{height - _BOTTOM + 16}" '
                    f'text-anchor="{anchor}">{moment:%m-%d %H:%M}</text>')  # fmt: skip
    return _frame(title, body, height)
