"""helpers.textseg.mask_metrics on masks whose IoUs are easy to work out by hand."""

import numpy as np
import pytest
from PIL import Image

from helpers.errors import InputError
from helpers.textseg import mask_metrics as mm


def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_mask_iou_by_hand():
    a = _box(10, 10, 0, 10, 0, 4)  # 40 px
    b = _box(10, 10, 0, 10, 2, 6)  # 40 px, overlap 20 -> union 60
    assert mm.mask_iou(a, b) == pytest.approx(20 / 60)
    assert mm.mask_iou(a, a) == 1.0
    assert mm.mask_iou(a, ~a) == 0.0
    empty = np.zeros((10, 10), bool)
    assert mm.mask_iou(empty, empty) == 1.0
    assert mm.mask_iou(empty, a) == 0.0
    assert mm.mask_iou(a.astype(np.uint8) * 255, b.astype(np.uint8) * 7) == pytest.approx(1 / 3)
    with pytest.raises(InputError, match="same size"):
        mm.mask_iou(a, np.zeros((5, 10), bool))


def test_iou_summary_mean_vs_cumulative():
    # image 1: small object, IoU 0 (I=0, U=2); image 2: big object, IoU 0.5 (I=50, U=100)
    p1, g1 = _box(10, 10, 0, 1, 0, 1), _box(10, 10, 5, 6, 5, 6)
    p2, g2 = _box(10, 10, 0, 10, 0, 5), _box(10, 10, 0, 10, 0, 10)
    s = mm.iou_summary([p1, p2], [g1, g2], names=["a", "b"])
    assert s["mean_iou"] == pytest.approx(0.25)
    assert s["cumulative_iou"] == pytest.approx(50 / 102)
    assert s["num_images"] == 2
    assert [r["name"] for r in s["per_image"]] == ["a", "b"]
    assert s["per_image"][1] == {"name": "b", "iou": 0.5, "intersection": 50, "union": 100}
    with pytest.raises(InputError, match="2 ground-truth"):
        mm.iou_summary([p1], [g1, g2])
    with pytest.raises(InputError, match="No mask pairs"):
        mm.iou_summary([], [])


def _save(path, mask, mode="L"):
    arr = mask.astype(np.uint8) * (255 if mode == "L" else 1)
    img = Image.fromarray(arr, "L")
    if mode == "P":
        img = img.convert("P")
    if mode == "RGB":
        img = Image.fromarray(np.stack([arr * 0, arr * 200, arr * 0], -1).astype(np.uint8))
    img.save(path)


def test_score_mask_folders(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    a = _box(8, 8, 0, 8, 0, 4)
    b = _box(8, 8, 0, 8, 2, 6)
    _save(gt / "one.png", a)
    _save(pred / "one_mask.png", b)  # save_image_outputs naming matches "one"
    _save(gt / "two.png", a, mode="P")  # palette index 1 = foreground
    _save(pred / "two.png", a, mode="RGB")  # any non-zero colour = foreground
    _save(gt / "three.png", a)  # no prediction
    _save(pred / "extra.png", a)  # no ground truth
    (pred / "notes.txt").write_text("ignored")
    s = mm.score_mask_folders(pred, gt)
    assert s["num_images"] == 2
    per = {r["name"]: r["iou"] for r in s["per_image"]}
    assert per == {"one": pytest.approx(16 / 48), "two": 1.0}
    assert s["mean_iou"] == pytest.approx((1 / 3 + 1) / 2)
    assert s["cumulative_iou"] == pytest.approx((16 + 32) / (48 + 32))
    assert s["unmatched_pred"] == ["extra"] and s["unmatched_gt"] == ["three"]


def test_score_mask_folders_errors(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    with pytest.raises(InputError, match="does not exist"):
        mm.score_mask_folders(tmp_path / "nope", gt)
    _save(pred / "x.png", np.ones((8, 8), bool))
    _save(gt / "y.png", np.ones((8, 8), bool))
    with pytest.raises(InputError, match="No prediction"):
        mm.score_mask_folders(pred, gt)
    _save(gt / "x.png", np.ones((6, 8), bool))
    with pytest.raises(InputError, match="size mismatch for 'x'"):
        mm.score_mask_folders(pred, gt)
    (gt / "x.png").unlink()
    (gt / "x.png").write_text("not a png")
    with pytest.raises(InputError, match="Could not read mask"):
        mm.score_mask_folders(pred, gt)
