"""REST API: GET /api/jobs/, GET /api/jobs/{id}/, POST /api/jobs/ (launch),
POST /api/jobs/{id}/cancel/, POST /api/jobs/{id}/retry/. Reads: staff, ML engineers, QA;
writes: ML engineers."""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from . import selectors, services
from .models import Job, JobArtifact, JobStatus


class JobArtifactSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = JobArtifact
        fields = ["id", "name", "size", "sha256", "created_at", "url"]

    def get_url(self, obj) -> str:
        return f"/jobs/{obj.job_id}/artifacts/{obj.pk}/"


class JobSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    fraction = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Job
        fields = [
            "id", "kind", "queue", "status", "params", "requested_by", "step", "total",
            "fraction", "phase", "eta_at", "attempt", "max_attempts", "worker_id", "device",
            "heartbeat_at", "cancel_requested_at", "error", "result", "inputs", "task_result_id",
            "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    artifacts = JobArtifactSerializer(many=True, read_only=True)
    metrics = serializers.SerializerMethodField()
    log_lines = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "traceback", "artifacts", "metrics", "log_lines"]
        read_only_fields = fields

    def get_metrics(self, obj) -> dict:
        return {
            name: [[s, v] for s, v in pts]
            for name, pts in selectors.metric_series(job=obj, max_points=1000).items()
        }


class LaunchSerializer(serializers.Serializer):
    kind = serializers.CharField(max_length=100)
    params = serializers.DictField(required=False, default=dict)
    idempotency_key = serializers.CharField(required=False, allow_blank=True, max_length=200)
    inputs = serializers.DictField(required=False, default=dict)


_JOB_ID = OpenApiParameter(
    "id", int, OpenApiParameter.PATH, description="Job id (at most 18 digits)."
)


@extend_schema_view(
    retrieve=extend_schema(parameters=[_JOB_ID]),
    cancel=extend_schema(parameters=[_JOB_ID], request=None, responses={200: JobSerializer}),
    retry=extend_schema(
        parameters=[_JOB_ID], request=None, responses={200: JobSerializer, 409: None}
    ),
    create=extend_schema(request=LaunchSerializer, responses={201: JobSerializer}),
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=JobStatus.values, description="Only this status."),
            OpenApiParameter("kind", str, description="Only this job kind."),
            OpenApiParameter("queue", str, description="Only this queue."),
        ]
    ),
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    # core.policy: reads for staff, ML engineers and QA; writes for ML engineers.
    policy_rules = {
        "list": "jobs_read",
        "retrieve": "jobs_read",
        "create": "jobs_manage",
        "cancel": "jobs_manage",
        "retry": "jobs_manage",
    }
    # Ids only, and never above 2**63 - 1 (larger numbers overflowed the database: 500).
    lookup_value_regex = "[0-9]{1,18}"

    def get_queryset(self):
        qs = Job.objects.select_related("requested_by")
        if self.action == "retrieve":
            qs = qs.prefetch_related("artifacts")
        if self.action != "list":
            return qs
        params = self.request.query_params
        if params.get("status") and params["status"] not in JobStatus.values:
            raise ValidationError(
                {"status": [f"Unknown status; one of {', '.join(JobStatus.values)}."]}
            )
        for field in ("status", "kind", "queue"):
            value = params.get(field)
            if value:
                if len(value) > 100:
                    raise ValidationError({field: ["At most 100 characters."]})
                qs = qs.filter(**{field: value})
        return qs

    def get_serializer_class(self):
        if self.action == "retrieve":
            return JobDetailSerializer
        if self.action == "create":
            return LaunchSerializer
        return JobSerializer

    def create(self, request):
        data = LaunchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            job = services.enqueue_job(
                kind=data.validated_data["kind"],
                params=data.validated_data["params"],
                requested_by=request.user,
                idempotency_key=data.validated_data.get("idempotency_key") or None,
                inputs=data.validated_data["inputs"],
            )
        except DjangoValidationError as exc:
            detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            raise ValidationError({"params": detail})
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = self.get_object()
        job = services.cancel_job(job_id=job.pk, by=request.user)
        return Response(JobSerializer(job).data)

    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        job = self.get_object()
        try:
            job = services.retry_job(job_id=job.pk, by=request.user)
        except DjangoValidationError as exc:
            return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_409_CONFLICT)
        return Response(JobSerializer(job).data)
