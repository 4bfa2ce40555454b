"""Speed of the procedural creative generator (generation.synthetic), one process.

    .venv/bin/python bench/synthetic.py [--n 300] [--size 256] [--no-append]

Reports examples/s generated in memory and written as PNG + manifest, as process CPU time (one
core; robust on a busy machine) and wall time, and appends them to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generation import synthetic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    cpu, wall = time.process_time(), time.perf_counter()
    products = synthetic.load_products()
    load = (time.process_time() - cpu, time.perf_counter() - wall)

    cpu, wall = time.process_time(), time.perf_counter()
    for _ in synthetic.generate_dataset(args.n, args.seed, args.size, products=products):
        pass
    gen = (args.n / (time.process_time() - cpu), args.n / (time.perf_counter() - wall))

    with tempfile.TemporaryDirectory() as tmp:
        cpu, wall = time.process_time(), time.perf_counter()
        synthetic.write_manifest(tmp, args.n, args.seed, size=args.size)
        write = (args.n / (time.process_time() - cpu), args.n / (time.perf_counter() - wall))

    lines = [
        f"## synthetic generator ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`.venv/bin/python bench/synthetic.py --n {args.n} --size {args.size}` "
        f"({len(products)} SKUs)",
        "",
        "| step | examples/s (CPU time, 1 core) | examples/s (wall) |",
        "|---|---|---|",
        f"| load catalogue (once) | {load[0]:.2f} s | {load[1]:.2f} s |",
        f"| generate in memory | {gen[0]:.0f} | {gen[1]:.0f} |",
        f"| write PNG + manifest | {write[0]:.0f} | {write[1]:.0f} |",
        "",
    ]
    print("\n".join(lines))
    if not args.no_append:
        results = ROOT / "bench" / "RESULTS.md"
        if not results.exists():
            results.write_text("# Benchmark results\n\n")
        with results.open("a") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
