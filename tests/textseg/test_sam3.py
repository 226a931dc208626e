"""SAM 3 images (helpers/textseg/sam3.py) with a random-weight model from a small config (CPU, offline).

DIFFERENTIAL: our masks, boxes and scores equal transformers' documented usage
(``processor(images=, text=)`` -> ``model(**inputs)`` -> ``post_process_instance_segmentation``)
on the same model and image, exactly. Plus labels of several phrases, text features encoded once
per folder, the gated-weights / unreachable-hub messages (one line, fast), the transformers
install helper, and ``segment --backend sam3 --random-weights`` through the CLI.
"""

from __future__ import annotations

import json
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import cli
from helpers.errors import InputError
from helpers.textseg import sam3

H, W = 90, 150
PHRASES = ["red car", "dog"]


@pytest.fixture(scope="module")
def seg():
    return sam3.random_sam3("toy", device="cpu")


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)


def _documented(seg, image, phrase, threshold, mask_threshold):
    """transformers' documented SAM 3 image usage, verbatim."""
    processor, model = seg.processor, seg.model
    inputs = processor(images=image, text=phrase, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    return processor.post_process_instance_segmentation(
        outputs,
        threshold=threshold,
        mask_threshold=mask_threshold,
        target_sizes=inputs.get("original_sizes").tolist(),
    )[0]


@pytest.mark.parametrize("threshold, mask_threshold", [(0.0, 0.5), (0.25, 0.3)])
def test_differential_matches_documented_usage(seg, image, threshold, mask_threshold):
    res = sam3.segment_image_sam3(  # the raw route: no cleanup after it
        image, "Red car. dog", seg, threshold=threshold, mask_threshold=mask_threshold, clean=False
    )
    d = res.detections
    assert res.prompt == "red car. dog."
    for i, phrase in enumerate(PHRASES):
        ref = _documented(seg, image, phrase, threshold, mask_threshold)
        sel = d.class_id == i
        np.testing.assert_array_equal(d.confidence[sel], ref["scores"].numpy())
        np.testing.assert_array_equal(d.mask[sel], ref["masks"].numpy().astype(bool))
        # our boxes are the documented ones clipped to the image
        boxes = ref["boxes"].numpy().copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, W)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, H)
        np.testing.assert_array_equal(d.xyxy[sel], boxes)
        assert (d.data["class_name"][sel] == phrase).all()
    assert d.mask.shape == (len(d), H, W) and d.mask.dtype == bool
    if threshold == 0.0:
        assert (d.class_id == 0).sum() == (d.class_id == 1).sum() == 20  # every query


def test_text_features_are_encoded_once(seg, image):
    seg.text_cache.clear()
    before = seg.text_encodings
    sam3.segment_image_sam3(image, "red car. dog", seg, threshold=0.0)
    sam3.segment_image_sam3(image[::-1].copy(), "dog. red car", seg, threshold=0.0)
    assert (
        seg.text_encodings - before == 2
    )  # two phrases, two images, two prompts: each phrase once


def test_threshold_one_gives_empty(seg, image):
    d = sam3.segment_image_sam3(image, "dog", seg, threshold=1.0).detections
    assert len(d) == 0 and d.mask.shape == (0, H, W) and d.xyxy.shape == (0, 4)


@pytest.mark.parametrize("kw", [{"threshold": 1.5}, {"mask_threshold": -0.1}, {"threshold": "x"}])
def test_bad_thresholds(seg, image, kw):
    with pytest.raises(InputError, match="must be"):
        sam3.segment_image_sam3(image, "dog", seg, **kw)


def test_empty_prompt_and_wrong_model(seg, image):
    with pytest.raises(InputError, match="type what to segment"):
        sam3.segment_image_sam3(image, " . ", seg)
    with pytest.raises(InputError, match="load_sam3"):
        sam3.segment_image_sam3(image, "dog", object())


def test_folder_outputs_resume_and_one_text_encoding(seg, tmp_path, image):
    seg.text_cache.clear()
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        Image.fromarray(np.roll(image, 7 * k, axis=1)).save(src / f"img{k}.png")
    (src / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    s = sam3.segment_folder_sam3(src, out, "red car. dog", seg, threshold=0.25)
    assert s["done"] == 3 and len(s["failed"]) == 1 and s["failed"][0]["file"] == "broken.jpg"
    assert s["text_encodings"] == 2  # once per phrase for the whole folder
    doc = json.loads((out / "img0.json").read_text())
    assert doc["num_instances"] == len(doc["instances"])
    assert {r["label"] for r in doc["instances"]} <= set(PHRASES)
    for r in doc["instances"]:
        assert set(r["mask"]) >= {"size", "counts"} and r["mask"]["size"] == [H, W]
    assert (out / "img0_mask.png").is_file() and (out / "img0_overlay.png").is_file()
    again = sam3.segment_folder_sam3(src, out, "red car. dog", seg, threshold=0.25)
    assert again["skipped"] == 3 and again["done"] == 0 and again["text_encodings"] == 0


# ---------------------------------------------------------------- hub access


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setattr(sam3, "_cached", lambda repo: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.mark.parametrize(
    "status, code, token, words",
    [
        (401, "GatedRepo", None, "no Hugging Face token was found"),
        (403, "GatedRepo", "hf_x", "no access yet"),
        (401, "", "hf_x", "refused"),
    ],
)
def test_gated_weights_one_fast_line(monkeypatch, online, status, code, token, words):
    monkeypatch.setattr(sam3, "_token", lambda t=None: token)
    monkeypatch.setattr(sam3, "_probe_hub", lambda repo, tok, timeout=8.0: (status, code))
    t0 = time.perf_counter()
    with pytest.raises(InputError) as err:
        sam3.load_sam3(device="cpu")
    msg = str(err.value)
    assert time.perf_counter() - t0 < 2.0
    assert "\n" not in msg and "gated" in msg and words in msg
    for fix in ("HF_TOKEN", "hf auth login", "huggingface-cli login", "accept the licence",
                "huggingface.co/facebook/sam3", "--backend sam2"):  # fmt: skip
        assert fix in msg


def test_unreachable_hub_one_fast_line(monkeypatch, online):
    def down(repo, tok, timeout=8.0):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(sam3, "_probe_hub", down)
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="could not reach the Hugging Face hub") as err:
        sam3.load_sam3(device="cpu")
    assert time.perf_counter() - t0 < 2.0 and "\n" not in str(err.value)


def test_offline_env_without_cache(monkeypatch):
    monkeypatch.setattr(sam3, "_cached", lambda repo: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="HF_HUB_OFFLINE"):
        sam3.check_hub_access()


def test_from_pretrained_errors_are_classified(monkeypatch, online):
    """Access granted by the probe but the download fails: still one line, no traceback."""
    from huggingface_hub.errors import GatedRepoError
    from transformers import Sam3Model, Sam3Processor

    monkeypatch.setattr(sam3, "_probe_hub", lambda repo, tok, timeout=8.0: (200, ""))
    monkeypatch.setattr(sam3, "_token", lambda t=None: None)

    def gated(*a, **k):
        cause = GatedRepoError.__new__(GatedRepoError)  # no HTTP response needed here
        Exception.__init__(cause, "401 Client Error. Cannot access gated repo")
        try:
            raise cause
        except GatedRepoError as e:
            raise OSError("You are trying to access a gated repo.\nMake sure ...") from e

    monkeypatch.setattr(Sam3Processor, "from_pretrained", classmethod(lambda cls, *a, **k: None))
    monkeypatch.setattr(Sam3Model, "from_pretrained", classmethod(lambda cls, *a, **k: gated()))
    with pytest.raises(InputError, match="gated and no Hugging Face token") as err:
        sam3.load_sam3(device="cpu")
    assert "\n" not in str(err.value)
    msg = sam3.hub_error_message(OSError("We couldn't connect to 'https://huggingface.co'"))
    assert "could not reach" in msg and "\n" not in msg


# ---------------------------------------------------------------- transformers install helper


def test_ensure_transformers_is_a_no_op_when_present():
    calls = []
    res = sam3.ensure_sam3_transformers(runner=lambda *a, **k: calls.append(a))
    assert res["status"] == "present" and not calls


def test_ensure_transformers_installs_only_when_missing(monkeypatch):
    import subprocess

    monkeypatch.setattr(sam3, "sam3_available", lambda: False)
    calls = []

    def ok(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr("helpers.runtime.in_colab", lambda: True)
    import transformers  # noqa: F401  (imported already: the new version needs a restart)

    res = sam3.ensure_sam3_transformers(runner=ok)
    assert res["status"] == "installed" and res["restart"]  # transformers is imported here
    assert any(a.startswith("transformers>=") for a in calls[0]) and "-U" in calls[0]

    def fail(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: no matching distribution")

    res = sam3.ensure_sam3_transformers(runner=fail)
    assert res["status"] == "failed" and "SAM 2.1 route" in res["message"]
    with pytest.raises(InputError, match="ensure_sam3_transformers"):
        sam3.require_sam3()


def test_ensure_transformers_never_installs_outside_colab(monkeypatch):
    """A local run-all must not upgrade the user's own transformers (up to 900 s of pip and a
    restart): outside Colab the helper only says what to run."""
    monkeypatch.setattr(sam3, "sam3_available", lambda: False)
    monkeypatch.setattr("helpers.runtime.in_colab", lambda: False)
    calls = []
    res = sam3.ensure_sam3_transformers(runner=lambda *a, **k: calls.append(a))
    assert calls == [] and res["status"] == "missing" and not res["restart"]
    assert sam3.SAM3_INSTALL in res["message"] and "SAM 2.1 route" in res["message"]
    # asked explicitly, it installs anywhere
    ok = lambda cmd, **kw: calls.append(cmd) or __import__("subprocess").CompletedProcess(cmd, 0)  # noqa: E731
    assert sam3.ensure_sam3_transformers(install=True, runner=ok)["status"] == "installed"
    assert len(calls) == 1


def test_q2_notebook_installs_sam3_only_in_colab():
    """The notebook's SAM 3 cells call the helper without forcing an install."""
    nb = json.loads(
        (
            Path(__file__).resolve().parents[2] / "notebooks" / "q2_text_segmentation.ipynb"
        ).read_text()
    )
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    calls = [
        line for cell in code for line in cell.splitlines() if "ensure_sam3_transformers(" in line
    ]
    assert calls and all("install=True" not in line for line in calls)


# ---------------------------------------------------------------- CLI

FAST = ["--backend", "sam3", "--random-weights", "--device", "cpu", "--score-threshold", "0.25"]


def _run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    lines = [ln for ln in out.out.splitlines() if ln.startswith("{")]
    return code, (json.loads(lines[-1]) if lines else None), out.err


def test_cli_segment_image_and_folder(tmp_path, image, capsys):
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    code, res, err = _run(
        ["segment", "--image", path, "--prompt", "red car. dog", "--out", tmp_path / "o", *FAST],
        capsys,
    )
    assert code == 0, err
    assert res["backend"] == "sam3" and res["instances"] == len(res["labels"]) > 0
    assert set(res["labels"]) <= set(PHRASES)
    doc = json.loads((tmp_path / "o" / "photo.json").read_text())
    assert doc["num_instances"] == res["instances"]
    folder = tmp_path / "f"
    folder.mkdir()
    Image.fromarray(image).save(folder / "a.png")
    code, res, err = _run(
        ["segment", "--folder", folder, "--prompt", "dog", "--out", tmp_path / "fo", *FAST], capsys
    )
    assert code == 0 and res["done"] == 1, err


def test_cli_bad_input_exit_2(tmp_path, capsys):
    code, _, err = _run(
        ["segment", "--image", tmp_path / "nope.png", "--prompt", "dog", *FAST], capsys
    )
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    argv = ["segment", "--image", tmp_path / "x.png", "--prompt", "dog", *FAST[:-1], "2"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "--score-threshold" in err
