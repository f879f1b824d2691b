"""Small bar charts drawn on the server as inline SVG, so the console needs no JavaScript."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

_BAR = 18
_GAP = 6
_LABEL = 130
_WIDTH = 420


def bars(rows: list[tuple[str, float]], *, unit: str = "") -> Markup:
    """Horizontal bars, one per (label, value), scaled to the largest value."""
    if not rows:
        return Markup('<p class="muted">no data</p>')
    top = max(value for _, value in rows) or 1
    height = len(rows) * (_BAR + _GAP)
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {height}" width="100%" role="img"'
        f' preserveAspectRatio="xMinYMin meet">'
    ]
    for index, (label, value) in enumerate(rows):
        y = index * (_BAR + _GAP)
        width = max((_WIDTH - _LABEL - 60) * value / top, 1 if value else 0)
        shown = f"{value:g}{unit}"
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="12">{escape(label[:20])}</text>'
            f'<rect x="{_LABEL}" y="{y}" width="{width:.1f}" height="{_BAR}" fill="#3b6ea5"/>'
            f'<text x="{_LABEL + width + 4:.1f}" y="{y + 13}" font-size="12">{escape(shown)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def columns(rows: list[tuple[str, float]]) -> Markup:
    """Vertical bars for a time series (e.g. 30 days), labels on the first and last bar only."""
    if not rows:
        return Markup('<p class="muted">no data</p>')
    top = max(value for _, value in rows) or 1
    width, height, step = 420, 120, 420 / len(rows)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height + 16}" width="100%" role="img">']
    for index, (label, value) in enumerate(rows):
        bar = height * value / top
        parts.append(
            f'<rect x="{index * step + 1:.1f}" y="{height - bar:.1f}" width="{max(step - 2, 1):.1f}"'
            f' height="{bar:.1f}" fill="#3b6ea5"><title>{escape(label)}: {value:g}</title></rect>'
        )
    parts.append(f'<text x="0" y="{height + 13}" font-size="11">{escape(rows[0][0])}</text>')
    parts.append(
        f'<text x="{width}" y="{height + 13}" font-size="11" text-anchor="end">{escape(rows[-1][0])}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))
