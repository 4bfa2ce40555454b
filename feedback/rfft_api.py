"""REST API of RFFT: launching goes through the generic `POST /api/jobs/` (kinds `rfft` and
`evaluate_generator`, same forms, 400 per field); this adds `POST /api/feedback/rfft/` (the
fine-tuning launch with its own schema) and read access to generator evaluations (figures and
what QA's blind A/B judgements say). The A/B sides are never exposed."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.policy import Policy
from jobs import services as job_services

from . import rfft_selectors
from .rfft import RFFT
from .rfft_models import GeneratorEvaluation


class GeneratorEvaluationSerializer(serializers.ModelSerializer):
    job = serializers.IntegerField(source="job_id", allow_null=True)

    class Meta:
        model = GeneratorEvaluation
        fields = [
            "id",
            "name",
            "job",
            "model_name",
            "baseline_name",
            "reward_name",
            "judge_name",
            "products",
            "seeds",
            "results",
            "created_at",
        ]


class EvaluationListView(APIView):
    permission_classes = [Policy]
    policy_rule = "reviewer"  # QA and ML engineers

    @extend_schema(responses=GeneratorEvaluationSerializer(many=True))
    def get(self, request):
        qs = rfft_selectors.evaluations()[:200]
        return Response(GeneratorEvaluationSerializer(qs, many=True).data)


class EvaluationDetailView(APIView):
    permission_classes = [Policy]
    policy_rule = "reviewer"

    @extend_schema(responses=GeneratorEvaluationSerializer)
    def get(self, request, pk: int):
        evaluation = get_object_or_404(GeneratorEvaluation, pk=pk)
        data = GeneratorEvaluationSerializer(evaluation).data
        data["human"] = rfft_selectors.human_figures(evaluation=evaluation)
        return Response(data)


class FinetuneLaunchSerializer(serializers.Serializer):
    params = serializers.DictField(help_text="rfft parameters (see docs/rfft.md).")
    idempotency_key = serializers.CharField(required=False, allow_blank=True)


class FinetuneLaunchView(APIView):
    permission_classes = [Policy]
    policy_rule = "ml_engineer"

    @extend_schema(request=FinetuneLaunchSerializer, responses={201: dict, 400: dict})
    def post(self, request):
        ser = FinetuneLaunchSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        try:
            job = job_services.enqueue_job(
                kind=RFFT,
                params=ser.validated_data["params"],
                requested_by=request.user,
                idempotency_key=ser.validated_data.get("idempotency_key") or None,
            )
        except ValidationError as exc:
            detail = exc.message_dict if hasattr(exc, "error_dict") else {"params": exc.messages}
            return Response({"params": detail}, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            {"job": job.pk, "url": f"/jobs/{job.pk}/", "params": job.params},
            status=status.HTTP_201_CREATED,
        )
