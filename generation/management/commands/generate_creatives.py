"""Generate creatives with a registered diffusion model (the `generate` job's CLI twin)."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import CommandError

from generation.jobs import GENERATE, manifest_row
from generation.management.style_options import add_style_arguments, style_params
from generation.ml.prompts import load_templates, templates_to_json
from jobs.management.base import JobCommand


class Command(JobCommand):
    kind = GENERATE
    help = (
        "Generate products × prompt templates × seeds with a diffusion model, optionally queue "
        "them in an annotation project and write an import manifest."
    )

    def add_job_arguments(self, parser):
        parser.add_argument("--model", default="latest", help="Registry name or 'latest'.")
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--sku", nargs="+", action="extend", default=None)
        which.add_argument("--category", default=None)
        which.add_argument("--all", action="store_true", dest="all_products")
        parser.add_argument(
            "--prompts",
            default=None,
            help="JSON file: list of {prompt, negative_prompt, image_scale}.",
        )
        parser.add_argument("--seeds", default="0,1,2", help="e.g. 0,1,2 or 0-9")
        parser.add_argument("--size", type=int, default=0, help="0 = the model's own size.")
        parser.add_argument("--steps", type=int, default=40)
        parser.add_argument("--guidance", type=float, default=7.5)
        parser.add_argument("--batch-size", type=int, default=4)
        parser.add_argument("--no-category-tokens", action="store_true")
        parser.add_argument("--project", default="", help="Annotation project slug.")
        add_style_arguments(parser)
        parser.add_argument(
            "--manifest-out",
            default=None,
            help="Write the results as an import manifest (JSONL; --foreground).",
        )

    def job_params(self, options) -> dict:
        if options["manifest_out"] and not options["foreground"]:
            raise CommandError(
                "--manifest-out needs --foreground (a queued job saves manifest.jsonl as its "
                "artifact)."
            )
        prompts = None
        if options["prompts"]:
            try:
                prompts = templates_to_json(load_templates(options["prompts"]))
            except ValueError as exc:
                raise CommandError(f"--prompts: {exc}") from None
        params = {
            "model": options["model"],
            "skus": ",".join(options["sku"] or []),
            "category": options["category"] or "",
            "all_products": bool(options["all_products"]),
            "prompts": prompts,
            "seeds": options["seeds"],
            "size": options["size"],
            "steps": options["steps"],
            "guidance": options["guidance"],
            "batch_size": options["batch_size"],
            "category_tokens": not options["no_category_tokens"],
            "project": options["project"],
        }
        return style_params(self.kind, params, options)

    def handle(self, *args, **options):
        self._manifest = options.get("manifest_out")
        return super().handle(*args, **options)

    def run_foreground(self, job) -> None:
        super().run_foreground(job)
        if self._manifest:
            from generation.models import Generation

            rows = (
                Generation.objects.filter(job=job)
                .select_related("creative", "product", "model")
                .order_by("group", "attempt")
            )
            path = Path(self._manifest)
            path.write_text("".join(json.dumps(manifest_row(g)) + "\n" for g in rows))
            self.stdout.write(f"Manifest: {path} ({rows.count()} rows)")
