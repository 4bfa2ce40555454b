import json

from django.core.management.base import CommandError

from feedback.rfft import EVALUATE_GENERATOR
from jobs.management.base import JobCommand
from jobs.models import Job


class Command(JobCommand):
    help = (
        "Evaluate a diffusion model against a baseline on held-out products and seeds: usable "
        "rate by the reward and by an independent judge RFNet, diversity, blind A/B pairs: "
        "evaluate_generator --model NAME [--baseline NAME] --judge NAME --products SKU,... "
        "--seeds N [--json] [--foreground]"
    )
    kind = EVALUATE_GENERATOR

    def add_job_arguments(self, parser) -> None:
        parser.add_argument("--model", required=True, help="Diffusion model name or 'latest'.")
        parser.add_argument("--baseline", help="Diffusion model to compare with (default: base).")
        parser.add_argument("--judge", required=True, help="Independent judge RFNet.")
        parser.add_argument("--reward", help="Reward RFNet (default: the model's own).")
        parser.add_argument("--products", required=True, help="Held-out SKUs, comma-separated.")
        parser.add_argument("--seeds", type=int, default=4, help="Seeds 0..N-1 per product.")
        parser.add_argument("--steps", type=int, help="DDIM steps.")
        parser.add_argument("--guidance-scale", type=float)
        parser.add_argument("--threshold", type=float, help="Usable: P(available) >= this.")
        parser.add_argument(
            "--json", action="store_true", help="Print the figures as JSON (with --foreground)."
        )

    def job_params(self, options) -> dict:
        params = {k: options[k] for k in ("model", "judge", "products", "seeds")}
        for key in ("baseline", "reward", "steps", "guidance_scale", "threshold"):
            if options.get(key) is not None:
                params[key] = options[key]
        return params

    def handle(self, *args, **options):
        if options["json"] and not options["foreground"]:
            raise CommandError("--json needs --foreground (the figures exist once the job ran).")
        if not options["json"]:
            return super().handle(*args, **options)
        # Quiet run: the job's result (the figures) is the only thing on stdout.
        stdout, self.stdout = self.stdout, _Null()
        try:
            super().handle(*args, **options)
        finally:
            self.stdout = stdout
        from feedback.rfft_models import GeneratorEvaluation

        job = Job.objects.get(pk=self._job_pk)

        evaluation = GeneratorEvaluation.objects.filter(job=job).first()
        self.stdout.write(json.dumps(evaluation.results if evaluation else job.result, indent=2))

    def run_foreground(self, job) -> None:
        self._job_pk = job.pk
        super().run_foreground(job)


class _Null:
    def write(self, *args, **kwargs) -> None:
        pass
