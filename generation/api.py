"""REST API: GET /api/generation/models/ (the diffusion-model registry), POST /api/generation/jobs/
(launch generate / recurrent_generate / train_diffuser; ML engineers), POST
/api/generation/style-references/ (store a style-reference image; a generate job then names it in
`params.style_reference`). Thin: validation is the job kind's form, writes are
jobs.services.enqueue_job and generation.services."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.policy import Policy
from jobs import services as job_services
from jobs.api import JobSerializer

from . import services
from .models import DiffusionModel

KINDS = ("generate", "recurrent_generate", "train_diffuser")


class DiffusionModelSerializer(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = DiffusionModel
        fields = ["id", "name", "status", "checksum", "config", "metrics", "parent",
                  "reward_model", "job", "lineage", "supports_style_reference",
                  "created_at"]  # fmt: skip
        read_only_fields = fields


class GenerationLaunchSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=KINDS, default="generate")
    params = serializers.DictField(required=False, default=dict)
    idempotency_key = serializers.CharField(required=False, allow_blank=True, max_length=200)


class DiffusionModelList(APIView):
    permission_classes = [Policy]
    policy_rule = "jobs_read"  # staff, ML engineers and QA (as the job pages)
    serializer_class = DiffusionModelSerializer

    @extend_schema(responses=DiffusionModelSerializer(many=True))
    def get(self, request):
        rows = DiffusionModel.objects.select_related("parent").order_by("-created_at", "-id")
        return Response(DiffusionModelSerializer(rows[:500], many=True).data)


class GenerationJobs(APIView):
    permission_classes = [Policy]
    policy_rule = "jobs_manage"  # launching jobs: ML engineers
    serializer_class = GenerationLaunchSerializer

    @extend_schema(request=GenerationLaunchSerializer, responses={201: JobSerializer})
    def post(self, request):
        data = GenerationLaunchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            job = job_services.enqueue_job(
                kind=data.validated_data["kind"],
                params=data.validated_data["params"],
                requested_by=request.user,
                idempotency_key=data.validated_data.get("idempotency_key") or None,
            )
        except DjangoValidationError as exc:
            detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            raise ValidationError({"params": detail}) from None
        body = JobSerializer(job).data
        body["run_url"] = f"/generation/runs/{job.pk}/"
        return Response(body, status=status.HTTP_201_CREATED)


class StyleReferenceUploadSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="PNG, JPEG, WebP, GIF or BMP; fully decoded.")


class StyleReferenceSerializer(serializers.Serializer):
    image = serializers.CharField(help_text="Storage name: pass it as params.style_reference.")
    sha256 = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()


class StyleReferences(APIView):
    permission_classes = [Policy]
    policy_rule = "jobs_manage"  # uploads feed generation jobs: ML engineers
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = StyleReferenceUploadSerializer

    @extend_schema(
        request={"multipart/form-data": StyleReferenceUploadSerializer},
        responses={201: StyleReferenceSerializer, 200: StyleReferenceSerializer},
    )
    def post(self, request):
        data = StyleReferenceUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["image"]
        if upload.size > services.STYLE_REFERENCE_MAX_BYTES:
            limit = services.STYLE_REFERENCE_MAX_BYTES
            raise ValidationError({"image": [f"At most {limit // 2**20} MiB."]})
        try:
            ref, created = services.store_style_reference(data=upload.read())
        except DjangoValidationError as exc:
            raise ValidationError({"image": exc.messages}) from None
        body = {"image": ref.name, "sha256": ref.sha256, "width": ref.width, "height": ref.height}
        # 200: those bytes were stored before (content addressed: the same name).
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
