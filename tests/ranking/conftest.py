"""Ranking fixtures: products with creatives that carry manifest ids, and log files."""

from __future__ import annotations

import json

import pytest

from tests.factories import make_creative, make_product


@pytest.fixture(autouse=True)
def _job_work_dir(settings, tmp_path):
    settings.JOBS_WORK_DIR = str(tmp_path / "work")


def catalogue(n_products=2, per_product=3, prefix="P"):
    """{sku: [creative, ...]} with external ids "<sku>-c<i>"."""
    out = {}
    for p in range(n_products):
        product = make_product(sku=f"{prefix}-{p}", category="shoes" if p % 2 else "kitchen")
        out[product.sku] = [
            make_creative(product=product, external_id=f"{product.sku}-c{i}")
            for i in range(per_product)
        ]
    return out


def write_jsonl(path, rows):
    with open(path, "w") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def log_row(day="2026-11-01", segment="young-urban", sku="P-0", creative="P-0-c0", imp=100, clk=5):
    return {
        "day": day,
        "segment": segment,
        "sku": sku,
        "creative": creative,
        "impressions": imp,
        "clicks": clk,
    }
