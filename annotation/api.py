"""REST API of the annotation queue (thin: serializers validate, services/selectors do the work).

Every 4xx answers JSON {"detail": message, "code": code} (400 from validation adds "errors")."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from core import limits, policy
from core.api import BoundedLimitOffsetPagination, problem_response

from . import selectors, services
from .authentication import RoleAwareTokenAuthentication
from .exceptions import AnnotationError, Forbidden, NotFound
from .models import Review

# --- serializers --------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField(required=False)
    errors = serializers.DictField(required=False)


class ChoiceSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    hotkey = serializers.CharField()
    description = serializers.CharField()


class NextItemSerializer(serializers.Serializer):
    item_id = serializers.IntegerField()
    project = serializers.CharField()
    image_url = serializers.CharField()
    thumbnail_url = serializers.CharField()
    product_image_url = serializers.CharField()
    prompt = serializers.CharField()
    sku = serializers.CharField()
    title = serializers.CharField()
    instructions = serializers.CharField()
    choices = ChoiceSerializer(many=True)
    lease_expires_at = serializers.DateTimeField()


class SubmitSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=100)
    idempotency_key = serializers.CharField(max_length=100)
    duration_ms = serializers.IntegerField(
        min_value=0, max_value=limits.MAX_INT32, required=False, allow_null=True
    )
    note = serializers.CharField(
        max_length=limits.max_note_length(), required=False, allow_blank=True, default=""
    )


class AnnotationResultSerializer(serializers.Serializer):
    annotation_id = serializers.IntegerField()
    item_id = serializers.IntegerField()
    label = serializers.CharField()
    created = serializers.BooleanField()


class LeaseSerializer(serializers.Serializer):
    item_id = serializers.IntegerField()
    lease_expires_at = serializers.DateTimeField()


class SkipResultSerializer(serializers.Serializer):
    item_id = serializers.IntegerField()
    skipped = serializers.BooleanField()


class UndoResultSerializer(serializers.Serializer):
    undone = serializers.BooleanField()
    annotation_id = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField()
    item = NextItemSerializer(allow_null=True)


class ProjectSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    overlap = serializers.IntegerField()
    ordering = serializers.CharField()
    instructions = serializers.CharField()
    can_label = serializers.BooleanField()
    can_review = serializers.BooleanField()
    items_total = serializers.IntegerField()
    items_done = serializers.IntegerField()
    items_mine = serializers.IntegerField()


class ReviewQueueItemSerializer(serializers.Serializer):
    item_id = serializers.IntegerField(source="pk")
    image_url = serializers.SerializerMethodField()
    prompt = serializers.CharField(source="creative.prompt")
    sku = serializers.CharField(source="creative.product.sku")
    review_reason = serializers.CharField()
    annotation_count = serializers.IntegerField()
    votes = serializers.DictField(child=serializers.IntegerField())
    consensus = serializers.CharField(source="consensus_label.slug", allow_null=True, default=None)
    agreement = serializers.FloatField(allow_null=True)

    def get_image_url(self, item) -> str:
        return selectors.creative_image_url(item.creative)


class ReviewQueuePageSerializer(serializers.Serializer):
    """One page of the review queue (limit/offset pagination)."""

    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = ReviewQueueItemSerializer(many=True)


class ReviewInputSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=Review.Action.values)
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=limits.max_reason_length()
    )
    label = serializers.CharField(required=False, allow_null=True, default=None)


class ReviewResultSerializer(serializers.Serializer):
    review_id = serializers.IntegerField(source="pk")
    item_id = serializers.IntegerField()
    action = serializers.CharField()
    reason = serializers.CharField()
    label = serializers.CharField(source="label.slug", allow_null=True, default=None)


class AnnotationDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    annotator = serializers.CharField(source="annotator.username")
    label = serializers.CharField(source="label.slug")
    note = serializers.CharField()
    duration_ms = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    discarded_at = serializers.DateTimeField(allow_null=True)
    discard_reason = serializers.CharField()


class ItemDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.CharField(source="project.slug")
    creative_id = serializers.IntegerField()
    image_url = serializers.SerializerMethodField()
    prompt = serializers.CharField(source="creative.prompt")
    sku = serializers.CharField(source="creative.product.sku")
    status = serializers.CharField()
    is_gold = serializers.BooleanField()
    gold_label = serializers.CharField(source="gold_label.slug", allow_null=True, default=None)
    annotation_count = serializers.IntegerField()
    votes = serializers.DictField(child=serializers.IntegerField())
    consensus = serializers.CharField(source="consensus_label.slug", allow_null=True, default=None)
    adjudicated = serializers.CharField(
        source="adjudicated_label.slug", allow_null=True, default=None
    )
    agreement = serializers.FloatField(allow_null=True)
    review_status = serializers.CharField()
    review_reason = serializers.CharField()
    annotations = AnnotationDetailSerializer(many=True)
    reviews = ReviewResultSerializer(many=True)

    def get_image_url(self, item) -> str:
        return selectors.creative_image_url(item.creative)


def _errors(*codes):
    return {code: OpenApiResponse(ErrorSerializer) for code in codes}


# --- views ----------------------------------------------------------------------------------------


class _Base(APIView):
    # Token first: no session lookup for API clients; roles come with the token (one query).
    authentication_classes = [RoleAwareTokenAuthentication, SessionAuthentication]
    permission_classes = [policy.Policy]
    policy_rule = "authenticated"

    def handle_exception(self, exc):
        if isinstance(exc, AnnotationError):
            extra = {"code": exc.code}
            if isinstance(exc, _Invalid):
                extra["errors"] = exc.errors
            return problem_response(exc.status_code, exc.message, **extra)
        return super().handle_exception(exc)

    def validated(self, serializer_class, *, item_id=None, rule="label"):
        serializer = serializer_class(data=self.request.data)
        if not serializer.is_valid():
            if item_id is not None:  # the policy answers before the input does (403 over 400)
                services.authorize_item(item_id=item_id, user=self.request.user, rule=rule)
            fields = "; ".join(
                f"{name}: {' '.join(str(m) for m in msgs)}"
                for name, msgs in serializer.errors.items()
            )
            raise _Invalid(fields, serializer.errors)
        return serializer.validated_data

    def labeling_project(self, slug):
        project = selectors.project_for_user(slug=slug, user=self.request.user)
        if project is None:
            raise NotFound(f"No project {slug!r}.")
        if not policy.can_label_project(self.request.user, project):
            if project.archived:
                raise Forbidden("This project is archived.")
            raise Forbidden("You are not an annotator of this project.")
        return project


class _Invalid(AnnotationError):
    code = "invalid"

    def __init__(self, message, errors):
        super().__init__(message)
        self.errors = errors


class NextItemView(_Base):
    policy_rule = "label"

    @extend_schema(
        request=None,
        responses={
            200: NextItemSerializer,
            204: OpenApiResponse(description="The queue is empty for you."),
            **_errors(403, 404),
        },
        summary="Lease the next item to label (reuses your live lease).",
    )
    def post(self, request, slug):
        project = self.labeling_project(slug)
        assignment = services.claim_next_item(project=project, annotator=request.user)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(NextItemSerializer(selectors.next_item_payload(assignment=assignment)).data)


class SubmitView(_Base):
    policy_rule = "label"

    @extend_schema(
        request=SubmitSerializer,
        responses={
            201: AnnotationResultSerializer,
            200: OpenApiResponse(AnnotationResultSerializer, description="Replay: stored before."),
            **_errors(400, 403, 404, 409),
        },
        summary="Label a leased item (idempotent per idempotency_key).",
    )
    def post(self, request, item_id):
        data = self.validated(SubmitSerializer, item_id=item_id)
        annotation, created = services.submit_annotation(
            item_id=item_id,
            annotator=request.user,
            label=data["label"],
            idempotency_key=data["idempotency_key"],
            duration_ms=data.get("duration_ms"),
            note=data.get("note", ""),
        )
        body = {
            "annotation_id": annotation.pk,
            "item_id": annotation.item_id,
            "label": data["label"] if created else annotation.label.slug,
            "created": created,
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class HeartbeatView(_Base):
    policy_rule = "label"

    @extend_schema(
        request=None,
        responses={200: LeaseSerializer, **_errors(403, 409)},
        summary="Renew your lease on the item while its page is open.",
    )
    def post(self, request, item_id):
        assignment = services.renew_lease(item_id=item_id, annotator=request.user)
        return Response({"item_id": item_id, "lease_expires_at": assignment.expires_at})


class SkipView(_Base):
    policy_rule = "label"

    @extend_schema(
        request=None,
        responses={200: SkipResultSerializer, **_errors(403, 409)},
        summary="Give the item back; it is not offered to you again.",
    )
    def post(self, request, item_id):
        services.skip_item(item_id=item_id, annotator=request.user)
        return Response({"item_id": item_id, "skipped": True})


class UndoView(_Base):
    policy_rule = "label"

    @extend_schema(
        request=None,
        responses={200: UndoResultSerializer, **_errors(403, 404)},
        summary="Undo your last label in the project while unreviewed; the item is leased back.",
    )
    def post(self, request, slug):
        project = self.labeling_project(slug)
        annotation = services.undo_last_annotation(project=project, annotator=request.user)
        if annotation is None:
            return Response(
                {
                    "undone": False,
                    "annotation_id": None,
                    "detail": "Nothing to undo: no label yet, or it was already reviewed.",
                    "item": None,
                }
            )
        assignment = services.claim_next_item(project=project, annotator=request.user)
        item = selectors.next_item_payload(assignment=assignment) if assignment else None
        return Response(
            {
                "undone": True,
                "annotation_id": annotation.pk,
                "detail": "Label undone; the item is yours again.",
                "item": NextItemSerializer(item).data if item else None,
            }
        )


class ProjectListView(_Base):
    @extend_schema(
        responses={200: ProjectSerializer(many=True)},
        summary="Projects you may label or review, with progress.",
    )
    def get(self, request):
        projects = selectors.projects_for_user(user=request.user)
        return Response(ProjectSerializer(projects, many=True).data)


class ReviewQueueView(_Base):
    policy_rule = "reviewer"

    @extend_schema(
        parameters=[
            OpenApiParameter("limit", int, description="Page size (at most the server's cap)."),
            OpenApiParameter("offset", int, description="Items to skip."),
        ],
        responses={200: ReviewQueuePageSerializer, **_errors(403, 404)},
        summary="Finished items waiting for QA (paginated: limit, offset).",
    )
    def get(self, request, slug):
        project = selectors.project_for_user(slug=slug, user=request.user)
        if project is None:
            raise NotFound(f"No project {slug!r}.")
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(
            selectors.review_queue(project=project), request, view=self
        )
        return paginator.get_paginated_response(ReviewQueueItemSerializer(page, many=True).data)


class ReviewCreateView(_Base):
    policy_rule = "review"

    @extend_schema(
        request=ReviewInputSerializer,
        responses={201: ReviewResultSerializer, **_errors(400, 403, 404, 409)},
        summary="Accept, reject (with a reason: back to the queue) or relabel a finished item.",
    )
    def post(self, request, item_id):
        data = self.validated(ReviewInputSerializer, item_id=item_id, rule="review")
        review = services.review_item(
            item_id=item_id,
            reviewer=request.user,
            action=data["action"],
            reason=data["reason"],
            label=data["label"],
        )
        return Response(ReviewResultSerializer(review).data, status=status.HTTP_201_CREATED)


class ItemDetailView(_Base):
    policy_rule = "reviewer"

    @extend_schema(
        responses={200: ItemDetailSerializer, **_errors(403, 404)},
        summary="An item with all its annotations and reviews (QA and ML engineers).",
    )
    def get(self, request, item_id):
        item = selectors.item_detail(item_id=item_id)
        if item is None:
            raise NotFound(f"Item {item_id} does not exist.")
        return Response(ItemDetailSerializer(item).data)
