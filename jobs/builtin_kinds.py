"""Kinds that ship with the jobs app: `demo`."""

from django import forms

from .kinds import JobKind, register


class DemoParamsForm(forms.Form):
    steps = forms.IntegerField(min_value=1, max_value=1_000_000, initial=200)
    steps_per_epoch = forms.IntegerField(min_value=1, max_value=1_000_000, initial=50)
    batch_size = forms.IntegerField(min_value=1, max_value=4096, initial=32)
    lr = forms.FloatField(min_value=1e-6, max_value=10.0, initial=0.05, label="Learning rate")
    seed = forms.IntegerField(min_value=0, initial=0)
    step_sleep = forms.FloatField(
        min_value=0.0,
        max_value=2.0,
        initial=0.0,
        required=False,
        help_text="Seconds to sleep per step (makes the demo watchable).",
    )
    fail_at_step = forms.IntegerField(
        min_value=1, required=False, help_text="Fail once at this step (shows retries)."
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("step_sleep") is None:
            cleaned["step_sleep"] = 0.0
        return cleaned


def run_demo(ctx) -> dict:
    from .demo import DemoConfig, train_demo

    p = ctx.params
    cfg = DemoConfig(
        steps=p["steps"],
        steps_per_epoch=p["steps_per_epoch"],
        batch_size=p["batch_size"],
        lr=p["lr"],
        seed=p["seed"],
        step_sleep=p["step_sleep"] or 0.0,
        fail_at_step=p.get("fail_at_step"),
    )
    result = train_demo(
        cfg,
        work_dir=ctx.work_dir,
        reporter=ctx.reporter,
        device=ctx.device,
        attempt=ctx.attempt,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    ctx.save_artifact("model.pt", result.pop("model_path"))
    return result


def register_builtin_kinds() -> None:
    register(
        JobKind(
            name="demo",
            queue="default",
            run=run_demo,
            params_form=DemoParamsForm,
            label="Demo training loop",
            description="Fits a tiny MLP on random data; checkpoints each epoch; resumable.",
            resumable=True,
            max_attempts=3,
            distributed=True,
        )
    )
