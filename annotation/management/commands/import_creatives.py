from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation import jobs as annotation_jobs
from annotation.importing import (
    DEFAULT_LABEL_SOURCE,
    ManifestError,
    check_project_options,
    import_manifest_file,
)
from jobs.management.base import _format


class Command(BaseCommand):
    help = (
        "Import generated creatives (and optional labels) from a JSON-lines manifest into a "
        "project, creating the project (RF1M schema) when it does not exist. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("manifest", help="JSON-lines file, one creative per line")
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument(
            "--images-root", help="folder image paths are relative to (default: the manifest's)"
        )
        parser.add_argument(
            "--label-source",
            default=DEFAULT_LABEL_SOURCE,
            help="name of the (non-login) annotator that owns the manifest's labels",
        )
        parser.add_argument(
            "--overlap", type=int, default=1, help="annotations per item for a new project"
        )
        parser.add_argument(
            "--skip-bad", action="store_true", help="import the good rows, report the bad ones"
        )
        parser.add_argument("--workers", type=int, default=None, help="image worker processes")
        parser.add_argument(
            "--foreground",
            action="store_true",
            default=True,
            help="run here with this terminal's output (the default)",
        )
        parser.add_argument("--enqueue", action="store_true", help="run as a job on a worker")
        parser.add_argument("--user", default=None, help="username recorded as requested_by")

    def handle(
        self,
        *args,
        manifest,
        project,
        images_root,
        label_source,
        overlap,
        skip_bad,
        workers,
        **options,
    ):
        try:  # named before anything is read or queued (core.limits bounds)
            check_project_options(project_slug=project, overlap=overlap)
        except ValueError as exc:
            raise CommandError(str(exc))
        if options.get("enqueue"):
            params = {
                "project": project,
                "manifest_path": str(Path(manifest).resolve()),
                "images_root": str(Path(images_root).resolve()) if images_root else "",
                "label_source": label_source,
                "overlap": overlap,
                "skip_bad": skip_bad,
            }
            self.stdout.write(enqueue(annotation_jobs.IMPORT, params, options.get("user")))
            return
        try:
            result = import_manifest_file(
                manifest,
                images_root=images_root,
                project_slug=project,
                label_source=label_source,
                overlap=overlap,
                skip_bad=skip_bad,
                workers=workers,
            )
        except ManifestError as exc:
            raise CommandError(str(exc))
        except ValueError as exc:
            raise CommandError(str(exc))
        for line, message in result.errors:
            self.stderr.write(f"{manifest}: line {line}: {message}")
        self.stdout.write(result.summary())
        if options.get("verbosity", 1) >= 2:
            phases = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings().items())
            self.stdout.write(f"timings: {phases} (commit includes deferred foreign-key checks)")


def enqueue(kind: str, params: dict, username: str | None) -> str:
    """Enqueue `kind` (validated by its form); the line to print."""
    from django.contrib.auth import get_user_model

    from jobs.services import enqueue_job

    user = None
    if username:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
    try:
        job = enqueue_job(kind=kind, params=params, requested_by=user)
    except ValidationError as exc:
        raise CommandError(f"Invalid parameters for {kind}: {_format(exc)}")
    return f"Job #{job.pk} ({job.kind}) queued on '{job.queue}': /jobs/{job.pk}/"
