"""The one set of server-side SVG charts (no JavaScript, no CDN): line charts (job metrics,
RFNet training curves), heatmaps (RFNet's confusion matrix, annotators vs consensus), grouped
bars (label distribution) and the reliability diagram (calibration). Every function escapes its
text and returns a SafeString. `metric_charts` groups a job's metric series: every loss in one
chart, train/val/test variants of the same metric together, single points as plain numbers (a
chart of one point says nothing)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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


def line_chart(
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


def _svg(width: float, height: float, body: list[str], title: str, svg_id: str = "") -> SafeString:
    ident = f' id="{escape(svg_id)}"' if svg_id else ""
    return mark_safe(
        f'<svg{ident} class="chart fit" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width:g} {height:g}" style="max-width:{width:g}px" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def heatmap(
    matrix: Sequence[Sequence[int]],
    labels: Sequence[str],
    *,
    title: str,
    svg_id: str = "",
    row_axis: str = "",
    col_axis: str = "",
    shade_by: str = "row",
    cell: int = 40,
    cell_title: Callable[[int, int, int, int], str] | None = None,
) -> SafeString:
    """A square count matrix (rows and columns share `labels`) as coloured cells with their
    counts; the diagonal (agreement) outlined. `shade_by`: "row" (share of the row: confusion
    matrices) or "peak" (share of the largest cell). `cell_title(i, j, value, row_total)`: the
    hover text of a cell."""
    n = len(labels)
    peak = max([v for row in matrix for v in row] + [1])
    margin, top = 140, 20
    body = []
    if col_axis:
        body.append(
            f'<text x="{margin}" y="12" font-size="11" fill="#555">{escape(col_axis)}</text>'
        )
    axis_y = top + n * cell + 10
    for i, label in enumerate(labels):
        body.append(
            f'<text x="{margin - 6}" y="{top + i * cell + cell / 2 + 4:g}" font-size="11" '
            f'text-anchor="end">{escape(label)}</text>'
            f'<text transform="translate({margin + i * cell + cell / 2 - 4:g},{axis_y}) '
            f'rotate(60)" font-size="11">{escape(label)}</text>'
        )
    for i in range(n):
        row = list(matrix[i]) if i < len(matrix) else [0] * n
        total = sum(row)
        for j in range(n):
            value = row[j] if j < len(row) else 0
            share = value / (total or 1) if shade_by == "row" else value / peak
            r, g = round(255 - 205 * share), round(255 - 155 * share)
            diag = i == j
            hover = (
                cell_title(i, j, value, total)
                if cell_title
                else f"{labels[i]} / {labels[j]}: {value}"
            )
            x, y = margin + j * cell, top + i * cell
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="rgb({r},{g},255)" '
                f'stroke="{"#2f7d32" if diag else "#fff"}" stroke-width="{2 if diag else 1}">'
                f"<title>{escape(hover)}</title></rect>"
                f'<text x="{x + cell / 2:g}" y="{y + cell / 2 + 4:g}" font-size="11" '
                f'text-anchor="middle" fill="{"#fff" if share > 0.55 else "#222"}">{value}</text>'
            )
    if row_axis:
        body.append(
            f'<text x="4" y="{top + n * cell + 14}" font-size="11" fill="#555">'
            f"{escape(row_axis)}</text>"
        )
    # Column labels are rotated below the grid: the viewBox holds them.
    return _svg(margin + n * cell + 80, top + n * cell + 135, body, title, svg_id)


def grouped_bars(
    rows: Sequence[tuple[str, Sequence[int]]],
    *,
    series: Sequence[tuple[str, str]],
    title: str,
    svg_id: str = "",
    width: int = 460,
    bar_h: int = 28,
) -> SafeString:
    """Horizontal bars, one group per row label and one bar per series ((name, colour) pairs),
    all on one scale; each bar's count printed after it."""
    peak = max([v for _, values in rows for v in values] + [1])
    label_w = 140
    room = width - label_w - 40  # leave room for the counts
    k = max(1, len(series))
    thick = bar_h / k
    body = []
    for i, (label, values) in enumerate(rows):
        y = i * (bar_h + 10)
        body.append(
            f'<text x="0" y="{y + bar_h * 0.45:g}" font-size="12" dominant-baseline="middle">'
            f"{escape(label)}</text>"
        )
        for s, ((name, colour), value) in enumerate(zip(series, values, strict=True)):
            w = round(room * value / peak, 1)
            by = y + s * thick
            body.append(
                f'<rect x="{label_w}" y="{by:g}" width="{w:g}" height="{thick:g}" '
                f'fill="{colour}"><title>{escape(label)}: {value} {escape(name)}</title></rect>'
                f'<text x="{label_w + 4 + w:g}" y="{by + 10:g}" font-size="11" fill="#555">'
                f"{value}</text>"
            )
    return _svg(width, max(1, len(rows)) * (bar_h + 10), body, title, svg_id)


def reliability_diagram(bins: Sequence[dict], *, title: str = "Calibration") -> SafeString:
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    size, pad = 240, 36
    width, height = size + pad + 12, size + pad + 12
    body = [
        f'<rect x="{pad}" y="12" width="{size}" height="{size}" fill="none" stroke="#888"/>',
        f'<line x1="{pad}" y1="{12 + size}" x2="{pad + size}" y2="12" stroke="#aaa" '
        f'stroke-dasharray="4 3"/>',
        f'<text x="{pad + size / 2}" y="{height - 4}" font-size="10" text-anchor="middle">'
        f"confidence</text>",
        f'<text transform="translate(10,{12 + size / 2}) rotate(-90)" font-size="10" '
        f'text-anchor="middle">accuracy</text>',
    ]
    for b in bins:
        if not b.get("count") or b.get("accuracy") is None:
            continue
        x = pad + b["lo"] * size
        w = (b["hi"] - b["lo"]) * size
        h = b["accuracy"] * size
        body.append(
            f'<rect x="{x + 1:.1f}" y="{12 + size - h:.1f}" width="{max(w - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="rgba(47,111,237,.55)"><title>{b["lo"]:.1f}–{b["hi"]:.1f}: '
            f"accuracy {b['accuracy']:.2f}, confidence {b['confidence']:.2f}, "
            f"n={b['count']}</title></rect>"
        )
    return _svg(width, height, body, title)


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
        out.loss = line_chart("Loss", losses, width=860, height=250)
    for base, members in groups.items():
        title = base if len(members) > 1 else next(iter(members))
        out.grid.append(line_chart(title, members, width=300, height=160))
    return out
