"""helpers.render: RLE vs pycocotools, overlays, stable colours, output files."""

import json

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from helpers import render
from helpers.errors import InputError


def _dets(masks, ids=None, names=None, scores=None):
    masks = np.asarray(masks, bool)
    n = len(masks)
    xyxy = np.array([render.mask_bbox(m) for m in masks], np.float32).reshape(n, 4)
    d = sv.Detections(
        xyxy=xyxy,
        mask=masks,
        confidence=np.asarray(scores if scores is not None else [0.9] * n, np.float32),
        class_id=np.zeros(n, int),
        tracker_id=None if ids is None else np.asarray(ids, int),
    )
    d.data["class_name"] = np.array(names if names is not None else ["dog"] * n)
    return d


def _random_masks():
    rng = np.random.default_rng(0)
    out = [np.zeros((7, 5), bool), np.ones((7, 5), bool), np.ones((1, 1), bool)]
    out.append(np.zeros((1, 9), bool))
    for h, w, p in [(1, 13, 0.5), (13, 1, 0.5), (31, 17, 0.3), (64, 48, 0.05), (5, 3, 0.9)]:
        out.append(rng.random((h, w)) < p)
    m = np.zeros((40, 30), bool)
    m[0, 0] = True  # first pixel set -> counts start with a 0-length zero-run
    m[10:20, 5:25] = True
    out.append(m)
    return out


def test_rle_round_trip_and_pycocotools():
    from pycocotools import mask as mu

    for m in _random_masks():
        rle = render.mask_to_rle(m)
        assert rle["size"] == list(m.shape)
        assert sum(rle["counts"]) == m.size
        assert all(isinstance(c, int) for c in rle["counts"])
        np.testing.assert_array_equal(render.rle_to_mask(rle), m)
        json.dumps(rle)
        # pycocotools: our uncompressed RLE decodes to the same mask
        coco = mu.frPyObjects(rle, *rle["size"])
        np.testing.assert_array_equal(mu.decode(coco).astype(bool), m)
        # and pycocotools' compressed string decodes with ours
        enc = mu.encode(np.asfortranarray(m.astype(np.uint8)))
        np.testing.assert_array_equal(render.rle_to_mask(enc), m)
        enc_str = {"size": enc["size"], "counts": enc["counts"].decode("ascii")}
        np.testing.assert_array_equal(render.rle_to_mask(enc_str), m)
        assert render.rle_area(rle) == int(mu.area(enc)) == int(m.sum())
        if m.any():
            assert render.rle_bbox(rle) == [int(v) for v in mu.toBbox(enc)]
    m = _random_masks()[-1]
    assert render.mask_to_rle(m)["counts"][0] == 0
    assert render.mask_to_rle(np.zeros((3, 4), bool))["counts"] == [12]
    assert render.mask_to_rle(np.ones((3, 4), bool))["counts"] == [0, 12]


def test_rle_column_major_by_hand():
    m = np.array([[0, 1], [1, 1], [0, 0]], bool)  # columns: [0,1,0], [1,1,0]
    assert render.mask_to_rle(m) == {"size": [3, 2], "counts": [1, 1, 1, 2, 1]}
    with pytest.raises(InputError, match="sum to"):
        render.rle_to_mask({"size": [3, 2], "counts": [1, 1]})
    with pytest.raises(InputError, match="size"):
        render.rle_to_mask({"counts": [6]})


def test_color_for_id_stable():
    assert render.color_for_id(3) == render.color_for_id(3 + len(render.PALETTE))
    assert render.color_for_id(0) != render.color_for_id(1)
    assert all(len(c) == 3 for c in render.PALETTE)


def _scene():
    img = np.full((80, 100, 3), 60, np.uint8)
    img[:, :, 1] = np.arange(100, dtype=np.uint8)[None, :]
    return img


def test_overlay_changes_only_masked_pixels():
    img = _scene()
    m = np.zeros((2, 80, 100), bool)
    m[0, 10:30, 10:40] = True
    m[1, 50:70, 60:90] = True
    d = _dets(m, ids=[5, 9])
    out = render.annotate(img, d, show_boxes=False, show_labels=False, opacity=0.5)
    assert out.shape == img.shape and out.dtype == np.uint8
    union = m.any(0)
    np.testing.assert_array_equal(out[~union], img[~union])
    assert (out[union] != img[union]).any(axis=-1).all()
    # the colour is the id's: blended 50/50 with the image
    c = np.array(render.color_for_id(5))
    expect = np.rint(0.5 * c + 0.5 * img[15, 15].astype(float))
    assert np.abs(out[15, 15].astype(float) - expect).max() <= 1
    img_copy = img.copy()
    full = render.annotate(img, d)  # boxes + labels drawn too; the input is untouched
    np.testing.assert_array_equal(img, img_copy)
    assert not np.array_equal(full, out)
    assert (full[0:2, 95:100] == img[0:2, 95:100]).all()  # far corner untouched
    with pytest.raises(InputError, match="masks_to_size"):
        render.annotate(img[:40], d)


def test_colour_stable_across_orders():
    img = _scene()
    m = np.zeros((2, 80, 100), bool)
    m[0, 10:30, 10:40] = True
    m[1, 50:70, 60:90] = True
    a = render.annotate(img, _dets(m, ids=[5, 9]), show_boxes=False, show_labels=False)
    b = render.annotate(img, _dets(m[::-1], ids=[9, 5]), show_boxes=False, show_labels=False)
    np.testing.assert_array_equal(a, b)
    c = render.annotate(img, _dets(m, ids=[6, 9]), show_boxes=False, show_labels=False)
    assert not np.array_equal(a[15, 15], c[15, 15])  # a different id, a different colour


def test_labels_text():
    m = np.zeros((2, 20, 20), bool)
    m[0, :5, :5] = True
    m[1, 10:, 10:] = True
    d = _dets(m, ids=[3, 7], names=["car", "dog"], scores=[0.871, 0.5])
    assert render.default_labels(d) == ["car #3 0.87", "dog #7 0.50"]
    d.tracker_id = None
    assert render.default_labels(d) == ["car #0 0.87", "dog #1 0.50"]


def test_save_outputs(tmp_path):
    img = _scene()
    m = np.zeros((2, 80, 100), bool)
    m[0, 10:30, 10:40] = True
    m[1, 50:70, 60:90] = True
    d = _dets(m, names=["cat", "cat"], scores=[0.8, 0.6])
    paths = render.save_image_outputs(img, d, tmp_path / "out", "pic", prompt="cat.")
    assert set(paths) == {"mask", "overlay", "json"}
    mask = np.asarray(Image.open(paths["mask"]))
    assert mask.shape == (80, 100) and set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(mask == 255, m.any(0))
    overlay = np.asarray(Image.open(paths["overlay"]))
    assert overlay.shape == img.shape and not np.array_equal(overlay, img)
    doc = json.loads(paths["json"].read_text())
    assert doc["image"] == {"width": 100, "height": 80}
    assert doc["prompt"] == "cat." and doc["num_instances"] == 2 and len(doc["instances"]) == 2
    inst = doc["instances"][0]
    assert inst["label"] == "cat" and inst["score"] == pytest.approx(0.8)
    assert inst["box"] == [10, 10, 40, 30] and inst["area"] == 600
    np.testing.assert_array_equal(render.rle_to_mask(inst["mask"]), m[0])
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_save_outputs_empty(tmp_path):
    img = _scene()
    empty = sv.Detections.empty()
    paths = render.save_image_outputs(img, empty, tmp_path, "none")
    assert not np.asarray(Image.open(paths["mask"])).any()
    np.testing.assert_array_equal(np.asarray(Image.open(paths["overlay"])), img)
    doc = json.loads(paths["json"].read_text())
    assert doc["num_instances"] == 0 and doc["instances"] == [] and "prompt" not in doc
    assert render.detections_to_records(empty) == []


def test_records_without_masks():
    d = sv.Detections(
        xyxy=np.array([[0, 0, 10, 5]], np.float32),
        confidence=np.array([0.5], np.float32),
        class_id=np.array([2]),
    )
    (rec,) = render.detections_to_records(d)
    assert rec["label"] == "2" and rec["area"] == 50 and rec["mask"] is None and rec["id"] == 0


def test_candidates_figure():
    img = _scene()
    masks = np.zeros((3, 80, 100), bool)
    masks[0, :10] = True
    masks[1, :40] = True
    masks[2, :] = True
    fig = render.candidates_figure(img, masks, [0.2, 0.9, 0.5], title="dog")
    axes = fig.get_axes()
    assert len(axes) == 3
    titles = [a.get_title() for a in axes]
    assert "(best)" in titles[1] and "0.900" in titles[1] and "(best)" not in titles[0]
    assert fig._suptitle.get_text() == "dog"
    fig.canvas.draw()  # renders without error
    with pytest.raises(InputError, match="K scores"):
        render.candidates_figure(img, masks, [0.1])
