"""Fallback when nothing is detected, the multi-criteria mask choice, cleanup that scales with
the object, overlay colour / opacity, side-by-side video and the model cache report (CPU,
random-weight models, offline)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from helpers import runtime
from helpers.errors import InputError
from helpers.textseg import folder_run, media, pipeline, render, segment
from helpers.textseg.detect import random_grounding_dino


@pytest.fixture(scope="module")
def models():
    det = random_grounding_dino(["dog", "red car"], size="toy", device="cpu")
    seg = segment.load_segmenter("tiny", "sam2", device="cpu", random_weights=True, image_size=128)
    return det, seg


@pytest.fixture(scope="module")
def clipseg():
    return segment.random_clipseg(device="cpu")


def _img(h=64, w=80, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------ 1. fallback


def test_lower_threshold_fallback_says_so(models):
    det, seg = models
    res = pipeline.segment_image(_img(), "dog", det, seg, box_threshold=1.0, text_threshold=0.25)
    assert len(res.detections) > 0 and res.produced_by == "lower-threshold"
    first, retry = res.attempts
    assert first == {"step": "detector", "box_threshold": 1.0, "text_threshold": 0.25,
                     "instances": 0}  # fmt: skip
    assert (retry["box_threshold"], retry["text_threshold"]) == (0.5, 0.125)
    assert retry["instances"] == len(res.detections)
    assert "from lower-threshold" in res.note and "fallback" in res.note
    assert "fallback" in res.timings


def test_clipseg_fallback_loads_lazily_and_says_so(models, clipseg):
    det, seg = models
    loads = []

    def loader():
        loads.append(1)
        return clipseg

    res = pipeline.segment_image(
        _img(), "dog", det, seg, box_threshold=1.0, fallback=("clipseg",), clipseg=loader,
        mask_threshold=0.0,
    )  # fmt: skip
    assert loads == [1] and res.produced_by == "clipseg" and len(res.detections) == 1
    assert [a["step"] for a in res.attempts] == ["detector", "clipseg"]
    assert res.detections.mask.shape == (1, 64, 80)
    info = pipeline.result_info(res)
    assert info["produced_by"] == "clipseg" and "clipseg" in info["note"]
    # found by the detector: the loader is never called
    res = pipeline.segment_image(_img(), "dog", det, seg, box_threshold=0.0, clipseg=loader)
    assert res.produced_by == "detector" and loads == [1] and len(res.attempts) == 1


def test_no_fallback_and_nothing_found(models):
    det, seg = models
    off = pipeline.segment_image(_img(), "dog", det, seg, box_threshold=1.0, fallback=())
    assert len(off.detections) == 0 and off.produced_by == "none" and len(off.attempts) == 1
    # clipseg asked for but no model given: skipped, and the reason is kept
    res = pipeline.segment_image(_img(), "dog", det, seg, box_threshold=1.0, fallback="clipseg")
    assert res.produced_by == "none"
    assert res.attempts[-1]["skipped"] == "no CLIPSeg model given"
    assert res.note.startswith("nothing found")
    with pytest.raises(InputError, match="fallback step"):
        pipeline.segment_image(_img(), "dog", det, seg, fallback=("owl",))


def test_lower_thresholds_floor():
    assert pipeline.lower_thresholds(0.35, 0.25) == (0.175, 0.125)
    assert pipeline.lower_thresholds(0.06, 0.02) == (0.05, 0.02)  # floored, never raised
    assert pipeline.check_fallback("none") == () and pipeline.check_fallback(None) == ()


# ------------------------------------------------------------------ 2. mask choice + cleanup


def test_criteria_and_choice_prefer_a_solid_mask_that_fits_its_box():
    solid = np.zeros((40, 40), bool)
    solid[10:30, 10:30] = True
    scattered = np.zeros((40, 40), bool)
    scattered[10:30:4, 10:30:4] = True
    sliver = np.zeros((40, 40), bool)
    sliver[19:21, 5:35] = True
    masks = np.stack([scattered, sliver, solid])
    assert segment.compactness(solid) == pytest.approx(1.0)
    assert segment.compactness(scattered) < 0.1
    assert segment.box_iou(solid, (10, 10, 30, 30)) == pytest.approx(1.0)
    # SAM slightly prefers the scattered mask; the shape terms overrule it
    sam = [0.9, 0.85, 0.8]
    best, info = segment.choose_mask(masks, sam, "sam=1,compact=0.5,box=0.5", box=(10, 10, 30, 30))
    assert best == 2 and info["picked"] == 2
    assert info["weights"] == {"sam": 1.0, "clip": 0.0, "compact": 0.5, "box": 0.5}
    assert len(info["total"]) == 3 and info["total"][2] == max(info["total"])
    # SAM alone: its best score wins
    assert segment.choose_mask(masks, sam, "sam=1")[0] == 0
    # CLIP's preference: a softmax over the candidates, empty ones get nothing
    crit = segment.mask_criteria(masks, sam, clip_sims=[0.2, 0.3, -1.0])
    assert crit["clip"].sum() == pytest.approx(1.0) and crit["clip"][1] > 0.99
    lines = render.choice_details(info)
    assert len(lines) == 3 and "compact" in lines[0] and "=" in lines[0]


@pytest.mark.parametrize(
    "text,match",
    [("sam=x", "number"), ("size=1", "unknown"), ("sam=0", "at least one"), ("sam", "look")],
)
def test_bad_weights(text, match):
    with pytest.raises(InputError, match=match):
        segment.parse_weights(text)


def test_weighted_choice_in_the_pipeline(models):
    det, seg = models
    res = pipeline.segment_image(
        _img(90, 150), "dog", det, seg, box_threshold=0.0, text_threshold=0.0, nms_iou=0.1,
        clean=False, mask_weights=segment.MaskWeights(),
    )  # fmt: skip
    n = len(res.detections)
    assert n > 0 and res.candidates is not None and len(res.choice) == n
    cm, cs = res.candidates
    for i, info in enumerate(res.choice):
        np.testing.assert_array_equal(res.detections.mask[i], cm[i, info["picked"]])
        assert res.detections.data["mask_score"][i] == pytest.approx(cs[i, info["picked"]])
    assert "choose" in res.timings and "mask_choice" in pipeline.result_info(res)
    with pytest.raises(InputError, match="CLIP"):
        pipeline.segment_image(_img(), "dog", det, seg, mask_weights="sam=1,clip=1")


def test_cleanup_scales_with_the_object():
    small = np.zeros((200, 200), bool)
    small[10:20, 10:20] = True  # 100 px object with a 4 px hole
    small[14:16, 14:16] = False
    big = np.zeros((200, 200), bool)
    big[40:190, 40:190] = True  # 22,500 px object with a 100 px hole and an 80 px speck
    big[100:110, 100:110] = False
    big[5:10, 5:21] = True
    masks = np.stack([small, big])
    th = segment.scaled_clean_areas(masks, fraction=0.01, floor=16)
    assert th[0] == 16 and th[1] == round(0.01 * big.sum())
    out = segment.clean_masks(masks, th, th)
    assert out[0, 14:16, 14:16].all()  # the small object's small hole is filled
    assert out[1, 100:110, 100:110].all() and not out[1, 5:10, 5:21].any()
    fixed = segment.clean_masks(masks, 64, 64)  # the old fixed threshold keeps both
    assert not fixed[1, 100:110, 100:110].any() and fixed[1, 5:10, 5:21].all()
    with pytest.raises(InputError):
        segment.clean_masks(masks, [1, 2, 3], 0)


# ------------------------------------------------------------------ 3. overlay style, video


def _dets(h=40, w=50):
    mask = np.zeros((2, h, w), bool)
    mask[0, 5:15, 5:15] = True
    mask[1, 20:35, 25:45] = True
    return sv.Detections(
        xyxy=np.array([[5, 5, 15, 15], [25, 20, 45, 35]], np.float32),
        mask=mask,
        confidence=np.array([0.9, 0.8], np.float32),
        class_id=np.array([0, 1]),
    )


def test_overlay_colour_and_opacity():
    img = np.full((40, 50, 3), 100, np.uint8)
    d = _dets()
    solid = render.annotate(img, d, color="#00ff00", opacity=1.0, show_boxes=False,
                            show_labels=False)  # fmt: skip
    assert tuple(solid[10, 10]) == (0, 255, 0) and tuple(solid[30, 30]) == (0, 255, 0)
    clear = render.annotate(img, d, opacity=0.0, show_boxes=False, show_labels=False)
    np.testing.assert_array_equal(clear, img)
    per_id = render.annotate(img, d, opacity=1.0, show_boxes=False, show_labels=False)
    assert tuple(per_id[10, 10]) == render.color_for_id(0)
    assert render.parse_color("255, 0, 10") == (255, 0, 10) and render.parse_color("auto") is None
    for bad in ("nocolour", "1,2", "300,0,0"):
        with pytest.raises(InputError):
            render.parse_color(bad)
    with pytest.raises(InputError, match="opacity"):
        render.annotate(img, d, opacity=1.5)


def test_side_by_side_video(tmp_path):
    frames = [np.full((32, 48, 3), 40 * i, np.uint8) for i in range(4)]
    src = media.write_video(frames, tmp_path / "in.mp4", fps=5)
    out = media.write_video([f[::2, ::2] for f in frames[:3]], tmp_path / "ann.mp4", fps=5)
    path = media.side_by_side_video(src, out, tmp_path / "sbs.mp4", processing_fps=12.34)
    got = list(media.read_video_frames(path))
    # 24 + 24 wide at the output's height, with an 18 px caption band above and below
    assert len(got) == 3 and got[0].shape == (18 + 16 + 18, 48, 3)
    frame = media.side_by_side_frame(frames[1], frames[2], "processing 12.3 FPS")
    assert frame.shape == (18 + 32 + 18, 96, 3)
    # the captions sit in their bands: the two videos' pixels are untouched (no caption over
    # the output's id labels), and both bands hold white text
    np.testing.assert_array_equal(frame[18:50], np.concatenate([frames[1], frames[2]], axis=1))
    assert frame[:18, 48:].max() == 255 and frame[50:, 48:].max() == 255  # "output", the FPS
    assert frame[:18].min() == 0  # on black: sharp at 240p


# ------------------------------------------------------------------ 4. model cache


def _fake_cache(root: Path) -> tuple[Path, Path]:
    hf = root / "hf"
    blob = hf / "models--facebook--sam2.1-hiera-tiny" / "blobs" / "abc"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"x" * 3000)
    snap = hf / "models--facebook--sam2.1-hiera-tiny" / "snapshots" / "r1"
    snap.mkdir(parents=True)
    os.symlink(blob, snap / "model.pt")  # counted once
    (hf / "models--openai--clip").mkdir()
    (hf / "models--openai--clip" / "w").write_bytes(b"y" * 10)
    (hf / ".locks").mkdir()
    th = root / "torch" / "hub"
    (th / "checkpoints").mkdir(parents=True)
    (th / "checkpoints" / "r.pth").write_bytes(b"z" * 500)
    return hf, th


def test_model_cache_sizes(tmp_path):
    hf, th = _fake_cache(tmp_path)
    rows = runtime.model_cache_sizes(hf, th)
    assert [(r["model"], r["bytes"]) for r in rows] == [
        ("facebook/sam2.1-hiera-tiny", 3000),
        ("r.pth", 500),
        ("openai/clip", 10),
    ]
    text = runtime.cache_report(rows)
    assert "3 model(s), 3.4 KiB" in text and "facebook/sam2.1-hiera-tiny" in text
    assert runtime.model_cache_sizes(tmp_path / "none", tmp_path / "none") == []
    assert "empty" in runtime.cache_report([])


def test_cache_on_drive_only_in_colab_with_drive(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TORCH_HOME", "HELPERS_SMOKE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(runtime, "in_colab", lambda: False)
    assert not runtime.cache_models_on_drive(drive=tmp_path)["enabled"]
    monkeypatch.setattr(runtime, "in_colab", lambda: True)
    off = runtime.cache_models_on_drive(drive=tmp_path / "not-mounted")
    assert not off["enabled"] and "not mounted" in off["reason"]
    assert "HF_HUB_CACHE" not in os.environ
    import huggingface_hub.constants as hub_constants
    import torch

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", hub_constants.HF_HUB_CACHE)
    old_torch_dir = torch.hub.get_dir()
    try:
        on = runtime.cache_models_on_drive(drive=tmp_path)
        assert on["enabled"]
        assert os.environ["HF_HUB_CACHE"] == str(tmp_path / runtime.DRIVE_CACHE_FOLDER / "hf")
        assert os.environ["TORCH_HOME"] == on["torch_home"]
        assert "HF_HOME" not in os.environ or "model-cache" not in os.environ["HF_HOME"]
        assert hub_constants.HF_HUB_CACHE == on["hf_hub_cache"]
        assert runtime.cache_dirs()["hf"] == Path(on["hf_hub_cache"])
    finally:
        torch.hub.set_dir(old_torch_dir)
    monkeypatch.setenv("HELPERS_SMOKE", "1")
    assert not runtime.cache_models_on_drive(drive=tmp_path)["enabled"]


def test_folder_json_says_what_produced_the_masks(models, tmp_path):
    from PIL import Image

    det, seg = models
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(_img()).save(folder / "a.png")
    summary = folder_run.segment_folder(
        folder, tmp_path / "out", "dog", det, seg, box_threshold=1.0, fallback=("lower-threshold",),
        overlay={"color": "red", "opacity": 0.3},
    )  # fmt: skip
    assert summary["produced_by"] == {"lower-threshold": 1}
    doc = json.loads((tmp_path / "out" / "a.json").read_text())
    assert doc["produced_by"] == "lower-threshold" and len(doc["attempts"]) == 2
    assert doc["settings"]["overlay"] == {"color": "red", "opacity": 0.3}
