"""Prompt normalization and Grounding DINO / OWLv2 detection with random weights (CPU, offline)."""

import numpy as np
import pytest
import supervision as sv

from helpers.errors import InputError
from helpers.textseg.detect import (
    DETECTORS,
    detect,
    load_detector,
    match_phrase,
    normalize_prompt,
    prompt_phrases,
    random_grounding_dino,
    random_owlv2,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Car, the dog on the left", "car. the dog on the left."),
        ("dog. person.", "dog. person."),
        ("  Cat ;dog\nRed  BALL  ", "cat. dog. red ball."),
        ("car..,;  ,bird", "car. bird."),
        ("one thing", "one thing."),
    ],
)
def test_normalize_prompt(text, expected):
    assert normalize_prompt(text) == expected


def test_prompt_phrases():
    assert prompt_phrases("A cat, a DOG.") == ["a cat", "a dog"]


@pytest.mark.parametrize("bad", ["", "   ", " . , ; \n", None])
def test_empty_prompt_is_input_error(bad):
    with pytest.raises(InputError, match="type what to segment"):
        normalize_prompt(bad)


def test_match_phrase():
    phrases = ["red car", "dog", "the dog on the left"]
    assert match_phrase("dog", phrases) == 1
    assert match_phrase("red", phrases) == 0
    assert match_phrase("left dog", phrases) == 2
    assert match_phrase("", phrases) is None
    assert match_phrase("zebra", phrases) is None


def test_unknown_detector_lists_names():
    with pytest.raises(InputError, match="grounding-dino-tiny"):
        load_detector("yolo")


def test_unfetchable_weights_are_input_error(monkeypatch):
    # a repo that exists nowhere: fails offline and online alike, never a library traceback
    monkeypatch.setitem(
        DETECTORS, "grounding-dino-tiny", ("grounding-dino", "no-such-org/no-model")
    )
    with pytest.raises(InputError, match="could not be fetched"):
        load_detector("grounding-dino-tiny", device="cpu")


def test_unknown_random_size():
    with pytest.raises(InputError, match="toy"):
        random_grounding_dino(size="huge")


@pytest.fixture(scope="module")
def gdino():
    return random_grounding_dino(["red car", "dog"], size="toy", device="cpu")


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (90, 150, 3), dtype=np.uint8)


def _check_valid(d, H, W, phrases):
    assert isinstance(d, sv.Detections)
    n = len(d)
    assert d.xyxy.shape == (n, 4) and d.xyxy.dtype == np.float32
    assert d.confidence.shape == (n,) and d.confidence.dtype == np.float32
    assert d.class_id.shape == (n,)
    assert len(d.data["class_name"]) == n
    if n:
        assert ((d.confidence >= 0) & (d.confidence <= 1)).all()
        assert (d.xyxy[:, 0] <= d.xyxy[:, 2]).all() and (d.xyxy[:, 1] <= d.xyxy[:, 3]).all()
        assert d.xyxy[:, [0, 2]].max() <= W and d.xyxy[:, [1, 3]].max() <= H
        assert d.xyxy.min() >= 0
        for cid, name in zip(d.class_id, d.data["class_name"]):
            if cid < len(phrases):
                assert name == phrases[cid]


def test_random_gdino_detect(gdino, image):
    d = detect(gdino, image, "Red car, dog", box_threshold=0.0, text_threshold=0.0)
    assert len(d) > 0
    _check_valid(d, 90, 150, ["red car", "dog"])
    assert set(d.data["class_name"]) <= {"red car", "dog"}


def test_downscaled_boxes_map_to_full_size(gdino):
    big = np.random.default_rng(1).integers(0, 255, (400, 640, 3), dtype=np.uint8)
    d = detect(gdino, big, "dog", box_threshold=0.0, text_threshold=0.0, max_side=128)
    assert len(d) > 0
    _check_valid(d, 400, 640, ["dog"])
    # random boxes spread over the image: in full-size coordinates they exceed the 128 px copy
    assert d.xyxy.max() > 128


def test_nms_removes_duplicates(gdino, image):
    loose = detect(gdino, image, "dog", box_threshold=0.0, text_threshold=0.0, nms_iou=1.0)
    tight = detect(gdino, image, "dog", box_threshold=0.0, text_threshold=0.0, nms_iou=0.0)
    assert len(loose) > 1  # every query of the random model passes threshold 0
    assert len(tight) < len(loose)  # overlapping random boxes get merged
    if len(tight) > 1:  # nms_iou=0: no two kept boxes of one label may overlap at all
        import torch
        from torchvision.ops import box_iou

        iou = box_iou(torch.from_numpy(tight.xyxy), torch.from_numpy(tight.xyxy))
        iou.fill_diagonal_(0)
        assert float(iou.max()) == 0.0


def test_threshold_one_gives_empty_not_error(gdino, image):
    d = detect(gdino, image, "dog", box_threshold=1.0)
    assert len(d) == 0
    assert d.xyxy.shape == (0, 4) and d.confidence.shape == (0,)
    assert d.data["class_name"].shape == (0,)


@pytest.mark.parametrize("kw", [{"box_threshold": 1.5}, {"box_threshold": -0.1},
                                {"text_threshold": 2}, {"box_threshold": float("nan")}])  # fmt: skip
def test_threshold_out_of_range(gdino, image, kw):
    with pytest.raises(InputError, match="must be"):
        detect(gdino, image, "dog", **kw)


def test_detect_bad_inputs(gdino, image):
    with pytest.raises(InputError, match="type what to segment"):
        detect(gdino, image, " , ")
    with pytest.raises(InputError, match="HxWx3"):
        detect(gdino, image[..., 0], "dog")


def test_random_owlv2_detect(image):
    owl = random_owlv2(device="cpu")
    d = detect(owl, image, "red car. dog", box_threshold=0.0)
    assert len(d) > 0
    _check_valid(d, 90, 150, ["red car", "dog"])
    assert set(d.class_id.tolist()) <= {0, 1}
    assert len(detect(owl, image, "dog", box_threshold=1.0)) == 0


def test_grounding_dino_equals_the_documented_usage(gdino, image):
    """transformers' Grounding DINO example on the same random-weight model and image:
    processor(images, text) -> model -> post_process_grounded_object_detection(threshold,
    text_threshold, target_sizes). Ours: the same boxes (clipped to the image) and scores."""
    import torch

    text, box_t, text_t = "red car. dog.", 0.2, 0.2
    inputs = gdino.processor(images=image, text=text, return_tensors="pt")
    with torch.no_grad():
        outputs = gdino.model(**inputs)
    res = gdino.processor.post_process_grounded_object_detection(
        outputs, inputs.input_ids, threshold=box_t, text_threshold=text_t,
        target_sizes=[image.shape[:2]],
    )[0]  # fmt: skip
    H, W = image.shape[:2]
    want = res["boxes"].numpy().copy()
    want[:, [0, 2]] = want[:, [0, 2]].clip(0, W)
    want[:, [1, 3]] = want[:, [1, 3]].clip(0, H)
    got = detect(gdino, image, "red car. dog", box_threshold=box_t, text_threshold=text_t,
                 nms_iou=1.0, max_side=None)  # fmt: skip
    assert len(got) == len(want) > 0
    order_w = np.argsort(-res["scores"].numpy(), kind="stable")
    order_g = np.argsort(-got.confidence, kind="stable")
    np.testing.assert_allclose(got.confidence[order_g], res["scores"].numpy()[order_w], rtol=1e-6)
    np.testing.assert_allclose(got.xyxy[order_g], want[order_w], rtol=1e-5, atol=1e-4)


@pytest.fixture(scope="module")
def owl():
    """Random OWLv2 whose box head is shrunk 100x: at its random init (weights of std ~1) the
    box head saturates the sigmoid, so every box is a 0/1-coordinate sliver. Shrunk, the boxes
    are the grid-anchored boxes (box_bias) plus a little noise: distinct, with positive area,
    some reaching past the image into OWLv2's square padding (so clipping is exercised)."""
    import torch

    d = random_owlv2(device="cpu")
    with torch.no_grad():
        d.model.box_head.dense2.weight.mul_(0.01)
    return d


def _same_detections(got, boxes, scores, labels, names):
    """``got`` (sv.Detections) holds exactly these boxes/scores/labels/names, in any order."""
    want_order = np.lexsort((*boxes.T[::-1], -scores))
    got_order = np.lexsort((*got.xyxy.T[::-1], -got.confidence))
    assert len(got) == len(scores) >= 2
    np.testing.assert_array_equal(got.confidence[got_order], scores[want_order])
    np.testing.assert_array_equal(got.class_id[got_order], labels[want_order])
    assert got.data["class_name"][got_order].tolist() == [names[i] for i in want_order]
    np.testing.assert_allclose(got.xyxy[got_order], boxes[want_order], rtol=0, atol=1e-3)


@pytest.mark.parametrize("at", ["just below the 12th score", "at the 13th score"])
def test_owlv2_equals_the_documented_usage(owl, image, at):
    """transformers' Owlv2ForObjectDetection example on the same random-weight model, image and
    phrases: processor(text=[phrases], images=image) -> model(**inputs) ->
    post_process_grounded_object_detection(threshold, target_sizes=[(H, W)], text_labels).

    Ours: ``detect(owl, image, "red car. dog", box_threshold=...)`` (90x150 px: no downscale).
    Compared, sorted by (score, box): scores (exactly), class ids (= the documented ``labels``),
    class names (= ``text_labels``) and boxes (atol 1e-3 px) after the one step the example
    lacks and detect() documents, clipping to the image (OWLv2 predicts on the image padded to
    a square, so boxes may reach into the padding). First with ``nms_iou=1.0`` (no box can be
    suppressed: every documented box must come back), then with the default ``nms_iou=0.5``
    against torchvision's ``batched_nms(boxes, scores, labels, 0.5)`` on the clipped
    documented boxes. The threshold is picked from the documented scores so that exactly 12
    boxes of both phrases pass, tight at either end: just below the 12th score (a threshold
    raised by 1e-6 loses a box) or equal to the 13th (``score > threshold`` as documented;
    ``>=`` or a lower threshold gains a box)."""
    import torch
    from torchvision.ops import batched_nms

    phrases = ["red car", "dog"]
    H, W = image.shape[:2]
    inputs = owl.processor(text=[phrases], images=image, return_tensors="pt")
    with torch.no_grad():
        outputs = owl.model(**inputs)

    def documented(threshold):
        return owl.processor.post_process_grounded_object_detection(
            outputs=outputs, threshold=threshold, target_sizes=torch.tensor([(H, W)]),
            text_labels=[phrases],
        )[0]  # fmt: skip

    ranked = np.sort(documented(0.0)["scores"].numpy())[::-1]
    k = 12  # boxes that must pass
    assert ranked[k - 1] - ranked[k] > 1e-3
    threshold = float(ranked[k - 1]) - 1e-6 if at.startswith("just") else float(ranked[k])
    res = documented(threshold)
    scores, labels, names = res["scores"].numpy(), res["labels"].numpy(), res["text_labels"]
    boxes = res["boxes"].numpy().copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, W)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, H)
    assert len(scores) == k and set(labels.tolist()) == {0, 1}
    assert (boxes[:, 2] - boxes[:, 0] > 1).sum() >= 8  # real boxes: an x/y swap would show
    assert (res["boxes"].numpy()[:, 3] > H).any()  # some reach into the padding: clipped

    got = detect(owl, image, "red car. dog", box_threshold=threshold, nms_iou=1.0)
    _same_detections(got, boxes, scores, labels, names)
    keep = batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), 0.5
    ).numpy()
    assert 2 <= len(keep) < k  # NMS does remove some of the overlapping grid boxes
    got = detect(owl, image, "red car. dog", box_threshold=threshold)
    _same_detections(got, boxes[keep], scores[keep], labels[keep], [names[i] for i in keep])
