"""The reward fine-tuning loop on tiny real diffusers components and a tiny real RFNet."""

from __future__ import annotations

import pytest
import torch

from generation.ml.finetune import finetune, paste_back
from generation.ml.finetune_config import FinetuneConfig
from tests.rfft._tiny import make_batch, tiny_components, tiny_products, tiny_reward


@pytest.fixture
def setup():
    torch.manual_seed(0)
    embeds = torch.randn(1, 4, 16)
    return tiny_components(), tiny_reward(), make_batch(tiny_products(2), embeds=embeds)


def _cfg(**kw) -> FinetuneConfig:
    base = dict(
        steps=3, batch_size=2, num_inference_steps=6, last_k=3, checkpoint_every=2, lr=1e-3, seed=0
    )
    return FinetuneConfig(**{**base, **kw})


def _snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module) -> set[str]:
    after = module.state_dict()
    return {k for k, v in before.items() if k in after and not torch.equal(v, after[k])}


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_only_controlnet_or_lora_parameters_change(setup, tmp_path, lora_rank):
    comps, reward, batch = setup
    unet, vae, rfnet = _snapshot(comps.unet), _snapshot(comps.vae), _snapshot(reward.model)
    cn = _snapshot(comps.controlnet)
    res = finetune(
        components=comps,
        reward=reward,
        batches=lambda s, g: batch,
        config=_cfg(lora_rank=lora_rank),
        out_dir=tmp_path,
    )
    assert not _changed(unet, comps.unet) and not _changed(vae, comps.vae)
    assert not _changed(rfnet, reward.model)
    state = comps.controlnet.state_dict()
    if lora_rank:
        # The base weights are untouched (they are the frozen reference); the adapters moved.
        base = {k.replace(".base_layer", ""): v for k, v in state.items() if "lora_" not in k}
        assert all(torch.equal(cn[k], base[k]) for k in cn)
        assert res.lora_dir is not None and (res.lora_dir / "adapter.safetensors").exists()
        lora_b = [v for k, v in state.items() if "lora_B" in k]
        assert lora_b and any(v.abs().sum() > 0 for v in lora_b)
    else:
        assert _changed(cn, comps.controlnet)
    # The result is a plain ControlNet folder (LoRA merged) that diffusers loads offline.
    from diffusers import ControlNetModel

    loaded = ControlNetModel.from_pretrained(res.controlnet_dir, local_files_only=True)
    assert not any("lora" in k for k in loaded.state_dict())


def test_consistent_condition_is_zero_at_first_step_then_grows(setup, tmp_path):
    comps, reward, batch = setup
    res = finetune(
        components=comps,
        reward=reward,
        batches=lambda s, g: batch,
        config=_cfg(steps=4, beta=1.0),
        out_dir=tmp_path,
    )
    l_cc = [h["l_cc"] for h in res.history]
    assert l_cc[0] == 0.0
    assert all(v > 0 for v in l_cc[1:]), l_cc


def test_refl_gradient_reaches_controlnet_through_decoder_and_rfnet(setup, tmp_path):
    """With the reward as the only loss term, any ControlNet update came through RFNet's score
    of the decoded, pasted-back image."""
    comps, reward, batch = setup
    grads = {}

    def probe(images, b):
        images.retain_grad()
        grads["images"] = images
        return reward(images, b)

    cn = _snapshot(comps.controlnet)
    res = finetune(
        components=comps,
        reward=probe,
        batches=lambda s, g: batch,
        config=_cfg(method="refl", steps=2, last_k=1),
        out_dir=tmp_path,
    )
    assert all(h["grad_norm"] > 0 for h in res.history)
    assert "l_cc" not in res.history[0] or res.history[0]["l_cc"] == 0.0
    g = grads["images"].grad
    assert g is not None and g.abs().sum() > 0
    assert _changed(cn, comps.controlnet)
    # Product pixels are pasted back exactly: the decoder gets no gradient there.
    decoded = torch.zeros_like(batch.image, requires_grad=True)
    pasted = paste_back(decoded, batch)
    reward(pasted, batch).sum().backward()
    opaque = (batch.alpha >= 1.0).expand_as(decoded)
    assert decoded.grad[opaque].abs().max() == 0 and decoded.grad[~opaque].abs().sum() > 0
    assert torch.equal(pasted[opaque], ((batch.product + 1) / 2)[opaque])


def test_loss_decreases_when_overfitting_one_batch(setup, tmp_path):
    """The loop is reward-agnostic; a reward with a strong, simple signal (brightness) shows the
    optimisation itself works (a random tiny RFNet is nearly flat)."""
    comps, _, batch = setup

    def brightness(images, b):
        return torch.sigmoid(8 * (images.mean(dim=(1, 2, 3)) - 0.6))

    res = finetune(
        components=comps,
        reward=brightness,
        batches=lambda s, g: batch,
        config=_cfg(
            method="refl",
            steps=12,
            num_inference_steps=4,
            last_k=4,
            lr=2e-2,
            max_grad_norm=None,
            checkpoint_every=100,
        ),
        out_dir=tmp_path,
    )
    f = [h["f_ac"] for h in res.history]
    assert sum(f[-4:]) / 4 < sum(f[:4]) / 4 - 0.03, f


def test_resume_continues_from_checkpoint_exactly(setup, tmp_path):
    """A run killed after its step-2 checkpoint resumes there and ends where an uninterrupted
    run ends (every step's randomness derives from (seed, step))."""
    comps, reward, batch = setup

    class Killed(Exception):
        pass

    def die(step, row):
        if step == 3:
            raise Killed

    first = tiny_components()
    with pytest.raises(Killed):
        finetune(
            components=first,
            reward=reward,
            batches=lambda s, g: batch,
            config=_cfg(steps=4),
            out_dir=tmp_path / "a",
            on_step=die,
        )
    resumed = finetune(
        components=tiny_components(),
        reward=reward,
        batches=lambda s, g: batch,
        config=_cfg(steps=4),
        out_dir=tmp_path / "a",
    )
    straight = finetune(
        components=tiny_components(),
        reward=reward,
        batches=lambda s, g: batch,
        config=_cfg(steps=4),
        out_dir=tmp_path / "b",
    )
    assert resumed.resumed_from_step == 2 and straight.resumed_from_step == 0
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]
    from safetensors.torch import load_file

    wa = load_file(str(resumed.controlnet_dir / "diffusion_pytorch_model.safetensors"))
    wb = load_file(str(straight.controlnet_dir / "diffusion_pytorch_model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_other_prediction_types_and_plain_unet(tmp_path, prediction_type):
    torch.manual_seed(0)
    comps = tiny_components(inpaint=prediction_type == "sample", prediction_type=prediction_type)
    batch = make_batch(tiny_products(1), embeds=torch.randn(1, 4, 16))
    res = finetune(
        components=comps,
        reward=tiny_reward(),
        batches=lambda s, g: batch,
        config=_cfg(steps=2, batch_size=1),
        out_dir=tmp_path,
    )
    assert res.metrics["ok"] and res.history[0]["l_cc"] == 0.0
