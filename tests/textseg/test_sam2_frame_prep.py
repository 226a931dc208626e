"""Frames prepared in memory are sam2's own loader's, bit for bit, on the same RGB frames:
its resize (PIL, default filter, to S x S) and its normalisation (/255, mean, std)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.textseg import pil_resize, sam2_video


def _frames(h: int, w: int, n: int = 3) -> list[np.ndarray]:
    """Hard cases for a resize filter: blocks with sharp edges, noise, a smooth gradient."""
    rng = np.random.default_rng(h * 7 + w)
    blocks = np.kron(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))
    noise = rng.integers(0, 256, (h, w, 3))
    ramp = np.linspace(0, 255, w)[None, :, None] * np.linspace(0.2, 1, h)[:, None, None]
    out = [blocks[:h, :w], noise, np.repeat(ramp, 3, axis=2)]
    return [f.astype(np.uint8) for f in out[:n]]


def _sam2_loader(frames: list[np.ndarray], side: int, folder) -> torch.Tensor:
    """sam2's own frame loader over the frames saved as JPEG, and the RGB it decoded them to
    (what the in-memory path is given: the same decoded frames)."""
    from sam2.utils.misc import load_video_frames_from_jpg_images

    folder.mkdir()
    for t, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{t:05d}.jpg", quality=95)
    images, h, w = load_video_frames_from_jpg_images(
        str(folder), side, offload_video_to_cpu=True, compute_device=torch.device("cpu")
    )
    assert (h, w) == frames[0].shape[:2]
    return images


def _decoded(folder, n: int) -> list[np.ndarray]:
    return [np.array(Image.open(folder / f"{t:05d}.jpg").convert("RGB")) for t in range(n)]


@pytest.mark.parametrize(
    ("h", "w", "side"),
    [(720, 1280, 1024), (240, 320, 1024), (333, 517, 256), (256, 256, 256), (90, 1500, 128)],
)
def test_prepared_frames_equal_sam2s_loader_exactly(tmp_path, h, w, side):
    frames = _frames(h, w)
    want = _sam2_loader(frames, side, tmp_path / "jpg")
    decoded = _decoded(tmp_path / "jpg", len(frames))
    for t, rgb in enumerate(decoded):
        got = sam2_video.prepare_frame(rgb, side, torch.device("cpu"))
        assert got.dtype == want.dtype == torch.float32 and got.shape == want[t].shape
        assert torch.equal(got, want[t]), (t, (got - want[t]).abs().max())


def test_the_reused_buffers_give_the_same_values(tmp_path):
    rgb = _frames(200, 300, n=1)[0]
    side = 128
    out = np.full((3, side, side), np.nan, np.float32)
    scratch = np.zeros((2, side * side * 3), np.uint8)
    a = sam2_video.prepare_frame(rgb, side, torch.device("cpu"), out, scratch)
    assert a.data_ptr() == torch.from_numpy(out).data_ptr()  # written into ``out``
    assert torch.equal(a, sam2_video.prepare_frame(rgb, side, torch.device("cpu")))


def test_device_lookup_equals_the_host_tables():
    """The GPU path's lookup (run here on the CPU) gives the CPU path's values for every grey
    level of every channel."""
    levels = torch.arange(256, dtype=torch.uint8)
    x = levels[:, None, None].expand(256, 1, 3).contiguous()  # [S=256, 1, 3]
    got = sam2_video.normalise_on_device(x)  # [3, 256, 1]
    mean = torch.tensor(sam2_video._MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(sam2_video._STD, dtype=torch.float32)[:, None, None]
    want = torch.from_numpy(levels.numpy()[None, :, None] / 255.0).float().repeat(3, 1, 1)
    want = (want - mean) / std  # sam2's order of operations, in float32
    assert torch.equal(got, want)


@pytest.mark.parametrize(("h", "w", "side"), [(720, 1280, 1024), (333, 517, 256), (90, 1500, 128)])
def test_the_gpu_paths_code_on_the_cpu_equals_sam2s_loader_exactly(tmp_path, h, w, side):
    """What ``prepare_frame`` runs on a GPU after the copy (the full uint8 frame resized by
    ``pil_resize`` in torch, then the lookup), run here on CPU tensors."""
    frames = _frames(h, w)
    want = _sam2_loader(frames, side, tmp_path / "jpg")
    for t, rgb in enumerate(_decoded(tmp_path / "jpg", len(frames))):
        got = sam2_video.prepare_on_device(torch.from_numpy(rgb), side)
        assert got.dtype == torch.float32 and got.shape == want[t].shape
        assert torch.equal(got, want[t]), (t, (got - want[t]).abs().max())


@pytest.mark.parametrize(
    ("h", "w", "size"),
    [
        (1080, 1920, 1024),  # shrink both ways
        (720, 1280, 1024),  # height grows, width shrinks
        (100, 150, 1024),  # grow both ways
        (1024, 1024, 1024),  # unchanged: a copy
        (37, 53, (20, 90)),  # height shrinks, width grows: Pillow 13 runs the vertical pass first
        (257, 255, 256),
        (1080, 1920, (540, 1900)),  # height shrinks by more than twice the width
        (999, 13, (1, 1)),
        (1, 1, 7),
    ],
)
def test_resize_like_pil_equals_pil_exactly(h, w, size):
    rh, rw = (size, size) if isinstance(size, int) else size
    noise = np.random.default_rng(h * 7 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for img in (noise, (noise > 127).astype(np.uint8) * 255):  # 0/255: the most overshoot
        want = np.array(Image.fromarray(img).resize((rw, rh), Image.BICUBIC))
        got = pil_resize.resize_like_pil(torch.from_numpy(img), size)
        assert got.dtype == torch.uint8 and got.shape == (rh, rw, 3)
        assert np.array_equal(got.numpy(), want), np.abs(got.numpy() - want.astype(int)).max()


def test_the_installed_pillows_pass_order_is_found():
    """The probes tell the two orders apart, and one of them is the installed Pillow's."""
    assert pil_resize.pillow_order() in (
        pil_resize.HORIZONTAL_FIRST,
        pil_resize.TALL_SHRINK_VERTICAL_FIRST,
    )
    (ih, iw), (h, w) = pil_resize._PROBES[0]
    x = torch.from_numpy(pil_resize._probe_image(ih, iw))
    a, b = (pil_resize._resize(x, h, w, order) for order in pil_resize._ORDERS)
    assert not torch.equal(a, b)


@pytest.mark.gpu
def test_gpu_path_equals_sam2s_loader(tmp_path):
    frames = _frames(360, 640)
    want = _sam2_loader(frames, 1024, tmp_path / "jpg")
    for t, rgb in enumerate(_decoded(tmp_path / "jpg", len(frames))):
        got = sam2_video.prepare_frame(rgb, 1024, torch.device("cuda"))
        torch.cuda.synchronize()
        assert got.device.type == "cuda" and torch.equal(got.cpu(), want[t]), t
