from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation import jobs as annotation_jobs
from annotation.datasets import create_dataset_version
from annotation.management.commands.import_creatives import enqueue
from annotation.models import Project


class Command(BaseCommand):
    help = (
        "Freeze a project's consensus labels into an immutable, SKU-split dataset version (here "
        "in the foreground; --enqueue runs it as a `create_dataset_version` job on a worker)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--name", required=True, help="unique version name")
        parser.add_argument("--min-agreement", type=float, default=0.0)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--ratios", default="0.8,0.1,0.1", help="train,val,test")
        parser.add_argument(
            "--foreground", action="store_true", default=True, help="run here (the default)"
        )
        parser.add_argument("--enqueue", action="store_true", help="run as a job on a worker")
        parser.add_argument("--user", default=None, help="username recorded as created_by")

    def handle(self, *args, project, name, min_agreement, seed, ratios, **options):
        proj = Project.objects.filter(slug=project).first()
        if proj is None:
            raise CommandError(f"project {project!r} does not exist")
        if options.get("enqueue"):
            params = {
                "project": project,
                "name": name,
                "min_agreement": min_agreement,
                "seed": seed,
                "ratios": ratios,
            }
            self.stdout.write(enqueue(annotation_jobs.DATASET, params, options.get("user")))
            return
        try:
            version = create_dataset_version(
                project=proj, name=name, min_agreement=min_agreement, ratios=ratios, seed=seed
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages))
        stats = version.stats
        splits = ", ".join(f"{s} {v['items']}" for s, v in stats["splits"].items())
        excluded = ", ".join(f"{k} {v}" for k, v in stats["excluded"].items() if v)
        self.stdout.write(
            f"dataset {version.name}: {version.item_count} items ({splits}); "
            f"excluded: {excluded or 'none'}"
        )
