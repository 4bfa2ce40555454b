"""Line charts as inline SVG, drawn server-side (no JavaScript, no CDN), and the grouping of a
job's metric series into charts: every loss in one chart, train/val/test variants of the same
metric together, single points as plain numbers (a chart of one point says nothing)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

Points = list[tuple[int, float]]

# Colour-blind-safe palette (Okabe-Ito, blue first).
PALETTE = ("#2f6fed", "#e66100", "#1a7f37", "#9b59b6", "#d4a017", "#0aa6b8", "#cf222e", "#555")
_SPLITS = ("train_", "val_", "eval_", "test_")


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    span = hi - lo
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def multi_line_chart_svg(
    title: str,
    series: dict[str, Points],
    *,
    width: int = 420,
    height: int = 170,
    legend: bool = True,
) -> SafeString:
    """One chart, one polyline per series, shared axes; a legend when there is more than one."""
    clean = {n: [(s, v) for s, v in pts if math.isfinite(v)] for n, pts in series.items()}
    names = list(clean)
    show_legend = legend and len(names) > 1
    left, right, top, bottom = 48, 12, 24, 20
    legend_h = 16 if show_legend else 0
    w, h = width - left - right, height - top - bottom - legend_h
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" preserveAspectRatio="xMinYMin meet" role="img" '
        f'aria-label="{escape(title)} chart">',
        f'<text x="{left}" y="14" font-size="12" font-weight="600" fill="#1b1f24">'
        f"{escape(title)}</text>",
    ]
    pts_all = [p for pts in clean.values() for p in pts]
    if not pts_all:
        parts.append(
            f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#ccc"/>'
        )
        parts.append(
            f'<text x="{left + 8}" y="{top + h / 2}" font-size="11" fill="#667085">no data</text>'
        )
        parts.append("</svg>")
        return mark_safe("".join(parts))

    xs = [s for s, _ in pts_all]
    ys = [v for _, v in pts_all]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        pad = abs(y0) * 0.05 or 0.5
        y0, y1 = y0 - pad, y1 + pad
    else:
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad

    def sx(x):
        return left + (x - x0) / (x1 - x0) * w

    def sy(y):
        return top + (1 - (y - y0) / (y1 - y0)) * h

    # Horizontal grid with round tick values.
    for t in _nice_ticks(y0, y1):
        y = sy(t)
        parts.append(
            f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef0f3"/>'
            f'<text x="{left - 5}" y="{y + 3:.1f}" font-size="10" text-anchor="end" '
            f'fill="#667085">{_fmt(t)}</text>'
        )
    parts += [
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#d8dee4"/>',
        f'<text x="{left}" y="{top + h + 13}" font-size="10" fill="#667085">{x0}</text>',
        f'<text x="{left + w}" y="{top + h + 13}" font-size="10" text-anchor="end" '
        f'fill="#667085">{x1}</text>',
    ]
    for i, name in enumerate(names):
        pts = clean[name]
        if not pts:
            continue
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" '
            f'stroke-linejoin="round" points="{path}"><title>{escape(name)}: last '
            f"{_fmt(pts[-1][1])} at step {pts[-1][0]}</title></polyline>"
        )
        if len(pts) <= 12:
            parts += [
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>'
                for x, y in pts
            ]
    if show_legend:
        lx, ly = left, height - 5
        for i, name in enumerate(names):
            colour = PALETTE[i % len(PALETTE)]
            parts.append(
                f'<rect x="{lx}" y="{ly - 8}" width="10" height="3" fill="{colour}"/>'
                f'<text x="{lx + 14}" y="{ly}" font-size="10" fill="#344054">{escape(name)}</text>'
            )
            lx += 22 + 6 * len(name)
    parts.append("</svg>")
    return mark_safe("".join(parts))


def line_chart_svg(name: str, points: Points, *, width: int = 420, height: int = 160) -> SafeString:
    return multi_line_chart_svg(name, {name: points}, width=width, height=height)


@dataclass
class MetricCharts:
    loss: SafeString | None = None
    grid: list[SafeString] = field(default_factory=list)
    # (name, last value, step) for series with a single point, e.g. final test metrics.
    scalars: list[tuple[str, str, int]] = field(default_factory=list)


def _base_name(name: str) -> str:
    for prefix in _SPLITS:
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix) :]
    return name


def metric_charts(series: dict[str, Points]) -> MetricCharts:
    """Group a job's series: all ``*_loss`` (and ``loss``) in one chart, other multi-point series
    grouped by metric name across splits (train_accuracy + val_accuracy), single points as
    numbers."""
    out = MetricCharts()
    losses: dict[str, Points] = {}
    groups: dict[str, dict[str, Points]] = {}
    for name in sorted(series):
        pts = [(s, v) for s, v in series[name] if math.isfinite(v)]
        if len(pts) == 1:
            out.scalars.append((name, _fmt(pts[0][1]), pts[0][0]))
        elif name == "loss" or name.endswith("_loss"):
            losses[name] = pts
        else:
            groups.setdefault(_base_name(name), {})[name] = pts
    if losses:
        out.loss = multi_line_chart_svg("Loss", losses, width=860, height=250)
    for base, members in groups.items():
        title = base if len(members) > 1 else next(iter(members))
        out.grid.append(multi_line_chart_svg(title, members, width=300, height=160))
    return out
