"""Feature extractors on real images: visual (colours, contrast, area, sharpness, saliency with
and without a recorded box), OCR via rapidocr, the VLM extractor on a tiny random local LLaVA."""

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ranking.ml.features import OcrExtractor, VisualExtractor, locate_product
from ranking.ml.vlm import VlmConfig, VlmExtractor, build_tiny_vlm, parse_answer


def _scene(bg=(30, 120, 200), at=(100, 50)):
    product = Image.new("RGBA", (40, 60), (0, 0, 0, 0))
    ImageDraw.Draw(product).ellipse((0, 0, 39, 59), fill=(250, 200, 20, 255))
    creative = Image.new("RGB", (200, 160), bg)
    creative.paste(product, at, product)
    return creative, product


def test_visual_features():
    creative, product = _scene()
    mask, box = locate_product(creative, product)
    assert abs(box[0] - 100) <= 6 and abs(box[1] - 50) <= 6  # found without a recorded box
    v = VisualExtractor().extract(creative, product)
    recorded = VisualExtractor().extract(creative, product, box=(100, 50, 140, 110))
    area = np.pi * 20 * 30 / (200 * 160)
    for values in (v, recorded):
        assert values["product_area"] == pytest.approx(area, rel=0.3)
        assert values["background_b"] == pytest.approx(200 / 255, abs=0.02)
        assert values["dominant_colours"][0]["rgb"] == pytest.approx([30, 120, 200], abs=3)
        assert values["contrast_delta_e"] > 0.5
        assert values["saliency_on_product"] > values["product_area"]  # the product pops out
    low = VisualExtractor().extract(Image.new("RGB", (200, 160), (30, 120, 205)).convert("RGB"))
    assert low["product_area"] == 0 and low["contrast_luma"] == 0
    blurred = creative.filter(ImageFilter.GaussianBlur(3))
    assert VisualExtractor().extract(blurred, product)["sharpness"] < v["sharpness"]


def test_ocr_reads_text():
    img = Image.new("RGB", (320, 120), "white")
    ImageDraw.Draw(img).text((10, 30), "SALE 50%", fill="black", font=ImageFont.load_default(40))
    out = OcrExtractor().extract(img)
    assert out["has_text"] == 1.0 and "SALE" in out["text"]
    assert OcrExtractor().extract(_scene()[0])["has_text"] == 0.0


def test_vlm_answer_schema():
    good = (
        'Sure: {"background_colour": "Blue", "has_logo": false, "promotion": true, '
        '"audience": "young"} done'
    )
    out = parse_answer(good)
    assert out["background_colour"] == "blue" and out["promotion"] == 1.0
    assert out["audience=young"] == 1.0 and out["audience=senior"] == 0.0
    for bad, why in [
        ("no json here", "no JSON object"),
        ('{"background_colour": "red"}', "missing key 'has_logo'"),
        (
            '{"background_colour": "red", "has_logo": "yes", "promotion": true, '
            '"audience": "young"}',
            "has_logo must be true or false",
        ),
        (
            '{"background_colour": "red", "has_logo": true, "promotion": true, "audience": "kids"}',
            "audience must be one of",
        ),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_answer(bad)


def test_vlm_extractor_runs_a_tiny_local_model(tmp_path):
    path = build_tiny_vlm(tmp_path / "tiny-vlm")
    extractor = VlmExtractor(VlmConfig(path=str(path), max_new_tokens=12))
    answer = extractor.answer(_scene()[0])
    assert isinstance(answer, str)
    # A random model's words never make a valid object: the schema check rejects them.
    with pytest.raises(ValueError, match="answer:"):
        extractor.extract(_scene()[0])
