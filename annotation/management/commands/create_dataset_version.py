from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation.datasets import create_dataset_version
from annotation.models import Project


class Command(BaseCommand):
    help = "Freeze a project's consensus labels into an immutable, SKU-split dataset version."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--name", required=True, help="unique version name")
        parser.add_argument("--min-agreement", type=float, default=0.0)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--ratios", default="0.8,0.1,0.1", help="train,val,test")

    def handle(self, *args, project, name, min_agreement, seed, ratios, **options):
        proj = Project.objects.filter(slug=project).first()
        if proj is None:
            raise CommandError(f"project {project!r} does not exist")
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
