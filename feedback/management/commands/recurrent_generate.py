"""Recurrent generation: regenerate what RFNet rejects (the `recurrent_generate` job's CLI twin)."""

from __future__ import annotations

from django.core.management.base import CommandError

from feedback.recurrent import RECURRENT
from generation.management.style_options import add_style_arguments, style_params
from generation.ml.prompts import load_templates, templates_to_json
from jobs.management.base import JobCommand


class Command(JobCommand):
    kind = RECURRENT
    help = (
        "Per product × prompt template, up to --budget attempts with new seeds until RFNet's "
        "P(available) >= --threshold; every attempt is stored and linked."
    )

    def add_job_arguments(self, parser):
        parser.add_argument("--model", default="latest", help="Diffusion model or 'latest'.")
        parser.add_argument("--reward", default="active", help="RFNet: name, active, latest.")
        parser.add_argument("--budget", type=int, default=4, help="K attempts per group.")
        parser.add_argument("--threshold", type=float, default=0.5, help="τ on P(available).")
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--report", action="store_true",
            help="Print usable rate, attempts per usable image and GPU seconds per model (JSON).",
        )  # fmt: skip
        which.add_argument("--sku", nargs="+", action="extend", default=None)
        which.add_argument("--category", default=None)
        which.add_argument("--all", action="store_true", dest="all_products")
        parser.add_argument("--prompts", default=None, help="JSON file of prompt templates.")
        parser.add_argument("--seed-start", type=int, default=0)
        parser.add_argument("--size", type=int, default=0)
        parser.add_argument("--steps", type=int, default=40)
        parser.add_argument("--guidance", type=float, default=7.5)
        parser.add_argument("--batch-size", type=int, default=4)
        parser.add_argument("--no-category-tokens", action="store_true")
        parser.add_argument("--project", default="", help="Queue kept creatives here.")
        add_style_arguments(parser)

    def handle(self, *args, **options):
        if options.get("report"):
            import json

            from feedback.recurrent import usable_rate_by_model

            self.stdout.write(json.dumps(usable_rate_by_model(), indent=2))
            return
        return super().handle(*args, **options)

    def job_params(self, options) -> dict:
        prompts = None
        if options["prompts"]:
            try:
                prompts = templates_to_json(load_templates(options["prompts"]))
            except ValueError as exc:
                raise CommandError(f"--prompts: {exc}") from None
        keys = ("model", "reward", "budget", "threshold", "seed_start", "size", "steps",
                "guidance", "batch_size", "project")  # fmt: skip
        params = {
            **{k: options[k] for k in keys},
            "skus": ",".join(options["sku"] or []),
            "category": options["category"] or "",
            "all_products": bool(options["all_products"]),
            "prompts": prompts,
            "category_tokens": not options["no_category_tokens"],
        }
        return style_params(self.kind, params, options)
