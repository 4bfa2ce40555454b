"""import_impressions: formats, bad rows by line with nothing written, idempotency per key."""

import csv

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from ranking.importing import ImpressionImportError, import_impressions
from ranking.models import ImpressionLog, Segment

from .conftest import catalogue, log_row, write_jsonl

pytestmark = pytest.mark.django_db


def test_import_jsonl_creates_segments_and_logs(tmp_path):
    cat = catalogue()
    rows = [
        {**log_row(creative=c.external_id, sku=sku, imp=100 + i, clk=i), "day": "2026-11-02"}
        for sku, cs in cat.items()
        for i, c in enumerate(cs)
    ]
    rows[0]["segment_features"] = {"age": 24, "device": "mobile"}
    result = import_impressions(path=write_jsonl(tmp_path / "a.jsonl", rows))
    assert result.rows == 6 and result.segments_created == 1
    seg = Segment.objects.get(slug="young-urban")
    assert seg.features == {"age": 24, "device": "mobile"}
    log = ImpressionLog.objects.get(creative=cat["P-1"][2])
    assert (str(log.day), log.impressions, log.clicks, log.segment_id) == (
        "2026-11-02",
        102,
        2,
        seg.pk,
    )


def test_reimport_replaces_counts_per_key(tmp_path):
    cat = catalogue(1, 2)
    first = [log_row(creative="P-0-c0", imp=10, clk=1), log_row(creative="P-0-c1", imp=20, clk=2)]
    import_impressions(path=write_jsonl(tmp_path / "a.jsonl", first))
    import_impressions(path=write_jsonl(tmp_path / "a.jsonl", first))
    assert ImpressionLog.objects.count() == 2
    # A corrected file for one key, plus a new day: one row replaced, one added.
    second = [log_row(creative="P-0-c0", imp=12, clk=3), log_row(day="2026-11-03")]
    import_impressions(path=write_jsonl(tmp_path / "b.jsonl", second))
    assert ImpressionLog.objects.count() == 3
    assert ImpressionLog.objects.get(creative=cat["P-0"][0], day="2026-11-01").clicks == 3
    assert ImpressionLog.objects.get(creative=cat["P-0"][1]).clicks == 2


def test_bad_rows_are_reported_by_line_and_nothing_is_written(tmp_path):
    catalogue(1, 2)
    rows = [
        log_row(),  # 1 ok
        "{not json",  # 2
        log_row(clk=101),  # 3 clicks > impressions
        {**log_row(), "day": "2026-13-01"},  # 4
        log_row(creative="nope"),  # 5 unknown creative
        {**log_row(creative="P-0-c1"), "impressions": -1},  # 6
        {**log_row(creative="P-0-c1"), "colour": "red"},  # 7 unknown field
    ]
    with pytest.raises(ImpressionImportError) as exc:
        import_impressions(path=write_jsonl(tmp_path / "bad.jsonl", rows))
    assert [line for line, _ in exc.value.errors] == [2, 3, 4, 6, 7]
    assert "clicks (101) exceed impressions (100)" in str(exc.value)
    assert not ImpressionLog.objects.exists() and not Segment.objects.exists()
    # Field-valid rows: unknown creatives and repeated keys are found in the database pass.
    rows = [log_row(), log_row(creative="nope"), log_row(clk=2), log_row(sku="P-9")]
    with pytest.raises(ImpressionImportError) as exc:
        import_impressions(path=write_jsonl(tmp_path / "bad2.jsonl", rows))
    messages = dict(exc.value.errors)
    assert set(messages) == {2, 3, 4}
    assert "no creative with manifest id 'nope'" in messages[2]
    assert "repeats the (day, segment, creative) of line 1" in messages[3]
    assert not ImpressionLog.objects.exists() and not Segment.objects.exists()


def test_csv_and_parquet_and_command(tmp_path):
    catalogue(1, 2)
    path = tmp_path / "logs.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*log_row(), "segment_features"])
        w.writeheader()
        w.writerow({**log_row(), "segment_features": '{"age": 30}'})
        w.writerow(log_row(creative="P-0-c1", clk="x"))
    with pytest.raises(CommandError, match="line 3: clicks must be a non-negative integer"):
        call_command("import_impressions", str(path))
    assert not ImpressionLog.objects.exists()
    table = pa.table(
        {k: [v, v] for k, v in log_row().items() if k != "creative"}
        | {"creative": ["P-0-c0", "P-0-c1"]}
    )
    pq.write_table(table, tmp_path / "logs.parquet")
    call_command("import_impressions", str(tmp_path / "logs.parquet"))
    assert ImpressionLog.objects.count() == 2
    with pytest.raises(CommandError, match="format"):
        call_command("import_impressions", str(tmp_path / "logs.txt"), "--format", "xml")
