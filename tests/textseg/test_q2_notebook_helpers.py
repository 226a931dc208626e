"""Notebook helpers: per-GPU SAM 2 size defaults, Colab's any-size upload behind a button,
videos shown inline only below the cap, the hub token read once (Colab faked), and the sample
media script's camera."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

from helpers import runtime
from helpers.errors import InputError
from helpers.textseg import widgets

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "gpu, size",
    [
        (None, "tiny"),
        ({"name": "Tesla T4", "capability": (7, 5), "memory_gib": 14.7}, "small"),
        ({"name": "Tesla V100-SXM2-32GB", "capability": (7, 0), "memory_gib": 31.7}, "base_plus"),
        ({"name": "NVIDIA L4", "capability": (8, 9), "memory_gib": 22.0}, "large"),
        ({"name": "NVIDIA A10G", "capability": (8, 6), "memory_gib": 12.0}, "base_plus"),
        ({"name": "NVIDIA A100-SXM4-40GB", "capability": (8, 0), "memory_gib": 39.4}, "large"),
    ],
)
def test_pick_sam2_size(gpu, size):
    assert widgets.pick_sam2_size(gpu) == size
    if gpu and gpu["capability"] < (8, 0):  # no bf16: never large in fp32
        assert widgets.pick_sam2_size(gpu) != "large"


def test_colab_upload_outside_colab_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "google.colab", None)  # import fails
    with pytest.raises(InputError, match="only works inside Google Colab"):
        widgets.colab_upload(tmp_path)


def test_colab_upload_saves_any_size(monkeypatch, tmp_path):
    big = bytes(range(256)) * (1 << 14)  # 4 MiB: more than the widget channel carries well
    fake_files = types.SimpleNamespace(upload=lambda: {"猫 video.mp4": big, "../x.jpg": b"jpg"})
    colab = types.ModuleType("google.colab")
    colab.files = fake_files
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    saved = widgets.colab_upload(tmp_path / "uploads")
    assert [p.name for p in saved] == ["猫 video.mp4", "x.jpg"]
    assert saved[0].read_bytes() == big and saved[0].parent == tmp_path / "uploads"
    fake_files.upload = lambda: {}
    with pytest.raises(InputError, match="no file"):
        widgets.colab_upload(tmp_path)


def test_upload_button_opens_the_picker_only_when_clicked(tmp_path):
    calls = []

    def picker(dest):
        calls.append(dest)
        return [Path(dest) / "mine.mp4"]

    box = widgets.colab_upload_button(tmp_path, "a video", uploader=picker)
    assert calls == [] and box.paths == []  # showing the button asks nothing of the user
    assert box.button.description == "Upload a video"
    box.button.click()
    assert calls == [tmp_path] and box.paths == [tmp_path / "mine.mp4"]
    shown = "".join(str(o.get("data", "")) for o in box.output.outputs)
    assert "mine.mp4" in shown and "again" in shown and not box.button.disabled


def test_upload_button_reports_a_failed_pick_in_one_red_line(tmp_path):
    def nothing(dest):
        raise InputError("no file was uploaded: choose a file in the picker.")

    box = widgets.colab_upload_button(tmp_path, uploader=nothing)
    box.paths.append(tmp_path / "earlier.jpg")
    box.button.click()
    shown = "".join(str(o.get("data", "")) for o in box.output.outputs)
    assert shown.count("Error:") == 1 and "no file was uploaded" in shown
    assert box.paths == [tmp_path / "earlier.jpg"]  # the last good upload is kept


def test_show_video_embeds_only_below_the_cap(tmp_path, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append((obj, kw)))
    small, big = tmp_path / "small.mp4", tmp_path / "big.mp4"
    small.write_bytes(b"\x00" * 100)
    big.write_bytes(b"\x00" * 5000)
    monkeypatch.setattr(widgets, "EMBED_LIMIT_BYTES", 1000)  # the forms' cap, read per call
    widgets.show_video(small)
    assert isinstance(shown[-1][0], IPython.display.Video)
    assert "base64" in shown[-1][0]._repr_html_()
    widgets.show_video(big)
    bundle, kw = shown[-1]
    assert kw == {"raw": True} and "base64" not in str(bundle)
    assert str(big) in bundle["text/plain"] and "too large" in bundle["text/plain"]
    assert "inside the notebook" in bundle["text/html"] and str(big) in bundle["text/html"]


def _fake_colab(monkeypatch, get):
    userdata = types.ModuleType("google.colab.userdata")
    userdata.SecretNotFoundError = type("SecretNotFoundError", (Exception,), {})
    userdata.NotebookAccessError = type("NotebookAccessError", (Exception,), {})
    userdata.get = lambda key: get(userdata, key)
    colab = types.ModuleType("google.colab")
    colab.__spec__ = importlib.machinery.ModuleSpec("google.colab", None)
    colab.userdata = userdata
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    monkeypatch.delenv("HELPERS_SMOKE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.delenv("HF_TOKEN")
    from huggingface_hub.utils import _auth

    monkeypatch.setattr(_auth, "_IS_GOOGLE_COLAB_CHECKED", False)
    monkeypatch.setattr(_auth, "_GOOGLE_COLAB_SECRET", None)
    return _auth


def test_hub_token_not_wanted_never_touches_the_secrets(monkeypatch):
    asked = []
    hub = _fake_colab(monkeypatch, lambda ud, key: asked.append(key) or "tok")
    said = runtime.hf_token_once(read=False)
    assert asked == [] and said["token"] is False and "HF_TOKEN" not in os.environ
    assert hub._IS_GOOGLE_COLAB_CHECKED and hub._GOOGLE_COLAB_SECRET is None
    assert hub._get_token_from_google_colab() is None and asked == []  # the hub asks nothing


def test_hub_token_wanted_is_read_once_into_the_environment(monkeypatch):
    asked = []
    hub = _fake_colab(monkeypatch, lambda ud, key: asked.append(key) or " hf_abc \n")
    said = runtime.hf_token_once(read=True)
    assert asked == ["HF_TOKEN"] and said["token"] is True and os.environ["HF_TOKEN"] == "hf_abc"
    assert hub._IS_GOOGLE_COLAB_CHECKED and hub._GOOGLE_COLAB_SECRET == "hf_abc"
    assert "Colab secret" in said["message"]


@pytest.mark.parametrize("error", ["SecretNotFoundError", "NotebookAccessError"])
def test_hub_token_missing_or_refused_is_one_line_and_never_asked_again(monkeypatch, error):
    def refuse(ud, key):
        raise getattr(ud, error)(key)

    hub = _fake_colab(monkeypatch, refuse)
    said = runtime.hf_token_once(read=True)
    assert said["token"] is False and "HF_TOKEN" not in os.environ
    assert "add a Colab secret HF_TOKEN" in said["message"] and "\n" not in said["message"]
    assert hub._IS_GOOGLE_COLAB_CHECKED  # no dialog and no warning at the first download


def test_hub_token_outside_colab_imports_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", None)  # an import would fail
    monkeypatch.setattr(runtime, "in_colab", lambda: False)
    assert runtime.hf_token_once(read=True)["message"].startswith("hub token: ")


def test_sample_media_camera_pans_and_zooms():
    """scripts/make_sample_media.py's virtual camera (no scikit-image needed: any photo)."""
    import numpy as np

    spec = importlib.util.spec_from_file_location(
        "make_sample_media", ROOT / "scripts" / "make_sample_media.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    ramp = np.linspace(0, 255, 600, dtype=np.float32)
    rgb = np.stack([np.tile(ramp, (400, 1))] * 3, axis=-1).astype(np.uint8)  # 600x400 ramp
    frames = list(script.camera_frames(rgb, size=(320, 240), fps=10, seconds=2))
    assert len(frames) == 20 and all(f.shape == (240, 320, 3) for f in frames)
    means = [float(f.mean()) for f in frames]
    assert means[-1] > means[0]  # the window moved right, over the brighter part
    spans = [int(f[:, -1].mean()) - int(f[:, 0].mean()) for f in frames]
    assert spans[-1] < spans[0]  # and narrowed: zoomed in
