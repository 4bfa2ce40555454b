"""RFNet benchmark on procedurally generated creatives (CPU-sized by default).

    .venv/bin/python bench/rfnet.py                    # 3000 creatives, small vs single_image
    .venv/bin/python bench/rfnet.py --n 600 --epochs 3 --no-append   # quick look

Generates a labeled set with generation.synthetic.write_manifest (the six RF1M classes), splits it
by SKU (80/10/10), trains the `small` preset and the `single_image` ablation with the same
TrainConfig, measures loader-only vs model-only throughput and scoring speed, and appends the
figures to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from feedback.ml.data import CachedDataset, Sample, build_cache, group_split, make_collate  # noqa: E402
from feedback.ml.model import RFNet, count_parameters  # noqa: E402
from feedback.ml.presets import RF1M_SLUGS, preset  # noqa: E402
from feedback.ml.reporting import NullReporter  # noqa: E402
from feedback.ml.scoring import Scorer  # noqa: E402
from feedback.ml.training import TrainConfig, train  # noqa: E402


class Reporter(NullReporter):
    def __init__(self, name: str) -> None:
        self.name = name

    def log(self, message) -> None:
        print(f"[{self.name}] {message}", flush=True)


def load_manifest(manifest: Path) -> list[Sample]:
    root = manifest.parent
    out = []
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        out.append(
            Sample(
                creative_path=str(root / row["image"]),
                product_path=str(root / row["product_image"]),
                label=RF1M_SLUGS.index(row["label"]),
                caption=row.get("title", ""),
                group=row["sku"],
                placement=row.get("params", {}).get("box"),
            )
        )
    return out


def dataset(args) -> Path:
    from generation.synthetic import write_manifest

    out = Path(args.work) / f"data-n{args.n}-s{args.seed}-{args.gen_size}px"
    manifest = out / "manifest.jsonl"
    if not manifest.exists():
        t = time.time()
        write_manifest(out, args.n, seed=args.seed, size=args.gen_size, workers=args.workers)
        print(f"generated {args.n} creatives in {time.time() - t:.1f}s", flush=True)
    return manifest


def loader_vs_model(cfg, samples, cache_dir, batch_size, seconds=15.0) -> dict[str, float]:
    """Images/s of the loader alone (one pass, augmenting) and of model steps alone."""
    model = RFNet(cfg)
    cache = build_cache(samples, cache_dir, cfg.image_size)
    ds = CachedDataset(cache, samples, cfg.modalities, augment=True)
    dl = torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=make_collate(model.tokenize),
    )
    t, n = time.time(), 0
    batches = []
    for batch in dl:
        n += batch["label"].shape[0]
        if len(batches) < 3:
            batches.append(batch)
    loader_ips = n / (time.time() - t)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    t, n, i = time.time(), 0, 0
    while time.time() - t < seconds or i < 3:
        batch = batches[i % len(batches)]
        loss = torch.nn.functional.cross_entropy(model(batch), batch["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += batch["label"].shape[0]
        i += 1
    return {"loader_images_per_s": loader_ips, "model_train_images_per_s": n / (time.time() - t)}


def run(name: str, cfg, tc: TrainConfig, splits, out: Path) -> dict:
    tr, va, te = splits
    t = time.time()
    result = train(
        model_config=cfg,
        train_config=tc,
        train=tr,
        val=va,
        test=te,
        out_dir=out,
        reporter=Reporter(name),
        resume=False,
    )
    wall = time.time() - t
    m = result.metrics
    train_s = sum(h["train_seconds"] for h in result.history)
    seen = sum(h["train_seconds"] * h["train_images_per_s"] for h in result.history)
    return {
        "metrics": m,
        "wall_s": wall,
        "train_s": train_s,
        "train_images_per_s": seen / max(train_s, 1e-9),
        "best_dir": str(result.best_dir),
        "params": count_parameters(RFNet(cfg)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gen-size", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="processes for generation and cache")
    ap.add_argument("--work", default="/tmp/rfnet-bench")
    ap.add_argument("--only", choices=["small", "single_image"], default=None)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    manifest = dataset(args)
    samples = load_manifest(manifest)
    splits = group_split(samples, (0.8, 0.1, 0.1), seed=args.seed)
    print("split sizes", [len(s) for s in splits], flush=True)
    work = Path(args.work)
    cache_dir = work / "cache"
    over = {"image_size": args.image_size} if args.image_size else {}
    tc = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule="cosine",
        warmup_steps=100,
        weight_decay=0.05,
        seed=args.seed,
        cache_dir=str(cache_dir),
        cache_workers=args.workers,
        early_stopping_patience=None,
        translate=0.04,
    )
    results = {}
    names = [args.only] if args.only else ["small", "single_image"]
    for name in names:
        cfg = preset(name, 6, **over)
        t = time.time()
        for part in splits:
            build_cache(part, cache_dir, cfg.image_size, workers=args.workers)
        cache_s = time.time() - t
        results[name] = run(name, cfg, tc, splits, work / f"run-{name}")
        results[name]["cache_s"] = cache_s
        results[name].update(loader_vs_model(cfg, splits[0], cache_dir, args.batch_size))
        scorer = Scorer.from_pretrained(results[name]["best_dir"], device="cpu")
        te = splits[2][:256]
        t = time.time()
        scorer.score(te, batch_size=64)
        results[name]["score_uncached_images_per_s"] = len(te) / (time.time() - t)
        tm = results[name]["metrics"]["test"]
        print(
            f"{name}: test macro-F1 {tm['macro_f1']:.4f} acc {tm['accuracy']:.4f} "
            f"wall {results[name]['wall_s']:.0f}s",
            flush=True,
        )
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    text = report(args, splits, results)
    print(text)
    if not args.no_append:
        path = ROOT / "bench" / "RESULTS.md"
        if not path.exists():
            path.write_text("# Benchmark results\n")
        with path.open("a") as f:
            f.write("\n" + text)


def report(args, splits, results) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python bench/rfnet.py " + " ".join(sys.argv[1:])
    lines = [
        f"## RFNet (feedback/ml) — {date}",
        "",
        f"Command: `{cmd.strip()}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), torch "
        f"{torch.__version__}, {args.threads} threads.  ",
        f"Data: {args.n} synthetic creatives (generation.synthetic, seed {args.seed}, "
        f"{args.gen_size}px), SKU-grouped split train/val/test = "
        f"{'/'.join(str(len(s)) for s in splits)}; {args.epochs} epochs, batch "
        f"{args.batch_size}, AdamW lr {args.lr} cosine.",
        "",
        "| model | params | test acc | test macro-F1 | available P/R/F1/AP | ECE | train time |"
        " train img/s | loader img/s | model-only train img/s | eval img/s (cached) |"
        " score img/s (decode+maps) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        t = r["metrics"]["test"]
        a = t["available"]
        lines.append(
            f"| {name} | {r['params']:,} | {t['accuracy']:.4f} | {t['macro_f1']:.4f} | "
            f"{a['precision']:.3f}/{a['recall']:.3f}/{a['f1']:.3f}/{(a['ap'] or 0):.3f} | "
            f"{t['ece']:.3f} | {r['train_s']:.0f}s (wall {r['wall_s']:.0f}s, cache "
            f"{r['cache_s']:.0f}s) | {r['train_images_per_s']:.0f} | "
            f"{r['loader_images_per_s']:.0f} | {r['model_train_images_per_s']:.0f} | "
            f"{r['metrics'].get('test_images_per_s', 0):.0f} | "
            f"{r['score_uncached_images_per_s']:.0f} |"
        )
    lines += [
        "",
        "Per-class test F1:",
        "",
        "| model | " + " | ".join(RF1M_SLUGS) + " |",
        "|---|" + "---|" * len(RF1M_SLUGS),
    ]
    for name, r in results.items():
        pc = r["metrics"]["test"]["per_class"]
        lines.append(f"| {name} | " + " | ".join(f"{pc[c]['f1']:.3f}" for c in RF1M_SLUGS) + " |")
    if {"small", "single_image"} <= set(results):
        pa, pb = (results[k]["metrics"]["test"]["per_class"] for k in ("small", "single_image"))
        wins = {c: pa[c]["f1"] - pb[c]["f1"] for c in ("unsuitable", "shape_hallucination")}
        lines += [
            "",
            "Multimodal minus single_image F1: "
            + ", ".join(f"{c} {v:+.3f}" for c, v in wins.items()),
        ]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
