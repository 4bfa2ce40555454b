"""Annotation benchmark: import, next/submit latency over HTTP, dataset version + export.

    .venv/bin/python bench/annotation.py --db sqlite --items 100000
    DATABASE_URL=postgres://postgres@127.0.0.1:5433/postgres \
        .venv/bin/python bench/annotation.py --db postgres --items 1000000

Every run uses a fresh database (SQLite file in a fresh VAR_DIR, or a fresh PostgreSQL database
`rfs_bench_<items>` on the server of DATABASE_URL) and appends its results to bench/RESULTS.md.

What is measured (see docs/datasets.md, "Benchmark"):
- import: `import_manifest` of an N-row manifest (one label per row from a label source, project
  overlap 2 so every item stays in the queue). `--import-mode real` writes N distinct tiny PNGs
  and imports them from scratch (decode + sha256 + WebP thumbnail in the process pool);
  `precomputed` (default above 200k rows) first bulk-creates the creatives (setup, not timed) and
  imports a manifest that carries sha256/width/height of already stored content: the
  "images already present" path. Reported: database time (SQL execution + the commit, where
  PostgreSQL runs the deferred foreign-key checks), write-transaction wall time, total wall time
  and the phases (parse, validate, store, write, commit).
- next/submit: a real server subprocess (`--server gunicorn`: DEBUG off, 3 sync workers, as in
  production; or `runserver --noreload`); 1 and 16 clients (threads, one token each) loop
  POST /api/projects/{slug}/next/ then POST /api/items/{id}/annotations/ in a closed loop (the
  server's capacity), then `--paced 16:250` clients each starting a pair every 250 ms (latency
  under concurrency below saturation); p50/p95 per endpoint; queries per call measured
  in-process with the test client.
- dataset version + export: after marking every item done (one UPDATE, setup), time
  create_dataset_version and the jsonl/parquet exports to files.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LABELS = ["available", "unsuitable", "space_mismatch", "size_mismatch"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--import-mode", choices=["real", "precomputed"], default=None)
    p.add_argument("--skus", type=int, default=1000)
    p.add_argument("--no-labels", action="store_true", help="manifest rows without labels")
    p.add_argument("--requests", type=int, default=200, help="next+submit pairs per client count")
    p.add_argument("--clients", default="1,16")
    p.add_argument(
        "--paced",
        default="16:250",
        help="CLIENTS:MS runs after the closed-loop ones: each client starts a next+submit "
        "every MS ms ('' to skip)",
    )
    p.add_argument(
        "--server",
        choices=["gunicorn", "runserver"],
        default="gunicorn",
        help="gunicorn (production settings, DEBUG off) or Django's development server",
    )
    p.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    p.add_argument("--skip-export", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the database and files")
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"))
    return p.parse_args()


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(q / 100 * (len(values) - 1))))
    return values[k]


def setup_environment(args) -> dict:
    var = Path(f"/tmp/rfs-bench-{args.db}-{args.items}")
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    env = dict(os.environ)
    env.update(
        DJANGO_DEBUG="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        RFSTUDIO_VAR_DIR=str(var),
        DJANGO_LOG_LEVEL="WARNING",
    )
    # A benchmark client is a script, not a person: the per-user API throttle (README "Limits")
    # would turn its closed loop into 429s. Set RFSTUDIO_THROTTLE_USER to measure with one.
    env.setdefault("RFSTUDIO_THROTTLE_USER", "")
    if args.db == "postgres":
        import psycopg

        base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5433/postgres")
        name = f"rfs_bench_{args.items}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        env["DATABASE_URL"] = base.rsplit("/", 1)[0] + "/" + name
        env["DJANGO_CONN_MAX_AGE"] = "60"
    else:
        env.pop("DATABASE_URL", None)
    os.environ.update(env)
    if args.db == "sqlite":
        os.environ.pop("DATABASE_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return {"env": env, "var": var}


def write_real_images(var: Path, n: int, skus: int, labels: bool = True) -> Path:
    """N distinct tiny PNGs (+ one RGBA cut-out per SKU) and a labeled manifest."""
    import io

    from PIL import Image

    src = var / "src"
    (src / "c").mkdir(parents=True)
    (src / "p").mkdir()
    for s in range(skus):
        img = Image.new("RGBA", (16, 16), (s % 256, s // 256 % 256, 9, 255))
        img.save(src / "p" / f"{s}.png")
    manifest = src / "manifest.jsonl"
    with manifest.open("w") as fh:
        for i in range(n):
            img = Image.new("RGB", (16, 16), (i % 251, (i // 251) % 251, (i // 63001) % 251))
            img.putpixel((0, 0), (i % 256, (i >> 8) % 256, (i >> 16) % 256))
            buf = io.BytesIO()
            img.save(buf, format="PNG", compress_level=1)
            (src / "c" / f"{i}.png").write_bytes(buf.getvalue())
            fh.write(
                json.dumps(
                    {
                        "image": f"c/{i}.png",
                        "product_image": f"p/{i % skus}.png",
                        "sku": f"SKU-{i % skus}",
                        "title": f"product {i % skus}",
                        "prompt": f"prompt {i}",
                        "seed": i,
                        "generator": "bench",
                        "label": LABELS[i % len(LABELS)] if labels else None,
                        "id": f"b{i}",
                    }
                )
                + "\n"
            )
    return manifest


def precreate_creatives(var: Path, n: int, skus: int, labels: bool = True) -> Path:
    """Setup (not timed): N creatives already in the database, and a manifest with their
    precomputed sha256/width/height (the "images already present" import path)."""
    import hashlib

    from core.bulk import insert_rows
    from generation.models import Creative, Product

    Product.objects.bulk_create(
        [
            Product(sku=f"SKU-{s}", title=f"product {s}", image="products/x.png", sha256="0" * 64)
            for s in range(skus)
        ],
        batch_size=5000,
    )
    pids = dict(Product.objects.values_list("sku", "id"))
    manifest = var / "manifest.jsonl"
    fields = ["product", "image", "thumbnail", "sha256", "width", "height"]
    batch = []
    with manifest.open("w") as fh:
        for i in range(n):
            sha = hashlib.sha256(f"creative-{i}".encode()).hexdigest()
            batch.append(
                (
                    pids[f"SKU-{i % skus}"],
                    f"creatives/{sha[:2]}/{sha}.png",
                    f"thumbnails/{sha[:2]}/{sha}.webp",
                    sha,
                    16,
                    16,
                )
            )
            if len(batch) == 20000:
                insert_rows(Creative, fields, batch)
                batch = []
            fh.write(
                json.dumps(
                    {
                        "image": f"c/{i}.png",
                        "sku": f"SKU-{i % skus}",
                        "prompt": f"prompt {i}",
                        "seed": i,
                        "sha256": sha,
                        "width": 16,
                        "height": 16,
                        "label": LABELS[i % len(LABELS)] if labels else None,
                        "id": f"b{i}",
                    }
                )
                + "\n"
            )
    if batch:
        insert_rows(Creative, fields, batch)
    from django.db import connection

    if connection.vendor == "postgresql":
        # Steady state of a table that has been there a while (autovacuum): hint bits set,
        # statistics current. Right after a bulk load the first reader writes every page.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE generation_creative")
    return manifest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env, args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if args.server == "gunicorn":
        # What production runs: DEBUG off, persistent DB connections, plain HTTP on loopback.
        env = {
            **env,
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_CONN_MAX_AGE": "60",
        }
        # As in production: the manifest static storage needs collectstatic before serving.
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ]
    else:
        cmd = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(base + "/accounts/login/", timeout=2)
            return proc, base
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


def call(base, path, token, body=None):
    """One POST on a fresh connection (gunicorn's sync workers close after each response);
    http.client rather than urllib: less client CPU on the 2 cores the server also uses."""
    data = json.dumps(body or {}).encode()
    host, port = base.removeprefix("http://").split(":")
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(
            "POST",
            path,
            body=data,
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        payload, status = resp.read(), resp.status
    finally:
        conn.close()
    return (time.perf_counter() - start) * 1000, status, payload


def item_id_of(payload: bytes):
    try:
        data = json.loads(payload or b"{}")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for key in ("item_id", "id"):
        if isinstance(data.get(key), int):
            return data[key]
    item = data.get("item")
    if isinstance(item, dict) and isinstance(item.get("id"), int):
        return item["id"]
    if isinstance(item, int):
        return item
    return None


def run_clients(base, slug, tokens, total_pairs, pace_ms=0.0):
    """Each client loops next → submit. `pace_ms` > 0: a client starts a pair every `pace_ms`
    (an annotator's rhythm; a late pair starts at once), so latency is measured at a set load
    instead of at saturation (closed loop, the default)."""
    per_client = max(1, total_pairs // len(tokens))
    lat = {"next": [], "submit": []}
    errors = []
    lock = threading.Lock()

    def worker(token):
        mine = {"next": [], "submit": []}
        # Stagger the clients over one period so that paced requests do not arrive in bursts.
        began = time.perf_counter() + (pace_ms / 1000) * tokens.index(token) / len(tokens)
        for k in range(per_client):
            if pace_ms:
                wait = began + k * pace_ms / 1000 - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            ms, status, payload = call(base, f"/api/projects/{slug}/next/", token)
            mine["next"].append(ms)
            item = item_id_of(payload) if status == 200 else None
            if item is None:
                errors.append(f"next {status} {payload[:120]!r}")
                continue
            body = {"label": LABELS[item % len(LABELS)], "idempotency_key": uuid.uuid4().hex}
            ms, status, payload = call(base, f"/api/items/{item}/annotations/", token, body)
            mine["submit"].append(ms)
            if status not in (200, 201):
                errors.append(f"submit {status} {payload[:120]!r}")
        with lock:
            for k in lat:
                lat[k].extend(mine[k])

    threads = [threading.Thread(target=worker, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors


def queries_per_call(slug, user) -> dict:
    """SQL statements per API call with token auth (what API clients use), as the tests count
    them: BEGIN/COMMIT are transaction control and reported separately."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tests.factories import make_token

    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Token {make_token(user)}")
    counts = {"next": [], "submit": [], "next_tx": [], "submit_tx": []}

    def split(ctx):
        sql = [q["sql"].strip().upper() for q in ctx.captured_queries]
        tx = sum(1 for q in sql if q in ("BEGIN", "COMMIT", "ROLLBACK"))
        return len(sql) - tx, tx

    for _ in range(5):
        with CaptureQueriesContext(connection) as ctx:
            r = client.post(f"/api/projects/{slug}/next/", content_type="application/json")
        n, tx = split(ctx)
        counts["next"].append(n)
        counts["next_tx"].append(tx)
        item = item_id_of(r.content) if r.status_code == 200 else None
        if item is None:
            break
        with CaptureQueriesContext(connection) as ctx:
            client.post(
                f"/api/items/{item}/annotations/",
                {"label": "available", "idempotency_key": uuid.uuid4().hex},
                content_type="application/json",
            )
        n, tx = split(ctx)
        counts["submit"].append(n)
        counts["submit_tx"].append(tx)
    return {k: (statistics.median(v) if v else None) for k, v in counts.items()}


def http_runs(args, ctx, runs) -> dict:
    """Closed-loop and paced client runs against a real server; latencies per endpoint."""
    from django.db import connection

    from tests.factories import make_token, make_user

    users = [make_user("annotator") for _ in range(max(n for n, _, _ in runs))]
    tokens = [make_token(u) for u in users]
    connection.close()
    server, base = start_server(ctx["env"], args)
    out: dict = {}
    try:
        for n, pace, label in runs:
            run_clients(base, "bench", tokens[:n], min(20, 2 * n))  # warm-up
            start = time.perf_counter()
            pairs = args.requests * (2 if pace else 1)
            lat, errors = run_clients(base, "bench", tokens[:n], pairs, pace_ms=pace)
            wall = time.perf_counter() - start
            out[label] = {
                k: {
                    "n": len(v),
                    "p50_ms": round(statistics.median(v), 1) if v else None,
                    "p95_ms": round(pct(v, 95), 1) if v else None,
                }
                for k, v in lat.items()
            }
            out[label]["pairs_per_s"] = round(len(lat["submit"]) / wall, 1)
            out[label]["errors"] = len(errors)
            if errors:
                out[label]["first_error"] = errors[0][:200]
            print(f"[bench] {label}: {out[label]}", flush=True)
    finally:
        server.terminate()
        server.wait(10)
    return out


def main():
    args = parse_args()
    mode = args.import_mode or ("real" if args.items <= 200_000 else "precomputed")
    ctx = setup_environment(args)
    import django

    django.setup()
    from django.db import connection

    from annotation import datasets, exporting, importing
    from annotation.models import Item
    from tests.factories import make_user

    results: dict = {"db": args.db, "items": args.items, "import_mode": mode}
    results["load"] = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"[bench] preparing {args.items} rows ({mode})", flush=True)
    t0 = time.perf_counter()
    if mode == "real":
        manifest = write_real_images(ctx["var"], args.items, args.skus, not args.no_labels)
    else:
        manifest = precreate_creatives(ctx["var"], args.items, args.skus, not args.no_labels)
    results["prepare_s"] = round(time.perf_counter() - t0, 1)

    print("[bench] import", flush=True)
    res = importing.import_manifest_file(
        manifest, project_slug="bench", overlap=2, label_source="bench-import"
    )
    results["import"] = {
        "created": res.created,
        "labels": res.labels_created,
        "db_s": round(res.db_seconds, 2),
        "write_s": round(res.write_seconds, 2),
        "total_s": round(res.total_seconds, 2),
        "commit_s": round(res.commit_seconds, 2),
        "timings": res.timings(),
    }
    print(f"[bench] import: {res.summary()} {res.timings()}", flush=True)
    res2 = importing.import_manifest_file(
        manifest, project_slug="bench", overlap=2, label_source="bench-import"
    )
    results["reimport"] = {
        "created": res2.created,
        "db_s": round(res2.db_seconds, 2),
        "total_s": round(res2.total_seconds, 2),
    }

    clients = [int(c) for c in args.clients.split(",") if c]
    runs = [(n, 0.0, f"{n} client(s), closed loop") for n in clients]
    if args.paced:
        n, ms = args.paced.split(":")
        runs.append((int(n), float(ms), f"{n} clients paced, a next+submit every {ms} ms each"))
    results["http"] = http_runs(args, ctx, runs) if runs else {}
    results["queries_per_call"] = queries_per_call("bench", make_user("annotator"))

    if not args.skip_export:
        from annotation.models import Project

        Item.objects.filter(project__slug="bench").update(status="done")  # setup, not timed
        t0 = time.perf_counter()
        version = datasets.create_dataset_version(
            project=Project.objects.get(slug="bench"), name=f"bench-{args.items}"
        )
        results["dataset_version_s"] = round(time.perf_counter() - t0, 2)
        for fmt in exporting.FORMATS:
            t0 = time.perf_counter()
            size = exporting.export_to_file(version, ctx["var"] / f"export.{fmt}", fmt)
            results[f"export_{fmt}_s"] = round(time.perf_counter() - t0, 2)
            results[f"export_{fmt}_mb"] = round(size / 1e6, 1)
        print(
            f"[bench] version {results['dataset_version_s']}s, export "
            f"jsonl {results['export_jsonl_s']}s parquet {results['export_parquet_s']}s"
        )

    append_results(args, results)
    connection.close()
    if not args.keep:
        shutil.rmtree(ctx["var"], ignore_errors=True)
        if args.db == "postgres":
            import psycopg

            with psycopg.connect(
                os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres", autocommit=True
            ) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS rfs_bench_{args.items} WITH (FORCE)")


def append_results(args, r):
    path = Path(args.results)
    if not path.exists():
        path.write_text("# Benchmark results\n")
    lines = [
        "",
        f"## annotation — {args.db}, {args.items:,} items — "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        f"`bench/annotation.py --db {args.db} --items {args.items} --server {args.server}"
        + (" --no-labels" if args.no_labels else "")
        + (f" --clients '{args.clients}' --paced '{args.paced}'" if not r["http"] else "")
        + "` "
        f"(import mode: {r['import_mode']}; 2-core machine, load average before: {r['load']}; "
        + (
            f"gunicorn {args.workers} sync workers, DEBUG off"
            if args.server == "gunicorn"
            else "runserver --noreload, DEBUG=1"
        )
        + ")",
        "",
        f"- import: {r['import']['created']:,} items + {r['import']['labels']:,} labels: "
        f"database {r['import']['db_s']} s (SQL + commit {r['import']['commit_s']} s, where "
        f"PostgreSQL runs the deferred foreign-key checks), write transaction "
        f"{r['import']['write_s']} s, total {r['import']['total_s']} s; phases "
        + ", ".join(f"{k} {v} s" for k, v in r["import"]["timings"].items())
        + f" (prepare, not timed: {r['prepare_s']} s)",
        f"- re-import (idempotent): created {r['reimport']['created']}, "
        f"SQL {r['reimport']['db_s']} s, total {r['reimport']['total_s']} s",
    ]
    for n, h in r["http"].items():
        lines.append(
            f"- {n}: next p50 {h['next']['p50_ms']} ms / p95 {h['next']['p95_ms']} ms; "
            f"submit p50 {h['submit']['p50_ms']} ms / p95 {h['submit']['p95_ms']} ms; "
            f"{h['pairs_per_s']} next+submit/s; errors {h['errors']}"
            + (f" (first: {h.get('first_error')})" if h.get("first_error") else "")
        )
    q = r["queries_per_call"]
    lines.append(
        f"- SQL statements per call, token auth (median): next {q['next']} "
        f"(+{q.get('next_tx')} BEGIN/COMMIT), submit {q['submit']} (+{q.get('submit_tx')})"
    )
    if "dataset_version_s" in r:
        lines.append(
            f"- create_dataset_version {r['dataset_version_s']} s; export jsonl "
            f"{r['export_jsonl_s']} s ({r['export_jsonl_mb']} MB), parquet "
            f"{r['export_parquet_s']} s ({r['export_parquet_mb']} MB)"
        )
    with path.open("a") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
