# ruff: noqa: E501  (markdown table rows and log lines)
"""RFFT in a toy world on this CPU: does fine-tuning against a reward RFNet raise the usable rate
judged by an INDEPENDENT RFNet, and what does it cost in diversity?

    nice -n 10 .venv/bin/python bench/rfft.py --base BASE      # full run (~1 h, 1 thread)
    nice -n 10 .venv/bin/python bench/rfft.py --quick --no-append   # smoke run

World (everything 32 px, procedural creatives from generation.synthetic):
- reward RFNet: `small` preset (64 px input) trained on 3,000 labelled 32 px creatives of data
  seed 101 (torch seed 0), product-grouped val/test, placement = the generator's input placement;
- judge RFNet: the same recipe on OTHER creatives (data seed 202, torch seed 1);
- base diffuser: a pixel-space (pixel-unshuffle ×2) inpainting UNet2DConditionModel + Canny
  ControlNetModel + DDIM (v-prediction, zero-terminal SNR), trained here on `available`
  creatives of the TRAIN SKUs (denoising loss). `--base DIR` loads one instead (unet/,
  controlnet/, scheduler/ folders, e.g. generation's tiny base) when it uses the same codec;
- RFFT/ReFL fine-tune only the ControlNet on train SKUs (layouts = their available creatives'
  placement boxes), reward = the reward RFNet;
- evaluation: HELD-OUT SKUs × seeds, the same products/layouts/prompts/seeds for every model;
  usable = P(available) ≥ 0.5 by reward and by judge; diversity = mean pairwise background
  feature distance per product (feedback.rfft_eval), ratio to the base.
Figures are appended to bench/RESULTS.md, sample grids written to bench/rfft/*.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after ROOT: bench/jobs.py must not shadow jobs/

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from feedback.ml.data import Sample  # noqa: E402
from feedback.ml.model import RFNet  # noqa: E402
from feedback.ml.presets import RF1M_SLUGS, preset  # noqa: E402
from feedback.ml.training import train  # noqa: E402
from feedback.rfft_eval import Generated, compare, summarise  # noqa: E402
from feedback.rfft_reward import RFNetReward, score_images  # noqa: E402
from generation import synthetic  # noqa: E402
from generation.ml.finetune import Components, Denoiser, finetune  # noqa: E402
from generation.ml.finetune_config import FinetuneConfig  # noqa: E402
from generation.ml.finetune_data import (  # noqa: E402
    HashPromptEncoder,
    ProductBatches,
    ProductInput,
    build_batch,
    sample_images,
    to_pil,
)

SIZE = 32
EMBED = (4, 32)  # toy text states: 4 tokens × 32


class PixelUnshuffle(nn.Module):
    """Lossless pixel-space 'VAE': (3, H, W) ↔ (12, H/2, W/2)."""

    def encode(self, x):
        return nn.functional.pixel_unshuffle(x, 2)

    def decode(self, z):
        return nn.functional.pixel_shuffle(z, 2)


def build_base(seed: int = 0) -> Components:
    from diffusers import ControlNetModel, DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    common = dict(
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        cross_attention_dim=EMBED[1],
        attention_head_dim=8,
        norm_num_groups=8,
    )
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2,
        in_channels=25,
        out_channels=12,
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **common,
    )
    controlnet = ControlNetModel(
        in_channels=12, conditioning_embedding_out_channels=(16, 32), **common
    )
    sched = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
    )
    return Components(unet=unet, controlnet=controlnet, scheduler=sched, vae=PixelUnshuffle())


# -- the world ------------------------------------------------------------------------------
def split_products():
    products = synthetic.load_products()
    held = [p for i, p in enumerate(products) if i % 4 == 0]
    train_p = [p for i, p in enumerate(products) if i % 4 != 0]
    return train_p, held


def examples(n, seed, products, weights=None, size=SIZE):
    return list(
        synthetic.generate_dataset(
            n, seed=seed, size=size, class_weights=weights, products=products
        )
    )


def placement(ex) -> tuple[int, int, int, int]:
    """The generator's INPUT placement (recorded before any defect, as a pipeline knows it),
    never the post-defect box, which leaks the label."""
    return tuple(ex.params.get("placement") or ex.params["box"])


def write_samples(exs, root: Path) -> list[Sample]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i, ex in enumerate(exs):
        cp, pp = root / f"c{i}.png", root / f"p-{ex.sku}.png"
        if not cp.exists():
            ex.image.save(cp)
        if not pp.exists():
            ex.product.save(pp)
        out.append(
            Sample(
                str(cp),
                str(pp),
                label=RF1M_SLUGS.index(ex.label),
                caption=ex.prompt,
                group=ex.sku,
                placement=placement(ex),
            )
        )
    return out


def train_rfnet(name, data_seed, torch_seed, n, epochs, work: Path, products, args) -> RFNet:
    """A 6-class RFNet on procedural creatives drawn at `--rfnet-data-size` px; val/test are
    whole products (group split), so its accuracy is on products it never saw."""
    from rfnet import leaveout_train_config  # bench/rfnet.py: the shared recipe

    from feedback.ml.data import group_split

    out = work / name
    if (out / "best" / "rfnet_config.json").exists():
        return RFNet.from_pretrained(out / "best")
    exs = examples(n, data_seed, products, size=args.rfnet_data_size)
    samples = write_samples(exs, work / f"{name}-data")
    tr, va, te = group_split(samples, (0.8, 0.1, 0.1), seed=torch_seed)
    cfg = preset(args.rfnet_preset, 6, image_size=args.rfnet_image_size)
    tc = leaveout_train_config(
        epochs=epochs, seed=torch_seed, cache_dir=work / "cache", device="cpu"
    )
    res = train(
        model_config=cfg,
        train_config=tc,
        train=tr,
        val=va,
        test=te,
        out_dir=out,
        resume=True,
    )
    print(f"[{name}] test accuracy {res.metrics.get('test', {}).get('accuracy')}", flush=True)
    return RFNet.from_pretrained(res.best_dir)


def layouts(exs) -> list[ProductInput]:
    return [ProductInput(sku=ex.sku, cutout=ex.product, box=placement(ex)) for ex in exs]


def train_base(comps: Components, exs, steps: int, work: Path, encode, log) -> Components:
    """Denoising training of UNet + ControlNet on available creatives (v-prediction)."""
    out = work / "base"
    if (out / "unet" / "config.json").exists():
        return load_base(out)
    targets = torch.stack(
        [
            torch.from_numpy(np.asarray(ex.image, np.float32) / 127.5 - 1).permute(2, 0, 1)
            for ex in exs
        ]
    )
    batch_all = build_batch(
        layouts(exs), [(ex.prompt, "") for ex in exs], encode, size=SIZE, scales=[0.74] * len(exs)
    )
    cfg = FinetuneConfig(num_inference_steps=20, last_k=1)
    den = Denoiser(comps, cfg)
    params = [*comps.unet.parameters(), *comps.controlnet.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    sched = comps.scheduler
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(exs), (16,), generator=g)
        sub = _index(batch_all, idx)
        # Classifier-free guidance needs an unconditional model: drop the prompt 10% of the time.
        drop = torch.rand(len(idx), generator=g) < 0.1
        sub.prompt_embeds = torch.where(
            drop[:, None, None], torch.zeros_like(sub.prompt_embeds), sub.prompt_embeds
        )
        prep = den.prepare(sub)
        x0 = den.codec.encode(targets[idx])
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=g)
        xt = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t)
        down, mid = comps.controlnet(
            xt,
            t,
            encoder_hidden_states=sub.prompt_embeds,
            controlnet_cond=sub.control,
            return_dict=False,
        )
        unet_in = torch.cat([xt, prep["mask_latents"], prep["masked_latents"]], 1)
        pred = comps.unet(
            unet_in,
            t,
            encoder_hidden_states=sub.prompt_embeds,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
        loss = nn.functional.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"[base] step {step} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f}s)")
    out.mkdir(parents=True, exist_ok=True)
    comps.unet.save_pretrained(out / "unet")
    comps.controlnet.save_pretrained(out / "controlnet")
    comps.scheduler.save_pretrained(out / "scheduler")
    (out / "train.json").write_text(
        json.dumps({"steps": steps, "seconds": time.perf_counter() - t0})
    )
    return load_base(out)


def load_base(path: Path, controlnet_dir: Path | None = None) -> Components:
    from diffusers import ControlNetModel, DDIMScheduler, UNet2DConditionModel

    return Components(
        unet=UNet2DConditionModel.from_pretrained(path / "unet", local_files_only=True),
        controlnet=ControlNetModel.from_pretrained(
            controlnet_dir or path / "controlnet", local_files_only=True
        ),
        scheduler=DDIMScheduler.from_pretrained(path / "scheduler", local_files_only=True),
        vae=PixelUnshuffle(),
    )


def load_generation_base(path: Path):
    """generation's tiny base (generation.ml.pipeline folder) + its own text encoder."""
    from generation.ml.pipeline import InpaintPipeline, load_components

    comps = load_components(path)
    pipe = InpaintPipeline(comps)

    @torch.no_grad()
    def encode(prompts):
        return pipe.encode_prompt(prompts)

    return comps, encode


def _index(batch, idx):
    import dataclasses

    idx_l = idx.tolist()
    extra = {k: [v[i] for i in idx_l] for k, v in batch.extra.items()}
    return dataclasses.replace(
        batch,
        image=batch.image[idx],
        mask=batch.mask[idx],
        control=batch.control[idx],
        prompt_embeds=batch.prompt_embeds[idx],
        negative_prompt_embeds=batch.negative_prompt_embeds[idx],
        product=batch.product[idx],
        alpha=batch.alpha[idx],
        extra=extra,
    )


# -- evaluation -----------------------------------------------------------------------------
def evaluate(comps, eval_inputs, prompts, seeds, encode, reward, judge, steps, guidance):
    items, images = [], []
    for pi, inp in enumerate(eval_inputs):
        prompt = prompts[pi % len(prompts)]
        batch = build_batch(
            [inp] * len(seeds), [prompt] * len(seeds), encode, size=SIZE, scales=[0.74] * len(seeds)
        )
        ims = to_pil(
            sample_images(
                comps, batch, seeds=seeds, num_inference_steps=steps, guidance_scale=guidance
            )
        )
        pr = score_images(
            reward, ims, [inp.cutout] * len(ims), [inp.box] * len(ims), [prompt[0]] * len(ims)
        )
        pj = score_images(
            judge, ims, [inp.cutout] * len(ims), [inp.box] * len(ims), [prompt[0]] * len(ims)
        )
        bg = batch.alpha[0, 0].numpy() < 1.0
        for s, im, a, b in zip(seeds, ims, pr, pj, strict=True):
            items.append(
                Generated(
                    product=inp.sku,
                    seed=s,
                    prompt=prompt[0],
                    image=im,
                    background=bg,
                    p_reward=float(a),
                    p_judge=float(b),
                )
            )
        images.append(ims)
    return items, images


def grid(images: list[list[Image.Image]], path: Path, cell: int = 64) -> None:
    rows, cols = len(images), max(len(r) for r in images)
    sheet = Image.new("RGB", (cols * cell, rows * cell), (255, 255, 255))
    for r, row in enumerate(images):
        for c, im in enumerate(row):
            sheet.paste(im.resize((cell, cell), Image.NEAREST), (c * cell, r * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def diagnose(args) -> dict:
    """Is the reward worth optimising? P(available) of REAL available creatives of held-out SKUs
    by reward and judge, and what direct gradient ascent on the background pixels (60 Adam
    steps) does to the reward and to the judge (reward hacking shows as reward up, judge flat)."""
    torch.set_num_threads(1)
    work = Path(args.work)
    reward = RFNetReward(RFNet.from_pretrained(work / "reward" / "best"))
    judge = RFNetReward(RFNet.from_pretrained(work / "judge" / "best"))
    if args.base:
        comps, encode = load_generation_base(Path(args.base))
    else:
        comps, encode = load_base(work / "base"), HashPromptEncoder(*EMBED)
    _, held_p = split_products()
    exs = examples(args.products, 404, held_p, {"available": 1.0})
    inputs = [ProductInput(e.sku, e.product, placement(e)) for e in exs]
    batch = build_batch(
        inputs, [(e.prompt, "") for e in exs], encode, size=SIZE, scales=[0.74] * len(exs)
    )
    gen = sample_images(
        comps,
        batch,
        seeds=list(range(len(exs))),
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
    )
    real = torch.stack(
        [torch.from_numpy(np.asarray(e.image, np.float32) / 255).permute(2, 0, 1) for e in exs]
    )
    out = {}
    with torch.no_grad():
        for name, ims in (("real_available", real), ("generated", gen)):
            out[name] = {
                "reward": float(reward(ims, batch).mean()),
                "judge": float(judge(ims, batch).mean()),
            }
    x = gen.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.02)
    bg = 1 - batch.alpha
    for _ in range(60):
        im = gen * (1 - bg) + x.clamp(0, 1) * bg
        loss = -reward(im, batch).clamp_min(1e-6).log().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        im = gen * (1 - bg) + x.clamp(0, 1) * bg
        out["pixel_ascent_60"] = {
            "reward": float(reward(im, batch).mean()),
            "judge": float(judge(im, batch).mean()),
        }
    print(json.dumps(out))
    (work / "diagnose.json").write_text(json.dumps(out, indent=2))
    return out


def memory_probe(args) -> None:
    """Child process: a few fine-tuning steps; prints peak RSS growth (MB)."""
    torch.set_num_threads(1)
    work = Path(args.work)
    if args.base:
        comps, encode = load_generation_base(Path(args.base))
    else:
        comps, encode = load_base(work / "base"), HashPromptEncoder(*EMBED)
    reward = RFNetReward(RFNet.from_pretrained(work / "reward" / "best"))
    train_p, _ = split_products()
    exs = examples(64, 303, train_p, {"available": 1.0})
    batches = ProductBatches(
        layouts(exs), [(e.prompt, "") for e in exs], encode, size=SIZE, batch_size=args.batch
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cfg = FinetuneConfig(
        method="rfft",
        beta=0.1,
        steps=3,
        batch_size=args.batch,
        lr=1e-4,
        num_inference_steps=20,
        last_k=5,
        guidance_scale=3.0,
        gradient_checkpointing=args.probe == "on",
        checkpoint_every=100,
    )
    res = finetune(
        components=comps,
        reward=reward,
        batches=batches,
        config=cfg,
        out_dir=work / f"probe-{args.probe}",
        resume=False,
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "peak_rss_growth_mb": (peak - before) / 1024,
                "step_time": res.metrics["step_time_median"],
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=str(ROOT / "var" / "bench-rfft"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n-rfnet", type=int, default=3000)
    ap.add_argument("--rfnet-epochs", type=int, default=15)
    ap.add_argument("--rfnet-preset", default="small")
    ap.add_argument("--rfnet-image-size", type=int, default=64)
    # The RFNets learn from creatives at the base's own output size (train = serve): trained on
    # 64 px creatives, both rated real 32 px `available` creatives unusable (judge P 0.38).
    ap.add_argument(
        "--rfnet-data-size", type=int, default=SIZE, help="px of the RFNets' training creatives"
    )
    ap.add_argument(
        "--rfnets-only", action="store_true", help="train the reward and judge RFNets, then stop"
    )
    ap.add_argument("--base-steps", type=int, default=2000)
    ap.add_argument("--rfft-steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--products", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps N")
    ap.add_argument("--last-k", type=int, default=5)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--probe", choices=["on", "off"], default=None)
    ap.add_argument("--base", default=None, help="a generation pipeline folder (train_diffuser)")
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--diagnose", action="store_true", help="reward sanity checks only")
    ap.add_argument("--runs", default="", help="method:beta list (default rfft:BETA,rfft:0,refl:0)")
    ap.add_argument("--no-probe", action="store_true", help="skip the memory probes")
    ap.add_argument(
        "--append-only",
        action="store_true",
        help="append WORK/results.json (a finished --no-append run) to RESULTS.md",
    )
    ap.add_argument("--minutes", type=float, default=None, help="wall time of that run")
    args = ap.parse_args()
    if args.diagnose:
        return diagnose(args)
    if args.append_only:
        results = json.loads((Path(args.work) / "results.json").read_text())
        return append_results(args, results, (args.minutes or 0) * 60)
    if args.probe:
        return memory_probe(args)
    if args.quick:
        args.n_rfnet, args.rfnet_epochs, args.base_steps, args.rfft_steps = 300, 2, 30, 6
        args.products, args.seeds = 3, 3
    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_all:7.1f}s] {msg}", flush=True)

    train_p, held_p = split_products()
    reward_net = train_rfnet(
        "reward", 101, 0, args.n_rfnet, args.rfnet_epochs, work, train_p + held_p, args
    )
    judge_net = train_rfnet(
        "judge", 202, 1, args.n_rfnet, args.rfnet_epochs, work, train_p + held_p, args
    )
    log("RFNets ready")
    if args.rfnets_only:
        return
    reward, judge = RFNetReward(reward_net), RFNetReward(judge_net)
    base_ex = examples(max(200, args.n_rfnet), 303, train_p, {"available": 1.0})
    if args.base:
        base, encode = load_generation_base(Path(args.base))
        base_dir = Path(args.base)
    else:
        encode = HashPromptEncoder(*EMBED)
        base = train_base(build_base(), base_ex, args.base_steps, work, encode, log)
        base_dir = work / "base"
    log("base ready")
    eval_ex = examples(args.products * 4, 404, held_p, {"available": 1.0})
    seen, eval_inputs = set(), []
    for ex in eval_ex:  # one layout per held-out SKU
        if ex.sku not in seen and len(eval_inputs) < args.products:
            seen.add(ex.sku)
            eval_inputs.append(ProductInput(ex.sku, ex.product, placement(ex)))
    prompts = [(ex.prompt, "") for ex in eval_ex[: len(eval_inputs)]]
    seeds = list(range(1000, 1000 + args.seeds))
    ev = dict(
        prompts=prompts,
        seeds=seeds,
        encode=encode,
        reward=reward,
        judge=judge,
        steps=args.steps,
        guidance=args.guidance,
    )
    items, ims = evaluate(base, eval_inputs, **ev)
    base_sum = summarise(items)
    grid(ims, ROOT / "bench" / "rfft" / "base.png")
    log(
        f"base: reward {base_sum['usable_rate_reward']:.3f} judge {base_sum['usable_rate_judge']:.3f} div {base_sum['diversity']:.4f}"
    )
    runs = [("rfft", args.beta), ("rfft", 0.0), ("refl", 0.0)]
    if args.runs:  # e.g. "rfft:0.01,refl:0"
        runs = [(m, float(b)) for m, b in (r.split(":") for r in args.runs.split(","))]
    results = {"base": base_sum}
    train_layouts = layouts(base_ex)
    train_prompts = [(ex.prompt, "") for ex in base_ex]
    for method, beta in runs:
        name = f"{method}-b{beta:g}" if method == "rfft" else method
        comps = load_generation_base(base_dir)[0] if args.base else load_base(base_dir)
        cfg = FinetuneConfig(
            method=method,
            beta=beta,
            steps=args.rfft_steps,
            batch_size=args.batch,
            lr=args.lr,
            num_inference_steps=args.steps,
            last_k=args.last_k,
            guidance_scale=args.guidance,
            checkpoint_every=50,
            seed=0,
        )
        batches = ProductBatches(
            train_layouts, train_prompts, encode, size=SIZE, batch_size=args.batch
        )
        t0 = time.perf_counter()
        res = finetune(
            components=comps,
            reward=reward,
            batches=batches,
            config=cfg,
            out_dir=work / f"ft-{name}",
            resume=True,
        )
        comps.controlnet.eval()
        items, ims = evaluate(comps, eval_inputs, **ev)
        summ = compare(summarise(items), base_sum)
        summ["train"] = {k: v for k, v in res.metrics.items() if k != "history"}
        summ["train_seconds"] = time.perf_counter() - t0
        results[name] = summ
        grid(ims, ROOT / "bench" / "rfft" / f"{name}.png")
        log(
            f"{name}: reward {summ['usable_rate_reward']:.3f} judge {summ['usable_rate_judge']:.3f} "
            f"div ratio {summ['diversity_ratio']:.3f} train reward {res.metrics['reward_first']:.3f}->{res.metrics['reward_last']:.3f}"
        )
    probes = {}
    if not args.quick and not args.no_probe:
        for mode in ("on", "off"):
            cmd = [
                sys.executable,
                __file__,
                "--work",
                str(work),
                "--probe",
                mode,
                "--batch",
                str(args.batch),
            ]
            cmd += ["--base", args.base] if args.base else []
            out = subprocess.run(
                cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
            )
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            probes[mode] = json.loads(line[-1]) if line else {"error": out.stderr[-300:]}
        log(f"memory probes: {probes}")
    results["memory_probe"] = probes
    (work / "results.json").write_text(json.dumps(results, indent=2, default=float))
    if not args.no_append:
        append_results(args, results, time.perf_counter() - t_all)


def ratio_interval(model: dict, base: dict, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval (resampling products, paired) of the diversity ratio."""
    skus = sorted(set(model["per_product"]) & set(base["per_product"]))
    a = np.array([model["per_product"][k]["pairwise_distance"] for k in skus], float)
    b = np.array([base["per_product"][k]["pairwise_distance"] for k in skus], float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(skus), (n, len(skus)))
    ratios = a[idx].mean(1) / b[idx].mean(1)
    return float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))


def delta_interval(
    model: dict, base: dict, key: str = "usable_judge", n: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% bootstrap interval (resampling products, paired) of the usable-rate difference to the
    base: the images of one product are not independent, so the product is the unit."""
    skus = sorted(set(model["per_product"]) & set(base["per_product"]))
    a = np.array([model["per_product"][k][key] for k in skus], float)
    b = np.array([base["per_product"][k][key] for k in skus], float)
    w = np.array([base["per_product"][k]["n"] for k in skus], float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(skus), (n, len(skus)))
    d = ((a - b)[idx] * w[idx]).sum(1) / w[idx].sum(1)
    return float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


def append_results(args, results, seconds) -> None:
    base = results["base"]
    lines = [
        "",
        f"## RFFT toy world ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Command: `nice -n 10 .venv/bin/python bench/rfft.py` (rfft steps {args.rfft_steps}, batch "
        f"{args.batch}, lr {args.lr}, β {args.beta}, DDIM N={args.steps}, K={args.last_k}, guidance "
        f"{args.guidance}, eval {args.products} held-out SKUs × {args.seeds} seeds = "
        f"{base['n_images']} images per model; {platform.processor() or platform.machine()}, 1 torch thread, "
        f"shared 2-core machine; total {seconds / 60:.1f} min).",
        "",
        "| model | usable (judge) | Δ judge [95% bootstrap over SKUs] | usable (reward) | Δ reward | mean P judge | mean P reward | train reward first→last 10% | diversity | ratio [95% bootstrap over SKUs] | hist entropy | step s (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| base | {base['usable_rate_judge']:.3f} | | {base['usable_rate_reward']:.3f} | | {base['mean_p_judge']:.3f} | {base['mean_p_reward']:.3f} | | {base['diversity']:.4f} | 1.00 | {base['hist_entropy']:.2f} | |",
    ]
    for name, s in results.items():
        if name in ("base", "memory_probe"):
            continue
        lo, hi = ratio_interval(s, base)
        dlo, dhi = delta_interval(s, base)
        lines.append(
            f"| {name} | {s['usable_rate_judge']:.3f} | {s['usable_rate_judge_delta']:+.3f} "
            f"[{dlo:+.3f}, {dhi:+.3f}] | "
            f"{s['usable_rate_reward']:.3f} | {s['usable_rate_reward_delta']:+.3f} | {s['mean_p_judge']:.3f} | "
            f"{s['mean_p_reward']:.3f} | {s['train']['reward_first']:.3f}→{s['train']['reward_last']:.3f} | "
            f"{s['diversity']:.4f} | {s['diversity_ratio']:.2f} [{lo:.2f}, {hi:.2f}] | {s['hist_entropy']:.2f} | "
            f"{s['train']['step_time_median']:.2f} |"
        )
    probes = results.get("memory_probe") or {}
    if probes:
        lines.append("")
        lines.append(
            "Peak RSS growth over 3 fine-tuning steps (separate processes): gradient checkpointing on "
            f"{probes.get('on', {}).get('peak_rss_growth_mb', float('nan')):.0f} MB, off "
            f"{probes.get('off', {}).get('peak_rss_growth_mb', float('nan')):.0f} MB; step time on "
            f"{probes.get('on', {}).get('step_time', float('nan')):.2f} s, off {probes.get('off', {}).get('step_time', float('nan')):.2f} s."
        )
    diag_path = Path(args.work) / "diagnose.json"
    if diag_path.exists():
        d = json.loads(diag_path.read_text())
        lines += [
            "",
            (
                "Reward sanity (`--diagnose`, mean P(available), held-out SKUs): real *available* "
                f"creatives: reward {d['real_available']['reward']:.3f}, judge "
                f"{d['real_available']['judge']:.3f}; base samples: reward "
                f"{d['generated']['reward']:.3f}, judge {d['generated']['judge']:.3f}; after 60 Adam "
                "steps of gradient ascent on the background pixels against the reward: reward "
                f"{d['pixel_ascent_60']['reward']:.3f}, judge {d['pixel_ascent_60']['judge']:.3f}."
            ),
        ]
    lines.append("")
    lines.append(
        "Sample grids: bench/rfft/{base,rfft-b*,refl}.png (rows: held-out SKUs, columns: seeds)."
    )
    with (ROOT / "bench" / "RESULTS.md").open("a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
