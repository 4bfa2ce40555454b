"""RFNet through the product's own commands on a manifest from any generator (issue 8's procedure).

    .venv/bin/python bench/othergen.py /tmp/og --n 3000 --seed 0 --size 256
    .venv/bin/python bench/rfnet_import.py --manifest /tmp/og/manifest.jsonl --seeds 0,1,2

What a new user does, step by step, in a fresh SQLite database under --work: the manifest's
product families are split (about --test-share of the rows, whole families, by --split-seed) into
a training manifest and a test manifest of products never seen in training; each is imported with
`import_creatives` into its own project, frozen with `create_dataset_version` (the training one
with the default 80/10/10 family-grouped ratios, the test one as a single split), the model is
trained with `train_rfnet --preset small --foreground` at the command's defaults (plus
--train-args) and measured with `evaluate_rfnet --model latest --split all --json` on the test
version. The baseline the issue named — a plain 4-block CNN on the creative + cut-out + alpha
(bench/rfnet.py `plain_cnn`) — is trained on the same training families and scored on the same
test creatives. 95% intervals: bootstrap over the test creatives (from the confusion matrix).
Appends a table to bench/RESULTS.md unless --no-append.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(Path(__file__).resolve().parent))  # after ROOT: bench/jobs.py ≠ jobs

from rfnet import bootstrap_ci, load_manifest, plain_cnn  # noqa: E402

from feedback.ml.data import group_split  # noqa: E402
from feedback.ml.metrics import confusion_matrix  # noqa: E402
from feedback.ml.presets import RF1M_SLUGS  # noqa: E402


def split_by_family(manifest: Path, share: float, seed: int, out: Path) -> dict:
    """Write train.jsonl / test.jsonl: whole families, test ≈ `share` of the rows."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    fams = sorted({r.get("family") or r["sku"] for r in rows})
    np.random.default_rng(seed).shuffle(fams)
    size = {f: 0 for f in fams}
    for r in rows:
        size[r.get("family") or r["sku"]] += 1
    test, n = set(), 0
    for f in fams:
        if n >= share * len(rows):
            break
        test.add(f)
        n += size[f]
    parts = {"train": [], "test": []}
    for r in rows:
        parts["test" if (r.get("family") or r["sku"]) in test else "train"].append(r)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return {
        "train_rows": len(parts["train"]),
        "test_rows": len(parts["test"]),
        "train_families": len(fams) - len(test),
        "test_families": len(test),
        "test_products": len({r["sku"] for r in parts["test"]}),
    }


class Manage:
    """`manage.py` in a subprocess against the bench's own database and var dir."""

    def __init__(self, work: Path, threads: int) -> None:
        self.env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="config.settings",
            DJANGO_DEBUG="1",
            DATABASE_URL=f"sqlite:///{work / 'db.sqlite3'}",
            RFSTUDIO_VAR_DIR=str(work / "var"),
            OMP_NUM_THREADS=str(threads),
        )

    def __call__(self, *args: str) -> str:
        cmd = [sys.executable, str(ROOT / "manage.py"), *args]
        print("$ manage.py " + shlex.join(args), flush=True)
        res = subprocess.run(cmd, env=self.env, cwd=ROOT, capture_output=True, text=True)
        if res.returncode:
            sys.exit(f"failed ({res.returncode}): {shlex.join(args)}\n{res.stdout}\n{res.stderr}")
        return res.stdout


def scores_from_confusion(cm) -> dict:
    """Macro-F1, per-class F1 and a bootstrap interval from a confusion matrix (rows = truth)."""
    from sklearn.metrics import f1_score

    cm = np.asarray(cm)
    y = np.repeat(np.repeat(np.arange(len(cm)), len(cm)), cm.ravel())
    pred = np.tile(np.arange(len(cm)), len(cm)).repeat(cm.ravel())
    onehot = np.eye(len(cm))[pred]  # bootstrap_ci takes probabilities; argmax = pred
    labels = list(range(len(cm)))

    def macro(yy, pp):
        return f1_score(yy, pp.argmax(1), average="macro", labels=labels)

    per = f1_score(y, pred, average=None, labels=labels, zero_division=0)
    return {"macro_f1": macro(y, onehot), "ci": bootstrap_ci(y, onehot, macro), "per_class": per}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", required=True, type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/rfnet-import"))
    ap.add_argument("--test-share", type=float, default=0.2)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--train-args", default="", help="extra train_rfnet arguments")
    ap.add_argument("--models", default="small,plain_cnn")
    ap.add_argument("--baseline-epochs", type=int, default=20)
    ap.add_argument("--baseline-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--label", default="", help="a name for the data in the report")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    manifest = args.manifest.resolve()
    work = args.work.resolve()
    info = split_by_family(manifest, args.test_share, args.split_seed, work)
    print(info, flush=True)
    manage = Manage(work, args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    if not (work / "imported").exists():
        manage("migrate", "-v", "0")
        for name in ("train", "test"):
            manage(
                "import_creatives",
                str(work / f"{name}.jsonl"),
                "--project",
                f"bench-{name}",
                "--images-root",
                str(manifest.parent),
                "--label-source",
                "generator",
            )
        manage("create_dataset_version", "--project", "bench-train", "--name", "train-v")
        manage(
            "create_dataset_version",
            "--project",
            "bench-test",
            "--name",
            "test-v",
            "--ratios",
            "1,0,0",
        )
        (work / "imported").write_text("ok")
    rows, weakest = [], {}
    for seed in seeds:
        if "small" in models:
            t = time.time()
            manage(
                "train_rfnet",
                "--dataset",
                "train-v",
                "--preset",
                "small",
                "--seed",
                str(seed),
                "--foreground",
                *shlex.split(args.train_args),
            )
            wall = time.time() - t
            out = manage(
                "evaluate_rfnet",
                "--model",
                "latest",
                "--dataset",
                "test-v",
                "--split",
                "all",
                "--json",
            )
            ev = json.loads(out.strip().splitlines()[-1])
            weakest[seed] = (ev.get("slices") or {}).get("mechanism", [])[:5]
            rows.append(
                (
                    "small",
                    seed,
                    ev["n"],
                    scores_from_confusion(ev["confusion"]),
                    wall,
                    ev.get("ece"),
                )
            )
            print(rows[-1], flush=True)
        if "plain_cnn" in models:
            t = time.time()
            tr = load_manifest(work / "train.jsonl")
            te = load_manifest(work / "test.jsonl")
            for s in tr + te:  # the split manifests live in --work; images beside the original
                s.creative_path = str(manifest.parent / Path(s.creative_path).relative_to(work))
                s.product_path = str(manifest.parent / Path(s.product_path).relative_to(work))
            tr, va, _ = group_split(tr, (0.9, 0.1, 0.0), seed=seed)
            ns = argparse.Namespace(
                image_size=args.baseline_size,
                work=str(work),
                batch_size=32,
                lr=1e-3,
                epochs=args.baseline_epochs,
            )
            probs = plain_cnn(tr, va, te, ns, seed)
            cm = confusion_matrix(np.array([s.label for s in te]), probs.argmax(1), len(RF1M_SLUGS))
            rows.append(
                ("plain_cnn", seed, len(te), scores_from_confusion(cm), time.time() - t, None)
            )
            print(rows[-1], flush=True)
    text = report(args, info, rows, weakest)
    print(text)
    if not args.no_append:
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write("\n" + text)


def report(args, info, rows, weakest) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python bench/rfnet_import.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        f"## RFNet: import → dataset version → train_rfnet → evaluate_rfnet (issue 8) — {now}",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {args.threads} thread(s). "
        f"Data: {args.label or args.manifest} — {info['train_rows']} training creatives "
        f"({info['train_families']} families; train_rfnet's own 80/10/10 family split inside), "
        f"{info['test_rows']} test creatives of {info['test_products']} products in "
        f"{info['test_families']} families never seen in training. `small` = "
        f"`train_rfnet --preset small --foreground {args.train_args}`".rstrip()
        + f"; `plain_cnn` = bench/rfnet.py's baseline at {args.baseline_size} px, "
        f"{args.baseline_epochs} epochs.",
        "",
        "| model | seed | test n | macro-F1 [95% CI] | "
        + " | ".join(RF1M_SLUGS)
        + " | ECE | wall |",
        "|" + "---|" * (len(RF1M_SLUGS) + 6),
    ]
    by_model: dict[str, list[float]] = {}
    for name, seed, n, sc, wall, ece in rows:
        lo, hi = sc["ci"]
        per = " | ".join(f"{v:.2f}" for v in sc["per_class"])
        ece_s = f"{ece:.3f}" if isinstance(ece, float) else ""
        lines.append(
            f"| {name} | {seed} | {n} | {sc['macro_f1']:.3f} [{lo:.3f}, {hi:.3f}] | {per} | "
            f"{ece_s} | {wall:.0f}s |"
        )
        by_model.setdefault(name, []).append(sc["macro_f1"])
    for name, vals in by_model.items():
        lines.append(f"| **{name} mean** | | | **{np.mean(vals):.3f}** |" + " |" * 8)
    if any(weakest.values()):
        lines.append("")
    for seed, worst in weakest.items():
        if worst:  # evaluate_rfnet's slices: the manifest's params.mechanism, worst first
            cells = ", ".join(f"{r['key']} {r['accuracy']:.2f} (n={r['n']})" for r in worst)
            lines.append(f"Weakest mechanisms, `small` seed {seed}: {cells}.  ")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
