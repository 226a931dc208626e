"""Prompt normalization and Grounding DINO / OWLv2 detection with random weights (CPU, offline)."""

import numpy as np
import pytest
import supervision as sv

from helpers.detect import (
    DETECTORS,
    detect,
    load_detector,
    match_phrase,
    normalize_prompt,
    prompt_phrases,
    random_grounding_dino,
    random_owlv2,
)
from helpers.errors import InputError


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
