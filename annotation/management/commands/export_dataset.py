from django.core.management.base import BaseCommand, CommandError

from annotation.exporting import FORMATS, export_to_file
from annotation.models import DatasetVersion


class Command(BaseCommand):
    help = "Export a dataset version (one row per item) as JSON lines or Parquet."

    def add_arguments(self, parser):
        parser.add_argument("name", help="dataset version name")
        parser.add_argument("--format", choices=FORMATS, default="jsonl")
        parser.add_argument("--out", required=True, help="output file")

    def handle(self, *args, name, format, out, **options):
        version = DatasetVersion.objects.filter(name=name).first()
        if version is None:
            raise CommandError(f"dataset version {name!r} does not exist")
        size = export_to_file(version, out, format)
        self.stdout.write(f"wrote {version.item_count} rows ({size} bytes) to {out}")
