"""Q2 commands under inputs a demanding user tries: unusable output folders, a full disk,
resume with changed settings, Unicode names, an unreachable hub, odd prompts, JPEG masks,
bad devices. Each answer is one ``error:`` line and exit 2 (or the right output)."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.textseg import command_checks, model_cache
from helpers.textseg import commands as cli_segment
from tests.textseg.test_cli_segment import FAST, _scene, run_cli


@pytest.fixture
def image_path(tmp_path) -> Path:
    p = tmp_path / "scene.png"
    Image.fromarray(_scene()).save(p)
    return p


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        Image.fromarray(_scene(seed=i)).save(d / f"im{i}.png")
    return d


@pytest.fixture
def no_models(monkeypatch):
    """Loading a model fails the test: the error must come before any work."""

    def boom(*a, **k):
        raise AssertionError("models were loaded before the input was checked")

    monkeypatch.setattr(cli_segment, "load_models", boom)


def _exit2(argv, capsys, *needles):
    code, res, err = run_cli(argv, capsys)
    assert code == 2, (code, err)
    assert err.startswith("error:") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return res, err


# --------------------------------------------------------------------------- output folders


def _unusable_outs(tmp_path):
    f = tmp_path / "afile.txt"
    f.write_text("x")
    return [(f, "is a file"), (f / "sub", "below")]


@pytest.mark.parametrize("case", [0, 1])
def test_out_unusable_is_caught_before_any_work(case, image_path, folder, tmp_path, capsys):
    out, needle = _unusable_outs(tmp_path)[case]
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "a.png")
    original = cli_segment.load_models
    cli_segment.load_models = lambda *a, **k: pytest.fail("models loaded before the check")
    try:
        for argv in (
            ["segment", "--image", image_path, "--prompt", "ball", *FAST],
            ["segment", "--folder", folder, "--prompt", "ball", *FAST],
            ["track", "--video", folder, "--prompt", "ball", *FAST],
            ["eval-masks", "--pred", masks, "--gt", masks],
            ["eval-masks", "--data", tmp_path, "--prompt", "ball", *FAST],
        ):
            _exit2([*argv, "--out", out], capsys, "--out", needle)
    finally:
        cli_segment.load_models = original


def test_out_read_only_is_caught(image_path, tmp_path, capsys, no_models, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    # root ignores permission bits, so the read-only place is simulated
    monkeypatch.setattr(
        os, "access", lambda p, mode, **k: False if Path(p) == ro else real_access(p, mode, **k)
    )
    argv = ["segment", "--image", image_path, "--prompt", "ball", "--out", ro / "out", *FAST]
    _exit2(argv, capsys, "cannot be written")


# --------------------------------------------------------------------------- disk full


def _disk_full(monkeypatch):
    from PIL import Image as PILImage

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PILImage.Image, "save", full)


def test_disk_full_single_image(image_path, tmp_path, capsys, monkeypatch):
    _disk_full(monkeypatch)
    out = tmp_path / "out"
    argv = ["segment", "--image", image_path, "--prompt", "ball", "--out", out, *FAST]
    _exit2(argv, capsys, "disk is full")
    assert not [p for p in out.rglob("*") if p.is_file()]  # no half-written file left


def test_disk_full_folder_stops(folder, tmp_path, capsys, monkeypatch):
    _disk_full(monkeypatch)
    argv = ["segment", "--folder", folder, "--prompt", "ball", "--out", tmp_path / "o", *FAST]
    _exit2(argv, capsys, "disk is full")


def test_folder_with_every_image_failed_exits_nonzero(tmp_path, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    for name in ("a.jpg", "b.png"):
        (d / name).write_bytes(b"not an image")
    res, err = _exit2(
        ["segment", "--folder", d, "--prompt", "ball", "--out", tmp_path / "o", *FAST],
        capsys,
        "2 of 2 images failed",
    )
    assert res["status"] == "failed" and res["done"] == 0 and len(res["failed"]) == 2


# --------------------------------------------------------------------------- resume


def test_folder_resume_follows_prompt_and_settings(folder, tmp_path, capsys):
    out = tmp_path / "o"
    base = ["segment", "--folder", folder, "--out", out, *FAST]
    code, r1, err = run_cli([*base, "--prompt", "ball"], capsys)
    assert code == 0 and r1["done"] == 2, err
    code, r2, err = run_cli([*base, "--prompt", "ball"], capsys)
    assert code == 0 and (r2["done"], r2["skipped"]) == (0, 2), err
    code, r3, err = run_cli([*base, "--prompt", "dog"], capsys)  # a new prompt re-does all
    assert code == 0 and (r3["done"], r3["redone"], r3["skipped"]) == (2, 2, 0), err
    assert json.loads((out / "im0.json").read_text())["prompt"] == "dog."
    code, r4, err = run_cli([*base, "--prompt", "dog", "--no-clean"], capsys)  # a setting
    assert code == 0 and r4["done"] == 2, err
    code, r5, err = run_cli([*base, "--prompt", "dog", "--no-clean", "--overwrite"], capsys)
    assert code == 0 and (r5["done"], r5["skipped"]) == (2, 0), err
    Image.fromarray(_scene(seed=7)).save(folder / "im0.png")  # a changed input
    code, r6, err = run_cli([*base, "--prompt", "dog", "--no-clean"], capsys)
    assert code == 0 and (r6["done"], r6["skipped"]) == (1, 1), err


# --------------------------------------------------------------------------- names


def test_unicode_names_stay_unique(tmp_path, capsys):
    out = tmp_path / "o"
    for name in ("猫.jpg", "狗.jpg"):
        p = tmp_path / name
        Image.fromarray(_scene(seed=len(name))).save(p)
        code, res, err = run_cli(
            ["segment", "--image", p, "--prompt", "ball", "--out", out, *FAST], capsys
        )
        assert code == 0, err
    assert {p.name for p in out.glob("*.json")} == {"猫.json", "狗.json"}
    assert json.loads((out / "猫.json").read_text())["source"].endswith("猫.jpg")


def test_folder_stems_unique_and_unicode():
    from helpers.textseg.folder_run import output_stems

    paths = [Path(n) for n in ("猫.jpg", "狗.jpg", "a.jpg", "A.png", "a?b.png", "a_b.png", "...")]
    stems = output_stems(paths)
    assert stems[:2] == ["猫", "狗"]
    assert len({s.casefold() for s in stems}) == len(stems)  # unique, even case-insensitively
    assert all(s and "?" not in s for s in stems)
    assert command_checks.stem_for("https://x.org/%E7%8C%AB.jpg") == "猫"
    assert command_checks.stem_for("/p/....jpg") != command_checks.stem_for("/q/....jpg")


# --------------------------------------------------------------------------- prompts, devices


@pytest.mark.parametrize(
    "prompt, needle",
    [("cat " * 500, "characters"), ("!?", "no words"), ("... ;;; ---", "no words")],
)
def test_bad_prompts(prompt, needle, image_path, tmp_path, capsys, no_models):
    argv = ["segment", "--image", image_path, "--prompt", prompt, "--out", tmp_path, *FAST]
    _exit2(argv, capsys, needle)


def test_punctuation_phrases_dropped():
    from helpers.textseg.detect import normalize_prompt

    assert normalize_prompt("dog. !?. 猫") == "dog. 猫."


@pytest.mark.parametrize("command", ["segment", "track"])
def test_bad_device(command, image_path, tmp_path, capsys, no_models):
    src = ["--image", image_path] if command == "segment" else ["--video", tmp_path]
    argv = [command, *src, "--prompt", "ball", "--out", tmp_path / "o", "--device", "banana"]
    _exit2(argv, capsys, "banana")


def test_image_that_is_a_folder_and_folder_that_is_a_file(image_path, tmp_path, capsys):
    _exit2(
        ["segment", "--image", tmp_path, "--prompt", "ball", *FAST], capsys, "folder", "--folder"
    )
    _exit2(["segment", "--folder", image_path, "--prompt", "ball", *FAST], capsys, "--image")
    _exit2(
        ["segment", "--folder", tmp_path, "--out", tmp_path, "--prompt", "ball", *FAST],
        capsys,
        "input folder",
    )
    for flag, value in (("--route", "sam3x"), ("--rescore", "blip")):
        argv = ["segment", "--image", image_path, "--prompt", "ball", flag, value, *FAST]
        _exit2([*argv, "--out", tmp_path / "o"], capsys, flag)


# --------------------------------------------------------------------------- hub


def test_unreachable_hub_fails_fast(image_path, tmp_path, capsys, monkeypatch):
    import socket

    import huggingface_hub.constants as hub_constants

    def no_network(*a, **k):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import transformers

    monkeypatch.setattr(
        transformers.AutoProcessor,
        "from_pretrained",
        lambda *a, **k: pytest.fail("the hub was asked although it cannot be reached"),
    )
    model_cache.MODELS.clear()
    t0 = time.perf_counter()
    argv = ["segment", "--image", image_path, "--prompt", "ball", "--out", tmp_path / "o"]
    _exit2([*argv, "--device", "cpu"], capsys, "cannot be reached", "random weights")
    assert time.perf_counter() - t0 < 10


# --------------------------------------------------------------------------- eval-masks


def test_eval_masks_jpeg_and_size_message(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    m = np.zeros((60, 80), np.uint8)
    m[10:45, 15:60] = 255
    m[20:30, 70:78] = 255
    for d in (pred, gt):
        Image.fromarray(m).save(d / "a.jpg", quality=75)
    code, res, err = run_cli(["eval-masks", "--pred", pred, "--gt", gt], capsys)
    assert code == 0, err
    assert res["mean_iou"] > 0.99
    Image.fromarray(m[:50]).save(pred / "a.jpg")
    _, err = _exit2(["eval-masks", "--pred", pred, "--gt", gt], capsys, "prediction", "ground")
    assert err.index("pred") < err.index("80x50") < err.index("ground") < err.index("80x60")


# --------------------------------------------------------------------------- routes


def test_clipseg_route_and_clip_rescore(image_path, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["segment", "--image", image_path, "--prompt", "ball", "--out", out]
    clipseg = ["--random-weights", "--device", "cpu", "--route", "clipseg", "--mask-threshold", "0"]
    code, res, err = run_cli([*argv, *clipseg], capsys)  # no detector, no SAM 2 flags
    assert code == 0, err
    assert res["instances"] == 1 and res["labels"] == ["ball"]
    doc = json.loads((out / "scene.json").read_text())
    assert doc["num_instances"] == 1
    code, res, err = run_cli([*argv, *FAST, "--rescore", "clip"], capsys)
    assert code == 0, err
    assert res["instances"] >= 1 and "rescore" in res["timings_ms"]
