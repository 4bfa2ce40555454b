"""Annotation job kinds: `import_creatives` and `create_dataset_version` (registered in
AnnotationConfig.ready()). Both take minutes at 100k+ rows, longer than a web request may run, so
the API enqueues them (202 + job id) and a worker runs them; the command-line twins run in the
foreground by default (`--enqueue` hands them to a worker).

Uploads travel through default storage (`imports/<token>/`, local disk or S3), so the worker may
run on another host: the web request stages the manifest and images there, the job copies them to
its work dir, imports, and deletes the staged files whatever the outcome. Server-side paths must
lie under RFSTUDIO_IMPORT_ROOTS, checked at enqueue and again at run time.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import uuid
from pathlib import Path

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from core.limits import MAX_INT32

IMPORT = "import_creatives"
DATASET = "create_dataset_version"
STAGE_PREFIX = "imports"
STAGED_RE = re.compile(rf"^{STAGE_PREFIX}/[0-9a-f]{{32}}$")
SLUG_RE = r"^[-a-zA-Z0-9_]{1,100}$"


# --- staging uploads ------------------------------------------------------------------------------


def stage_upload(*, manifest, files) -> str:
    """Store an uploaded manifest and its images under `imports/<token>/` in default storage;
    returns the prefix. `files`: (name, uploaded file) pairs; the last of equal base names wins,
    as the importer matches manifest paths by base name."""
    prefix = f"{STAGE_PREFIX}/{uuid.uuid4().hex}"
    names: dict[str, str] = {}
    try:
        default_storage.save(f"{prefix}/manifest.jsonl", manifest)
        for i, (name, upload) in enumerate(files):
            base = Path(name).name
            names[base] = default_storage.save(f"{prefix}/files/{i}-{base}", upload)
        default_storage.save(f"{prefix}/files.json", ContentFile(json.dumps(names).encode()))
    except Exception:
        delete_staged(prefix)
        raise
    return prefix


def delete_staged(prefix: str) -> None:
    """Remove a staged upload (storage has no recursive delete: list and delete)."""
    try:
        dirs, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return
    for sub in dirs:
        delete_staged(f"{prefix}/{sub}")
    for name in files:
        default_storage.delete(f"{prefix}/{name}")
    if hasattr(default_storage, "path"):  # local disk: the now-empty folders too
        with contextlib.suppress(NotImplementedError):
            shutil.rmtree(default_storage.path(prefix), ignore_errors=True)


def _fetch_staged(prefix: str, into: Path) -> tuple[Path, dict[str, Path]]:
    """Copy a staged upload into a local folder (the importer reads files by path, in a process
    pool); returns (manifest path, {base name: local path})."""
    into.mkdir(parents=True, exist_ok=True)

    def copy(name: str, target: Path) -> Path:
        with default_storage.open(name, "rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        return target

    manifest = copy(f"{prefix}/manifest.jsonl", into / "manifest.jsonl")
    with default_storage.open(f"{prefix}/files.json", "rb") as fh:
        names = json.load(fh)
    files = {}
    for i, (base, stored) in enumerate(names.items()):
        files[base] = copy(stored, into / f"{i}-{Path(stored).name}")
    return manifest, files


def check_import_path(value: str) -> str:
    """A server path the API may read: under RFSTUDIO_IMPORT_ROOTS (ValidationError otherwise)."""
    from annotation.importing import path_resolver

    roots = list(getattr(settings, "RFSTUDIO_IMPORT_ROOTS", []))
    if not roots:
        raise ValidationError("path imports are disabled (set RFSTUDIO_IMPORT_ROOTS)")
    try:
        return path_resolver("/", roots)(value)
    except ValueError as exc:
        raise ValidationError(str(exc))


# --- import ---------------------------------------------------------------------------------------


class ImportParamsForm(forms.Form):
    project = forms.RegexField(SLUG_RE, help_text="Project slug (created when missing).")
    staged = forms.CharField(required=False, help_text="Upload staged by the API (imports/<id>).")
    manifest_path = forms.CharField(required=False, help_text="Under RFSTUDIO_IMPORT_ROOTS.")
    images_root = forms.CharField(required=False, help_text="Default: the manifest's folder.")
    source_name = forms.CharField(required=False, max_length=255)
    label_source = forms.CharField(required=False, initial="import", max_length=150)
    overlap = forms.IntegerField(min_value=1, initial=1)  # upper bound: core.limits, in clean()
    skip_bad = forms.BooleanField(required=False, initial=False)

    def clean_staged(self):
        value = self.cleaned_data.get("staged") or ""
        if value and not STAGED_RE.match(value):
            raise ValidationError("not a staged upload (imports/<32 hex digits>)")
        return value

    def clean(self):
        cleaned = super().clean()
        staged, path = cleaned.get("staged"), cleaned.get("manifest_path")
        if bool(staged) == bool(path):
            raise ValidationError("give exactly one of 'staged' or 'manifest_path'")
        if path:
            cleaned["manifest_path"] = check_import_path(path)
            if cleaned.get("images_root"):
                cleaned["images_root"] = check_import_path(cleaned["images_root"])
        cleaned["label_source"] = cleaned.get("label_source") or "import"
        if cleaned.get("project") and cleaned.get("overlap") is not None:
            from annotation.importing import check_project_options

            # The importer's own check (slug length, RFSTUDIO_MAX_OVERLAP), at enqueue time.
            try:
                check_project_options(project_slug=cleaned["project"], overlap=cleaned["overlap"])
            except ValueError as exc:
                raise ValidationError(str(exc))
        if cleaned.get("project"):
            from annotation.models import Project

            # core.policy's "import" rule for launches that do not pass the import API
            # (POST /api/jobs/, --enqueue); checked again when the job runs (params are re-cleaned).
            if Project.objects.filter(slug=cleaned["project"], archived=True).exists():
                raise ValidationError(f"project {cleaned['project']!r} is archived")
        return cleaned


def run_import(ctx) -> dict:
    from annotation import importing

    p = ctx.params
    common = dict(
        project_slug=p["project"],
        label_source=p["label_source"],
        overlap=p["overlap"],
        skip_bad=p["skip_bad"],
        created_by=ctx.job.requested_by,
    )
    ctx.reporter.progress(0, 1, phase="import")
    try:
        if p["staged"]:
            local = Path(ctx.work_dir) / "upload"
            manifest, files = _fetch_staged(p["staged"], local)
            resolve = importing.upload_resolver(files)
        else:
            roots = list(settings.RFSTUDIO_IMPORT_ROOTS)
            manifest = Path(p["manifest_path"])
            if not manifest.is_file():
                raise ValueError(f"manifest {p['manifest_path']!r} not found")
            resolve = importing.path_resolver(p["images_root"] or manifest.parent, roots)
        with manifest.open("rb") as fh:
            result = importing.import_manifest(
                lines=fh,
                resolve=resolve,
                source_name=p["source_name"] or manifest.name,
                **common,
            )
    finally:
        if p["staged"]:
            delete_staged(p["staged"])
            shutil.rmtree(Path(ctx.work_dir) / "upload", ignore_errors=True)
    for line, message in result.errors[:50]:
        ctx.reporter.log(f"line {line}: {message}")
    ctx.reporter.log(result.summary())
    ctx.reporter.progress(1, 1, phase="done")
    return result.as_dict()


# --- dataset versions -----------------------------------------------------------------------------


class DatasetParamsForm(forms.Form):
    project = forms.RegexField(SLUG_RE)
    name = forms.RegexField(r"^[-a-zA-Z0-9_]{1,100}$", max_length=100)
    min_agreement = forms.FloatField(min_value=0.0, max_value=1.0, initial=0.0, required=False)
    ratios = forms.CharField(initial="0.8,0.1,0.1", max_length=100, required=False)
    seed = forms.IntegerField(min_value=0, max_value=MAX_INT32, initial=0, required=False)

    def clean_project(self):
        from annotation.models import Project

        slug = self.cleaned_data["project"]
        if not Project.objects.filter(slug=slug).exists():
            raise ValidationError(f"project {slug!r} does not exist")
        return slug

    def clean_name(self):
        from annotation.models import DatasetVersion

        name = self.cleaned_data["name"]
        if DatasetVersion.objects.filter(name=name).exists():
            raise ValidationError(
                f"dataset version {name!r} already exists (versions are immutable)"
            )
        return name

    def clean_ratios(self):
        from annotation.datasets import parse_ratios

        value = self.cleaned_data.get("ratios") or "0.8,0.1,0.1"
        return ",".join(repr(r) for r in parse_ratios(value))

    def clean(self):
        cleaned = super().clean()
        cleaned["min_agreement"] = cleaned.get("min_agreement") or 0.0
        cleaned["seed"] = cleaned.get("seed") or 0
        return cleaned


def run_dataset(ctx) -> dict:
    from annotation.datasets import create_dataset_version
    from annotation.models import Project

    p = ctx.params
    ctx.reporter.progress(0, 1, phase="freeze")
    version = create_dataset_version(
        project=Project.objects.get(slug=p["project"]),
        name=p["name"],
        min_agreement=p["min_agreement"],
        ratios=p["ratios"],
        seed=p["seed"],
        created_by=ctx.job.requested_by,
    )
    ctx.reporter.progress(1, 1, phase="done")
    return {"name": version.name, "items": version.item_count, "stats": version.stats}


def _dataset_lineage(cleaned: dict):
    return {"project": cleaned["project"]}, None


def _import_lineage(cleaned: dict):
    return {"project": cleaned["project"]}, None


def register_kinds() -> None:
    from jobs.kinds import JobKind, register

    register(
        JobKind(
            name=IMPORT,
            queue="default",
            run=run_import,
            params_form=ImportParamsForm,
            label="Import creatives",
            description="Validate a manifest, store its images, queue items (one transaction).",
            max_attempts=1,  # all-or-nothing and idempotent: re-run it by hand after a fix
            lineage=_import_lineage,
        )
    )
    register(
        JobKind(
            name=DATASET,
            queue="default",
            run=run_dataset,
            params_form=DatasetParamsForm,
            label="Create a dataset version",
            description="Freeze consensus labels into an immutable, SKU-split version.",
            max_attempts=1,  # one transaction: a failure wrote nothing, and is deterministic
            lineage=_dataset_lineage,
        )
    )
