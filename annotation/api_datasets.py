"""API for import, dataset versions and exports (thin: the work is in importing/datasets/exporting).

POST /api/projects/{slug}/import/       ml_engineer: multipart manifest (+ images) or server paths
GET  /api/datasets/                      qa, ml_engineer
GET  /api/datasets/{name}/               qa, ml_engineer
POST /api/projects/{slug}/datasets/      ml_engineer
GET  /api/datasets/{name}/export/?format=jsonl|parquet   ml_engineer (streamed)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings
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
from annotation.api_schema import DetailSerializer, UploadField
from annotation.models import DatasetVersion, Project
from core import limits, policy

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


class ImportView(APIView):
    permission_classes = [policy.Policy]
    policy_rule = "import"

    @extend_schema(
        operation_id="project_import",
        summary="Import a manifest (multipart upload, or server paths as JSON/form).",
        request={
            "multipart/form-data": ImportUploadSerializer,
            "application/json": ImportPathsSerializer,
            "application/x-www-form-urlencoded": ImportPathsSerializer,
        },
        responses={
            201: OpenApiResponse(ImportResultSerializer, description="Items were created."),
            200: OpenApiResponse(ImportResultSerializer, description="Nothing new (a re-import)."),
            400: OpenApiResponse(ImportErrorSerializer, description="Bad manifest or options."),
            403: DetailSerializer,
        },
    )
    def post(self, request, slug):
        policy.require_project(request.user, Project.objects.filter(slug=slug).first(), "import")
        data = request.data
        label_source = str(data.get("label_source") or importing.DEFAULT_LABEL_SOURCE)
        try:
            overlap = int(str(data.get("overlap") or 1)[:20])
        except (TypeError, ValueError):
            return Response({"detail": "overlap must be an integer"}, status=400)
        try:
            importing.check_project_options(project_slug=slug, overlap=overlap)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=400)
        common = dict(
            project_slug=slug,
            label_source=label_source,
            overlap=overlap,
            skip_bad=_bool(data.get("skip_bad", False)),
            created_by=request.user,
        )
        try:
            if "manifest" in request.FILES:
                result = self._import_upload(request, common)
            elif data.get("manifest_path"):
                result = self._import_paths(data, common)
            else:
                return Response(
                    {"detail": "send a 'manifest' file (multipart) or a 'manifest_path'"},
                    status=400,
                )
        except importing.ManifestError as exc:
            return Response(
                {
                    "detail": str(exc),
                    "errors": [{"line": ln, "error": msg} for ln, msg in exc.errors],
                },
                status=400,
            )
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=400)
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(result.as_dict(), status=code)

    def _import_upload(self, request, common):
        manifest = request.FILES["manifest"]
        with tempfile.TemporaryDirectory(prefix="rfs-import-") as tmp:
            files: dict[str, Path] = {}
            for key, uploads in request.FILES.lists():
                if key == "manifest":
                    continue
                for upload in uploads:
                    name = Path(upload.name).name
                    target = Path(tmp) / f"{len(files)}-{name}"
                    with target.open("wb") as fh:
                        for chunk in upload.chunks():
                            fh.write(chunk)
                    files[name] = target
            return importing.import_manifest(
                lines=manifest.open("rb"),
                resolve=importing.upload_resolver(files),
                source_name=Path(manifest.name).name,
                **common,
            )

    def _import_paths(self, data, common):
        roots = list(getattr(settings, "RFSTUDIO_IMPORT_ROOTS", []))
        if not roots:
            raise ValueError("path imports are disabled (set RFSTUDIO_IMPORT_ROOTS)")
        check = importing.path_resolver("/", roots)
        manifest = Path(check(str(data["manifest_path"])))
        images_root = check(str(data["images_root"])) if data.get("images_root") else None
        if not manifest.is_file():
            raise ValueError(f"manifest {data['manifest_path']!r} not found")
        resolve = importing.path_resolver(images_root or manifest.parent, roots)
        with manifest.open("rb") as fh:
            return importing.import_manifest(
                lines=fh, resolve=resolve, source_name=manifest.name, **common
            )


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
    seed = serializers.IntegerField(
        default=0, min_value=-limits.MAX_INT32, max_value=limits.MAX_INT32
    )


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
            201: DatasetVersionSerializer,
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
        try:
            version = datasets.create_dataset_version(
                project=project, created_by=request.user, **form.validated_data
            )
        except ValidationError as exc:
            return Response({"detail": "; ".join(exc.messages)}, status=400)
        return Response(DatasetVersionSerializer(version).data, status=201)


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
