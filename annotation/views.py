"""Labeling and QA pages. Thin: roles are checked here, the work is done by annotation.services
(writes) and the selectors (reads).

The labeling page is driven by static/rfstudio/label.js through the small JSON endpoints below
(claim, submit, skip, heartbeat, undo): the page keeps two leases (the shown item and the
prefetched next one), so its claim passes `exclude_item_ids`. The QA pages use htmx partials.
See docs/ui.md.
"""

from __future__ import annotations

import json
from functools import wraps

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import select_template
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET, require_POST

from core import limits, policy
from core.policy import rule
from core.roles import ANNOTATOR, has_role

from . import exceptions, selectors, selectors_ui, services
from .models import AVAILABLE, Item, Project

MAX_EXCLUDE = 500


class BadRequest(Exception):
    """Malformed input to a JSON endpoint (→ 400 with the message)."""


# --- plumbing --------------------------------------------------------------------------------
def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _json_body(request) -> dict:
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The request body is not valid JSON.")
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return data


def json_endpoint(view):
    """Turn the services' exceptions into JSON errors the page shows to the annotator."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except exceptions.AnnotationError as exc:  # LeaseConflict → 409, InvalidLabel → 400, ...
            return _error(exc.status_code, exc.message)
        except BadRequest as exc:
            return _error(400, str(exc))
        except ValidationError as exc:
            return _error(400, "; ".join(exc.messages))

    return wrapped


def _labeling_project(request, slug: str) -> Project:
    project = selectors.project_for_user(slug=slug, user=request.user)
    if project is None:
        raise Http404("No such project.")
    policy.require_project(request.user, project, "label")
    return project


def _review_project(request, slug: str, *, write: bool = False) -> Project:
    """The project for QA pages: read on archived projects too, review only on active ones."""
    project = get_object_or_404(Project, slug=slug)
    policy.require_project(request.user, project, "review" if write else "read_project")
    return project


def _item_ids(value, *, name: str, at_most: int) -> list[int]:
    """A JSON list of item ids, each a real id (0 < id ≤ 2**63 - 1), at most `at_most` long."""
    if not isinstance(value, list) or len(value) > at_most:
        raise BadRequest(f"`{name}` must be a list of at most {at_most} item ids.")
    for i in value:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 < i <= limits.MAX_ID:
            raise BadRequest(f"`{name}` must be a list of item ids.")
    return value


def _project_item(project: Project, item_id: int) -> Item:
    return get_object_or_404(Item, pk=item_id, project=project)


@rule("authenticated")
def home(request):
    """Send everyone to the page of their main role."""
    user = request.user
    if has_role(user, ANNOTATOR) and not user.is_superuser:
        return redirect("label-projects")
    if policy.can_review(user):
        return redirect("qa-projects")
    return redirect("label-projects")


# --- images ----------------------------------------------------------------------------------
def _image_response(field) -> FileResponse:
    if not field:
        raise Http404("No image.")
    try:
        fh = field.storage.open(field.name, "rb")
    except FileNotFoundError:
        raise Http404("The image file is missing from storage.")
    response = FileResponse(fh)
    # Files are content-addressed and never change: let the browser keep them (prefetch relies
    # on the cache), but only privately since they sit behind a login.
    patch_cache_control(response, private=True, max_age=86400, immutable=True)
    return response


def _require_image_access(request, projects) -> None:
    """core.policy "read_project" on any project that holds the image; reviewers see every image
    (also of creatives in no project yet), annotators only those of projects they may label."""
    if policy.can_review(request.user):
        return
    if not any(policy.can_read_project(request.user, p) for p in projects):
        raise PermissionDenied("This image belongs to no project you may label.")


@require_GET
@rule("read_project")
def creative_image(request, pk: int):
    """The generated image; `?thumb=1` serves the stored thumbnail when there is one."""
    creative = selectors.creative_for_image(pk=pk)
    if creative is None:
        raise Http404("No such creative.")
    _require_image_access(request, selectors.projects_of_creatives(user=request.user, pks=[pk]))
    if request.GET.get("thumb") and creative.thumbnail:
        return _image_response(creative.thumbnail)
    return _image_response(creative.image)


@require_GET
@rule("read_project")
def product_image(request, pk: int):
    product = selectors.product_for_image(pk=pk)
    if product is None:
        raise Http404("No such product.")
    _require_image_access(request, selectors.projects_of_product(user=request.user, pk=pk))
    return _image_response(product.image)


# --- labeling --------------------------------------------------------------------------------
@require_GET
@rule("labeler")
def label_projects(request):
    rows = [
        {"project": p, "progress": selectors_ui.label_progress(project=p, annotator=request.user)}
        for p in selectors.projects_for_user(user=request.user)
        if p.can_label
    ]
    return render(request, "annotation/label_projects.html", {"rows": rows})


@require_GET
@rule("label")
def label_page(request, slug: str):
    project = _labeling_project(request, slug)
    labels = list(project.schema.classes.all())
    config = {
        "project": project.slug,
        "lease_seconds": project.lease_seconds,
        "csrf_token": get_token(request),
        "labels": [
            {"slug": c.slug, "name": c.name, "hotkey": c.hotkey, "description": c.description}
            for c in labels
        ],
        "urls": {
            "claim": reverse("label-claim", args=[project.slug]),
            "heartbeat": reverse("label-heartbeat", args=[project.slug]),
            "undo": reverse("label-undo", args=[project.slug]),
            # Templates: the script puts the item id in place of the 0.
            "submit": reverse("label-submit", args=[project.slug, 0]),
            "skip": reverse("label-skip", args=[project.slug, 0]),
        },
    }
    return render(
        request,
        "annotation/label.html",
        {
            "project": project,
            "labels": labels,
            "available": AVAILABLE,
            "label_config": config,
            "progress": selectors_ui.label_progress(project=project, annotator=request.user),
        },
    )


@require_GET
@rule("label")
def label_progress(request, slug: str):
    project = _labeling_project(request, slug)
    progress = selectors_ui.label_progress(project=project, annotator=request.user)
    return render(request, "annotation/label.html#progress", {"progress": progress})


@require_POST
@rule("label")
@json_endpoint
def label_claim(request, slug: str):
    """Lease the next item, skipping `exclude` (the items the page already holds or is still
    submitting): this is how the page holds a second lease for the prefetched item."""
    project = _labeling_project(request, slug)
    exclude = _item_ids(
        _json_body(request).get("exclude") or [], name="exclude", at_most=MAX_EXCLUDE
    )
    assignment = services.claim_next_item(
        project=project, annotator=request.user, exclude_item_ids=exclude
    )
    if assignment is None:
        return JsonResponse({"item": None})
    return JsonResponse({"item": selectors_ui.label_item_payload(assignment=assignment)})


@require_POST
@rule("label")
@json_endpoint
def label_submit(request, slug: str, item_id: int):
    project = _labeling_project(request, slug)
    item = _project_item(project, item_id)
    data = _json_body(request)
    # The API's own validation (same limits, same messages): one owner per rule.
    from .api import SubmitSerializer

    form = SubmitSerializer(data=data)
    if not form.is_valid():
        raise BadRequest("; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in form.errors.items()))
    data = form.validated_data
    annotation, created = services.submit_annotation(
        item_id=item.pk,
        annotator=request.user,
        label=data["label"],
        idempotency_key=data["idempotency_key"],
        duration_ms=data.get("duration_ms"),
        note=data.get("note") or "",
    )
    return JsonResponse(
        {"annotation_id": annotation.pk, "item_id": item.pk, "created": created},
        status=201 if created else 200,
    )


@require_POST
@rule("label")
@json_endpoint
def label_skip(request, slug: str, item_id: int):
    project = _labeling_project(request, slug)
    item = _project_item(project, item_id)
    services.skip_item(item_id=item.pk, annotator=request.user)
    return JsonResponse({"item_id": item.pk, "skipped": True})


@require_POST
@rule("label")
@json_endpoint
def label_heartbeat(request, slug: str):
    """Renew every lease the page holds in one request; report the ones that are gone."""
    project = _labeling_project(request, slug)
    ids = _item_ids(_json_body(request).get("item_ids") or [], name="item_ids", at_most=10)
    renewed, lost = [], []
    for item_id in ids:
        if not Item.objects.filter(pk=item_id, project=project).exists():
            lost.append(item_id)
            continue
        try:
            assignment = services.renew_lease(item_id=item_id, annotator=request.user)
        except exceptions.LeaseConflict:
            lost.append(item_id)
        else:
            renewed.append({"item_id": item_id, "expires_at": assignment.expires_at.isoformat()})
    return JsonResponse({"renewed": renewed, "lost": lost})


@require_POST
@rule("label")
@json_endpoint
def label_undo(request, slug: str):
    """Undo the annotator's last label in this project; the item comes back with a fresh lease."""
    project = _labeling_project(request, slug)
    annotation = services.undo_last_annotation(project=project, annotator=request.user)
    if annotation is None:
        return JsonResponse(
            {"item": None, "message": "Nothing to undo: no label yet, or it was already reviewed."}
        )
    assignment = selectors_ui.active_assignment(item_id=annotation.item_id, annotator=request.user)
    if assignment is None:  # pragma: no cover - undo always re-leases; be explicit if not
        return _error(409, "The label was undone but the item could not be leased back.")
    return JsonResponse(
        {
            "item": selectors_ui.label_item_payload(assignment=assignment),
            "undone_annotation_id": annotation.pk,
        }
    )


# --- QA --------------------------------------------------------------------------------------
def _qa_context(project: Project, item: Item | None, *, queue=None, **extra) -> dict:
    queue = selectors_ui.qa_queue(project=project) if queue is None else queue
    context = {
        "project": project,
        "queue": queue.items,
        "queue_page": queue,
        "selected": item,
        "labels": list(project.schema.classes.all()),
        # The RFNet helper ships feedback/_verdict.html (it receives `item`); absent, nothing shows.
        "rfnet_verdict_template": _optional_template("feedback/_verdict.html"),
        # The ranking app ships ranking/_similar.html (nearest creatives by its encoder).
        "similar_creatives_template": _optional_template("ranking/_similar.html"),
        **extra,
    }
    if item is not None:
        context.update(selectors_ui.qa_item_detail(item_id=item.pk))
    return context


def _optional_template(name: str):
    from django.template import TemplateDoesNotExist

    try:
        return select_template([name])
    except TemplateDoesNotExist:
        return None


@require_GET
@rule("reviewer")
def qa_projects(request):
    return render(request, "annotation/qa_projects.html", {"projects": selectors_ui.qa_projects()})


@require_GET
@rule("reviewer")
def qa_project(request, slug: str):
    project = _review_project(request, slug)
    item = None
    if request.GET.get("item"):
        try:
            item_id = int(request.GET["item"])
        except ValueError:
            raise Http404("Bad item id.")
        if not 0 < item_id <= limits.MAX_ID:
            raise Http404("Bad item id.")
        item = _project_item(project, item_id)
    queue = selectors_ui.qa_queue(project=project, after=_cursor(request.GET.get("after")))
    if item is None and queue.items:
        item = queue.items[0]
    return render(request, "annotation/qa_project.html", _qa_context(project, item, queue=queue))


def _cursor(value) -> int:
    """`?after=` of the QA queue: an item id; anything else starts at the beginning."""
    try:
        after = int(value or 0)
    except (TypeError, ValueError):
        return 0
    return after if 0 <= after <= limits.MAX_ID else 0


@require_GET
@rule("reviewer")
def qa_item(request, slug: str, item_id: int):
    project = _review_project(request, slug)
    item = _project_item(project, item_id)
    context = _qa_context(project, item)
    if request.htmx:
        return render(request, "annotation/qa_project.html#qa-panel", context)
    return render(request, "annotation/qa_project.html", context)


@require_POST
@rule("review")
def qa_review(request, slug: str, item_id: int):
    """Accept / reject (with a reason; the item goes back to the queue) / relabel, then show the
    next item of the queue."""
    project = _review_project(request, slug, write=True)
    item = _project_item(project, item_id)
    action = request.POST.get("action", "")
    reason = request.POST.get("reason", "").strip()
    label = request.POST.get("label") or None
    flash, error = None, None
    if action not in {"accept", "reject", "relabel"}:
        error = "Choose accept, reject or relabel."
    elif action == "reject" and not reason:
        error = "A reason is required to reject an item."
    elif action == "relabel" and not label:
        error = "Choose the correct label."
    if error is None:
        try:
            services.review_item(
                item_id=item.pk, reviewer=request.user, action=action, reason=reason, label=label
            )
        except exceptions.AnnotationError as exc:
            error = exc.message
        else:
            verbs = {"accept": "Accepted", "reject": "Rejected", "relabel": "Relabeled"}
            flash = f"{verbs[action]} item #{item.pk}."
    if error is not None:
        context = _qa_context(project, item, error=error)
        status = 400
    else:
        # The next pending item after this one; past the end, wrap to the first page.
        queue = selectors_ui.qa_queue(project=project, after=item.pk)
        if not queue.items:
            queue = selectors_ui.qa_queue(project=project)
        following = queue.items[0] if queue.items else None
        context = _qa_context(project, following, queue=queue, flash=flash)
        status = 200
    if request.htmx:
        # 4xx panels are swapped in too (htmx-config meta in qa_project.html).
        response = render(request, "annotation/qa_project.html#qa-panel", context, status=status)
        if following_id := (context["selected"].pk if context["selected"] else None):
            response["HX-Push-Url"] = f"{reverse('qa', args=[slug])}?item={following_id}"
        return response
    if error is not None:
        return render(request, "annotation/qa_project.html", context, status=status)
    target = reverse("qa", args=[slug])
    if context["selected"] is not None:
        target += f"?item={context['selected'].pk}"
    return redirect(target)
