"""Line charts as inline SVG, drawn server-side (no JavaScript, no CDN)."""

from __future__ import annotations

import math

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_END = 'font-size="10" text-anchor="end"'


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def line_chart_svg(
    name: str, points: list[tuple[int, float]], *, width: int = 420, height: int = 160
) -> SafeString:
    pts = [(s, v) for s, v in points if math.isfinite(v)]
    left, right, top, bottom = 52, 10, 18, 22
    w, h = width - left - right, height - top - bottom
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(name)} chart">',
        f'<text x="{left}" y="12" font-size="12" font-weight="bold">{escape(name)}</text>',
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#ccc"/>',
    ]
    if pts:
        xs = [s for s, _ in pts]
        ys = [v for _, v in pts]
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        if x1 == x0:
            x1 = x0 + 1
        if y1 == y0:
            y0, y1 = y0 - 0.5, y1 + 0.5

        def sx(x):
            return left + (x - x0) / (x1 - x0) * w

        def sy(y):
            return top + (1 - (y - y0) / (y1 - y0)) * h

        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts += [
            f'<polyline fill="none" stroke="#2a6df4" stroke-width="1.5" points="{path}"/>',
            f'<text x="{left - 4}" y="{top + 9}" {_END}>{_fmt(y1)}</text>',
            f'<text x="{left - 4}" y="{top + h}" {_END}>{_fmt(y0)}</text>',
            f'<text x="{left}" y="{height - 6}" font-size="10">{x0}</text>',
            f'<text x="{left + w}" y="{height - 6}" font-size="10" text-anchor="end">{x1}</text>',
        ]
        if len(pts) == 1:
            parts.append(
                f'<circle cx="{sx(xs[0]):.1f}" cy="{sy(ys[0]):.1f}" r="3" fill="#2a6df4"/>'
            )
    else:
        parts.append(f'<text x="{left + 8}" y="{top + h / 2}" font-size="11">no data</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))
