"""Small inline SVG charts drawn on the server (no JavaScript, no CDN). Every function returns an
SVG string; all text is escaped here, so callers may mark the result safe."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ["#2f6fed", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#0a7ea4", "#bf3989", "#57606a"]


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
        f'class="chart">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    title: str = "Training curves",
    width: int = 520,
    height: int = 260,
) -> str:
    """One polyline per series on shared axes, with a legend."""
    points = [p for values in series.values() for p in values]
    if not points:
        return _svg(width, 40, ['<text x="4" y="24" fill="#667085">No data.</text>'], title)
    left, right, top, bottom = 48, 130, 12, 28
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    body = [
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#888"/>',
    ]
    for i in range(5):
        v = y0 + (y1 - y0) * i / 4
        body.append(
            f'<text x="{left - 4}" y="{sy(v) + 4:.1f}" font-size="10" text-anchor="end">'
            f"{v:.3g}</text>"
        )
    body.append(
        f'<text x="{left}" y="{height - 8}" font-size="10">{x0:g}</text>'
        f'<text x="{left + pw}" y="{height - 8}" font-size="10" text-anchor="end">{x1:g}</text>'
    )
    for i, (name, values) in enumerate(sorted(series.items())):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(values))
        body.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{coords}"/>'
        )
        for x, y in values:
            body.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2" fill="{color}"/>')
        ly = top + 12 + i * 15
        body.append(
            f'<rect x="{left + pw + 10}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
            f'<text x="{left + pw + 24}" y="{ly + 1}" font-size="11">{escape(name)}</text>'
        )
    return _svg(width, height, body, title)


def confusion_matrix(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], *, title: str = "Confusion matrix"
) -> str:
    """Rows: true class, columns: predicted class; cells shaded by row share."""
    n = len(labels)
    cell, left, top = 34, 130, 120
    width, height = left + n * cell + 10, top + n * cell + 10
    body = []
    for j, label in enumerate(labels):
        x = left + j * cell + cell / 2
        body.append(
            f'<text transform="translate({x:.0f},{top - 6}) rotate(-55)" font-size="10">'
            f"{escape(label)}</text>"
        )
    for i, label in enumerate(labels):
        row = list(matrix[i]) if i < len(matrix) else [0] * n
        total = sum(row) or 1
        y = top + i * cell
        body.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4:.0f}" font-size="10" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        for j in range(n):
            value = row[j] if j < len(row) else 0
            share = value / total
            color = "26,127,55" if i == j else "207,34,46"
            body.append(
                f'<rect x="{left + j * cell}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                f'fill="rgba({color},{0.08 + 0.8 * share:.2f})"><title>true {escape(label)}, '
                f"predicted {escape(labels[j])}: {value}</title></rect>"
                f'<text x="{left + j * cell + cell / 2:.0f}" y="{y + cell / 2 + 4:.0f}" '
                f'font-size="11" text-anchor="middle">{value}</text>'
            )
    return _svg(width, height, body, title)


def reliability_diagram(bins: Sequence[dict], *, title: str = "Calibration") -> str:
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
