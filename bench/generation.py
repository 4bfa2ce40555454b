"""Generation benchmarks: the tiny base's training curve and time, generation speed, peak memory.

    nice -n 10 .venv/bin/python bench/generation.py train [--preset tiny] [--minutes 20]
        [--examples 2000] [--batch-size 16] [--steps 1500] [--out bench/generation]
    nice -n 10 .venv/bin/python bench/generation.py speed [--model DIR] [--size 64] [--n 16]
        [--style]

`train` trains the tiny base on procedural `available` creatives (generation.synthetic; true
labels known) of one set of products and samples it on held-out products; it writes the curve
(JSON + PNG), sample grids (PNG) and appends the figures to bench/RESULTS.md. `speed` measures
images/s and peak memory of generation (the tiny model, or `--preset sd15` configs at 512 px on a
GPU; `--style` also times the same images with a style reference through an IP-Adapter of the
preset's size, random weights, and reports the ratio). No Django: runs anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

SAMPLE_PROMPTS = [
    "front view of a product placed on white desktop, bright indoor scene, beige walls",
    "minimalist scene, front view of a product placed on a table, blue walls",
    "indoor scene, a product on a wooden desktop, green walls",
    "front view of a product placed on grey desktop, pink walls",
]


def synthetic_examples(n: int, *, seed: int, holdout_every: int = 5):
    """(train examples, held-out (product, prompt) pairs): products split by SKU."""
    from generation import synthetic
    from generation.ml.training import Example

    products = synthetic.load_products()
    train_p = [p for i, p in enumerate(products) if i % holdout_every]
    held = [p for i, p in enumerate(products) if not i % holdout_every]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ex = synthetic.generate_example(rng, "available", size=96, products=train_p, seed=i)
        out.append(Example(image=ex.image, product=ex.product, box=tuple(ex.params["box"]),
                           prompt=ex.prompt, key=ex.sku))  # fmt: skip
    samples = [(held[i * 7 % len(held)].image, SAMPLE_PROMPTS[i % 4]) for i in range(8)]
    return out, samples


def curve_png(history: list[dict], path: Path, w: int = 480, h: int = 240) -> None:
    """Loss (log scale, raw and smoothed) against step, drawn with PIL (no plotting library)."""
    from PIL import ImageDraw

    loss = np.log10(np.array([max(r["loss"], 1e-6) for r in history]))
    k = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    lo, hi = float(loss.min()), float(loss.max()) or 1.0
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    pad = 30

    def xy(i, v, n):
        x = pad + (w - 2 * pad) * i / max(1, n - 1)
        y = h - pad - (h - 2 * pad) * (v - lo) / max(1e-9, hi - lo)
        return (x, y)

    d.line([xy(i, v, len(loss)) for i, v in enumerate(loss)], fill=(180, 200, 240), width=1)
    d.line([xy(i + k - 1, v, len(loss)) for i, v in enumerate(smooth)], fill=(20, 60, 160), width=2)
    d.rectangle([pad, pad, w - pad, h - pad], outline="black")
    d.text((pad, 8), f"loss (log10) {10**hi:.3f} .. {10**lo:.3f}", fill="black")
    d.text((pad, h - pad + 8), f"step 1 .. {history[-1]['step']}", fill="black")
    im.save(path)


def append_results(title: str, command: str, lines: list[str]) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    host = f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    block = [f"\n## {title} ({stamp})", "", f"`{command}` — {host}", "", *lines, ""]
    with open(path, "a") as fh:
        fh.write("\n".join(block))


def cmd_train(args) -> None:
    from generation.ml.config import preset
    from generation.ml.training import TrainConfig, train

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {"prediction_type": args.prediction_type} if args.prediction_type else {}
    t0 = time.perf_counter()
    examples, samples = synthetic_examples(args.examples, seed=args.seed)
    prep_s = time.perf_counter() - t0
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        checkpoint_every=250,
        sample_every=args.sample_every,
        max_seconds=args.minutes * 60,
        seed=args.seed,
    )

    class Print:
        def progress(self, step, total=None, phase=None):
            if step and step % 100 == 0:
                print(f"{phase} {step}/{total} {time.perf_counter() - t0:.0f}s", flush=True)

        def metric(self, name, value, step=None):
            if step and step % 100 == 0:
                print(f"  {name}={value:.4f}", flush=True)

        def log(self, message):
            print(message, flush=True)

    res = train(
        examples=examples,
        out_dir=Path(args.work),
        model_config=preset(args.preset, **overrides),
        config=cfg,
        reporter=Print(),
        resume=args.resume,
        sample_products=samples,
    )
    curve_png(res.history, out / f"curve-{args.preset}.png")
    grid = out / f"samples-{args.preset}.png"
    if (Path(args.work) / "samples" / "final.png").exists():
        Image.open(Path(args.work) / "samples" / "final.png").resize(
            (8 * 96, 4 * 96), Image.NEAREST
        ).save(grid)
    m = res.metrics
    (out / f"train-{args.preset}.json").write_text(json.dumps(m, indent=2))
    hist = res.history
    checkpoints = [r for r in hist if r["step"] in (100, 250, 500, 1000, 1500, 2000, 3000)]
    curve = ", ".join(
        f"{r['step']}: {np.mean([h['loss'] for h in hist[max(0, r['step'] - 50) : r['step']]]):.3f}"
        for r in checkpoints
    )
    lines = [
        f"- preset `{args.preset}` ({m['size']} px), {m['examples']} procedural `available` "
        f"creatives (held-out SKUs for samples), batch {args.batch_size}, lr {args.lr}, "
        f"prediction {args.prediction_type or 'preset'}, seed {args.seed}, "
        f"budget {args.minutes} min under `nice -n 10` on a shared CPU",
        f"- {m['steps']} steps in {m['train_seconds']:.0f} s (median step "
        f"{m['step_time_median']:.2f} s), data prep {prep_s:.0f} s",
        f"- loss (mean of 50 steps before): {curve}; first 5% {m['loss_first']:.3f} → last 5% "
        f"{m['loss_last']:.3f}",
        f"- curve: `{os.path.relpath(out / ('curve-' + args.preset + '.png'), ROOT)}`, "
        "samples (8 held-out "
        f"products × seeds 0–3, 20 DDIM steps, guidance 2): `{os.path.relpath(grid, ROOT)}`",
    ]
    if not args.no_append:
        append_results("Generation: tiny base training", " ".join(sys.argv), lines)
    print("\n".join(lines))


def cmd_speed(args) -> None:
    from generation.ml.config import SampleConfig, preset
    from generation.ml.pipeline import InpaintPipeline, build_components

    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    if args.model:
        pipe = InpaintPipeline.from_pretrained(args.model, device=device, dtype=dtype)
        size = pipe.native_size or args.size
    else:
        cfg = preset(args.preset)
        pipe = InpaintPipeline(build_components(cfg), device=device, dtype=dtype)
        size = cfg.size
    _, samples = synthetic_examples(0, seed=0)
    products = [samples[i % len(samples)][0] for i in range(args.n)]
    prompts = [samples[i % len(samples)][1] for i in range(args.n)]
    sc = SampleConfig(size=size, steps=args.steps, guidance_scale=7.5, batch_size=args.batch_size)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    pipe.generate(
        products[: args.batch_size],
        prompts[: args.batch_size],
        [""] * args.batch_size,
        list(range(args.batch_size)),
        sc,
    )  # warm-up; fmt: skip
    style = None
    if args.style:
        import tempfile

        from generation.ml.style import STYLE_PRESETS, StyleAdapterConfig, build_tiny_style_adapter

        style_cfg = StyleAdapterConfig(**STYLE_PRESETS["sd15" if args.preset == "sd15" else "tiny"])
        tmp = tempfile.mkdtemp(prefix="rfstudio-style-")
        pipe.load_ip_adapter(*build_tiny_style_adapter(pipe.c.unet, tmp, config=style_cfg))
        style = Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8))

    def timed(style_image):
        times = []
        for rep in range(args.repeats):
            t0 = time.perf_counter()
            pipe.generate(products, prompts, [""] * args.n, list(range(rep, rep + args.n)), sc,
                          style_image=style_image)  # fmt: skip
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return [args.n / t for t in times]

    ips = timed(None)
    styled = timed(style) if style is not None else None
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    what = args.model or f"preset {args.preset} (random weights)"
    lines = [
        f"- {what}, {size} px, {args.steps} DDIM steps, CFG 7.5, batch {args.batch_size}, "
        f"{device} {dtype}: {statistics.median(ips):.2f} images/s (median of {args.repeats}; "
        f"range {min(ips):.2f}–{max(ips):.2f}), peak memory {peak:.0f} MiB "
        f"({'CUDA allocated' if device.startswith('cuda') else 'process max RSS'})"
    ]
    if styled is not None:
        lines.append(
            f"  - with a style reference (IP-Adapter, {style_cfg.num_hidden_layers}-layer "
            f"{style_cfg.image_size} px image encoder, random weights): "
            f"{statistics.median(styled):.2f} images/s (range {min(styled):.2f}–"
            f"{max(styled):.2f}); ratio to without: "
            f"{statistics.median(styled) / statistics.median(ips):.2f}"
        )
    if not args.no_append:
        append_results("Generation: speed", " ".join(sys.argv), lines)
    print("\n".join(lines))


def cmd_judge(args) -> None:
    """RFNet-judged usable rate of a model's outputs on held-out products (+ the same RFNet on
    real procedural `available` / defect creatives of those products, for scale)."""
    import tempfile

    from feedback.ml.data import Sample
    from feedback.ml.scoring import Scorer
    from generation.ml.config import SampleConfig
    from generation.ml.pipeline import InpaintPipeline

    torch.set_num_threads(args.threads)
    pipe = InpaintPipeline.from_pretrained(args.model)
    scorer = Scorer.from_pretrained(args.rfnet, device="cpu")
    _, samples = synthetic_examples(0, seed=0)
    tmp = Path(tempfile.mkdtemp(prefix="gen-judge-"))
    sc = SampleConfig(size=pipe.native_size, steps=args.steps, guidance_scale=args.guidance,
                      batch_size=8)  # fmt: skip
    rows = []
    for seed in range(args.seeds):
        outs = pipe.generate([p for p, _ in samples], [t for _, t in samples],
                             [""] * len(samples), [seed] * len(samples), sc)  # fmt: skip
        for i, o in enumerate(outs):
            cp, pp = tmp / f"{seed}-{i}.png", tmp / f"{seed}-{i}-p.png"
            Image.fromarray(o.image).save(cp)
            samples[i][0].save(pp)
            rows.append(Sample(str(cp), str(pp), caption="", placement=o.prepared.box))
    p = scorer.score_detailed(rows)["p_available"]
    lines = [
        f"- {os.path.basename(args.model.rstrip('/'))}: {len(rows)} images (8 held-out products × "
        f"{args.seeds} seeds, {args.steps} DDIM steps, guidance {args.guidance}); RFNet "
        f"`{args.rfnet}`: usable rate (P(available) ≥ {args.threshold}) "
        f"{float(np.mean(p >= args.threshold)):.2f}, mean P(available) {float(np.mean(p)):.2f}"
    ]
    if not args.no_append:
        append_results("Generation: RFNet-judged usable rate", " ".join(sys.argv), lines)
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--preset", default="tiny")
    t.add_argument("--minutes", type=float, default=20)
    t.add_argument("--examples", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--sample-every", type=int, default=500)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--prediction-type", default=None, help="epsilon | v_prediction | sample")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--out", default=str(ROOT / "bench" / "generation"))
    t.add_argument("--work", default="/tmp/rfstudio-gen-train", help="checkpoints, model")
    t.add_argument("--no-append", action="store_true")
    s = sub.add_parser("speed")
    s.add_argument("--model", default=None)
    s.add_argument("--preset", default="tiny")
    s.add_argument("--size", type=int, default=64)
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--n", type=int, default=16)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--device", default=None)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--no-append", action="store_true")
    s.add_argument("--style", action="store_true", help="also time a style reference")
    j = sub.add_parser("judge")
    j.add_argument("--model", required=True)
    j.add_argument("--rfnet", required=True, help="RFNet checkpoint folder")
    j.add_argument("--seeds", type=int, default=4)
    j.add_argument("--steps", type=int, default=20)
    j.add_argument("--guidance", type=float, default=2.0)
    j.add_argument("--threshold", type=float, default=0.5)
    j.add_argument("--threads", type=int, default=1)
    j.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    {"train": cmd_train, "speed": cmd_speed, "judge": cmd_judge}[args.cmd](args)


if __name__ == "__main__":
    main()
