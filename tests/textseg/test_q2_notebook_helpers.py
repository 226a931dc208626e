"""Notebook helpers: per-GPU SAM 2 size defaults and Colab's any-size upload (faked)."""

from __future__ import annotations

import sys
import types

import pytest

from helpers.errors import InputError
from helpers.textseg import widgets


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
