"""helpers.textseg.render: RLE vs pycocotools, overlays, stable colours, output files."""

import json

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from helpers.errors import InputError
from helpers.textseg import render


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


# --------------------------------------------------------------------------- label layout


def _overlapping_pairs(rects):
    r = np.asarray(rects)
    a, b = r[:, None], r[None]
    hit = (a[..., 0] < b[..., 2]) & (b[..., 0] < a[..., 2])
    hit &= (a[..., 1] < b[..., 3]) & (b[..., 1] < a[..., 3])
    return [(i, j) for i, j in zip(*np.nonzero(np.triu(hit, 1)))]


def _inside(rects, w, h):
    r = np.asarray(rects)
    return bool((r[:, :2] >= 0).all() and (r[:, 2] <= w).all() and (r[:, 3] <= h).all())


def test_place_labels_random_layouts():
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(400):
        w, h = (int(v) for v in rng.integers(64, 801, 2))
        n = int(rng.integers(1, 9))
        xy = rng.uniform(-20, [w, h], (n, 2))
        boxes = np.hstack([xy, xy + rng.uniform(2, [w, h], (n, 2))])  # some leave the image
        sizes = np.stack([rng.integers(20, 220, n), rng.integers(10, 34, n)], 1)
        scores = rng.random(n) if rng.random() < 0.5 else None
        rects = render.place_labels(boxes, sizes, (w, h), scores)
        assert rects.shape == (n, 4) and rects.dtype.kind == "i"
        assert _inside(rects, w, h)
        fitted = np.minimum(sizes, (w, h))  # a label larger than the image is cut to it
        np.testing.assert_array_equal(rects[:, 2:] - rects[:, :2], fitted)
        if fitted.prod(1).sum() < 0.25 * w * h:
            checked += 1
            assert not _overlapping_pairs(rects), (w, h, boxes, sizes)
        again = render.place_labels(boxes.copy(), sizes.copy(), (w, h), scores)
        np.testing.assert_array_equal(rects, again)
    assert checked > 200


def test_place_labels_candidates_and_scores():
    size = [[40, 10]]
    place = render.place_labels
    assert place([[50, 50, 150, 100]], size, (200, 200)).tolist() == [[50, 40, 90, 50]]  # above
    assert place([[50, 0, 150, 100]], size, (200, 200)).tolist() == [[50, 0, 90, 10]]  # clamped
    assert place([[180, 50, 250, 90]], size, (200, 200)).tolist() == [[160, 40, 200, 50]]
    two = [[50, 50, 150, 100]] * 2
    rects = place(two, size * 2, (200, 200), scores=[0.2, 0.9])
    assert rects.tolist() == [[50, 50, 90, 60], [50, 40, 90, 50]]  # best score above the box
    # no room anywhere: the image holds one label; the second overlaps at its first candidate
    rects = place(two, size * 2, (40, 10))
    assert rects.tolist() == [[0, 0, 40, 10]] * 2


def _label_scene(w, h):
    img = np.full((h, w, 3), 60, np.uint8)
    img[:, :, 1] = (np.arange(w) % 50)[None, :]  # no palette colour in the background
    return img


def _colour_extents(out, colors):
    """Bounding box of the pixels exactly of each colour (None if there are none)."""
    extents = []
    for c in colors:
        ys, xs = np.nonzero((out == c).all(-1))
        extents.append(None if len(xs) == 0 else [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return extents


def test_annotate_crowded_labels_apart():
    # Six identical boxes at the top edge: supervision's smart_position hid two labels.
    img = _label_scene(320, 240)
    n = 6
    d = sv.Detections(
        xyxy=np.tile(np.array([[32, 0, 160, 72]], np.float32), (n, 1)),
        confidence=np.linspace(0.9, 0.4, n).astype(np.float32),
        class_id=np.zeros(n, int),
    )
    d.data["class_name"] = np.array(["dog"] * n)
    out = render.annotate(img, d, show_boxes=False)
    # Each label (instance colours 0..5) is visible as a whole rectangle, apart from the others.
    extents = _colour_extents(out, [render.color_for_id(i) for i in range(n)])
    assert None not in extents
    assert not _overlapping_pairs(extents) and _inside(extents, 320, 240)
    rects, texts = render.label_layout(img.shape, d)
    assert np.asarray(extents).tolist() == rects.tolist()  # drawn where label_layout says
    assert [t[0] for t in texts] == render.default_labels(d)
    outside = np.ones((240, 320), bool)
    for x0, y0, x1, y1 in rects:
        outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(out[outside], img[outside])
    with pytest.raises(InputError, match="1 labels for 6 detections"):
        render.label_layout(img.shape, d, ["one"])
    with pytest.raises(InputError, match="1 labels for 6 detections"):
        render.annotate(img, d, labels=["one"])


def test_annotate_label_wider_than_image():
    img = _label_scene(64, 48)
    m = np.zeros((1, 48, 64), bool)
    m[0, 20:30, 20:40] = True
    d = _dets(m, ids=[12], names=["a very long label name"], scores=[0.99])
    out = render.annotate(img, d, show_boxes=False, opacity=0.0)
    # The label's background frames its text on all four sides: nothing is cut at the edge.
    ((x0, y0, x1, y1),) = _colour_extents(out, [render.color_for_id(12)])
    label = (out[y0:y1, x0:x1] == render.color_for_id(12)).all(-1)
    assert label[0].all() and label[-1].all() and label[:, 0].all() and label[:, -1].all()
    assert (~label).any()  # and there is text in it
    rects, ((text, scale, _),) = render.label_layout(img.shape, d)
    assert rects.tolist() == [[x0, y0, x1, y1]] and _inside(rects, 64, 48)
    assert text.endswith("..") and text.startswith("a very") and scale >= 0.3
    # with masks and boxes too, only they and the label change pixels
    out = render.annotate(img, d, opacity=0.5)
    keep = ~m[0]
    keep[y0:y1, x0:x1] = False
    keep[18:32, 18:42] = False  # the box outline
    np.testing.assert_array_equal(out[keep], img[keep])
