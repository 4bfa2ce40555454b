"""Ranking benchmark: demo logs with a held-out time range, ranker vs baselines, encoder recall@k,
impression-log import rate, creative-stage latency. CPU-sized; appends to bench/RESULTS.md.

    nice -n 10 .venv/bin/python bench/ranking.py                       # SQLite, 240 creatives
    DATABASE_URL=postgres://…/rfstudio_ranking nice -n 10 .venv/bin/python bench/ranking.py \
        --db postgres --import-rows 1000000
    nice -n 10 .venv/bin/python bench/ranking.py --only latency --background-load 2
    DATABASE_URL=postgres://… nice -n 10 .venv/bin/python bench/ranking.py --db postgres \
        --only import --import-rows 10000000 --no-reimport

Steps (a fresh database: a temporary SQLite file, or the PostgreSQL database of DATABASE_URL,
flushed first):
1. `--creatives` procedural creatives (generation.synthetic) imported through the manifest
   importer; demo impression logs (ranking.demo: 28 days, three segments, a hidden preference)
   through `import_impressions`.
2. Visual features job; `train_encoder` (MoCo v3) → recall@k of same-product creatives on held-out
   products; `train_ranker` with and without embeddings on days 1–21, evaluated on days 22–28
   against the "random" and "highest past CTR" baselines (NDCG@1/3, GAUC, AUC, NSCTR).
3. Import rate: `--import-rows` synthetic log rows (one file, streamed) imported by
   `manage.py import_impressions` in a child process (its peak RSS is measured), then imported
   again (idempotent: every key updated) unless `--no-reimport`.
4. Creative stage latency for 1,000 products × 20 creatives, torch on 1 thread: the served path
   (ranking.ml.serving.CreativeStage: per-catalogue precomputed matrices, one batched forward per
   request) and, for reference, the per-request path it replaced (standardise + collate every
   input, then the model); each alone and with `--background-load N` busy processes running;
   and the live API path (`rank_products`, database reads included) for one product.
   `--only latency` skips steps 1–3 and times a ranker of the same shape (143 inputs per
   creative: 15 visual features + a 128-d embedding) with untrained weights (the cost does not
   depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = date(2025, 1, 1)  # the import-rate rows; the demo logs start 2026-11-01
sys.path.insert(0, str(ROOT))


def setup_django(db: str, tmp: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
    os.environ["RFSTUDIO_VAR_DIR"] = str(tmp)
    os.environ["DJANGO_MEDIA_ROOT"] = str(tmp / "media")
    os.environ["RFSTUDIO_MODELS_DIR"] = str(tmp / "models")
    os.environ["RFSTUDIO_JOBS_WORK_DIR"] = str(tmp / "jobs")
    os.environ["RFSTUDIO_DEVICE"] = "cpu"
    if db == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    elif not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("--db postgres needs DATABASE_URL=postgres://…")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if db == "postgres":
        call_command("flush", "--no-input", verbosity=0)


def run_job(kind: str, **params):
    from jobs import runner
    from jobs.services import enqueue_job

    job = enqueue_job(kind=kind, params=params, dispatch=False)
    t = time.perf_counter()
    runner.execute(job_id=job.pk, attempt=job.attempt, worker_id="bench", dispatch_retries=False)
    job.refresh_from_db()
    if job.status != "succeeded":
        sys.exit(f"{kind} {job.status}: {job.error}")
    return job, time.perf_counter() - t


def _phases(result) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in result.phases.items())


def fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def pct(values, q):
    values = sorted(values)
    return values[int(q * (len(values) - 1))]


def _burn() -> None:  # pragma: no cover - a child process
    while True:
        pass


class BackgroundLoad:
    """`n` busy-looping child processes (normal priority) while the block runs."""

    def __init__(self, n: int) -> None:
        self.n, self.procs = n, []

    def __enter__(self):
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.procs = [ctx.Process(target=_burn, daemon=True) for _ in range(self.n)]
        for proc in self.procs:
            proc.start()
        time.sleep(0.5 if self.n else 0)
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.terminate()
            proc.join()


def measure_stage(ranker, repeats: int, seed: int) -> dict:
    """Per run (wall ms, thread CPU ms) of the served creative stage and of the per-request
    path, on 1,000 products × 20 creatives of random inputs."""
    import numpy as np
    import torch

    from ranking.ml.serving import CreativeStage
    from ranking.ml.training import ListData, collate

    cfg = ranker.config
    rng = np.random.default_rng(seed)
    c_dim = len(cfg.creative_features) + cfg.embedding_dim
    products = rng.random((1000, len(cfg.product_features))).astype(np.float32)
    creatives = rng.random((1000, 20, c_dim)).astype(np.float32)
    segment = rng.random(len(cfg.segment_features)).astype(np.float32)
    lists = [
        ListData(key=("s", f"p{i}"), segment=segment, product=products[i], creatives=creatives[i])
        for i in range(1000)
    ]
    t = time.perf_counter()
    stage = CreativeStage(ranker, products, creatives, np.full(1000, 20))
    build_s = time.perf_counter() - t

    def per_request():
        batch = collate(lists, cfg)  # every input standardised and padded per request
        with torch.inference_mode():
            scores, _ = ranker(batch)
            scores.argsort(-1, descending=True)

    def served():
        stage.rank(segment)  # scores, pCTR and the order of every list

    out = {"c_dim": c_dim, "build_s": build_s}
    for name, fn in (("served", served), ("per_request", per_request)):
        wall, cpu = [], []
        for r in range(repeats + 3):
            t, c = time.perf_counter(), time.thread_time()
            fn()
            if r >= 3:  # warm-up
                wall.append((time.perf_counter() - t) * 1000)
                cpu.append((time.thread_time() - c) * 1000)
        out[name] = {"wall": wall, "cpu": cpu}
    return out


def stage_line(label: str, m: dict, load: tuple) -> str:
    def q(values):
        return f"p50 {pct(values, 0.5):.1f} / p95 {pct(values, 0.95):.1f} ms"

    return (
        f"- creative stage, 1,000 products × 20 creatives ({m['c_dim']} inputs per creative, "
        f"{len(m['served']['wall'])} runs, {label}; load average {load[0]:.1f}; target p95 ≤ 50 "
        f"ms): served (precomputed per catalogue, built in {m['build_s'] * 1000:.0f} ms) wall "
        f"{q(m['served']['wall'])}, thread CPU {q(m['served']['cpu'])}; per-request "
        f"standardise + collate + forward (before) wall {q(m['per_request']['wall'])}, thread "
        f"CPU {q(m['per_request']['cpu'])}"
    )


def latency_lines(ranker, args) -> list[str]:
    lines = []
    m = measure_stage(ranker, args.repeats, args.seed)
    lines.append(stage_line("no added load", m, os.getloadavg()))
    if args.background_load:
        with BackgroundLoad(args.background_load):
            m = measure_stage(ranker, args.repeats, args.seed)
            load = os.getloadavg()
        lines.append(stage_line(f"{args.background_load} busy processes added", m, load))
    return lines


def shaped_ranker(seed: int):
    """A ranker of the bench's shape (4 segment, 6 product, 15 creative inputs + a 128-d
    embedding) with untrained weights and unit norms: latency does not depend on the weights."""
    import torch

    from ranking.ml.config import RankerConfig
    from ranking.ml.ranker import CreativeRanker

    torch.manual_seed(seed)
    cfg = RankerConfig(
        segment_features=[f"seg.{i}" for i in range(4)],
        product_features=[f"product.{i}" for i in range(6)],
        creative_features=[f"visual.{i}" for i in range(15)],
        embedding_dim=128,
    )
    return CreativeRanker(cfg).eval()


def import_rate(args, creatives, tmp: Path) -> dict:
    """Write `--import-rows` rows (one file) and import them with `manage.py import_impressions`
    in a child process: rows/s, wall, phases and the child's peak RSS."""
    import random
    import subprocess

    rows_file = tmp / "big.jsonl"
    rng = random.Random(args.seed)
    keys = [(c.product.sku, c.external_id) for c in creatives]
    segments = [f"bench-seg-{i}" for i in range(10)]
    per_day = len(keys) * len(segments)
    t = time.perf_counter()
    with rows_file.open("w") as fh:
        for i in range(args.import_rows):
            day, rest = divmod(i, per_day)
            seg, k = divmod(rest, len(keys))
            sku, ext = keys[k]
            imp = rng.randint(1, 500)
            fh.write(
                json.dumps(
                    {
                        "day": str(START + timedelta(days=day)),
                        "segment": segments[seg],
                        "sku": sku,
                        "creative": ext,
                        "impressions": imp,
                        "clicks": rng.randint(0, imp // 10),
                    }
                )
                + "\n"
            )
    written_s = time.perf_counter() - t
    from django.db import connections

    connections.close_all()
    runs = []
    for _ in range(1 if args.no_reimport else 2):
        load = os.getloadavg()
        rss = tmp / "import.rss"
        t = time.perf_counter()
        # GNU time reports the importer's own peak RSS: a child forked from this process would
        # count the bench's (torch-sized) image it was forked from in ru_maxrss.
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", str(rss), sys.executable, str(ROOT / "manage.py")]
            + ["import_impressions", str(rows_file), "--verbosity", "2"],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
        )
        wall = time.perf_counter() - t
        if proc.returncode:
            sys.exit(f"import failed: {proc.stdout[-1000:]} {proc.stderr[-2000:]}")
        phases = next((ln for ln in proc.stdout.splitlines() if ln.startswith("phases:")), "")
        runs.append(
            {
                "wall": wall,
                "rate": args.import_rows / wall,
                "phases": phases.removeprefix("phases: "),
                "load": load,
                "peak_rss_mb": int(rss.read_text().split()[-1]) / 1024,  # KiB
            }
        )
    return {"rows": args.import_rows, "file_mb": rows_file.stat().st_size / 2**20,
            "written_s": written_s, "runs": runs}  # fmt: skip


def import_lines(imp: dict, db: str) -> list[str]:
    first = imp["runs"][0]
    line = (
        f"- import_impressions ({db}, `manage.py import_impressions` in a child process): "
        f"{imp['rows']:,} rows ({imp['file_mb']:,.0f} MB JSONL, written in "
        f"{imp['written_s']:.0f} s) {first['wall']:.1f} s wall ({first['rate']:,.0f} rows/s; "
        f"phases {first['phases']}), peak RSS {first['peak_rss_mb']:,.0f} MB, load average "
        f"{first['load'][0]:.1f}/{first['load'][1]:.1f}/{first['load'][2]:.1f}"
    )
    if len(imp["runs"]) > 1:
        again = imp["runs"][1]
        line += (
            f"; re-import (every key updated) {again['wall']:.1f} s ({again['rate']:,.0f} "
            f"rows/s; phases {again['phases']})"
        )
    if imp["rows"] < 10_000_000:
        line += f"; 10M rows at this rate ≈ {1e7 / first['rate'] / 60:.1f} min"
    return [line]


def make_creatives(args, tmp: Path):
    from annotation import services as ann_services
    from annotation.importing import import_manifest_file
    from generation import synthetic
    from generation.models import Creative

    t = time.perf_counter()
    manifest = synthetic.write_manifest(
        tmp / "data", args.creatives, args.seed, size=args.size, workers=1
    )
    ann_services.create_project(name="bench", slug="bench", overlap=1)
    import_manifest_file(manifest, project_slug="bench")
    creatives = list(Creative.objects.select_related("product"))
    products = len({c.product_id for c in creatives})
    print(f"{len(creatives)} creatives of {products} products in {time.perf_counter() - t:.1f}s")
    return creatives, products


def header(args, title: str, load) -> list[str]:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "bench/ranking.py " + " ".join(sys.argv[1:])
    return [
        f"## ranking — {title} — {stamp}\n",
        f"`{cmd}` (seed {args.seed}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores shared, load average before {load[0]:.1f}/{load[1]:.1f}/"
        f"{load[2]:.1f}; torch 1 thread; bench process niceness {os.nice(0)})\n",
    ]


def finish(lines: list[str], args) -> None:
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
            fh.write("\n" + text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--only", choices=["all", "latency", "import"], default="all")
    ap.add_argument("--creatives", type=int, default=240)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--encoder-steps", type=int, default=150)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--import-rows", type=int, default=200_000)
    ap.add_argument("--no-reimport", action="store_true")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--background-load", type=int, default=0, help="busy processes (latency)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    load = os.getloadavg()
    if args.only == "latency":
        lines = header(args, "creative-stage latency (untrained ranker of the bench's shape)", load)
        lines += latency_lines(shaped_ranker(args.seed), args)
        return finish(lines, args)
    tmp = Path(tempfile.mkdtemp(prefix="rfs-rank-bench-"))
    setup_django(args.db, tmp)
    creatives, products = make_creatives(args, tmp)
    if args.only == "import":
        lines = header(args, f"{args.db} import rate", load)
        lines += import_lines(import_rate(args, creatives, tmp), args.db)
        return finish(lines, args)
    lines = header(args, f"{args.db}, {len(creatives)} creatives", load)

    from ranking.demo import write_demo_logs
    from ranking.importing import import_impressions

    logs = tmp / "demo.jsonl"
    n_logs = write_demo_logs(logs, creatives, seed=args.seed)
    demo_import = import_impressions(path=logs)
    print(f"demo logs: {n_logs} rows, {demo_import.rate:,.0f} rows/s")

    # 2. features, encoder, rankers
    _, t_feat = run_job("ranking_features", extractors="visual")
    _, t_enc = run_job(
        "train_encoder",
        steps=args.encoder_steps,
        batch_size=64,
        image_size=64,
        name="bench-enc",
        seed=args.seed,
    )
    from ranking.models import RankingModel

    enc = RankingModel.objects.get(name="bench-enc")
    rankers = {}
    for name, encoder in (("bench-ranker-emb", "bench-enc"), ("bench-ranker", "none")):
        _, t_rank = run_job(
            "train_ranker",
            name=name,
            encoder=encoder,
            epochs=args.epochs,
            holdout_days=7,
            seed=args.seed,
        )
        rankers[name] = (RankingModel.objects.get(name=name), t_rank)

    # 3. import rate
    imp = import_rate(args, creatives, tmp)

    # 4. latency
    from generation.models import Product
    from ranking.models import Segment
    from ranking.scoring import load_ranker, rank_products

    ranker_row = rankers["bench-ranker-emb"][0]
    stage_lines = latency_lines(load_ranker(ranker_row), args)
    segment = Segment.objects.get(slug="young-urban")
    product = Product.objects.order_by("sku").first()
    api_times = []
    for r in range(23):
        t = time.perf_counter()
        rank_products(ranker_row, segment=segment, products=[product])
        if r >= 3:
            api_times.append((time.perf_counter() - t) * 1000)

    # report
    lines.append(
        f"- data: {len(creatives)} procedural creatives of {products} products ({args.size} px); "
        f"demo logs {n_logs:,} rows (3 segments × 28 days; hidden per-segment preference over "
        "brightness/warmth/saturation/product area + a penalty for defective creatives; a "
        "quarter of the creatives launch in the last week)"
    )
    lines.append(
        f"- jobs: visual features {t_feat:.1f} s; "
        f"encoder {args.encoder_steps} steps {t_enc:.1f} s; "
        + "; ".join(f"{n} {t:.1f} s" for n, (_, t) in rankers.items())
    )
    held = enc.metrics.get("heldout", {})
    train_r = enc.metrics.get("train", {})
    lines.append(
        f"- encoder recall on {enc.metrics.get('heldout_products')} held-out products "
        f"({held.get('queries', 0)} queries): "
        + ", ".join(f"{k} {held.get(k, 0):.3f}" for k in ("recall@1", "recall@5", "recall@10"))
        + " (train products: "
        + ", ".join(f"{k} {train_r.get(k, 0):.3f}" for k in ("recall@1", "recall@5"))
        + ")"
    )
    for name, (model, _) in rankers.items():
        m = model.metrics
        w = m["windows"]
        base = m["baselines"]
        lines.append(
            f"- {name} (train {w['train'][0]}…{w['train'][1]}, test {w['test'][0]}…"
            f"{w['test'][1]}, {m['lists']} test lists):"
        )
        lines.append("  | metric | ranker | random | highest past CTR |")
        lines.append("  | --- | --- | --- | --- |")
        for key in ("ndcg@1", "ndcg@3", "gauc", "auc", "nsctr"):
            lines.append(
                f"  | {key} | {fmt(m[key])} | {fmt(base['random'][key])} | "
                f"{fmt(base['highest_past_ctr'][key])} |"
            )
        new = m.get("new_creatives")
        if new:
            lines.append(
                f"  - the {new['ranker']['lists']} test lists with a creative launched in the "
                "test week: "
                + "; ".join(
                    f"{key} ranker {fmt(new['ranker'][key])} / random {fmt(new['random'][key])}"
                    f" / past CTR {fmt(new['highest_past_ctr'][key])}"
                    for key in ("ndcg@1", "ndcg@3", "nsctr")
                )
            )
    lines += import_lines(imp, args.db)
    lines += stage_lines
    lines.append(
        f"- live API path (rank_products for one product from the served catalogue: version "
        f"check, segment, contributions; 20 runs): p50 {statistics.median(api_times):.1f} ms, "
        f"p95 {pct(api_times, 0.95):.1f} ms"
    )
    finish(lines, args)


if __name__ == "__main__":
    main()
