"""REST API of the feedback app. ML engineers (and superusers) may do everything, QA may read
models and scores, annotators nothing at all (they label blind to RFNet)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core import limits
from core.api import DetailSerializer, UploadField
from core.policy import Policy
from generation.models import Creative

from . import selectors, services
from .inference import Upload, parse_placement, score_uploads
from .models import CreativeScore, Evaluation, FeedbackModel


class ScoreSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name")
    model_status = serializers.CharField(source="model.status")

    class Meta:
        model = CreativeScore
        fields = [
            "model",
            "model_status",
            "predicted_label",
            "p_available",
            "uncertainty",
            "probs",
            "created",
        ]


class EvaluationSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="dataset_version.name")

    class Meta:
        model = Evaluation
        fields = ["dataset", "split", "metrics", "created_at"]


class FeedbackModelSerializer(serializers.ModelSerializer):
    schema = serializers.CharField(source="schema.slug")
    dataset = serializers.CharField(source="dataset_version.name", default=None)
    job = serializers.IntegerField(source="job_id", default=None, allow_null=True)
    accuracy = serializers.SerializerMethodField()
    macro_f1 = serializers.SerializerMethodField()

    class Meta:
        model = FeedbackModel
        fields = [
            "name",
            "status",
            "schema",
            "class_names",
            "dataset",
            "job",
            "accuracy",
            "macro_f1",
            "created_at",
            "promoted_at",
            "retired_at",
        ]

    def get_accuracy(self, obj) -> float | None:
        return obj.metrics.get("accuracy")

    def get_macro_f1(self, obj) -> float | None:
        return obj.metrics.get("macro_f1")


class FeedbackModelDetailSerializer(FeedbackModelSerializer):
    evaluations = EvaluationSerializer(many=True, read_only=True)

    class Meta(FeedbackModelSerializer.Meta):
        fields = [*FeedbackModelSerializer.Meta.fields, "config", "metrics", "evaluations"]


# --- schema-only serializers: they document the payloads for /api/docs/, the views do not use them.


class CreativeScoresSerializer(serializers.Serializer):
    creative = serializers.IntegerField()
    scores = ScoreSerializer(many=True, help_text="One per model that scored the creative.")


class FeedbackModelListSerializer(serializers.Serializer):
    results = FeedbackModelSerializer(many=True)


class ScoreUploadsRequestSerializer(serializers.Serializer):
    image = serializers.ListField(
        child=UploadField(), help_text="The creatives, one file per image."
    )
    product = serializers.ListField(
        child=UploadField(), help_text="RGBA product cut-outs, one per image, in order."
    )
    caption = serializers.ListField(
        child=serializers.CharField(allow_blank=True), required=False, help_text="One per image."
    )
    placement = serializers.ListField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text="Optional, one per image: the generator's input placement 'x0,y0,x1,y1' "
        "(creative pixels). Without it the product is localised in the image.",
    )
    model = serializers.CharField(
        required=False, default="active", help_text="A model name, `active` or `latest`."
    )


class UploadScoreSerializer(serializers.Serializer):
    predicted_label = serializers.CharField()
    p_available = serializers.FloatField()
    confidence = serializers.FloatField(help_text="The probability of `predicted_label`.")
    uncertainty = serializers.FloatField(help_text="Normalised entropy in [0, 1].")
    probs = serializers.DictField(child=serializers.FloatField(), help_text="{class slug: p}")


class ScoreUploadsResponseSerializer(serializers.Serializer):
    model = serializers.CharField()
    results = UploadScoreSerializer(many=True, help_text="In the order of the uploads.")


_DENIED = {403: DetailSerializer}


class CreativeScoresView(APIView):
    permission_classes = [Policy]
    policy_rule = "reviewer"  # QA and ML engineers; annotators label blind to RFNet

    @extend_schema(
        summary="RFNet scores of one creative.",
        responses={200: CreativeScoresSerializer, 404: DetailSerializer, **_DENIED},
    )
    def get(self, request, pk: int):
        creative = get_object_or_404(Creative, pk=pk)
        scores = selectors.scores_for_creative(creative_id=creative.pk)
        return Response(
            {"creative": creative.pk, "scores": ScoreSerializer(scores, many=True).data}
        )


class ModelListView(APIView):
    permission_classes = [Policy]
    policy_rule = "reviewer"  # QA and ML engineers; annotators label blind to RFNet

    @extend_schema(
        operation_id="feedback_models_list",
        parameters=[
            OpenApiParameter(
                "status", str, enum=FeedbackModel.Status.values, description="Only this status."
            )
        ],
        responses={200: FeedbackModelListSerializer, **_DENIED},
    )
    def get(self, request):
        models = selectors.model_list()
        status_filter = request.query_params.get("status")
        if status_filter:
            if status_filter not in FeedbackModel.Status.values:
                raise drf_exceptions.ValidationError(
                    {"status": [f"One of {', '.join(FeedbackModel.Status.values)}."]}
                )
            models = models.filter(status=status_filter)
        return Response({"results": FeedbackModelSerializer(models, many=True).data})


class ModelDetailView(APIView):
    permission_classes = [Policy]
    policy_rule = "reviewer"  # QA and ML engineers; annotators label blind to RFNet

    @extend_schema(
        operation_id="feedback_models_retrieve",
        responses={200: FeedbackModelDetailSerializer, 404: DetailSerializer, **_DENIED},
    )
    def get(self, request, name: str):
        model = get_object_or_404(selectors.model_list(), name=name)
        return Response(FeedbackModelDetailSerializer(model).data)


class ModelActionView(APIView):
    """POST /api/feedback/models/{name}/promote/ or .../retire/."""

    permission_classes = [Policy]
    policy_rule = "ml_engineer"
    action = "promote"

    @extend_schema(
        request=None,
        responses={
            200: FeedbackModelSerializer,
            400: OpenApiResponse(DetailSerializer, description="Not allowed in this status."),
            404: DetailSerializer,
            **_DENIED,
        },
    )
    def post(self, request, name: str):
        model = get_object_or_404(FeedbackModel, name=name)
        try:
            if self.action == "promote":
                model = services.promote_model(model=model)
            else:
                model = services.retire_model(model=model)
        except ValidationError as exc:
            return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(FeedbackModelSerializer(model).data)


class ScoreUploadsView(APIView):
    """Score a few uploaded images synchronously. Multipart fields, repeated once per image in
    the same order: `image` (the creative), `product` (the RGBA cut-out), optional `caption`;
    optional `model` (a name, `active` (default) or `latest`). Nothing is stored."""

    permission_classes = [Policy]
    policy_rule = "ml_engineer"
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        summary="Score uploaded images synchronously (nothing is stored).",
        request={"multipart/form-data": ScoreUploadsRequestSerializer},
        responses={
            200: ScoreUploadsResponseSerializer,
            400: OpenApiResponse(DetailSerializer, description="Bad uploads or unknown model."),
            **_DENIED,
        },
    )
    def post(self, request):
        try:
            model = selectors.resolve_model(request.data.get("model") or "active")
        except selectors.ModelNotFound as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        images = request.FILES.getlist("image")
        products = request.FILES.getlist("product")
        captions = request.data.getlist("caption") if hasattr(request.data, "getlist") else []
        longest = limits.max_prompt_length()
        if any(len(c) > longest for c in captions):
            return Response(
                {"detail": f"caption: at most {longest} characters."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        if len(images) != len(products):
            return Response(
                {
                    "detail": f"Got {len(images)} image(s) and {len(products)} product "
                    "cut-out(s); send one product per image."
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        placements = request.data.getlist("placement") if hasattr(request.data, "getlist") else []
        try:
            uploads = [
                Upload(
                    image=img,
                    product=prod,
                    caption=captions[i] if i < len(captions) else "",
                    placement=parse_placement(placements[i] if i < len(placements) else "", i),
                )
                for i, (img, prod) in enumerate(zip(images, products, strict=True))
            ]
            results = score_uploads(model=model, uploads=uploads)
        except ValidationError as exc:
            return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"model": model.name, "results": results})
