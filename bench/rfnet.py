"""RFNet benchmark on procedurally generated creatives (CPU-sized by default).

    .venv/bin/python bench/rfnet.py                    # 3000 creatives, small vs single_image
    .venv/bin/python bench/rfnet.py --n 600 --epochs 3 --no-append   # quick look

Generates a labeled set with generation.synthetic.write_manifest (the six RF1M classes), splits it
by product family (80/10/10), trains the `small` preset and the `single_image` ablation with the
same TrainConfig, measures loader-only vs model-only throughput and scoring speed, and appends the
figures to bench/RESULTS.md.

    .venv/bin/python bench/rfnet.py --protocol leaveout --seeds 0,1,2   # issue 8

The leave-out protocol tests on what training never saw: held-out product kinds (whole families
of products) and held-out defect mechanisms (e.g. `unsuitable` by a slice removed, while training
only saw frame cuts and chunks), with the manifests' placement ignored (the product is localised
from the two images). Controls: `box-only` (a random forest on ten numbers of the localised
product box) and `no-product` (RFNet on the generated image alone); the baseline RFNet must beat:
`plain_cnn` (a plain 4-block CNN on the creative + cut-out + alpha, `--models small,plain_cnn`).
3 seeds, 95% bootstrap intervals over the test creatives.
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


def load_manifest(manifest: Path, use_placement: bool = False) -> list[Sample]:
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
                group=row.get("family") or row["sku"],
                # Only the generator's input placement, and only when asked: by default the
                # product is localised from the two images, as for an import without one.
                placement=row.get("params", {}).get("placement") if use_placement else None,
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


# Held out of training in the leave-out protocol (test only).
HELDOUT_KINDS = ("mug", "lamp")  # procedural product kinds: every product of the kind
HELDOUT_MECHANISMS = {
    "unsuitable": ("torn", "occluded"),  # train: frame cuts, chunks and slices
    "space_mismatch": ("wall",),  # train: floating (with or without tilt)
    "shape_hallucination": ("handle", "top"),  # train: pedestal, legs, extrude
}


def variant_config(name: str, over: dict):
    """A preset, or one of the ablations of `small` recorded in bench/RESULTS.md."""
    from feedback.ml.config import BackboneConfig

    every_map = ["placed", "mask", "product", "edges", "saliency"]
    early_all = dict(  # every map concatenated to the image (a plain CNN's input) + caption
        early_fusion=every_map,
        image_backbone=BackboneConfig(kind="cnn", widths=[32, 64, 96, 128], blocks_per_stage=2),
    )
    ablations = {
        "no_product": ("single_image", {}),
        "small_no_residual": ("small", {"placed_residual": False}),
        "small_no_ring": ("small", {"placed_ring": False}),
        "early_all": ("small", {**early_all, "placed_residual": False, "placed_ring": False}),
        "early_all_residual": (
            "small",
            {**early_all, "placed_residual": True, "placed_ring": False},
        ),
    }
    base, extra = ablations.get(name, (name, {}))
    return preset(base, 6, **extra, **over)


def mechanism(row: dict) -> str:
    p = row.get("params", {})
    for key in ("truncation", "space", "hallucination"):
        if key in p:
            return str(p[key].get("kind", ""))
    return str(p.get("size_variant", ""))


def leaveout_splits(manifest: Path, seed: int, mechanisms: bool = True):
    """(train, val, test, test_tags): test = held-out kinds or mechanisms; val = 10% of the
    remaining families."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    samples = load_manifest(manifest)
    held, rest, tags = [], [], []
    for row, sample in zip(rows, samples, strict=True):
        kind = row["sku"].split("-")[1].lower() if row["sku"].startswith("SYN-") else ""
        mech = mechanism(row)
        fam = kind in HELDOUT_KINDS
        mec = mechanisms and mech in HELDOUT_MECHANISMS.get(row["label"], ())
        if fam or mec:
            held.append(sample)
            tags.append(
                ("family" if fam else "")
                + ("+" if fam and mec else "")
                + ("mechanism" if mec else "")
            )
        else:
            rest.append(sample)
    tr, va, _ = group_split(rest, (0.9, 0.1, 0.0), seed=seed)
    return tr, va, held, tags


def bootstrap_ci(y, probs, fn, n_boot: int = 1000, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        vals.append(fn(y[idx], probs[idx]))
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def _macro_f1(y, probs):
    from sklearn.metrics import f1_score

    return f1_score(y, probs.argmax(1), average="macro", labels=list(range(6)))


def box_only(train, test, cache_dir, size: int):
    """Random forest on ten numbers of the localised product box (from the cached placement
    mask, i.e. what RFNet's `placed` input is built from): the leak check."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from feedback.ml.localize import box_features

    def feats(samples):
        mask = np.asarray(build_cache(samples, cache_dir, size).array("mask")[:, 1])
        out = []
        for m in mask:
            ys, xs = np.nonzero(m > 127)
            box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else None
            out.append(box_features(box, (size, size)))
        return np.stack(out)

    clf = RandomForestClassifier(300, random_state=0, n_jobs=1)
    clf.fit(feats(train), [s.label for s in train])
    return clf.predict_proba(feats(test))


class PlainCNN(torch.nn.Module):
    """The issue's baseline to beat: a plain 4-block CNN on the creative, the cut-out and the
    cut-out's alpha stacked as 7 channels (the cut-out letterboxed into the frame, not placed)."""

    def __init__(self, widths=(32, 64, 128, 128), num_classes: int = 6) -> None:
        super().__init__()
        nn, layers, c = torch.nn, [], 7
        for w in widths:  # conv-BN-ReLU-pool: ~56 M multiply-adds per 64 px image
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)

    def forward(self, batch) -> torch.Tensor:
        x = torch.cat([batch["image"], batch["product"]], 1).float() / 255.0
        return self.head(self.features(x).mean((2, 3)))


def plain_cnn(tr, va, te, args, seed: int):
    """Train PlainCNN with the leave-out TrainConfig's recipe (AdamW, cosine with warm-up,
    sqrt-inverse class weights, flip + 4% translation), keep the epoch with the best val
    macro-F1, return its softmax probabilities on `te`."""
    import math

    import numpy as np
    import torch.nn.functional as F

    torch.manual_seed(seed)
    size = args.image_size or 96
    mods = ["image", "product"]

    def ds(samples, augment):
        cache = build_cache(samples, Path(args.work) / "cache", size, modalities=mods)
        return CachedDataset(cache, samples, mods, augment=augment, translate=0.04)

    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        ds(tr, True), batch_size=args.batch_size, shuffle=True, generator=g, drop_last=True,
        collate_fn=make_collate(None),
    )  # fmt: skip
    counts = np.bincount([s.label for s in tr], minlength=6).astype(float)
    weight = torch.tensor((counts.sum() / np.maximum(counts, 1)) ** 0.5, dtype=torch.float32)
    weight = weight / weight.mean()
    model = PlainCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    total = args.epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda k: min(1.0, (k + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(k, total) / total)),
    )

    @torch.no_grad()
    def probs(samples):
        model.eval()
        d = ds(samples, False)
        out = [
            torch.softmax(model(d.__getitems__(list(range(i, min(i + 256, len(d)))))), 1)
            for i in range(0, len(d), 256)
        ]
        return torch.cat(out).numpy()

    best, best_state = -1.0, None
    y_va = np.array([s.label for s in va])
    for _ in range(args.epochs):
        model.train()
        for batch in loader:
            loss = F.cross_entropy(model(batch), batch["label"], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        f1 = _macro_f1(y_va, probs(va))
        if f1 > best:
            best, best_state = f1, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return probs(te)


def leaveout_train_config(
    *, epochs: int, seed: int, cache_dir, batch_size: int = 32, lr: float = 1e-3,
    workers: int = 1, device: str | None = None,
) -> TrainConfig:  # fmt: skip
    """The leave-out protocol's training recipe, shared by every bench that trains an RFNet for
    comparison (bench/active_learning.py's feature RFNet, bench/rfft.py's reward and judge)."""
    return TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule="cosine",
        warmup_steps=50,
        weight_decay=0.05,
        seed=seed,
        cache_dir=str(cache_dir),
        cache_workers=workers,
        class_weighting="sqrt_inverse",
        translate=0.04,
        device=device,
    )


def leaveout(args) -> None:
    import numpy as np
    from sklearn.metrics import f1_score

    manifest = dataset(args)
    work = Path(args.work)
    seeds = [int(x) for x in args.seeds.split(",")]
    over = {"image_size": args.image_size} if args.image_size else {}
    rows = {}
    # One split for every seed (the seeds vary training), so the caches are built once.
    tr, va, te, tags = leaveout_splits(manifest, 0, mechanisms=not args.families_only)
    box_probs = None
    for seed in seeds:
        print(f"seed {seed}: train/val/test {len(tr)}/{len(va)}/{len(te)}", flush=True)
        y = np.array([s.label for s in te])
        for name in args.models.split(","):
            t = time.time()
            if name == "plain_cnn":
                probs = plain_cnn(tr, va, te, args, seed)
            elif name == "box_only":
                box_probs = (
                    box_probs
                    if box_probs is not None
                    else box_only(tr, te, work / "cache", args.image_size or 96)
                )
                probs = box_probs  # deterministic given the split
            else:
                cfg = variant_config(name, over)
                tc = leaveout_train_config(
                    epochs=args.epochs,
                    seed=seed,
                    cache_dir=work / "cache",
                    batch_size=args.batch_size,
                    lr=args.lr,
                    workers=args.workers,
                )
                res = train(
                    model_config=cfg,
                    train_config=tc,
                    train=tr,
                    val=va,
                    test=None,
                    out_dir=work / f"lo-{name}-{seed}",
                    reporter=Reporter(f"{name}/{seed}"),
                    resume=False,
                )
                probs = Scorer.from_pretrained(res.best_dir, device="cpu").score(te, 64)
            wall = time.time() - t
            per_class = f1_score(y, probs.argmax(1), average=None, labels=list(range(6)))
            slices = {}
            for tag in ("family", "mechanism"):
                m = np.array([tag in g for g in tags])
                if m.any():
                    slices[tag] = float(
                        f1_score(
                            y[m],
                            probs[m].argmax(1),
                            average="macro",
                            labels=sorted(set(y[m].tolist())),
                        )
                    )
            r = {
                "macro_f1": float(_macro_f1(y, probs)),
                "ci": bootstrap_ci(y, probs, _macro_f1, seed=seed),
                "per_class": per_class.tolist(),
                "slices": slices,
                "wall_s": wall,
                "n_test": len(te),
            }
            rows.setdefault(name, []).append(r)
            print(
                f"{name} seed {seed}: macro-F1 {r['macro_f1']:.3f} CI {r['ci']} "
                f"slices {slices} ({wall:.0f}s)",
                flush=True,
            )
    (work / "leaveout.json").write_text(json.dumps(rows, indent=2))
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## RFNet leave-out protocol (issue 8) — {date}",
        "",
        f"Command: `python bench/rfnet.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {os.cpu_count()} shared CPUs, torch {torch.__version__}, {args.threads} "
        f"threads. Data: {args.n} synthetic creatives ({args.gen_size}px); manifests' placement "
        "ignored (product localised from the two images). Test = held-out product kinds "
        f"{', '.join(HELDOUT_KINDS)} + held-out mechanisms "
        + (
            "none (--families-only)"
            if args.families_only
            else "; ".join(f"{k}: {', '.join(v)}" for k, v in HELDOUT_MECHANISMS.items())
        )
        + f". {args.epochs} epochs, image size {args.image_size or 'preset'}.",
        "",
        "| model | seed | test n | macro-F1 [95% bootstrap CI] | held-out families | held-out "
        "mechanisms | " + " | ".join(RF1M_SLUGS) + " | wall |",
        "|---|---|---|---|---|---|" + "---|" * len(RF1M_SLUGS) + "---|",
    ]
    for name, rs in rows.items():
        for seed, r in zip(seeds, rs, strict=True):
            lines.append(
                f"| {name} | {seed} | {r['n_test']} | {r['macro_f1']:.3f} [{r['ci'][0]:.3f}, "
                f"{r['ci'][1]:.3f}] | {r['slices'].get('family', float('nan')):.3f} | "
                f"{r['slices'].get('mechanism', float('nan')):.3f} | "
                + " | ".join(f"{v:.2f}" for v in r["per_class"])
                + f" | {r['wall_s']:.0f}s |"
            )
        mean = np.mean([r["macro_f1"] for r in rs])
        lines.append(
            f"| **{name} mean** | | | **{mean:.3f}** | | |" + " |" * len(RF1M_SLUGS) + " |"
        )
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if not args.no_append:
        with (ROOT / "bench" / "RESULTS.md").open("a") as f:
            f.write("\n" + text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=["split", "leaveout"], default="split")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default="small,no_product,box_only")
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
    ap.add_argument(
        "--families-only",
        action="store_true",
        help="leave-out: hold out product families only (every mechanism seen in training)",
    )
    ap.add_argument("--only", choices=["small", "single_image"], default=None)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.protocol == "leaveout":
        leaveout(args)
        return

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
