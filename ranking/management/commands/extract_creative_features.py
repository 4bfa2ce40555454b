from jobs.management.base import JobCommand


class Command(JobCommand):
    help = "Compute creative features (visual, ocr, vlm) for creatives without them."
    kind = "ranking_features"

    def add_job_arguments(self, parser):
        parser.add_argument("--extractors", default=None, help="e.g. visual,ocr,vlm")
        parser.add_argument("--vlm-path", default=None, help="local vision-language model folder")
        parser.add_argument("--batch-size", type=int, default=None)

    def job_params(self, options):
        keys = ("extractors", "vlm_path", "batch_size")
        return {k: options[k] for k in keys if options.get(k) not in (None, "")}
