"""evaluate_generator: same products/prompts/seeds for both models, figures by reward and judge,
diversity, blind A/B pairs; the CLI's --json keys."""

from __future__ import annotations

import json

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from feedback.rfft_eval import Generated, compare, summarise
from feedback.rfft_models import ABPair, EvaluationImage, GeneratorEvaluation


@pytest.fixture
def tuned(tiny_base, tmp_path):
    """A 'fine-tuned' entry: the base's pipeline with a perturbed ControlNet."""
    from diffusers import ControlNetModel

    from generation.registry import register_finetuned_model

    cn = ControlNetModel.from_pretrained(
        tiny_base.controlnet_full_path or f"{tiny_base.pipeline_path}/controlnet"
    )
    with torch.no_grad():
        cn.controlnet_mid_block.weight.add_(0.3)
    cn.save_pretrained(tmp_path / "cn")
    return register_finetuned_model(
        base=tiny_base,
        controlnet_dir=tmp_path / "cn",
        name="tuned",
        reward_model_name="",
        job=None,
        params={},
        metrics={},
    )


@pytest.mark.django_db
def test_cli_json_figures_and_blind_pairs(tiny_base, tuned, register, products, capsys):
    reward, judge = register(prefix="reward"), register(prefix="judge")
    with pytest.raises(CommandError, match="judge"):
        call_command(
            "evaluate_generator",
            "--model",
            "tuned",
            "--judge",
            reward.name,
            "--reward",
            reward.name,
            "--products",
            "RF-0",
            "--seeds",
            "2",
            "--foreground",
        )
    capsys.readouterr()
    call_command(
        "evaluate_generator",
        "--model",
        "tuned",
        "--judge",
        judge.name,
        "--reward",
        reward.name,
        "--products",
        "RF-0,RF-1",
        "--seeds",
        "2",
        "--steps",
        "3",
        "--guidance-scale",
        "2",
        "--foreground",
        "--json",
    )
    out = json.loads(capsys.readouterr().out)
    for key in (
        "usable_rate_reward",
        "usable_rate_judge",
        "diversity",
        "diversity_ratio",
        "n_images",
        "models",
    ):
        assert key in out, key
    assert out["n_images"] == 4 and out["baseline"] == "tiny-base"  # baseline = the base
    assert set(out["models"]) == {"tuned", "tiny-base"}
    assert out["models"]["tuned"]["per_product"].keys() == {"RF-0", "RF-1"}
    ev = GeneratorEvaluation.objects.get()
    # The same cells for both models, one blind pair per cell.
    cells = {
        s: set(
            EvaluationImage.objects.filter(evaluation=ev, side=s).values_list(
                "product__sku", "seed", "prompt_index"
            )
        )
        for s in ("model", "baseline")
    }
    assert cells["model"] == cells["baseline"] and len(cells["model"]) == 4
    assert ABPair.objects.filter(evaluation=ev).count() == 4


def test_collapse_shows_as_lower_diversity():
    """Eight identical backgrounds score 0 diversity; varied ones score more."""
    import numpy as np
    from PIL import Image

    bg = np.ones((16, 16), bool)
    rng = np.random.default_rng(0)
    varied = [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(8)]
    same = [Image.new("RGB", (16, 16), (120, 80, 40))] * 8

    def items(ims):
        return [Generated("P", i, "p", im, bg, 0.9, 0.2) for i, im in enumerate(ims)]

    a, b = summarise(items(same)), summarise(items(varied))
    assert a["diversity"] < 1e-6 < b["diversity"] and a["hist_entropy"] < b["hist_entropy"]
    c = compare(a, b)
    assert c["diversity_ratio"] < 0.01 and c["usable_rate_reward"] == 1.0
    assert c["usable_rate_judge"] == 0.0 and c["usable_rate_judge_delta"] == 0.0
