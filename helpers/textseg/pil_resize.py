"""Pillow's ``Image.resize(size, Image.BICUBIC)`` of an RGB uint8 image, bit for bit, in torch.

sam2's frame loader resizes with PIL (``sam2.utils.misc._load_img_as_tensor``); doing the same
arithmetic in torch lets the frame be resized where the model runs (a GPU) with the very
values PIL gives on the host. Pillow's algorithm (``libImaging/Resample.c``) is reproduced
step by step:

- per axis whose size changes, one pass, each on the uint8 result of the one before (an
  axis that keeps its size is left alone): horizontal first, except in Pillow 13 when the
  height shrinks by more than twice as many pixels as the width (``pass_order``; which
  rule the installed Pillow follows is found once on small probes, ``pillow_order``);
- each output pixel ``i`` of a pass reads the inputs ``xmin .. xmin + count - 1`` around
  ``center = (i + 0.5) * scale`` (``scale = in / out``; the filter widens by
  ``max(scale, 1)`` when shrinking) with the bicubic filter's weights (``a = -0.5``),
  computed in float64 in Pillow's order of operations and normalised to sum 1;
- the weights are turned into fixed point with 22 fractional bits (``PRECISION_BITS``,
  rounded half away from zero); a pass adds ``1 << 21`` and ``pixel * weight`` in int32,
  shifts right by 22 and clips to 0..255.

The passes are banded sums in int32 (exact, Pillow's own integer arithmetic): per filter
tap one uint8 gather and one multiply-add (9 taps for 1920 -> 1024, 5 for 1080 -> 1024), not
dense matmuls (1920 x 1024 coefficients of which 9 a row are not zero; float64 runs at 1/32
to 1/64 of the float32 rate on a T4 or L4, and float32 cannot hold ``pixel * weight``). The
tables are made once per (input size, output size) and kept on each device they are used on.
"""

from __future__ import annotations

import functools

import numpy as np

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed point for 8-bit images
_BICUBIC_SUPPORT = 2.0
_A = -0.5  # Pillow's bicubic parameter


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's ``bicubic_filter`` (float64, its order of operations)."""
    x = np.abs(x)
    out = np.zeros_like(x)
    near = x < 1.0
    far = (x >= 1.0) & (x < 2.0)
    xn, xf = x[near], x[far]
    out[near] = ((_A + 2.0) * xn - (_A + 3.0)) * xn * xn + 1
    out[far] = (((xf - 5) * xf + 8) * xf - 4) * _A
    return out


@functools.lru_cache(maxsize=16)
def pil_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for one axis, whole image
    box: (int64 [out, taps] input index of each tap, int32 [out, taps] its fixed-point
    weight; taps beyond an output's support read its first input with weight 0)."""
    in_size, out_size = int(in_size), int(out_size)
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}")
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = _BICUBIC_SUPPORT * filterscale
    ss = 1.0 / filterscale
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    # C's (int) cast truncates towards zero; negative starts are clamped to 0 either way
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    count = xmax - xmin
    taps = int(count.max())
    j = np.arange(taps, dtype=np.int64)
    inside = j[None, :] < count[:, None]
    pos = (xmin[:, None] + j[None, :]).astype(np.float64)
    w = np.where(inside, _bicubic((pos - center[:, None] + 0.5) * ss), 0.0)
    ww = np.zeros(out_size, np.float64)
    for t in range(taps):  # summed tap by tap, as Pillow does (numpy's sum is pairwise)
        ww += w[:, t]
    w = np.divide(w, ww[:, None], out=w, where=ww[:, None] != 0.0)
    scaled = w * float(1 << PRECISION_BITS)
    fixed = np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5)).astype(np.int32)
    fixed[~inside] = 0
    index = np.where(inside, xmin[:, None] + j[None, :], xmin[:, None])
    return index, fixed


@functools.lru_cache(maxsize=32)
def _device_tables(in_size: int, out_size: int, device: str):
    """The axis' tables on ``device``: (int64 [taps, out] indices, int32 [taps, out] weights),
    one row per tap."""
    import torch

    index, fixed = pil_coefficients(in_size, out_size)
    idx = torch.from_numpy(np.ascontiguousarray(index.T)).to(device)
    wts = torch.from_numpy(np.ascontiguousarray(fixed.T)).to(device)
    if wts.is_cuda:  # made on whichever stream asked first; usable from any stream once done
        torch.cuda.current_stream(wts.device).synchronize()
    return idx, wts


def _pass(x, dim: int, out_size: int):
    """One of Pillow's passes along ``dim`` (0: vertical, 1: horizontal) of a uint8 [H,W,C]
    tensor: uint8, each value ``(1 << 21) + sum(pixel * weight)`` in int32, shifted right
    by 22 and clipped to 0..255."""
    import torch

    idx, wts = _device_tables(x.shape[dim], out_size, str(x.device))
    shape = list(x.shape)
    shape[dim] = out_size
    acc = torch.full(shape, 1 << (PRECISION_BITS - 1), dtype=torch.int32, device=x.device)
    tap = torch.empty(shape, dtype=torch.uint8, device=x.device)
    view = [1] * x.dim()
    view[dim] = out_size
    for t in range(idx.shape[0]):
        torch.index_select(x, dim, idx[t], out=tap)
        acc.addcmul_(tap, wts[t].view(view))  # in int32
    return acc.bitwise_right_shift_(PRECISION_BITS).clamp_(0, 255).to(torch.uint8)


def resize_like_pil(x, size):
    """uint8 [H,W,C] tensor (any device; C = 3 for RGB, any C works as Pillow's bands do) ->
    uint8 [h,w,C] on the same device, equal to the installed Pillow's
    ``Image.fromarray(x).resize((w, h), Image.BICUBIC)``; ``size`` is ``side`` (square) or
    ``(h, w)``. Same size: a copy. Raises ``RuntimeError`` when the installed Pillow
    resamples otherwise (:func:`pillow_order`)."""
    import torch

    if x.dtype != torch.uint8 or x.dim() != 3:
        raise ValueError(f"expected a uint8 [H,W,C] tensor, got {x.dtype} {tuple(x.shape)}")
    order = pillow_order()
    if order is None:
        raise RuntimeError("the installed Pillow's bicubic resize is not the one reproduced here")
    h, w = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    return _resize(x, h, w, order)


def _resize(x, h: int, w: int, order: str):
    if (h, w) == tuple(x.shape[:2]):
        return x.clone()
    y = x.contiguous()
    for dim in pass_order(x.shape[0], x.shape[1], h, w, order):
        y = _pass(y, dim, (h, w)[dim])
    return y


# How Pillow orders the passes. Pillow 12 and older (11.3.0 and 12.3.0 checked): horizontal,
# then vertical. Pillow 13 (``ImagingResampleInner``): vertical first when the height shrinks
# by more than twice as many pixels as the width ("to make the horizontal pass faster"). The
# order changes the values: each pass rounds to uint8.
HORIZONTAL_FIRST = "horizontal_first"
TALL_SHRINK_VERTICAL_FIRST = "tall_shrink_vertical_first"
_ORDERS = (TALL_SHRINK_VERTICAL_FIRST, HORIZONTAL_FIRST)


def pass_order(in_h: int, in_w: int, h: int, w: int, order: str) -> tuple[int, ...]:
    """The axes resampled (0: vertical, 1: horizontal), in the order ``order`` runs them;
    an axis that keeps its size is skipped."""
    dims = [d for d, (a, b) in enumerate(((in_h, h), (in_w, w))) if a != b]
    shrink_h = in_h - h
    if order == TALL_SHRINK_VERTICAL_FIRST and shrink_h > 0 and shrink_h > (in_w - w) * 2:
        return tuple(dims)
    return tuple(reversed(dims))


# Probes: (H, W) -> (h, w). The first two give different values in the two orders; with the
# others they check the coefficients (shrinking, growing, both, a large factor).
_PROBES = (((16, 16), (2, 20)), ((40, 24), (9, 13)), ((23, 31), (57, 11)), ((9, 70), (30, 4)))


def _probe_image(h: int, w: int) -> np.ndarray:
    """uint8 [h,w,3]: noise, black and white, the hardest case for rounding."""
    rng = np.random.default_rng(h * 1009 + w)
    return (rng.integers(0, 2, (h, w, 3)) * 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def pillow_order() -> str | None:
    """Which pass order (``_ORDERS``) gives the installed Pillow's values on the probes, or
    None if neither does (a Pillow that resamples otherwise). Found once, in a few ms."""
    import torch
    from PIL import Image

    wants = []
    for (ih, iw), (h, w) in _PROBES:
        img = _probe_image(ih, iw)
        wants.append((img, h, w, np.array(Image.fromarray(img).resize((w, h)))))
    for order in _ORDERS:
        if all(
            np.array_equal(_resize(torch.from_numpy(img), h, w, order).numpy(), want)
            for img, h, w, want in wants
        ):
            return order
    return None
