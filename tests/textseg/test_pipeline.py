"""The image pipeline end to end with a toy Grounding DINO and a random SAM 2 tiny (CPU)."""

import json

import numpy as np
import pytest
from PIL import Image

from helpers.errors import InputError
from helpers.textseg.detect import random_grounding_dino
from helpers.textseg.folder_eval import evaluate_folder
from helpers.textseg.folder_run import segment_folder
from helpers.textseg.mask_metrics import mask_iou
from helpers.textseg.pipeline import segment_image
from helpers.textseg.segment import load_segmenter, random_clip

LOOSE = {"box_threshold": 0.0, "text_threshold": 0.0}


@pytest.fixture(scope="module")
def models():
    det = random_grounding_dino(["dog", "red car"], size="toy", device="cpu")
    seg = load_segmenter("tiny", "sam2", device="cpu", random_weights=True, image_size=128)
    return det, seg


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _check(res, H, W):
    d = res.detections
    n = len(d)
    assert res.image.shape == (H, W, 3)
    assert d.mask.shape == (n, H, W) and d.mask.dtype == bool
    assert d.xyxy.shape == (n, 4) and d.confidence.shape == (n,)
    assert d.data["mask_score"].shape == (n,)
    if n:
        assert d.xyxy.min() >= 0 and d.xyxy[:, [0, 2]].max() <= W and d.xyxy[:, [1, 3]].max() <= H
    assert {"load", "detect", "total"} <= set(res.timings)
    assert all(v >= 0 for v in res.timings.values())


def test_segment_image_non_square(models):
    det, seg = models
    res = segment_image(_img(90, 150), "Dog, red car", det, seg, **LOOSE)
    assert len(res.detections) > 0
    _check(res, 90, 150)
    assert res.prompt == "dog. red car."
    assert set(res.detections.data["class_name"]) <= {"dog", "red car"}
    assert "segment" in res.timings and "clean" in res.timings


def test_segment_large_image_downscaled(models):
    det, seg = models
    res = segment_image(_img(2000, 3000), "dog", det, seg, max_side=256, nms_iou=0.1, **LOOSE)
    assert len(res.detections) > 0
    _check(res, 2000, 3000)
    assert res.scale == pytest.approx(256 / 3000, rel=1e-3)
    assert res.detections.xyxy.max() > 256  # boxes are in full-size pixels


def test_nothing_detected_is_empty_result(models):
    det, seg = models
    res = segment_image(_img(64, 80), "dog", det, seg, box_threshold=1.0, fallback=())
    assert len(res.detections) == 0 and res.produced_by == "none"
    _check(res, 64, 80)
    assert "segment" not in res.timings


def test_source_path_and_multimask_with_clip(models, tmp_path):
    det, seg = models
    path = tmp_path / "a.png"
    Image.fromarray(_img(70, 110)).save(path)
    res = segment_image(path, "dog", det, seg, multimask=True, clean=False,
                        clip=random_clip(device="cpu"), nms_iou=0.1, **LOOSE)  # fmt: skip
    _check(res, 70, 110)
    cm, cs = res.candidates
    n = len(res.detections)
    assert cm.shape == (n, 3, 70, 110) and cs.shape == (n, 3)
    assert "rescore" in res.timings
    for i in range(n):  # each kept mask is one of its box's candidates
        assert any((res.detections.mask[i] == cm[i, k]).all() for k in range(3))


def test_bad_prompt_and_source(models, tmp_path):
    det, seg = models
    with pytest.raises(InputError, match="type what to segment"):
        segment_image(_img(40, 40), " ; ", det, seg)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError):
        segment_image(bad, "dog", det, seg)


def test_segment_folder_resumes_and_survives_bad_file(models, tmp_path):
    det, seg = models
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(_img(60, 90, 1)).save(src / "b.png")
    Image.fromarray(_img(80, 50, 2)).save(src / "a.jpg")
    (src / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (src / "notes.txt").write_text("not an image")
    s1 = segment_folder(src, out, "dog", det, seg, nms_iou=0.1, **LOOSE)
    assert s1["done"] == 2 and s1["skipped"] == 0
    assert [f["file"] for f in s1["failed"]] == ["c.jpg"] and s1["failed"][0]["error"]
    assert [f["file"] for f in s1["files"]] == ["a.jpg", "b.png", "c.jpg"]
    for stem, (h, w) in {"a": (80, 50), "b": (60, 90)}.items():
        doc = json.loads((out / f"{stem}.json").read_text())
        assert doc["image"] == {"width": w, "height": h} and doc["prompt"] == "dog."
        assert doc["num_instances"] == len(doc["instances"]) > 0
        assert Image.open(out / f"{stem}_mask.png").size == (w, h)
        assert (out / f"{stem}_overlay.png").exists()
    s2 = segment_folder(src, out, "dog", det, seg, nms_iou=0.1, **LOOSE)  # same settings
    assert s2["done"] == 0 and s2["skipped"] == 2 and len(s2["failed"]) == 1
    with pytest.raises(InputError, match="does not exist"):
        segment_folder(tmp_path / "nope", out, "dog", det, seg)


def test_evaluate_folder(models, tmp_path):
    det, seg = models
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    imgs = {"x": _img(50, 70, 3), "y": _img(64, 48, 4)}
    gts = {}
    for stem, im in imgs.items():
        Image.fromarray(im).save(tmp_path / "images" / f"{stem}.png")
        gt = np.zeros(im.shape[:2], bool)
        gt[10:40, 10:40] = True
        gts[stem] = gt
        Image.fromarray(gt.astype(np.uint8) * 255).save(tmp_path / "masks" / f"{stem}.png")
    Image.fromarray(_img(30, 30)).save(tmp_path / "images" / "lonely.png")
    summary = evaluate_folder(tmp_path, "dog", det, seg, nms_iou=0.1, **LOOSE)
    assert [r["name"] for r in summary["per_image"]] == ["x", "y"]
    assert summary["unmatched_images"] == ["lonely"]
    # same models, same images: the per-image IoU equals one computed by hand
    res = segment_image(imgs["x"], "dog", det, seg, nms_iou=0.1, **LOOSE)
    pred = res.detections.mask.any(0) if len(res.detections) else np.zeros((50, 70), bool)
    assert summary["per_image"][0]["iou"] == pytest.approx(mask_iou(pred, gts["x"]))
    assert 0.0 <= summary["mean_iou"] <= 1.0
    with pytest.raises(InputError, match="masks"):
        evaluate_folder(tmp_path / "images", "dog", det, seg)
