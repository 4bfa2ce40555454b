"""32 annotators (threads, one HTTP session + token each) against a live server: every submit is
stored exactly once, no item gets more than `overlap` labels, and no item is leased to more
annotators at once than it has free slots."""

import threading
import time
from collections import defaultdict

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token

from annotation import services
from annotation.models import Annotation, Assignment, Item
from generation.models import Creative
from tests.factories import make_product

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

THREADS = 32
CYCLES = 1000  # per overlap setting: 2,000 claim+submit cycles per database in all


def _setup(overlap: int):
    product = make_product()
    n_items = CYCLES // overlap
    creatives = Creative.objects.bulk_create(
        Creative(
            product=product,
            image=f"creatives/c{i}.png",
            sha256=f"{overlap}-{i:060d}",
            width=32,
            height=32,
        )
        for i in range(n_items)
    )
    project = services.create_project(
        name=f"conc{overlap}", slug=f"conc-{overlap}", overlap=overlap
    )
    services.add_creatives_to_project(project=project, creatives=creatives)
    group, _ = Group.objects.get_or_create(name="annotator")
    User = get_user_model()
    users = User.objects.bulk_create(User(username=f"c{overlap}-{i}") for i in range(THREADS))
    group.user_set.add(*users)
    tokens = [Token.objects.create(user=u).key for u in users]
    return project, users, tokens


@pytest.mark.parametrize("overlap", [1, 2])
def test_concurrent_claim_submit(live_server, overlap):
    project, users, tokens = _setup(overlap)
    budget = [CYCLES]
    lock = threading.Lock()
    holders = defaultdict(set)  # item -> annotators currently holding a lease (client view)
    violations, errors, stored = [], [], []
    deadline = time.monotonic() + 120

    def worker(idx):
        s = requests.Session()
        s.headers["Authorization"] = f"Token {tokens[idx]}"
        n = 0
        while time.monotonic() < deadline:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            while True:
                r = s.post(f"{live_server.url}/api/projects/{project.slug}/next/")
                if r.status_code == 200:
                    break
                if r.status_code != 204 or time.monotonic() > deadline:
                    errors.append(("next", r.status_code, r.text[:200]))
                    return
                time.sleep(0.02)  # others hold the last slots; they finish soon
            item_id = r.json()["item_id"]
            with lock:
                holders[item_id].add(idx)
                if len(holders[item_id]) > overlap:
                    violations.append((item_id, sorted(holders[item_id])))
            n += 1
            key = f"{idx}-{n}"
            r = s.post(
                f"{live_server.url}/api/items/{item_id}/annotations/",
                json={"label": "available", "idempotency_key": key, "duration_ms": 5},
            )
            if r.status_code != 201:
                errors.append(("submit", r.status_code, r.text[:200]))
                return
            stored.append((users[idx].pk, item_id, r.json()["annotation_id"]))

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    print(f"overlap={overlap}: {len(stored)} cycles in {elapsed:.1f}s")

    assert not errors, errors[:5]
    assert not violations, violations[:5]
    assert len(stored) == CYCLES
    anns = list(
        Annotation.objects.filter(item__project=project).values_list(
            "annotator_id", "item_id", "id"
        )
    )
    assert sorted(anns) == sorted(stored)  # nothing lost, nothing extra
    per_item = defaultdict(list)
    for annotator_id, item_id, _ in anns:
        per_item[item_id].append(annotator_id)
    assert all(len(v) == len(set(v)) <= overlap for v in per_item.values())
    assert len(per_item) == CYCLES // overlap
    items = Item.objects.filter(project=project)
    assert items.filter(status="done").count() == CYCLES // overlap
    assert all(i.annotation_count == len(per_item[i.pk]) for i in items)
    assert not items.exclude(lease_count=0).exists()
    # Every item was leased to exactly `overlap` annotators (no expiries happened).
    leases = defaultdict(int)
    for item_id in Assignment.objects.filter(project=project).values_list("item_id", flat=True):
        leases[item_id] += 1
    assert set(leases.values()) == {overlap}
