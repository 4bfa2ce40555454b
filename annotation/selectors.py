"""Read paths of the annotation queue (no writes)."""

from __future__ import annotations

import functools

from django.db.models import Count, Exists, OuterRef, Q
from django.urls import get_script_prefix, reverse

from core.prepared import PreparedQuery

from .models import Annotation, Assignment, Item, Project
from .schema_cache import schema_choices


@functools.lru_cache(maxsize=32)
def _route(name: str, prefix: str) -> str:
    # reverse() once per URL name (and script prefix): the next payload needs three per call.
    return reverse(name, args=[0]).replace("/0/", "/{}/")


def image_url(kind: str, pk: int, *, thumb: bool = False) -> str:
    """URL of a creative's or product's image by id (`kind` "creatives" or "products"): streamed
    through /images/... behind the login and the policy, whatever the storage (the storage's own
    URLs are /media/..., which nothing serves, or a private bucket). Exports know ids only."""
    name = "annotation-creative-image" if kind == "creatives" else "annotation-product-image"
    url = _route(name, get_script_prefix()).format(pk)
    return f"{url}?thumb=1" if thumb else url


def creative_image_url(creative, *, thumb: bool = False) -> str:
    """The login-protected image route (works with every storage backend; /media/ is not served)."""
    if not creative.image:
        return ""
    return image_url("creatives", creative.pk, thumb=thumb and bool(creative.thumbnail))


def product_image_url(product) -> str:
    if not product.image:
        return ""
    return image_url("products", product.pk)


def creative_for_image(*, pk: int):
    from generation.models import Creative

    return Creative.objects.filter(pk=pk).only("pk", "image", "thumbnail").first()


def product_for_image(*, pk: int):
    from generation.models import Product

    return Product.objects.filter(pk=pk).only("pk", "image").first()


def _projects_with_membership(user, **item_filter) -> list[Project]:
    """Projects holding the matching items, with core.policy's membership flags (one query)."""
    through = Project.annotators.through
    return list(
        Project.objects.filter(
            pk__in=Item.objects.filter(**item_filter).values("project_id")
        ).annotate(
            has_members=Exists(through.objects.filter(project_id=OuterRef("pk"))),
            is_member=Exists(through.objects.filter(project_id=OuterRef("pk"), user_id=user.pk)),
        )
    )


def projects_of_creatives(*, user, pks) -> list[Project]:
    return _projects_with_membership(user, creative_id__in=list(pks))


def projects_of_product(*, user, pk) -> list[Project]:
    return _projects_with_membership(user, creative__product_id=pk)


def _project_with_membership(slug, user_id):
    through = Project.annotators.through
    return (
        Project.objects.filter(slug=slug)
        .annotate(
            has_members=Exists(through.objects.filter(project_id=OuterRef("pk"))),
            is_member=Exists(through.objects.filter(project_id=OuterRef("pk"), user_id=user_id)),
        )
        .order_by("pk")[:1]
    )


# Compiled once per connection: every next/submit call starts with this look-up.
PROJECT_WITH_MEMBERSHIP = PreparedQuery(_project_with_membership, ints=("user_id",))


def project_for_user(*, slug: str, user) -> Project | None:
    """The project with `has_members` / `is_member` flags for permissions.can_label_project, in
    one query."""
    user_id = getattr(user, "pk", None)
    if user_id is None:
        return _project_with_membership(slug, None).first()
    return PROJECT_WITH_MEMBERSHIP.first(slug=slug, user_id=user_id)


def choices_payload(schema_id: int) -> list[dict]:
    return [
        {"slug": c.slug, "name": c.name, "hotkey": c.hotkey, "description": c.description}
        for c in schema_choices(schema_id).choices
    ]


def next_item_payload(*, assignment: Assignment) -> dict:
    """What the labeling page/API shows for a lease. No queries when the assignment comes from
    services.claim_next_item (item, creative and product are loaded; choices are cached).
    Gold items look exactly like the others."""
    item = assignment.item
    creative = item.creative
    product = creative.product
    project = assignment.project
    return {
        "item_id": item.pk,
        "project": project.slug,
        "image_url": creative_image_url(creative),
        "thumbnail_url": creative_image_url(creative, thumb=True),
        "product_image_url": product_image_url(product),
        "prompt": creative.prompt,
        "sku": product.sku,
        "title": product.title,
        "instructions": project.instructions,
        "choices": choices_payload(project.schema_id),
        "lease_expires_at": assignment.expires_at,
    }


def project_progress(*, project, annotator=None) -> dict:
    """Counts of the project's (non-gold) queue; `mine`: the annotator's current labels."""
    agg = Item.objects.filter(project=project, is_gold=False).aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(status=Item.Status.DONE)),
        pending_review=Count("id", filter=Q(review_status=Item.Review.PENDING)),
    )
    agg["remaining"] = agg["total"] - agg["done"]
    if annotator is not None:
        agg["mine"] = Annotation.objects.filter(
            annotator=annotator, item__project=project, discarded_at__isnull=True
        ).count()
    return agg


def projects_for_user(*, user) -> list[Project]:
    """Projects the user may label or review, each with progress counters annotated."""
    from core.policy import can_label_project, can_review

    through = Project.annotators.through
    qs = (
        Project.objects.filter(archived=False)
        .annotate(
            has_members=Exists(through.objects.filter(project_id=OuterRef("pk"))),
            is_member=Exists(through.objects.filter(project_id=OuterRef("pk"), user_id=user.pk)),
            items_total=Count("items", filter=Q(items__is_gold=False)),
            items_done=Count(
                "items", filter=Q(items__is_gold=False, items__status=Item.Status.DONE)
            ),
        )
        .order_by("name")
    )
    reviewer = can_review(user)
    out = []
    for project in qs:
        project.can_label = can_label_project(user, project)
        project.can_review = reviewer
        if project.can_label or reviewer:
            out.append(project)
    mine = dict(
        Annotation.objects.filter(
            annotator=user, discarded_at__isnull=True, item__project__in=[p.pk for p in out]
        )
        .values_list("item__project")
        .annotate(n=Count("id"))
    )
    for project in out:
        project.items_mine = mine.get(project.pk, 0)
    return out


def review_queue(*, project):
    """Finished items waiting for QA (sampled, disagreement, low gold accuracy), oldest first."""
    return (
        Item.objects.filter(project=project, review_status=Item.Review.PENDING)
        .select_related("creative__product", "consensus_label")
        .order_by("id")
    )


def item_detail(*, item_id):
    """An item with all its annotations (discarded ones included) and reviews; QA and up."""
    return (
        Item.objects.select_related(
            "project", "creative__product", "consensus_label", "adjudicated_label", "gold_label"
        )
        .prefetch_related("annotations__label", "annotations__annotator", "reviews__label")
        .filter(pk=item_id)
        .first()
    )


def live_assignment(*, item_id, annotator, now=None) -> Assignment | None:
    from django.utils import timezone

    return (
        Assignment.objects.filter(
            item_id=item_id,
            annotator=annotator,
            status=Assignment.Status.ACTIVE,
            expires_at__gt=now or timezone.now(),
        )
        .order_by("-id")
        .first()
    )
