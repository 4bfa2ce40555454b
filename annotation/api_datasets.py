"""API for import, dataset versions and exports (thin: the work is in importing/datasets/exporting).

POST /api/projects/{slug}/import/       ml_engineer, active project: multipart manifest (+ images)
                                         or server paths -> 202 + job (a worker imports;
                                         annotation/jobs.py)
GET  /api/datasets/                      qa, ml_engineer
GET  /api/datasets/{name}/               qa, ml_engineer
POST /api/projects/{slug}/datasets/      ml_engineer -> 202 + job (a worker freezes the version)
GET  /api/datasets/{name}/export/?format=jsonl|parquet   ml_engineer (streamed)

Who may call what is core.policy's (`policy_rule` on each view). No heavy work in requests:
imports and freezing take minutes at 100k+ rows, so the request only checks the policy and
validates its options against core.limits (a 400 problem naming the field, before anything is
stored), stages uploads in storage, then enqueues a job; poll `/api/jobs/{id}/` for the result.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import datasets, exporting, importing
from annotation import jobs as annotation_jobs
from annotation.models import DatasetVersion, Project
from core import limits, policy
from core.api import DetailSerializer, UploadField, problem_response
from jobs.kinds import get_kind
from jobs.params import clean_params
from jobs.services import enqueue_job

# --- schema-only serializers: they document the payloads for /api/docs/, the views do not use them.


class ImportErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="[{line, error}, ...]"
    )


class ImportOptionsSerializer(serializers.Serializer):
    label_source = serializers.CharField(required=False, default=importing.DEFAULT_LABEL_SOURCE)
    overlap = serializers.IntegerField(
        required=False, default=1, min_value=1, max_value=limits.max_overlap()
    )
    skip_bad = serializers.BooleanField(
        required=False, default=False, help_text="Skip bad lines instead of failing the import."
    )


class ImportUploadSerializer(ImportOptionsSerializer):
    manifest = UploadField(help_text="JSONL manifest, one creative per line.")
    images = serializers.ListField(
        child=UploadField(),
        required=False,
        help_text="Image files the manifest names (any other file field name works too).",
    )


class ImportPathsSerializer(ImportOptionsSerializer):
    manifest_path = serializers.CharField(help_text="Under RFSTUDIO_IMPORT_ROOTS on the server.")
    images_root = serializers.CharField(required=False, help_text="Default: the manifest's folder.")


class ImportResultSerializer(serializers.Serializer):
    project = serializers.CharField(allow_null=True)
    rows = serializers.IntegerField()
    created = serializers.IntegerField()
    skipped = serializers.IntegerField()
    bad = serializers.IntegerField()
    creatives_created = serializers.IntegerField()
    products_created = serializers.IntegerField()
    labels_created = serializers.IntegerField()
    errors = serializers.ListField(child=serializers.DictField(), help_text="[{line, error}, ...]")
    db_seconds = serializers.FloatField(help_text="SQL execution plus the commit")
    total_seconds = serializers.FloatField()
    timings = serializers.DictField(
        child=serializers.FloatField(),
        help_text="seconds per phase: parse, validate, store (files), write (transaction), commit",
    )


def _bool(value) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


class JobAcceptedSerializer(serializers.Serializer):
    job = serializers.IntegerField(help_text="Job id; poll the url for status and result.")
    kind = serializers.CharField()
    status = serializers.CharField()
    url = serializers.CharField(help_text="/api/jobs/{id}/ (its `result` when it succeeds).")


STAGED_SHAPE = f"{annotation_jobs.STAGE_PREFIX}/{'0' * 32}"  # a well-formed placeholder


def _accepted(job) -> Response:
    url = f"/api/jobs/{job.pk}/"
    body = {"job": job.pk, "kind": job.kind, "status": job.status, "url": url}
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": url})


def _problem(exc: ValidationError) -> Response:
    """A 400 problem document naming the invalid fields (core.api)."""
    if hasattr(exc, "error_dict"):
        fields = {k: [str(m) for m in v] for k, v in exc.message_dict.items()}
        detail = "; ".join(
            f"{k}: {' '.join(v)}" if k != "__all__" else " ".join(v) for k, v in fields.items()
        )
        return problem_response(400, detail, code="invalid", errors=fields)
    return problem_response(400, "; ".join(exc.messages), code="invalid")


class ImportView(APIView):
    permission_classes = [policy.Policy]
    policy_rule = "import"

    @extend_schema(
        operation_id="project_import",
        summary="Import a manifest (multipart upload, or server paths as JSON/form) as a job.",
        request={
            "multipart/form-data": ImportUploadSerializer,
            "application/json": ImportPathsSerializer,
            "application/x-www-form-urlencoded": ImportPathsSerializer,
        },
        responses={
            202: OpenApiResponse(
                JobAcceptedSerializer,
                description="Queued: a worker validates and imports; the job's result is an "
                "ImportResult, a bad manifest fails the job naming the lines.",
            ),
            400: OpenApiResponse(ImportErrorSerializer, description="Bad options."),
            403: DetailSerializer,
        },
    )
    def post(self, request, slug):
        # Policy, then the options (core.limits), then staging and the job: nothing is stored for
        # a request that is refused.
        policy.require_project(request.user, Project.objects.filter(slug=slug).first(), "import")
        data = request.data
        try:
            overlap = int(str(data.get("overlap") or 1)[:20])
        except (TypeError, ValueError):
            return problem_response(400, "overlap must be an integer", code="invalid")
        try:
            importing.check_project_options(project_slug=slug, overlap=overlap)
        except ValueError as exc:
            return problem_response(400, str(exc), code="invalid")
        params = {
            "project": slug,
            "label_source": str(data.get("label_source") or importing.DEFAULT_LABEL_SOURCE),
            "overlap": overlap,
            "skip_bad": _bool(data.get("skip_bad", False)),
        }
        staged = None
        if "manifest" in request.FILES:
            manifest = request.FILES["manifest"]
            uploads = [
                (upload.name, upload)
                for key, files in request.FILES.lists()
                if key != "manifest"
                for upload in files
            ]
            params["source_name"] = Path(manifest.name).name[:255]
            # The options are checked before anything is stored.
            try:
                clean_params(get_kind(annotation_jobs.IMPORT), {**params, "staged": STAGED_SHAPE})
            except ValidationError as exc:
                return _problem(exc)
            staged = annotation_jobs.stage_upload(manifest=manifest, files=uploads)
            params["staged"] = staged
        elif data.get("manifest_path"):
            params["manifest_path"] = str(data["manifest_path"])
            if data.get("images_root"):
                params["images_root"] = str(data["images_root"])
        else:
            return problem_response(
                400, "send a 'manifest' file (multipart) or a 'manifest_path'", code="invalid"
            )
        try:
            job = enqueue_job(kind=annotation_jobs.IMPORT, params=params, requested_by=request.user)
        except ValidationError as exc:
            if staged:
                annotation_jobs.delete_staged(staged)
            return _problem(exc)
        return _accepted(job)


class DatasetVersionSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    export_urls = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersion
        fields = [
            "name",
            "project",
            "created_by",
            "created_at",
            "item_count",
            "params",
            "stats",
            "export_urls",
        ]

    def get_export_urls(self, obj) -> dict[str, str]:
        return {fmt: f"/api/datasets/{obj.name}/export/?format={fmt}" for fmt in exporting.FORMATS}


class DatasetCreateSerializer(serializers.Serializer):
    name = serializers.RegexField(datasets.NAME_RE.pattern, max_length=100)
    min_agreement = serializers.FloatField(default=0.0, min_value=0.0, max_value=1.0)
    ratios = serializers.CharField(default="0.8,0.1,0.1", max_length=100)
    seed = serializers.IntegerField(default=0, min_value=0, max_value=limits.MAX_INT32)


class DatasetListView(APIView):
    permission_classes = [policy.Policy]
    policy_rule = "reviewer"

    @extend_schema(
        operation_id="datasets_list",
        summary="Dataset versions, newest first (at most 500).",
        parameters=[OpenApiParameter("project", str, description="Only this project's (slug).")],
        responses={200: DatasetVersionSerializer(many=True), 403: DetailSerializer},
    )
    def get(self, request):
        qs = DatasetVersion.objects.select_related("project", "created_by").order_by(
            "-created_at", "-id"
        )
        if request.query_params.get("project"):
            qs = qs.filter(project__slug=request.query_params["project"])
        return Response(DatasetVersionSerializer(qs[:500], many=True).data)


class DatasetDetailView(APIView):
    permission_classes = [policy.Policy]
    policy_rule = "reviewer"

    @extend_schema(
        operation_id="datasets_retrieve",
        responses={200: DatasetVersionSerializer, 403: DetailSerializer, 404: DetailSerializer},
    )
    def get(self, request, name):
        version = get_object_or_404(
            DatasetVersion.objects.select_related("project", "created_by"), name=name
        )
        return Response(DatasetVersionSerializer(version).data)


class DatasetCreateView(APIView):
    permission_classes = [policy.Policy]
    policy_rule = "ml_engineer"

    @extend_schema(
        operation_id="project_datasets_create",
        summary="Freeze a dataset version of the project's consensus labels.",
        request=DatasetCreateSerializer,
        responses={
            202: OpenApiResponse(
                JobAcceptedSerializer,
                description="Queued: a worker freezes the version; the job's result names it.",
            ),
            400: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description='{"detail": message}, or {field: [messages]} for invalid fields.',
            ),
            403: DetailSerializer,
            404: DetailSerializer,
        },
    )
    def post(self, request, slug):
        project = get_object_or_404(Project, slug=slug)
        form = DatasetCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        params = {**form.validated_data, "project": project.slug}
        try:
            job = enqueue_job(
                kind=annotation_jobs.DATASET, params=params, requested_by=request.user
            )
        except ValidationError as exc:
            return _problem(exc)
        return _accepted(job)


class _NoFormatNegotiation(DefaultContentNegotiation):
    """`?format=` names the export format here, not a DRF renderer."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class DatasetExportView(APIView):
    permission_classes = [policy.Policy]
    policy_rule = "ml_engineer"
    content_negotiation_class = _NoFormatNegotiation

    @extend_schema(
        operation_id="datasets_export",
        summary="Download a dataset version (streamed file attachment).",
        parameters=[
            OpenApiParameter(
                "format",
                str,
                enum=list(exporting.FORMATS),
                default="jsonl",
                description="File type.",
            )
        ],
        responses={
            (200, exporting.CONTENT_TYPES[fmt]): OpenApiResponse(
                OpenApiTypes.BINARY, description="The file, as an attachment."
            )
            for fmt in exporting.FORMATS
        }
        | {
            (400, "application/json"): DetailSerializer,
            (403, "application/json"): DetailSerializer,
            (404, "application/json"): DetailSerializer,
        },
    )
    def get(self, request, name):
        version = get_object_or_404(DatasetVersion, name=name)
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in exporting.FORMATS:
            return Response(
                {"detail": f"format must be one of {', '.join(exporting.FORMATS)}"}, status=400
            )
        response = StreamingHttpResponse(
            exporting.iter_export(version, fmt), content_type=exporting.CONTENT_TYPES[fmt]
        )
        response["Content-Disposition"] = (
            f'attachment; filename="{exporting.filename(version, fmt)}"'
        )
        return response
