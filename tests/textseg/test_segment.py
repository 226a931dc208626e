"""SAM 2 box prompts (sam2 package and transformers, random weights), mask cleanup, CLIPSeg and
CLIP re-scoring with tiny random models (CPU, offline)."""

import numpy as np
import pytest

from helpers.errors import InputError
from helpers.textseg.segment import (
    SAM2_HUB_IDS,
    SAM2_SIZES,
    clean_masks,
    clip_rescore,
    clipseg_masks,
    load_segmenter,
    mask_crop,
    normalize_size,
    random_clip,
    random_clipseg,
    segment_boxes,
    toy_hf_segmenter,
)

H, W = 96, 160
BOXES = np.array([[5, 5, 70, 60], [60, 20, 150, 90]], np.float32)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def sam2_tiny():
    return load_segmenter("tiny", "sam2", device="cpu", random_weights=True, image_size=128)


def test_sizes_and_aliases():
    assert SAM2_SIZES == {"tiny", "small", "base_plus", "large"}
    assert SAM2_HUB_IDS["base_plus"] == "facebook/sam2.1-hiera-base-plus"
    assert normalize_size("b+") == "base_plus" and normalize_size("Large") == "large"


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"size": "huge"}, "unknown SAM 2 size"),
        ({"backend": "onnx"}, "unknown segmenter backend"),
        ({"image_size": 100}, "multiple of 32"),
    ],
)
def test_bad_settings(kw, match):
    with pytest.raises(InputError, match=match):
        load_segmenter(**{"random_weights": True, **kw})


def test_image_size_override(sam2_tiny):
    assert sam2_tiny.image_size == 128 and sam2_tiny.model.image_size == 128


def test_sam2_two_boxes(sam2_tiny, image):
    masks, scores, cands = segment_boxes(sam2_tiny, image, BOXES)
    assert masks.shape == (2, H, W) and masks.dtype == bool
    assert scores.shape == (2,) and scores.dtype == np.float32
    assert cands is None


def test_sam2_multimask_picks_best(sam2_tiny, image):
    masks, scores, (cm, cs) = segment_boxes(sam2_tiny, image, BOXES, multimask=True)
    assert cm.shape == (2, 3, H, W) and cs.shape == (2, 3)
    best = cs.argmax(1)
    np.testing.assert_array_equal(scores, cs[np.arange(2), best])
    np.testing.assert_array_equal(masks, cm[np.arange(2), best])


def test_sam2_one_and_no_boxes(sam2_tiny, image):
    masks, scores, _ = segment_boxes(sam2_tiny, image, BOXES[0])  # a single [4] box
    assert masks.shape == (1, H, W) and scores.shape == (1,)
    masks, scores, cands = segment_boxes(sam2_tiny, image, np.zeros((0, 4)), multimask=True)
    assert masks.shape == (0, H, W) and scores.shape == (0,)
    assert cands[0].shape == (0, 3, H, W) and cands[1].shape == (0, 3)


def test_bad_boxes_and_image(sam2_tiny, image):
    with pytest.raises(InputError, match=r"\[N,4\]"):
        segment_boxes(sam2_tiny, image, np.zeros((2, 3)))
    with pytest.raises(InputError, match="HxWx3"):
        segment_boxes(sam2_tiny, image[..., :2], BOXES)


def test_transformers_backend_toy(image):
    seg = toy_hf_segmenter(128, device="cpu")
    assert seg.backend == "transformers"
    masks, scores, (cm, cs) = segment_boxes(seg, image, BOXES, multimask=True)
    assert masks.shape == (2, H, W) and masks.dtype == bool
    assert cm.shape == (2, 3, H, W) and cs.shape == (2, 3) and scores.shape == (2,)
    masks, _, cands = segment_boxes(seg, image, BOXES[:1])
    assert masks.shape == (1, H, W) and cands is None


def test_clean_masks_speck_and_hole():
    m = np.zeros((2, 64, 64), bool)
    m[0, 10:50, 10:50] = True
    m[0, 25:29, 25:29] = False  # 16 px hole
    m[0, 2:4, 58:61] = True  # 6 px speck
    m[1, 5:20, 5:20] = True  # clean square, and a big (900 px) hole-free shape
    out = clean_masks(m, min_hole_area=64, min_sprinkle_area=64)
    assert out.shape == m.shape and out.dtype == bool
    assert out[0, 25:29, 25:29].all()  # hole filled
    assert not out[0, 2:4, 58:61].any()  # speck removed
    np.testing.assert_array_equal(out[1], m[1])
    # a hole larger than the limit stays
    big = np.ones((64, 64), bool)
    big[20:40, 20:40] = False  # 400 px
    assert not clean_masks(big, min_hole_area=64)[20:40, 20:40].any()
    # background touching the border is not a hole
    edge = np.zeros((64, 64), bool)
    edge[:, 4:] = True
    np.testing.assert_array_equal(clean_masks(edge), edge)


def test_clean_masks_keeps_a_lone_small_object():
    m = np.zeros((1, 32, 32), bool)
    m[0, 3:6, 3:6] = True  # only component, below the limit: kept (never erase everything)
    assert clean_masks(m).sum() == 9


def test_clipseg_shapes(image):
    cs = random_clipseg(device="cpu")
    masks = clipseg_masks(cs, image, "dog. red car", threshold=0.5)
    assert masks.shape == (2, H, W) and masks.dtype == bool
    assert clipseg_masks(cs, image, ["dog"], threshold=0.0).all()  # sigmoid >= 0 everywhere
    assert not clipseg_masks(cs, image, ["dog"], threshold=1.0).any()
    with pytest.raises(InputError):
        clipseg_masks(cs, image, "dog", threshold=2)


def test_clipseg_probs_equal_the_documented_usage(image):
    """transformers' CLIPSegForImageSegmentation example: processor(text=texts,
    images=[image] * len(texts), padding=True) -> model(**inputs).logits -> sigmoid."""
    import torch
    from PIL import Image

    from helpers.textseg.segment import clipseg_probs

    cs = random_clipseg(device="cpu")
    texts = ["dog", "red car"]
    inputs = cs.processor(
        text=texts, images=[Image.fromarray(image)] * len(texts), padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        want = torch.sigmoid(cs.model(**inputs).logits).numpy()
    got = clipseg_probs(cs, image, texts, size=want.shape[-2:])
    np.testing.assert_array_equal(got, want)


def test_clip_rescore(image):
    clip = random_clip(device="cpu")
    cands = np.zeros((3, H, W), bool)
    cands[0, 10:40, 10:60] = True
    cands[1, 30:90, 50:150] = True  # cands[2] empty
    scores = clip_rescore(clip, image, cands, "dog")
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert (np.abs(scores[:2]) <= 1.0001).all() and scores[2] == -1.0
    assert scores[0] != scores[1]
    with pytest.raises(InputError, match="image's size"):
        clip_rescore(clip, image, cands[:, :50], "dog")


def test_mask_crop_greys_background(image):
    m = np.zeros((H, W), bool)
    m[20:40, 30:70] = True
    m[20:25, 30:35] = False
    crop = mask_crop(image, m, pad=0.0)
    assert crop.shape == (20, 40, 3)
    np.testing.assert_array_equal(crop[10, 10], image[30, 40])  # inside the mask: untouched
    assert mask_crop(image, np.zeros((H, W), bool)) is None


def test_unfetchable_weights_are_input_error(monkeypatch):
    import helpers.textseg.segment as seg

    monkeypatch.setitem(seg.SAM2_HUB_IDS, "tiny", "no-such-org/no-model")
    for backend in ("sam2", "transformers"):
        with pytest.raises(InputError, match="could not be fetched"):
            load_segmenter("tiny", backend, device="cpu")


@pytest.mark.parametrize(
    "loader, hint", [("load_clip", "random_clip()"), ("load_clipseg", "random_clipseg()")]
)
def test_unfetchable_clip_weights_are_input_error(monkeypatch, loader, hint):
    import helpers.textseg.segment as seg

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="could not be fetched") as err:
        getattr(seg, loader)(device="cpu", name="no-such-org/no-model")
    assert hint in str(err.value)


def test_full_resolution_masks_threshold_upsampled_logits(sam2_tiny, image):
    """out_size: SAM's low-res logits are upsampled to the full size and thresholded there
    (as SAM 2 does for the original size), not a thresholded small mask upsampled."""
    from helpers.textseg.segment import upsample_logits

    full = (3 * H, 3 * W)
    masks, scores, _ = segment_boxes(sam2_tiny, image, BOXES, out_size=full)
    assert masks.shape == (2, *full) and masks.dtype == bool
    pred = sam2_tiny.predictor
    pred.set_image(image)
    _, _, low = pred.predict(box=BOXES, multimask_output=False)
    np.testing.assert_array_equal(masks, upsample_logits(low, full)[:, 0] > 0)
    same, same_scores, _ = segment_boxes(sam2_tiny, image, BOXES)
    assert same.shape == (2, H, W)
    # the documented usage (set_image -> predict(box=..., multimask_output=False)) exactly
    doc_masks, doc_scores, _ = pred.predict(box=BOXES, multimask_output=False)
    np.testing.assert_array_equal(same, np.asarray(doc_masks).reshape(2, H, W) > 0)
    np.testing.assert_allclose(same_scores, np.asarray(doc_scores).reshape(-1), rtol=1e-6)
    hf = toy_hf_segmenter(128)
    m_hf, _, _ = segment_boxes(hf, image, BOXES, out_size=full)
    assert m_hf.shape == (2, *full)


@pytest.fixture(scope="module")
def hf_sam2_tiny():
    import torch

    torch.manual_seed(0)
    return load_segmenter("tiny", "transformers", device="cpu", random_weights=True, image_size=128)


@pytest.mark.parametrize("multimask", [False, True])
def test_transformers_sam2_equals_the_documented_usage(hf_sam2_tiny, image, multimask):
    """transformers' Sam2Model example on the same random-weight model (SAM 2.1 tiny at 128 px),
    image and 2 boxes: processor(images=image, input_boxes=[boxes]) ->
    model(**inputs, multimask_output=...) -> processor.post_process_masks(outputs.pred_masks,
    inputs["original_sizes"]) (threshold 0, no hole/speck cleanup: the defaults), scores =
    outputs.iou_scores.

    Ours: ``segment_boxes`` (it does no cleanup of its own). Compared: every candidate mask
    exactly (bool), also against the unbinarized post-processed logits > 0, and the IoU scores
    exactly; the picked mask/score of each box = the candidate of highest documented IoU score
    (the only one without multimask). A check that the masks depend on the boxes (a box with x
    and y swapped gives other masks) shows a box mix-up could not pass unnoticed."""
    import torch

    seg = hf_sam2_tiny
    proc, model = seg.processor, seg.predictor
    inputs = proc(images=image, input_boxes=[BOXES.tolist()], return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs, multimask_output=multimask)
    sizes = inputs["original_sizes"]
    want = proc.post_process_masks(outputs.pred_masks, sizes)[0].numpy()
    logits = proc.post_process_masks(outputs.pred_masks, sizes, binarize=False)[0].numpy()
    want_scores = outputs.iou_scores[0].numpy()
    C = 3 if multimask else 1
    assert want.shape == (2, C, H, W) and want_scores.shape == (2, C)
    np.testing.assert_array_equal(want, logits > 0)
    frac = want.mean(axis=(-1, -2))
    assert ((frac > 0.05) & (frac < 0.95)).all()  # non-trivial masks

    masks, scores, cands = segment_boxes(seg, image, BOXES, multimask=multimask)
    best = want_scores.argmax(axis=1)
    np.testing.assert_array_equal(masks, want[np.arange(2), best])
    np.testing.assert_array_equal(scores, want_scores[np.arange(2), best])
    if multimask:
        np.testing.assert_array_equal(cands[0], want)
        np.testing.assert_array_equal(cands[1], want_scores)
    else:
        assert cands is None

    swapped = proc(images=image, input_boxes=[BOXES[:, [1, 0, 3, 2]].tolist()], return_tensors="pt")
    with torch.no_grad():
        other = model(**swapped, multimask_output=multimask).pred_masks
    other = proc.post_process_masks(other, swapped["original_sizes"])[0].numpy()
    assert (other != want).any(axis=(1, 2, 3)).all()
