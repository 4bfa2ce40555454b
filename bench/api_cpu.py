"""CPU cost of one next+submit pair through the whole web stack (middleware, DRF, policy,
throttles, SQL), in-process with Django's test client and a token: the per-request overhead that
the hardening layers add, without the network and load noise of bench/annotation.py.

    .venv/bin/python bench/api_cpu.py [--pairs 200] [--reps 5]

Uses a fresh SQLite database in a temporary folder (DEBUG off) and appends to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"))
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-" + "x" * 60,
        DJANGO_ALLOWED_HOSTS="testserver",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_SECURE_COOKIES="0",
        RFSTUDIO_VAR_DIR=tempfile.mkdtemp(prefix="rfs-apicpu-"),
        DJANGO_LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from tests.factories import make_project, make_token, make_user

    call_command("migrate", verbosity=0)
    n = 50 + args.pairs * args.reps
    project = make_project(n_items=n + 10, overlap=1)
    user = make_user("annotator")
    client = Client(HTTP_AUTHORIZATION=f"Token {make_token(user)}")

    def pair(i: int) -> None:
        item = client.post(f"/api/projects/{project.slug}/next/").json()["item_id"]
        r = client.post(
            f"/api/items/{item}/annotations/",
            {"label": "available", "idempotency_key": f"k{i}"},
            content_type="application/json",
        )
        assert r.status_code == 201, r.content

    for i in range(50):  # warm-up: compiled queries, caches
        pair(i)
    cpu = []
    for rep in range(args.reps):
        t = time.process_time()
        for i in range(args.pairs):
            pair(50 + rep * args.pairs + i)
        cpu.append((time.process_time() - t) / args.pairs * 1000)
    line = (
        f"CPU ms per next+submit pair ({args.reps} reps of {args.pairs}): median "
        f"{statistics.median(cpu):.2f} (min {min(cpu):.2f}, max {max(cpu):.2f}); "
        f"user throttle {os.environ.get('RFSTUDIO_THROTTLE_USER', 'default')!r}"
    )
    print(line)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with open(args.results, "a") as fh:
        fh.write(
            f"\n## api_cpu — {stamp}\n\n`bench/api_cpu.py --pairs {args.pairs} "
            f"--reps {args.reps}` (SQLite, DEBUG off, in-process test client)\n\n- {line}\n"
        )


if __name__ == "__main__":
    main()
