"""Active-learning benchmark: does the queue order (feedback.ml.active) pay for itself?

    nice -n 10 .venv/bin/python bench/active_learning.py --work /tmp/rfnet-lo \
        [--manifest DATA/manifest.jsonl] [--test leaveout|families] [--budget 600]

Simulated annotators label synthetic creatives (their generator label) in the order a policy
serves them; after each batch a learner is refitted on the labels so far and scored on a fixed
held-out set: `--test leaveout` held-out product kinds and defect mechanisms, as in
`bench/rfnet.py --protocol leaveout`; `--test families` held-out product families with every
kind and mechanism also in the pool (the usual active-learning setting). Policies: `random`,
`uncertainty` (pure entropy of calibrated probabilities) and
`mixed` (the production order: 20% random share, per-product cap, audit slice). Selection is
feedback.ml.active.order_items on feedback.ml.calibration's calibrated probabilities, the code
the queue runs; nothing about the order is re-implemented here.

The learner must keep improving with labels, or every order ends on the same plateau and the
comparison says nothing (the pooled-map logistic regression of the first run stalled at
macro-F1 0.32). It is a multinomial logistic regression, refitted from scratch each round, on
FROZEN features that no label ever touched:
- fixed random convolutions (seeded unit-norm Gaussian filters, two layers; global, 2x2 and
  in-product pooling)
  over pixel-aligned maps: the creative, the cut-out pasted at its placement (`placed`), their
  absolute difference inside the product, the placement mask and the ring around it, edges and
  saliency (the RFNet feature cache's arrays);
- region statistics of the same maps: product box and frame contact, how much the creative
  differs from the pasted cut-out inside the product, colour/edge/saliency contrast between the
  product and the ring around it.
As in production, a temperature is fitted on the `val` split after each fit
(calibration.fit_temperature) and the uncertainty is the entropy of the calibrated
probabilities. `val` is never served by a policy. 3 seeds; macro-F1 vs number of labels is
appended to bench/RESULTS.md, with the labels each policy needs to reach random's final
macro-F1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after ROOT: bench/jobs.py must not shadow jobs/

import numpy as np  # noqa: E402

from feedback.ml.active import ActiveConfig, entropy_uncertainty, order_items  # noqa: E402
from feedback.ml.data import build_cache, group_split  # noqa: E402

TESTS = {
    "leaveout": "held-out kinds + mechanisms, the leave-out split of bench/rfnet.py",
    "families": "held-out product families; every kind and mechanism also in the pool",
}
C_REG = 0.05  # inverse L2 strength of the logistic regression (shared by every policy)
RING = 7  # px (at 64 px): width of the band around the product compared with the product
FEATURE_SEED = 0  # the random filters: fixed, independent of the simulation seeds


def _maps(samples, cache_dir: Path, size: int) -> dict[str, np.ndarray]:
    """Pixel-aligned float maps in [0, 1] from the RFNet feature cache."""
    import torch
    import torch.nn.functional as F

    cache = build_cache(samples, cache_dir, size)

    def get(m):
        return np.asarray(cache.array(m), dtype=np.float32) / 255.0

    image, placed, mask, edges, sal = (
        get(m) for m in ("image", "placed", "mask", "edges", "saliency")
    )
    alpha = placed[:, 3:4]  # the cut-out's own pixels at their place in the creative
    inside = mask[:, 1:2]  # placement mask
    grown = F.max_pool2d(torch.from_numpy(inside), RING, 1, RING // 2).numpy()
    return {
        "image": image,
        "placed": placed[:, :3] * alpha,
        "alpha": alpha,
        "diff": np.abs(image - placed[:, :3]) * alpha,
        "inside": inside,
        "ring": np.clip(grown - inside, 0.0, 1.0),
        "edges": edges[:, :1],
        "saliency": sal,
    }


def _masked_mean(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    return (v * m).sum((2, 3)) / (m.sum((2, 3)) + 1e-3)


def region_stats(maps: dict[str, np.ndarray]) -> np.ndarray:
    """[N, 35] statistics of the product region against its surroundings."""
    inside, ring, alpha = maps["inside"], maps["ring"], maps["alpha"]
    rest = 1.0 - np.clip(inside + ring, 0.0, 1.0)
    n, _, h, w = inside.shape
    rows, cols = inside[:, 0].max(2) > 0.5, inside[:, 0].max(1) > 0.5
    grid = np.linspace(0.0, 1.0, h)

    def extent(v):
        lo = np.where(v.any(1), np.argmax(v, 1), 0)
        hi = np.where(v.any(1), h - 1 - np.argmax(v[:, ::-1], 1), 0)
        return grid[lo], grid[hi]

    y0, y1 = extent(rows)
    x0, x1 = extent(cols)
    box = [y0, y1, x0, x1, y1 - y0, x1 - x0]
    touches = [(y0 < 0.02), (y1 > 0.98), (x0 < 0.02), (x1 > 0.98)]
    area = inside.mean((1, 2, 3))
    diff = maps["diff"]
    big = diff.max(1, keepdims=True)
    differs = [_masked_mean((big > t).astype(np.float32), alpha)[:, 0] for t in (0.1, 0.2, 0.3)]
    c_in, c_ring = _masked_mean(maps["image"], inside), _masked_mean(maps["image"], ring)
    contrast = [*(c_in - c_ring).T, np.linalg.norm(c_in - c_ring, axis=1), *c_in.T, *c_ring.T]
    texture = []
    for m in (inside, ring, rest):
        texture += [_masked_mean(maps["edges"], m)[:, 0], _masked_mean(maps["saliency"], m)[:, 0]]
    grey_std = _masked_mean(maps["image"].std(1, keepdims=True), inside)[:, 0]
    cols_ = [area, *box, *touches, *_masked_mean(diff, alpha).T, *differs, *contrast, *texture]
    cols_ += [grey_std, alpha.mean((1, 2, 3)) / (area + 1e-3)]
    return np.stack([np.asarray(c, dtype=np.float32) for c in cols_], 1)


def random_conv(maps: dict[str, np.ndarray], widths=(48, 96), chunk: int = 100) -> np.ndarray:
    """Features of two fixed random conv layers (ReLU, average pooling) over the stacked maps:
    global mean and max, a 2x2 grid and the mean inside the product (layer 2), global mean
    (layer 1)."""
    import torch
    import torch.nn.functional as F

    keys = ("image", "placed", "alpha", "diff", "inside", "ring", "edges", "saliency")
    x_all = torch.from_numpy(np.concatenate([maps[k] for k in keys], 1))
    g = torch.Generator().manual_seed(FEATURE_SEED)
    k1 = torch.randn(widths[0], x_all.shape[1], 5, 5, generator=g)
    k1 /= k1.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    b1 = 0.1 * torch.randn(widths[0], generator=g)
    k2 = torch.randn(widths[1], widths[0], 3, 3, generator=g)
    k2 /= k2.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    inside = torch.from_numpy(maps["inside"])
    out = []
    with torch.no_grad():
        for s in range(0, len(x_all), chunk):
            x = x_all[s : s + chunk]
            x = x - x.mean((2, 3), keepdim=True)
            h1 = F.avg_pool2d(F.relu(F.conv2d(x, k1, b1, padding=2)), 2)
            h2 = F.avg_pool2d(F.relu(F.conv2d(h1, k2, padding=1)), 2)
            m = F.adaptive_avg_pool2d(inside[s : s + chunk], h2.shape[-1])
            out.append(
                torch.cat(
                    [
                        h2.mean((2, 3)),
                        h2.amax((2, 3)),
                        F.adaptive_avg_pool2d(h2, 2).flatten(1),
                        (h2 * m).sum((2, 3)) / (m.sum((2, 3)) + 1e-3),
                        h1.mean((2, 3)),
                    ],
                    1,
                )
            )
    return torch.cat(out).numpy()


def features(samples, cache_dir: Path, size: int) -> np.ndarray:
    maps = _maps(samples, cache_dir, size)
    return np.concatenate([region_stats(maps), random_conv(maps)], 1)


def feature_rfnet(args, manifest: Path, exclude_groups: set[str], leaveout: bool) -> Path:
    """A `small` RFNet trained on OTHER creatives (generator seed `--feature-seed`, not the
    simulation's manifest) whose product families exclude `exclude_groups` (the simulation's
    val and test families; for the leave-out test, val and the held-out kinds and mechanisms): the
    previous model version a team would have when it starts labelling a new batch. Only its
    pooled embedding is used, frozen."""
    from rfnet import leaveout_splits, leaveout_train_config, load_manifest

    from feedback.ml.data import group_split
    from feedback.ml.presets import preset
    from feedback.ml.training import train
    from generation.synthetic import write_manifest

    work = Path(args.work)
    tag = f"n{args.feature_n}-s{args.feature_seed}-{args.feature_gen_size}px"
    out = work / f"feature-rfnet-{args.test}-{tag}"
    if (out / "best" / "rfnet_config.json").exists():
        return out / "best"
    data = work / f"feature-data-{tag}"
    fm = data / "manifest.jsonl"
    if not fm.exists():
        write_manifest(data, args.feature_n, seed=args.feature_seed, size=args.feature_gen_size)
    if leaveout:
        tr, va, _, _ = leaveout_splits(fm, 0)
        samples = tr + va
    else:
        samples = load_manifest(fm)
    sim_paths = {str(s.creative_path) for s in load_manifest(manifest)}
    if {str(s.creative_path) for s in samples} & sim_paths:
        raise SystemExit("feature RFNet data overlaps the simulation's manifest")
    samples = [s for s in samples if s.group not in exclude_groups]
    tr, va, _ = group_split(samples, (0.9, 0.1, 0.0), seed=args.feature_seed)
    print(
        f"feature RFNet: train {len(tr)} val {len(va)}, {len(exclude_groups)} families excluded",
        flush=True,
    )
    tc = leaveout_train_config(
        epochs=args.feature_epochs, seed=0, cache_dir=work / "cache", device="cpu"
    )
    res = train(
        model_config=preset("small", 6, image_size=args.size),
        train_config=tc,
        train=tr,
        val=va,
        test=None,
        out_dir=out,
        resume=True,
    )
    return res.best_dir


def rfnet_embeddings(samples, model_dir: Path, cache_dir: Path) -> np.ndarray:
    """The frozen RFNet's pooled embedding of each sample (from the same feature cache)."""
    import torch

    from feedback.ml.data import CachedDataset, make_collate
    from feedback.ml.model import RFNet

    model = RFNet.from_pretrained(model_dir).eval()
    cfg = model.config
    cache = build_cache(samples, cache_dir, cfg.image_size, modalities=cfg.modalities)
    ds = CachedDataset(cache, samples, cfg.modalities)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=64, shuffle=False, collate_fn=make_collate(model.tokenize)
    )
    out = []
    with torch.no_grad():
        for batch in loader:
            batch.pop("label", None)
            out.append(model.forward_features(batch)["embedding"])
    return torch.cat(out).numpy()


class Learner:
    """Logistic regression + temperature on `val`: calibrated class probabilities."""

    def __init__(self, x_val, y_val):
        self.x_val, self.y_val = x_val, y_val

    def fit(self, x, y):
        from sklearn.linear_model import LogisticRegression

        from feedback.ml.calibration import fit_temperature

        self.clf = LogisticRegression(max_iter=500, C=C_REG).fit(x, y)
        self.calibration = fit_temperature(self._logits(self.x_val), self.y_val)
        return self

    def _logits(self, x):
        out = np.full((len(x), 6), np.log(1e-6))
        out[:, self.clf.classes_] = self.clf.predict_log_proba(x)
        return out

    def predict_proba(self, x):
        import torch

        from feedback.ml.calibration import apply_calibration

        logits = torch.from_numpy(self._logits(x))
        return apply_calibration(logits, self.calibration).numpy()


def simulate(policy, x, y, products, x_te, y_te, learner, *, seed, start, step, budget):
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    n = len(y)
    labelled = list(rng.choice(n, start, replace=False))
    curve = []
    while True:
        # a learner needs two classes; the random start almost always has them
        model = learner.fit(x[labelled], y[labelled])
        pred = model.predict_proba(x_te).argmax(1)
        f1 = f1_score(y_te, pred, average="macro", labels=list(range(6)))
        curve.append((len(labelled), float(f1), float(model.calibration["temperature"])))
        if len(labelled) >= budget:
            return curve
        rest = np.setdiff1d(np.arange(n), labelled)
        if policy == "random":
            pick = list(rng.choice(rest, min(step, len(rest)), replace=False))
        else:
            unc = entropy_uncertainty(model.predict_proba(x[rest]))
            cfg = (
                ActiveConfig(random_share=0.0, audit_share=0.0, product_cap=None, seed=seed)
                if policy == "uncertainty"
                else ActiveConfig(seed=seed + len(labelled), batch=step)
            )
            pos = order_items(rest.tolist(), unc, [products[i] for i in rest], cfg)
            pick = [i for i, _ in sorted(pos.items(), key=lambda kv: kv[1])][:step]
        labelled += [int(i) for i in pick]


def main() -> None:
    import torch
    from rfnet import leaveout_splits, load_manifest  # the RFNet bench's data and splits

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/rfnet-lo")
    ap.add_argument("--manifest", default=None, help="default: the leave-out bench's data")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--start", type=int, default=30)
    ap.add_argument("--step", type=int, default=30)
    ap.add_argument("--budget", type=int, default=600)
    ap.add_argument(
        "--test",
        choices=("leaveout", "families"),
        default="leaveout",
        help="leaveout: test = held-out product kinds and defect mechanisms (bench/rfnet.py); "
        "families: every kind and mechanism, split 70/10/20 by product family",
    )
    ap.add_argument(
        "--features",
        choices=("rfnet", "randconv"),
        default="rfnet",
        help="rfnet: the frozen embedding of a small RFNet trained on other creatives and "
        "families (feature_rfnet); randconv: label-free random convolutions + region statistics",
    )
    ap.add_argument("--feature-n", type=int, default=2000)
    ap.add_argument("--feature-seed", type=int, default=7)
    ap.add_argument("--feature-gen-size", type=int, default=128)
    ap.add_argument("--feature-epochs", type=int, default=12)
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument(
        "--plot", default=None, help="PNG of the curves (default bench/active_learning/TEST.png)"
    )
    ap.add_argument(
        "--plot-only", default=None, help="draw --plot from a saved curves JSON, then stop"
    )
    args = ap.parse_args()
    png = Path(args.plot or ROOT / "bench" / "active_learning" / f"{args.test}.png")
    title = f"active learning, {args.test} test: mean test macro-F1 vs labels (band: seed min-max)"
    if args.plot_only:
        return plot(json.loads(Path(args.plot_only).read_text()), png, title)
    work = Path(args.work)
    manifest = Path(args.manifest) if args.manifest else next(work.glob("data-*/manifest.jsonl"))
    if args.test == "leaveout":
        tr, va, te, _ = leaveout_splits(manifest, 0)
    else:
        tr, va, te = group_split(load_manifest(manifest), (0.7, 0.1, 0.2), seed=0)
    pool = tr  # what the policies serve; `val` only calibrates, `test` only scores
    t0 = t = time.time()
    if args.features == "rfnet":
        # Families the feature RFNet must not see: val and test (families test). For the
        # leave-out test the held-out kinds and mechanisms are already cut from its data by
        # leaveout_splits; its other test items share families with the pool itself.
        held = {s.group for s in va + (te if args.test == "families" else [])}
        model_dir = feature_rfnet(args, manifest, held, args.test == "leaveout")
        x, x_va, x_te = (rfnet_embeddings(s, model_dir, work / "cache") for s in (tr, va, te))
    else:
        x, x_va, x_te = (features(s, work / "cache", args.size) for s in (tr, va, te))
    # Standardised with the unlabelled pool's statistics (no label involved).
    mu, sd = x.mean(0), x.std(0) + 1e-6
    x, x_va, x_te = ((a - mu) / sd for a in (x, x_va, x_te))
    y = np.array([s.label for s in pool])
    y_va = np.array([s.label for s in va])
    y_te = np.array([s.label for s in te])
    products = [s.product_path for s in pool]
    learner = Learner(x_va, y_va)
    print(f"features {x.shape} in {time.time() - t:.0f}s", flush=True)
    seeds = [int(v) for v in args.seeds.split(",")]
    curves: dict[str, list] = {}
    for policy in ("random", "uncertainty", "mixed"):
        for seed in seeds:
            t = time.time()
            c = simulate(
                policy,
                x,
                y,
                products,
                x_te,
                y_te,
                learner,
                seed=seed,
                start=args.start,
                step=args.step,
                budget=args.budget,
            )
            curves.setdefault(policy, []).append(c)
            print(
                policy,
                seed,
                [round(r[1], 3) for r in c[::4]],
                f"{time.time() - t:.0f}s",
                flush=True,
            )
    (work / "active_learning.json").write_text(json.dumps(curves))
    plot(curves, png, title)
    text = report(curves, args, n_pool=len(pool), n_val=len(va), n_test=len(te))
    text += f"Wall time {time.time() - t0:.0f} s (features included), torch threads 1, nice 10.\n"
    print(text)
    if not args.no_append:
        with (ROOT / "bench" / "RESULTS.md").open("a") as f:
            f.write("\n" + text)


COLOURS = {"random": (120, 120, 120), "uncertainty": (30, 90, 200), "mixed": (210, 60, 30)}


def plot(curves, path: Path, title: str, w: int = 560, h: int = 320) -> None:
    """Mean macro-F1 vs labels per policy (seed min-max band), drawn with PIL (no plotting
    library): a dashed line at random's final macro-F1, a dotted one at 50% of the budget."""
    from PIL import Image, ImageDraw

    ns = np.array([r[0] for r in curves["random"][0]], float)
    f1 = {p: np.array([[r[1] for r in c] for c in cs]) for p, cs in curves.items()}
    lo = min(a.min() for a in f1.values()) - 0.01
    hi = max(a.max() for a in f1.values()) + 0.01
    pad, im = 40, Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)

    def xy(n, v):
        x = pad + (w - 2 * pad) * (n - ns[0]) / max(1.0, ns[-1] - ns[0])
        return (x, h - pad - (h - 2 * pad) * (v - lo) / (hi - lo))

    for policy, a in f1.items():
        c = COLOURS.get(policy, (0, 0, 0))
        band = [xy(n, v) for n, v in zip(ns, a.max(0), strict=True)]
        band += [xy(n, v) for n, v in zip(ns[::-1], a.min(0)[::-1], strict=True)]
        d.polygon(band, fill=tuple(int(255 - (255 - v) * 0.18) for v in c))
    for policy, a in f1.items():
        c = COLOURS.get(policy, (0, 0, 0))
        d.line([xy(n, v) for n, v in zip(ns, a.mean(0), strict=True)], fill=c, width=2)
    target = f1["random"].mean(0)[-1]
    for k in range(0, w - 2 * pad, 8):  # dashed: random's final
        d.line([(pad + k, xy(ns[0], target)[1]), (pad + k + 4, xy(ns[0], target)[1])], fill="black")
    half = xy(ns[-1] / 2, lo)[0]
    for k in range(0, h - 2 * pad, 6):
        d.point((half, pad + k), fill="black")
    d.rectangle([pad, pad, w - pad, h - pad], outline="black")
    d.text((pad, 8), title, fill="black")
    d.text((pad, 22), f"macro-F1 {lo:.2f} .. {hi:.2f}", fill="black")
    d.text((pad, h - pad + 8), f"labels {int(ns[0])} .. {int(ns[-1])}", fill="black")
    for i, policy in enumerate(f1):
        d.text((w - pad - 90, h - pad - 48 + 14 * i), policy, fill=COLOURS.get(policy, (0, 0, 0)))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def _first_at(ns, f1s, target):
    return next((n for n, f in zip(ns, f1s, strict=True) if f >= target), None)


def _feature_text(args) -> str:
    if args.features == "rfnet":
        return (
            f"the frozen {args.size}px embedding of a `small` RFNet trained for "
            f"{args.feature_epochs} epochs on {args.feature_n} OTHER creatives (generator seed "
            f"{args.feature_seed}, {args.feature_gen_size}px) without the val and test "
            "families (families test) or without the val families and the held-out kinds and "
            "mechanisms (leaveout test)"
        )
    return (
        "frozen label-free features (fixed random convolutions over pixel-aligned maps incl. "
        f"|creative - placed cut-out| + region statistics, {args.size}px)"
    )


def report(curves, args, *, n_pool, n_val, n_test) -> str:
    ns = [r[0] for r in curves["random"][0]]
    f1 = {p: np.array([[r[1] for r in c] for c in cs]) for p, cs in curves.items()}
    mean = {p: a.mean(0) for p, a in f1.items()}
    target = mean["random"][-1]
    show = [k for k in range(len(ns)) if k % 2 == 0 or k == len(ns) - 1]
    temps = np.array([[r[2] for r in c] for cs in curves.values() for c in cs])
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## Active learning (issue 8) — {date}",
        "",
        f"Command: `nice -n 10 python bench/active_learning.py {' '.join(sys.argv[1:])}`  ",
        f"Pool {n_pool} creatives (served by the policies), val {n_val} (temperature only), test "
        f"{n_test} ({TESTS[args.test]}). Learner: logistic "
        f"regression (C={C_REG}) on {_feature_text(args)}, temperature-calibrated on val "
        f"each round (mean T {temps.mean():.2f}, "
        f"range {temps.min():.2f}–{temps.max():.2f}); selection = feedback.ml.active.order_items "
        f"on calibrated entropy. Start {args.start} random labels, +{args.step} per round. "
        f"Mean test macro-F1 over seeds {args.seeds} (± = half the min–max spread).",
        "",
        "| policy | "
        + " | ".join(str(ns[k]) for k in show)
        + " | labels to reach random's final (mean curve) | per seed |",
        "|---|" + "---|" * len(show) + "---|---|",
    ]
    for p, a in f1.items():
        spread = (a.max(0) - a.min(0)) / 2
        per_seed = [
            _first_at(ns, a[s], f1["random"][s][-1]) or "–" for s in range(len(a))
        ]  # against that seed's own random final
        lines.append(
            f"| {p} | "
            + " | ".join(f"{mean[p][k]:.3f} ± {spread[k]:.3f}" for k in show)
            + f" | {_first_at(ns, mean[p], target) or 'not reached'} | "
            + ", ".join(map(str, per_seed))
            + " |"
        )
    hit = _first_at(ns, mean["mixed"], target)
    met = hit is not None and hit <= ns[-1] / 2
    lines += [
        "",
        f"Goal (mixed reaches random's final macro-F1 {target:.3f} with ≤ 50% of the "
        f"{ns[-1]} labels): **{'met' if met else 'not met'}** — mixed first reaches it at "
        f"{hit if hit is not None else 'no point of the budget'}"
        + (f" labels ({100 * hit / ns[-1]:.0f}%)." if hit is not None else "."),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
