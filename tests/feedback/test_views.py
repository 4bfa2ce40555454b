import numpy as np
import pytest
from django.template import Context, Template
from django.test import Client, RequestFactory

from annotation.models import Item
from core.roles import ANNOTATOR, ML_ENGINEER, QA
from feedback import services
from tests.factories import PASSWORD, make_user

from .conftest import RF1M


def login(role):
    client = Client()
    user = make_user(role)
    assert client.login(username=user.username, password=PASSWORD)
    return client


def probs_for(label: str, p: float) -> list[float]:
    rest = (1 - p) / 5
    return [p if slug == label else rest for slug in RF1M]


@pytest.fixture
def active(register):
    model = register()
    return services.promote_model(model=model)


def test_model_pages(active, register):
    other = register()
    qa = login(QA)
    listing = qa.get("/feedback/models/")
    assert listing.status_code == 200 and active.name.encode() in listing.content
    detail = qa.get(f"/feedback/models/{active.name}/")
    assert detail.status_code == 200
    body = detail.content.decode()
    assert body.count("<svg") >= 3  # confusion, calibration, training curves
    assert "Promote to active" not in body  # QA reads only
    compare = qa.get(f"/feedback/compare/?a={active.name}&b={other.name}")
    assert compare.status_code == 200 and other.name in compare.content.decode()
    assert login(ANNOTATOR).get("/feedback/models/").status_code == 403
    assert Client().get("/feedback/models/").status_code == 302  # to the login page


def test_ml_engineer_promotes_from_the_page(active, register):
    other = register()
    ml = login(ML_ENGINEER)
    assert "Promote to active" in ml.get(f"/feedback/models/{other.name}/").content.decode()
    response = ml.post(f"/feedback/models/{other.name}/promote/")
    assert response.status_code == 302
    other.refresh_from_db()
    active.refresh_from_db()
    assert (other.status, active.status) == ("active", "retired")
    assert login(QA).post(f"/feedback/models/{active.name}/promote/").status_code == 403


def test_disagreements_most_confident_first(active, labeled_project):
    project, creatives, labels = labeled_project
    # creatives[i] carries the human label RF1M[i]; RFNet says "available" for the first three.
    rows = [probs_for("available", 0.9), probs_for("available", 0.6), probs_for("available", 0.95)]
    rows += [probs_for(labels[c.pk], 0.8) for c in creatives[3:]]
    services.store_scores(
        model=active, creative_ids=[c.pk for c in creatives], probs=np.array(rows)
    )
    response = login(QA).get(f"/feedback/disagreements/?project={project.slug}")
    assert response.status_code == 200
    items = response.context["rows"]
    assert [r["item"].creative_id for r in items] == [creatives[2].pk, creatives[1].pk]
    assert items[0]["human"] == "space_mismatch" and items[0]["predicted"] == "available"
    assert (
        login(ANNOTATOR).get(f"/feedback/disagreements/?project={project.slug}").status_code == 403
    )


def test_verdict_tag_is_for_qa_only(active, labeled_project):
    project, creatives, labels = labeled_project
    services.store_scores(
        model=active, creative_ids=[creatives[1].pk], probs=np.array([probs_for("available", 0.7)])
    )
    item = Item.objects.get(project=project, creative=creatives[1])
    template = Template("{% load feedback_tags %}{% rfnet_verdict item %}")
    request = RequestFactory().get("/")
    request.user = make_user(QA)
    html = template.render(Context({"item": item, "request": request}))
    assert "rfnet-verdict-card" in html and "available" in html and "disagrees" in html
    request.user = make_user(ANNOTATOR)
    assert "rfnet-verdict-card" not in template.render(Context({"item": item, "request": request}))


def test_uncertainty_ordering_sets_item_priority(register, rf1m_schema):
    from annotation import services as annotation_services
    from tests.factories import make_creatives

    project = annotation_services.create_project(
        name="Unc", slug="unc", ordering="uncertainty", qa_sample_rate=0.0
    )
    creatives = make_creatives(3)
    annotation_services.add_creatives_to_project(project=project, creatives=creatives)
    model = register()
    # creatives[1] is the most uncertain (uniform), creatives[0] the most certain.
    probs = np.array([probs_for("available", 0.99), [1 / 6] * 6, probs_for("unsuitable", 0.5)])
    services.store_scores(model=model, creative_ids=[c.pk for c in creatives], probs=probs)
    before = dict(Item.objects.filter(project=project).values_list("creative_id", "priority"))
    services.promote_model(model=model)  # the active model now drives the queue order
    after = dict(Item.objects.filter(project=project).values_list("creative_id", "priority"))
    assert after != before
    assert after[creatives[1].pk] == pytest.approx(0.0, abs=1e-6)
    assert after[creatives[1].pk] < after[creatives[2].pk] < after[creatives[0].pk]
    first = annotation_services.claim_next_item(project=project, annotator=make_user(ANNOTATOR))
    assert first.item.creative_id == creatives[1].pk


def test_disagreements_are_paged_in_sql(active, rf1m_schema, django_assert_max_num_queries):
    """120 disagreements: pages of 50 from one SQL query each (no COUNT), most confident first
    across pages; a bad page number shows a page instead of an error."""
    from annotation import services as annotation_services
    from annotation.models import LabelClass
    from tests.factories import make_creatives

    project = annotation_services.create_project(name="Paged", slug="paged")
    creatives = make_creatives(121)
    annotation_services.add_creatives_to_project(project=project, creatives=creatives)
    unsuitable = LabelClass.objects.get(schema=project.schema, slug="unsuitable")
    # Test setup only: consensus written directly (the services' path is covered elsewhere).
    Item.objects.filter(project=project).update(consensus_label=unsuitable, status="done")
    # RFNet says "available" with confidence 0.30 .. 0.89 for 120 of them; the last agrees.
    rows = [probs_for("available", 0.3 + i * 0.005) for i in range(120)]
    rows.append(probs_for("unsuitable", 0.9))
    services.store_scores(
        model=active, creative_ids=[c.pk for c in creatives], probs=np.array(rows)
    )

    qa = login(QA)
    url = f"/feedback/disagreements/?project={project.slug}"
    with django_assert_max_num_queries(12):
        first = qa.get(url)
    body = first.content.decode()
    assert "Items 1–50" in body and "page 1" in body and "page=2" in body
    seen = []
    for page in (1, 2, 3):
        response = qa.get(f"{url}&page={page}")
        seen += [(r["confidence"], r["item"].creative_id) for r in response.context["rows"]]
    assert len(seen) == 120 and len({c for _, c in seen}) == 120
    assert [c for c, _ in seen] == sorted((c for c, _ in seen), reverse=True)
    assert seen[0][1] == creatives[119].pk and round(seen[0][0], 3) == 0.895
    assert creatives[120].pk not in {c for _, c in seen}  # RFNet agrees with the humans there
    last = qa.get(f"{url}&page=3").content.decode()
    assert "Items 101–120" in last and "page=4" not in last and "page=2" in last
    assert "No more disagreements" in qa.get(f"{url}&page=9").content.decode()
    for bad in ("0", "x", "99999999999999999999999"):
        response = qa.get(f"{url}&page={bad}")
        assert response.status_code == 200 and "Items 1–50" in response.content.decode()
