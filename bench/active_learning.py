"""Active-learning benchmark: does the queue order (feedback.ml.active) pay for itself?

    nice -n 10 .venv/bin/python bench/active_learning.py --work /tmp/rfnet-lo

Simulated annotators label synthetic creatives (their generator label) in the order a policy
serves them; after each batch a learner is refitted on the labels so far and scored on a fixed
held-out set (held-out product kinds and defect mechanisms, as in `bench/rfnet.py --protocol
leaveout`). Policies: `random`, `uncertainty` (pure entropy of calibrated probabilities) and
`mixed` (the production order: 20% random share, per-product cap, audit slice). The learner is a
multinomial logistic regression on pooled RFNet input maps (the cached arrays: image, cut-out,
placement, mask, edges), refitted from scratch each round: a cheap stand-in for retraining RFNet
that keeps the comparison about the ORDER. 3 seeds; macro-F1 vs number of labels is appended to
bench/RESULTS.md, with the labels each policy needs to reach random's final macro-F1.
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
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

from feedback.ml.active import ActiveConfig, entropy_uncertainty, order_items  # noqa: E402
from feedback.ml.data import build_cache  # noqa: E402

MODALITIES = ("image", "product", "placed", "mask", "edges")


def features(samples, cache_dir: Path, size: int, pool: int = 8) -> np.ndarray:
    cache = build_cache(samples, cache_dir, size)
    parts = []
    for m in MODALITIES:
        a = np.asarray(cache.array(m), dtype=np.float32) / 255.0
        n, c, h, w = a.shape
        a = a.reshape(n, c, pool, h // pool, pool, w // pool).mean((3, 5))
        parts.append(a.reshape(n, -1))
    x = np.concatenate(parts, 1)
    return (x - x.mean(0)) / (x.std(0) + 1e-6)


def fit_predict(x_tr, y_tr, x_pool, x_te):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=300, C=0.5)
    clf.fit(x_tr, y_tr)
    return clf, clf.predict_proba(x_pool), clf.predict_proba(x_te)


def _full_probs(clf, probs):
    out = np.full((len(probs), 6), 1e-6)
    out[:, clf.classes_] = probs
    return out / out.sum(1, keepdims=True)


def simulate(policy, x, y, products, x_te, y_te, *, seed, start, step, budget):
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    n = len(y)
    labelled = list(rng.choice(n, start, replace=False))
    curve = []
    while True:
        # a learner needs two classes; the random start almost always has them
        clf, p_pool, p_te = fit_predict(x[labelled], y[labelled], x, x_te)
        f1 = f1_score(y_te, clf.classes_[p_te.argmax(1)], average="macro", labels=list(range(6)))
        curve.append((len(labelled), float(f1)))
        if len(labelled) >= budget:
            return curve
        rest = np.setdiff1d(np.arange(n), labelled)
        if policy == "random":
            pick = list(rng.choice(rest, min(step, len(rest)), replace=False))
        else:
            unc = entropy_uncertainty(_full_probs(clf, p_pool[rest]))
            cfg = (
                ActiveConfig(random_share=0.0, audit_share=0.0, product_cap=None, seed=seed)
                if policy == "uncertainty"
                else ActiveConfig(seed=seed + len(labelled), batch=step)
            )
            pos = order_items(rest.tolist(), unc, [products[i] for i in rest], cfg)
            pick = [i for i, _ in sorted(pos.items(), key=lambda kv: kv[1])][:step]
        labelled += [int(i) for i in pick]


def main() -> None:
    from rfnet import leaveout_splits  # the same held-out split as the RFNet bench

    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/rfnet-lo")
    ap.add_argument("--manifest", default=None, help="default: the leave-out bench's data")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--start", type=int, default=30)
    ap.add_argument("--step", type=int, default=30)
    ap.add_argument("--budget", type=int, default=600)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    manifest = Path(args.manifest) if args.manifest else next(work.glob("data-*/manifest.jsonl"))
    tr, va, te, _ = leaveout_splits(manifest, 0)
    pool = tr + va
    t = time.time()
    x = np.concatenate(
        [features(tr, work / "cache", args.size), features(va, work / "cache", args.size)]
    )
    x_te = features(te, work / "cache", args.size)
    y = np.array([s.label for s in pool])
    y_te = np.array([s.label for s in te])
    products = [s.product_path for s in pool]
    print(f"features {x.shape} in {time.time() - t:.0f}s", flush=True)
    seeds = [int(v) for v in args.seeds.split(",")]
    curves: dict[str, list] = {}
    for policy in ("random", "uncertainty", "mixed"):
        for seed in seeds:
            c = simulate(
                policy,
                x,
                y,
                products,
                x_te,
                y_te,
                seed=seed,
                start=args.start,
                step=args.step,
                budget=args.budget,
            )
            curves.setdefault(policy, []).append(c)
            print(policy, seed, [round(f, 3) for _, f in c[::4]], flush=True)
    (work / "active_learning.json").write_text(json.dumps(curves))
    ns = [n for n, _ in curves["random"][0]]
    mean = {p: np.mean([[f for _, f in c] for c in cs], 0) for p, cs in curves.items()}
    target = mean["random"][-1]

    def labels_to(p):
        hit = [n for n, f in zip(ns, mean[p], strict=True) if f >= target]
        return hit[0] if hit else None

    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    show = [k for k in range(len(ns)) if k % 2 == 0 or k == len(ns) - 1]
    lines = [
        f"## Active learning (issue 8) — {date}",
        "",
        f"Command: `python bench/active_learning.py {' '.join(sys.argv[1:])}`  ",
        f"Pool {len(pool)} creatives, test {len(te)} (held-out kinds + mechanisms, the leave-out "
        f"split), learner: logistic regression on pooled RFNet input maps ({args.size}px), "
        f"start {args.start} random labels, +{args.step} per round; mean macro-F1 over seeds "
        f"{args.seeds}.",
        "",
        "| policy | "
        + " | ".join(str(ns[k]) for k in show)
        + " | labels to reach random's final |",
        "|---|" + "---|" * len(show) + "---|",
    ]
    for p in mean:
        lines.append(
            f"| {p} | "
            + " | ".join(f"{mean[p][k]:.3f}" for k in show)
            + f" | {labels_to(p) or 'not reached'} |"
        )
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if not args.no_append:
        with (ROOT / "bench" / "RESULTS.md").open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
