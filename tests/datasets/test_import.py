import io
import json

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from annotation.models import Annotation, AuditEvent, Item, Project
from generation.models import Creative, Product

pytestmark = pytest.mark.django_db


def run_import(path, *args):
    out = io.StringIO()
    err = io.StringIO()
    call_command("import_creatives", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_creates_project_items_and_content_addressed_files(builder):
    path = builder.write([builder.row(i) for i in range(5)])
    out, _ = run_import(path, "--project", "new-proj", "--overlap", "2")
    assert out.startswith("created 5, skipped 0, bad 0")
    project = Project.objects.get(slug="new-proj")
    assert project.overlap == 2
    assert project.schema.classes.count() == 6
    assert Item.objects.filter(project=project, status="open").count() == 5
    assert Product.objects.count() == 3
    creative = Creative.objects.get(external_id="ext-0")
    assert creative.image.name == f"creatives/{creative.sha256[:2]}/{creative.sha256}.png"
    assert default_storage.exists(creative.image.name)
    assert creative.prompt == "prompt 0" and creative.seed == 0 and creative.params == {"steps": 20}
    with default_storage.open(creative.thumbnail.name) as fh:
        assert Image.open(fh).format == "WEBP"
    item = Item.objects.get(creative=creative)
    assert item.external_id == "ext-0"
    assert AuditEvent.objects.filter(action="import", project=project).count() == 1


def test_reimport_is_idempotent(builder):
    path = builder.write([builder.row(i, label="available") for i in range(4)])
    run_import(path, "--project", "p1")
    counts = (Creative.objects.count(), Item.objects.count(), Annotation.objects.count())
    out, _ = run_import(path, "--project", "p1")
    assert out.startswith("created 0, skipped 4, bad 0")
    assert (Creative.objects.count(), Item.objects.count(), Annotation.objects.count()) == counts


def test_label_rows_are_counted_annotations_of_a_non_login_source(builder):
    rows = [
        builder.row(0, label="available"),
        builder.row(1, label="size_mismatch"),
        builder.row(2),
    ]
    path = builder.write(rows)
    run_import(path, "--project", "p2", "--overlap", "2", "--label-source", "vendor-a")
    source = Annotation.objects.first().annotator
    assert source.username == "vendor-a" and not source.has_usable_password()
    labeled = Item.objects.get(external_id="ext-1")
    assert labeled.annotation_count == 1 and labeled.status == "open"
    assert labeled.consensus_label.slug == "size_mismatch"
    assert labeled.votes == {"size_mismatch": 1}
    assert Item.objects.get(external_id="ext-2").annotation_count == 0

    # A second source completes the overlap on the existing items (counters recomputed).
    path_b = builder.write(
        [dict(rows[0], label="available"), dict(rows[1], label="unsuitable")], name="b.jsonl"
    )
    out, _ = run_import(path_b, "--project", "p2", "--label-source", "vendor-b")
    assert "created 0, skipped 2" in out
    agreed = Item.objects.get(external_id="ext-0")
    assert (agreed.annotation_count, agreed.status, agreed.agreement) == (2, "done", 1.0)
    assert agreed.consensus_label.slug == "available"
    assert agreed.votes == {"available": 2}
    tie = Item.objects.get(external_id="ext-1")
    assert tie.status == "done" and tie.consensus_label is None and tie.agreement == 0.5


def test_label_source_must_not_be_a_login_user(builder):
    from tests.factories import make_user

    make_user(None, username="alice")
    path = builder.write([builder.row(0, label="available")])
    with pytest.raises(CommandError, match="login user"):
        run_import(path, "--project", "p3", "--label-source", "alice")
    assert not Project.objects.filter(slug="p3").exists()


def _png16() -> bytes:
    buf = io.BytesIO()
    Image.new("I;16", (32, 32), 40000).save(buf, format="PNG")
    return buf.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    buf = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 30, 30)).save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


def _bomb(builder):
    return builder.image("bomb.png", size=(64, 64))


BAD_KINDS = {
    "missing file": lambda b: {"image": "nope/missing.png"},
    "not an image": lambda b: {"image": b.image("text.png", data=b"hello, not a png")},
    "truncated image": lambda b: {
        "image": b.image("trunc.png", data=(b.root / b.row(99)["image"]).read_bytes()[:60])
    },
    "decompression bomb": lambda b: {"image": _bomb(b)},
    "16-bit greyscale image": lambda b: {"image": b.image("deep.png", data=_png16())},
    "EXIF-rotated image": lambda b: {"image": b.image("turned.jpg", data=_exif_rotated())},
    "unknown label": lambda b: {"label": "gorgeous"},
    "wrong type": lambda b: {"seed": "forty-two"},
    "wrong params type": lambda b: {"params": [1, 2]},
    "missing required": lambda b: {"sku": None},
}


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_bad_row_fails_the_whole_batch(builder, kind, monkeypatch):
    if kind == "decompression bomb":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # 64×64 = 4096 > 2×1500
    rows = [builder.row(0), dict(builder.row(1), **BAD_KINDS[kind](builder)), builder.row(2)]
    path = builder.write(rows)
    with pytest.raises(CommandError) as exc:
        run_import(path, "--project", "bad")
    message = str(exc.value)
    assert str(path) in message and "line 2" in message and "line 1:" not in message
    assert not Project.objects.filter(slug="bad").exists()
    assert Creative.objects.count() == 0 and Product.objects.count() == 0
    assert not default_storage.exists("creatives")


def test_invalid_json_and_non_object_lines(builder):
    path = builder.write([builder.row(0), "{not json", "[1, 2]", builder.row(3)])
    with pytest.raises(CommandError, match=r"2 bad line\(s\) 2, 3: line 2: invalid JSON"):
        run_import(path, "--project", "bad")
    assert Item.objects.count() == 0


def test_new_product_needs_product_image(builder):
    row = builder.row(0, sku="SKU-NEW")
    del row["product_image"]
    with pytest.raises(CommandError, match="needs a 'product_image'"):
        run_import(builder.write([row]), "--project", "bad")


def test_skip_bad_imports_good_rows_and_reports(builder):
    rows = [builder.row(0), dict(builder.row(1), label="nope"), "oops", builder.row(3)]
    out, err = run_import(builder.write(rows), "--project", "sb", "--skip-bad")
    assert out.startswith("created 2, skipped 0, bad 2")
    assert "line 2: unknown label 'nope'" in err and "line 3: invalid JSON" in err
    assert Item.objects.filter(project__slug="sb").count() == 2


def test_images_root_and_duplicates_in_manifest(builder, tmp_path):
    rows = [builder.row(0), builder.row(1)]
    rows.append(dict(rows[0], id="dup"))  # same image twice: one item
    manifest = tmp_path / "elsewhere" / "m.jsonl"
    manifest.parent.mkdir()
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    out, _ = run_import(manifest, "--project", "ir", "--images-root", str(builder.root))
    assert out.startswith("created 2, skipped 1, bad 0")


def test_precomputed_hash_of_stored_content_skips_reading(builder):
    row = builder.row(0)
    run_import(builder.write([row]), "--project", "pre")
    creative = Creative.objects.get()
    # The same content under another path, with its hash: trusted, the file is not read again.
    fast = dict(
        row,
        image="gone/elsewhere.png",
        sha256=creative.sha256,
        width=creative.width,
        height=creative.height,
    )
    out, _ = run_import(builder.write([fast], name="fast.jsonl"), "--project", "pre2")
    assert out.startswith("created 1, skipped 0, bad 0")
    assert Item.objects.get(project__slug="pre2").creative == creative
    # A wrong claimed hash on a file that must be read is refused.
    wrong = dict(builder.row(5), sha256="0" * 64, width=32, height=32)
    with pytest.raises(CommandError, match="sha256 does not match"):
        run_import(builder.write([wrong], name="wrong.jsonl"), "--project", "pre3")


def test_process_pool_path(builder):
    rows = [builder.row(i) for i in range(70)]  # ≥ 64 files: hashed in the worker pool
    out, _ = run_import(builder.write(rows), "--project", "pool", "--workers", "2")
    assert out.startswith("created 70, skipped 0, bad 0")
    assert Creative.objects.exclude(thumbnail="").count() == 70


def test_insert_rows_ignores_conflicts_and_fills_defaults():
    from django.utils import timezone

    from core.bulk import insert_rows

    now = timezone.now()
    fields = ["sku", "image", "sha256", "created_at"]
    insert_rows(Product, fields, [("S1", "products/a.png", "a" * 64, now)])
    insert_rows(
        Product,
        fields,
        [("S1", "products/b.png", "b" * 64, now), ("S2", "products/c.png", "c" * 64, now)],
        ignore_conflicts=True,
    )
    assert dict(Product.objects.values_list("sku", "sha256")) == {"S1": "a" * 64, "S2": "c" * 64}
    assert Product.objects.get(sku="S2").title == ""  # default of a column not given


def test_parse_manifest_fast_and_slow_paths():
    from annotation.importing import parse_manifest

    slugs = {"available"}
    lines = [
        b'{"image": "a.png", "sku": "S", "label": "available"}\n',
        b"\n",  # blank: ignored
        b'{"image": "b.png", "sku": "S", "params": {"cfg": NaN}}\n',  # stdlib accepts NaN
        b'{"image": "c.png", "sku": "S", "seed": 99999999999999999999}\n',  # beyond 64 bits
        b"\xff\xfe not utf-8\n",
        b'{"image": "d.png", "sku": "S", "sha256": "ABC"}\n',
        '{"image": "e.png", "sku": "S", "width": 0, "title": 5}',  # str lines work too
    ]
    rows, errors = parse_manifest(lines, slugs)
    assert [r.line for r in rows] == [1, 3]
    assert errors == [
        (4, "field 'seed' must be an integer (64-bit) or null"),
        (5, "line is not valid UTF-8"),
        (6, "field 'sha256' must be 64 lowercase hex digits"),
        (7, "field 'title' must be a string, got int"),
        (7, "field 'width' must be a positive integer"),
    ]


def test_path_resolver_allowed_roots(tmp_path):
    from annotation.importing import path_resolver

    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "data2").mkdir()
    resolve = path_resolver(root, [root])
    assert resolve("sub/x.png") == str(root / "sub" / "x.png")
    for outside in ("../data2/x.png", str(tmp_path / "data2" / "x.png"), "/etc/passwd"):
        with pytest.raises(ValueError, match="outside the allowed import roots"):
            resolve(outside)
    (root / "link").symlink_to(tmp_path / "data2")
    with pytest.raises(ValueError, match="outside"):
        resolve("link/x.png")  # a symlink out of the root is refused
    assert path_resolver(root)("../data2/x.png").endswith("data2/x.png")  # CLI: no roots


def test_import_reports_phase_timings_and_commit_in_db_time(builder):
    from annotation.importing import import_manifest_file

    path = builder.write([builder.row(i, label="available") for i in range(3)])
    result = import_manifest_file(path, project_slug="timed")
    timings = result.as_dict()["timings"]
    assert set(timings) == {"parse", "validate", "store", "write", "commit"}
    assert result.commit_seconds > 0
    assert result.db_seconds >= result.commit_seconds
    out, _ = run_import(path, "--project", "timed", "-v", "2")
    assert "timings: parse" in out


def test_family_is_imported_and_defaults_to_the_sku(builder):
    rows = [
        builder.row(0, sku="MUG-RED", family="MUG"),
        builder.row(1, sku="MUG-BLUE", family="MUG"),
    ]
    rows.append(builder.row(2, sku="LAMP-1"))
    run_import(builder.write(rows), "--project", "fam")
    assert Product.objects.get(sku="MUG-RED").family == "MUG"
    assert Product.objects.get(sku="MUG-BLUE").family == "MUG"
    assert Product.objects.get(sku="LAMP-1").family == "LAMP-1"
