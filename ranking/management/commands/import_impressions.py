from django.core.management.base import BaseCommand, CommandError

from ranking.importing import FORMATS, ImpressionImportError, import_impressions


class Command(BaseCommand):
    help = (
        "Import aggregated impression logs (one row per day, segment and creative; `creative` is "
        "the creative's manifest id). Idempotent per (day, segment, creative): a re-import "
        "replaces the counts. Any bad row: nothing is written and the bad rows are listed."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--format", choices=FORMATS, default=None, help="default: by suffix")

    def handle(self, *args, file, format, **options):
        try:
            result = import_impressions(path=file, fmt=format)
        except (ImpressionImportError, ValueError) as exc:
            raise CommandError(str(exc))
        self.stdout.write(
            f"Imported {result.rows} rows ({result.segments_created} new segments) in "
            f"{result.seconds:.1f}s ({result.rate:,.0f} rows/s)."
        )
        if options["verbosity"] > 1:
            self.stdout.write(
                "phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.phases.items())
            )
