"""Batched data augmentation that runs where the images are (GPU in training, CPU in tests).

Every op takes a whole batch ``[B, 3, H, W]`` and draws per-image parameters with one tensor
call, so there is no Python loop over images and no host-device sync (ops are chosen per image
with ``torch.where`` masks). Randomness comes only from the ``generator`` argument (a
``torch.Generator``, ideally on the images' device; ``None`` uses torch's default RNG), so a run
and its resume see the same augmentations. Every random op is split into its draws and a
pure function of the images and those draws (``_*_from``); :class:`GpuAugment` makes all of a
batch's draws up front, so the rest traces as one graph for ``torch.compile``.

Value convention: the photometric/geometric ops take uint8 images or float images holding
values in [0, 255]; they return the same dtype (uint8 is rounded back, float stays float and is
clamped to [0, 255]). :class:`GpuAugment` converts to float32 once after crop/flip and keeps
float [0, 255] through the policy, then normalizes; ``random_erasing`` and ``mixup_cutmix`` are
meant for the normalized float batch (uint8 also works).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from helpers.errors import InputError

# Ops shared by AutoAugment and RandAugment (names as in the AutoAugment paper).
OP_NAMES = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
)
OP_INDEX = {n: i for i, n in enumerate(OP_NAMES)}
GEOMETRIC_OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
# RandAugment's op set (torchvision/timm): everything but Invert.
RANDAUGMENT_OPS = tuple(n for n in OP_NAMES if n != "Invert")

# AutoAugment CIFAR-10 policy (Cubuk et al. 2019, appendix): 25 sub-policies of two
# (op, probability, magnitude level 0..9) steps; level None = op without magnitude.
CIFAR10_POLICY = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)

_GRAY = (0.299, 0.587, 0.114)
_CONSTANTS: dict = {}


def _const(key, make, device) -> torch.Tensor:
    """A small constant tensor, copied to ``device`` once and then reused: a fresh host-to-GPU
    copy from pageable memory would make the CPU wait for the GPU on every batch."""
    k = (key, str(device))
    t = _CONSTANTS.get(k)
    if t is None:
        t = _CONSTANTS[k] = make().to(device)
    return t


def _op_mask(op: torch.Tensor, names) -> torch.Tensor:
    """Bool [B]: whether image b's op is one of ``names`` (one gather from a cached table)."""
    key = ("op_mask", tuple(sorted(names)))

    def make():
        m = torch.zeros(len(OP_NAMES), dtype=torch.bool)
        for n in names:
            m[OP_INDEX[n]] = True
        return m

    return _const(key, make, op.device)[op]


# ----------------------------------------------------------------------------- random draws


def _rand(shape, generator, device) -> torch.Tensor:
    """Uniform [0, 1) float32 drawn with ``generator`` (on its own device), moved to ``device``."""
    gdev = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gdev).to(device, non_blocking=True)


def _randn(shape, generator, device) -> torch.Tensor:
    gdev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gdev).to(device, non_blocking=True)


def _randint(high: int, shape, generator, device) -> torch.Tensor:
    gdev = generator.device if generator is not None else device
    return torch.randint(high, shape, generator=generator, device=gdev).to(
        device, non_blocking=True
    )


def _random_sign(n: int, generator, device) -> torch.Tensor:
    return torch.where(_rand(n, generator, device) < 0.5, -1.0, 1.0)


def _draw_gamma(alpha: float, n: int, generator, device, tries: int = 16) -> dict:
    """The random numbers :func:`_gamma_from` turns into ``n`` Gamma(alpha, 1) samples."""
    d = {"z": _randn((n, tries), generator, device), "u": _rand((n, tries), generator, device)}
    if alpha < 1.0:
        d["v"] = _rand(n, generator, device)
    return d


def _gamma_from(alpha: float, d: dict) -> torch.Tensor:
    """Gamma(alpha, 1) samples without a host sync (Marsaglia-Tsang, vectorized rejection).

    ``tries`` candidates per sample; the first accepted one is used (all rejected: < 1e-20).
    For alpha < 1 the Gamma(alpha + 1) draw is scaled by U**(1/alpha).
    """
    a = alpha + 1.0 if alpha < 1.0 else alpha
    dd = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * dd)
    z, u = d["z"], d["u"].clamp_min(1e-12)
    v = (1.0 + c * z) ** 3
    ok = (v > 0) & (torch.log(u) < 0.5 * z * z + dd - dd * v + dd * torch.log(v.clamp_min(1e-12)))
    first = torch.argmax(ok.float(), dim=1, keepdim=True)  # first accepted candidate
    g = (dd * v.clamp_min(1e-12)).gather(1, first).squeeze(1)
    if alpha < 1.0:
        g = g * d["v"].clamp_min(1e-12) ** (1.0 / alpha)
    return g


def _sample_gamma(alpha: float, n: int, generator, device, tries: int = 16) -> torch.Tensor:
    """``n`` Gamma(alpha, 1) samples (see :func:`_gamma_from`)."""
    return _gamma_from(alpha, _draw_gamma(alpha, n, generator, device, tries))


def _beta_from(alpha: float, d: dict) -> torch.Tensor:
    """One Beta(alpha, alpha) draw as a 0-d tensor, from :func:`_draw_gamma` draws for n = 2."""
    g = _gamma_from(alpha, d)
    return (g[0] / (g[0] + g[1]).clamp_min(1e-12)).clamp(0.0, 1.0)


def _sample_beta(alpha: float, generator, device) -> torch.Tensor:
    """One Beta(alpha, alpha) draw as a 0-d tensor on ``device``."""
    return _beta_from(alpha, _draw_gamma(alpha, 2, generator, device))


# ----------------------------------------------------------------------------- dtype helpers


def _check_batch(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} must be a [B, C, H, W] image tensor, got {shape}.")


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.float()


def _restore(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Back to ``like``'s dtype: uint8 rounded, float clamped to [0, 255]."""
    if like.dtype == torch.uint8:
        return out.round().clamp_(0, 255).to(torch.uint8)
    return out.clamp(0, 255).to(like.dtype)


def _bshape(v: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, 1, 1] for broadcasting over images."""
    return v.view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------- crop and flip


def _crop_flip_with_offsets(
    x: torch.Tensor,
    padding: int,
    dy: torch.Tensor,
    dx: torch.Tensor,
    flip: torch.Tensor | None = None,
    padding_mode: str = "constant",
) -> torch.Tensor:
    """Crop ``x`` padded by ``padding`` at per-image offsets ``dy, dx`` in ``[0, 2*padding]``,
    optionally mirrored (``flip`` bool [B]); one gather, no padded copy is made.

    ``out[b, :, i, j] = padded[b, :, i + dy[b], j + dx[b]]``; padding is zeros (``"constant"``)
    or ``"reflect"``.
    """
    B, C, H, W = x.shape
    dev = x.device
    rows = torch.arange(H, device=dev)[None, :] + dy.to(dev).long()[:, None] - padding  # [B,H]
    cols = torch.arange(W, device=dev)[None, :] + dx.to(dev).long()[:, None] - padding  # [B,W]
    if flip is not None:
        cols = torch.where(flip.to(dev)[:, None], cols.flip(1), cols)
    if padding_mode == "reflect":
        rows = rows.abs()
        rows = torch.where(rows >= H, 2 * (H - 1) - rows, rows)
        cols = cols.abs()
        cols = torch.where(cols >= W, 2 * (W - 1) - cols, cols)
        valid = None
    elif padding_mode == "constant":
        valid = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
    else:
        raise InputError(f"padding_mode must be 'constant' or 'reflect', got {padding_mode!r}.")
    idx = rows.clamp(0, H - 1)[:, :, None] * W + cols.clamp(0, W - 1)[:, None, :]  # [B,H,W]
    out = x.reshape(B, C, H * W).gather(2, idx.view(B, 1, H * W).expand(B, C, H * W))
    out = out.view(B, C, H, W)
    if valid is not None:
        out = out * valid[:, None].to(out.dtype)
    return out


def _crop_with_offsets(x, padding, dy, dx, padding_mode="constant") -> torch.Tensor:
    """Crop at explicit per-image offsets (see :func:`_crop_flip_with_offsets`)."""
    return _crop_flip_with_offsets(x, padding, dy, dx, None, padding_mode)


def random_crop(
    x: torch.Tensor, padding: int, generator=None, padding_mode: str = "constant"
) -> torch.Tensor:
    """Pad by ``padding`` (zeros or reflect) and crop back to H x W at a random offset per image."""
    _check_batch(x)
    if padding < 0:
        raise InputError(f"crop padding must be >= 0, got {padding}.")
    if padding == 0:
        return x
    B = x.shape[0]
    dy = _randint(2 * padding + 1, (B,), generator, x.device)
    dx = _randint(2 * padding + 1, (B,), generator, x.device)
    return _crop_with_offsets(x, padding, dy, dx, padding_mode)


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror every image left-right."""
    return x.flip(-1)


def random_hflip(x: torch.Tensor, generator=None, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    _check_batch(x)
    mask = _rand(x.shape[0], generator, x.device) < p
    return torch.where(_bshape(mask), x.flip(-1), x)


# ----------------------------------------------------------------------------- geometry


def _warp(x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Resample float ``x`` with per-image affine maps ``A`` [B, 2, 3] given in pixels about
    the image centre (output position -> input position); outside is filled with zeros."""
    B, C, H, W = x.shape
    theta = A.clone()
    # pixel offsets about the centre -> normalized [-1, 1] coordinates (align_corners=False)
    theta[:, 0, 1] = A[:, 0, 1] * (H / W)
    theta[:, 1, 0] = A[:, 1, 0] * (W / H)
    theta[:, 0, 2] = A[:, 0, 2] * (2.0 / W)
    theta[:, 1, 2] = A[:, 1, 2] * (2.0 / H)
    grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _identity_affine(B: int, device) -> torch.Tensor:
    A = torch.zeros(B, 2, 3, device=device)
    A[:, 0, 0] = 1.0
    A[:, 1, 1] = 1.0
    return A


def _geo_affine(name: str, v: torch.Tensor) -> torch.Tensor:
    """Affine map [B, 2, 3] of geometric op ``name`` with per-image value ``v`` (shear factor,
    translation in pixels, or rotation in degrees)."""
    A = _identity_affine(v.shape[0], v.device)
    if name == "ShearX":
        A[:, 0, 1] = v
    elif name == "ShearY":
        A[:, 1, 0] = v
    elif name == "TranslateX":
        A[:, 0, 2] = -v
    elif name == "TranslateY":
        A[:, 1, 2] = -v
    elif name == "Rotate":
        r = v * (math.pi / 180.0)
        cos, sin = torch.cos(r), torch.sin(r)
        A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1] = cos, sin, -sin, cos
    else:
        raise KeyError(name)
    return A


# ----------------------------------------------------------------------------- colour ops (float)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0:1] * _GRAY[0] + x[:, 1:2] * _GRAY[1] + x[:, 2:3] * _GRAY[2]


def _brightness(x, f):
    return (x * _bshape(f)).clamp_(0, 255)


def _color(x, f):
    g = _gray(x)
    return (g + _bshape(f) * (x - g)).clamp_(0, 255)


def _contrast(x, f):
    m = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return (m + _bshape(f) * (x - m)).clamp_(0, 255)


def _sharpness(x, f):
    B, C, H, W = x.shape
    if H < 3 or W < 3:
        return x
    k = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    k[1, 1] = 5.0
    k = (k / 13.0).expand(C, 1, 3, 3).contiguous()
    blurred = x.clone()
    blurred[:, :, 1:-1, 1:-1] = F.conv2d(x, k, groups=C)  # borders keep the original pixels
    return (blurred + _bshape(f) * (x - blurred)).clamp_(0, 255)


def _posterize(x, bits):
    q = torch.pow(2.0, 8.0 - _bshape(bits).to(x.dtype))
    return torch.floor(x.round() / q) * q


def _solarize(x, threshold):
    return torch.where(x >= _bshape(threshold), 255.0 - x, x)


def _autocontrast(x, _=None):
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    ok = hi > lo
    scale = torch.where(ok, 255.0 / (hi - lo).clamp_min(1e-6), torch.ones_like(hi))
    lo = torch.where(ok, lo, torch.zeros_like(lo))
    return ((x - lo) * scale).clamp_(0, 255)


def _equalize(x, _=None):
    """Per-image, per-channel histogram equalization (PIL's algorithm), batched via scatter_add."""
    B, C, H, W = x.shape
    v = x.round().clamp(0, 255).long().view(B * C, H * W)
    hist = torch.zeros(B * C, 256, device=x.device, dtype=torch.long)
    hist.scatter_add_(1, v, torch.ones_like(v))
    # count in the highest non-empty bin
    last_bin = (torch.arange(256, device=x.device) * (hist > 0)).argmax(dim=1, keepdim=True)
    last = hist.gather(1, last_bin)
    step = (H * W - last) // 255  # [B*C, 1]
    cdf_before = hist.cumsum(1) - hist
    lut = ((cdf_before + step // 2) // step.clamp_min(1)).clamp(0, 255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=x.device).expand_as(lut))
    return lut.gather(1, v).view(B, C, H, W).to(x.dtype)


def _invert(x, _=None):
    return 255.0 - x


_COLOUR_FNS = {
    "Brightness": _brightness,
    "Color": _color,
    "Contrast": _contrast,
    "Sharpness": _sharpness,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
    "Invert": _invert,
}


def _op_value(name: str, frac: torch.Tensor, sign: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Per-image op argument from magnitude fraction ``frac`` in [0, 1] (level / max level) and a
    random ``sign``; ranges as in the AutoAugment / RandAugment papers (torchvision's table)."""
    if name in ("ShearX", "ShearY"):
        return 0.3 * frac * sign
    if name == "TranslateX":
        return (150.0 / 331.0) * W * frac * sign
    if name == "TranslateY":
        return (150.0 / 331.0) * H * frac * sign
    if name == "Rotate":
        return 30.0 * frac * sign
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return 1.0 + 0.9 * frac * sign
    if name == "Posterize":
        return 8.0 - torch.round(4.0 * frac)  # bits kept
    if name == "Solarize":
        return 255.0 * (1.0 - frac)  # threshold
    return frac  # AutoContrast, Equalize, Invert, Identity: no magnitude


def _policy_affine(op, frac, sign, H: int, W: int, candidates) -> tuple[torch.Tensor, torch.Tensor]:
    """One affine map [B, 2, 3] per image covering all geometric ops (identity for the rest),
    and the mask of images whose op is geometric. Built with a few batched ops, not per op."""
    one, zero = torch.ones_like(frac), torch.zeros_like(frac)

    def pick(name, value, default):
        if name not in candidates:
            return default
        return torch.where(_op_mask(op, (name,)), value, default)

    shear = 0.3 * frac * sign
    shift = (150.0 / 331.0) * frac * sign
    angle = (30.0 * math.pi / 180.0) * frac * sign
    cos, sin = pick("Rotate", torch.cos(angle), one), pick("Rotate", torch.sin(angle), zero)
    A = torch.stack(
        [
            torch.stack(
                [cos, sin + pick("ShearX", shear, zero), -pick("TranslateX", shift * W, zero)], 1
            ),
            torch.stack(
                [pick("ShearY", shear, zero) - sin, cos, -pick("TranslateY", shift * H, zero)], 1
            ),
        ],
        1,
    )
    return A, _op_mask(op, [n for n in GEOMETRIC_OPS if n in candidates])


def _apply_ops(
    x: torch.Tensor,
    op: torch.Tensor,
    frac: torch.Tensor,
    sign: torch.Tensor,
    candidates,
    subset: bool | None = None,
) -> torch.Tensor:
    """Apply op ``OP_NAMES[op[b]]`` to image b of float ``x`` for every b, at once.

    Only ops in ``candidates`` are considered; all geometric ops share one ``grid_sample``.
    On CUDA the ops are computed over the whole batch and kept where chosen (``torch.where``:
    no host sync; the blend-type ops share one blend, so few kernels are launched). On CPU each
    op runs on just the images that chose it (index select; a sync costs nothing there).
    ``subset`` forces one of the two.
    """
    B, _, H, W = x.shape
    if subset is None:
        subset = x.device.type == "cpu"
    if subset:
        x = x.clone()  # then updated in place, image subsets at a time
    if any(n in GEOMETRIC_OPS for n in candidates):
        A, is_geo = _policy_affine(op, frac, sign, H, W, candidates)
        if subset:
            idx = is_geo.nonzero().squeeze(1)
            if idx.numel():
                x.index_copy_(0, idx, _warp(x[idx], A[idx]))
        else:
            x = torch.where(_bshape(is_geo), _warp(x, A), x)
    if subset:
        for name in candidates:
            fn = _COLOUR_FNS.get(name)
            sel = op == OP_INDEX[name]
            idx = sel.nonzero().squeeze(1) if fn is not None else None
            if idx is not None and idx.numel():
                v = _op_value(name, frac[idx], sign[idx], H, W)
                x.index_copy_(0, idx, fn(x[idx], v))
        return x
    return _colour_ops_where(x, op, frac, sign, candidates)


def _colour_ops_where(x, op, frac, sign, candidates) -> torch.Tensor:
    """The photometric ops for the whole batch with masks (the GPU path of :func:`_apply_ops`)."""
    cand = set(candidates)

    def sel(*names):
        return _bshape(_op_mask(op, [n for n in names if n in cand]))

    # Brightness / Color / Contrast / Sharpness: blend with a degenerate image, factor 1 +- 0.9 m
    blends = [n for n in ("Brightness", "Color", "Contrast", "Sharpness") if n in cand]
    if blends:
        f = _bshape(1.0 + 0.9 * frac * sign)
        deg = torch.zeros_like(x)
        if "Color" in cand or "Contrast" in cand:
            g = _gray(x)
            deg = torch.where(sel("Color"), g, deg)
            deg = torch.where(sel("Contrast"), g.mean(dim=(1, 2, 3), keepdim=True), deg)
        if "Sharpness" in cand:
            deg = torch.where(sel("Sharpness"), _sharpness(x, torch.zeros_like(frac)), deg)
        x = torch.where(sel(*blends), (deg + f * (x - deg)).clamp_(0, 255), x)
    # Solarize and Invert: invert pixels >= threshold (0 for Invert)
    if "Solarize" in cand or "Invert" in cand:
        thr = _bshape(255.0 * (1.0 - frac))
        if "Invert" in cand:
            thr = torch.where(sel("Invert"), 0.0, thr)
        x = torch.where(sel("Solarize", "Invert") & (x >= thr), 255.0 - x, x)
    if "Posterize" in cand:
        x = torch.where(sel("Posterize"), _posterize(x, 8.0 - torch.round(4.0 * frac)), x)
    if "AutoContrast" in cand:
        x = torch.where(sel("AutoContrast"), _autocontrast(x), x)
    if "Equalize" in cand:
        x = torch.where(sel("Equalize"), _equalize(x), x)
    return x


def apply_op(x: torch.Tensor, name: str, magnitude: float = 0.5, generator=None) -> torch.Tensor:
    """Apply one named op (see ``OP_NAMES``) to every image, at ``magnitude`` in [0, 1] of the
    op's range, with a random sign per image for signed ops. For tests and for showing ops."""
    _check_batch(x)
    if name not in OP_INDEX:
        raise InputError(f"unknown op {name!r}; choose one of {', '.join(OP_NAMES)}.")
    B = x.shape[0]
    op = torch.full((B,), OP_INDEX[name], device=x.device, dtype=torch.long)
    frac = torch.full((B,), float(magnitude), device=x.device)
    sign = _random_sign(B, generator, x.device)
    return _restore(_apply_ops(_as_float(x), op, frac, sign, (name,)), x)


# ----------------------------------------------------------------------------- policies

_AA_OPS = torch.tensor([[OP_INDEX[s[0]] for s in sub] for sub in CIFAR10_POLICY])  # [25, 2]
_AA_PROB = torch.tensor([[s[1] for s in sub] for sub in CIFAR10_POLICY])
_AA_LEVEL = torch.tensor([[0 if s[2] is None else s[2] for s in sub] for sub in CIFAR10_POLICY])
_AA_STAGE_OPS = [
    tuple(sorted({sub[j][0] for sub in CIFAR10_POLICY if sub[j][1] > 0}, key=OP_INDEX.get))
    for j in range(2)
]


def _draw_autoaugment(B: int, generator, device) -> dict:
    """AutoAugment's draws for ``B`` images: sub-policy, whether each step applies, signs."""
    sub = _randint(len(CIFAR10_POLICY), (B,), generator, device)
    return {
        "sub": sub,
        "u": _rand((B, 2), generator, device),
        "sign": _rand((B, 2), generator, device),
    }


def _autoaugment_from(x: torch.Tensor, d: dict, subset: bool | None = None) -> torch.Tensor:
    """AutoAugment on float ``x`` with the draws of :func:`_draw_autoaugment` (no randomness)."""
    dev = x.device
    sub = d["sub"]
    ops = _const("aa_ops", lambda: _AA_OPS, dev)[sub]
    probs = _const("aa_prob", lambda: _AA_PROB, dev)[sub]
    levels = _const("aa_level", lambda: _AA_LEVEL, dev)[sub]
    u, signs = d["u"], torch.where(d["sign"] < 0.5, -1.0, 1.0)
    for j in range(2):
        op = torch.where(u[:, j] < probs[:, j], ops[:, j], OP_INDEX["Identity"])
        x = _apply_ops(
            x, op, levels[:, j].float() / 9.0, signs[:, j], _AA_STAGE_OPS[j], subset=subset
        )
    return x


def autoaugment_cifar10(x: torch.Tensor, generator=None) -> torch.Tensor:
    """AutoAugment's CIFAR-10 policy: one of the 25 sub-policies per image, each step applied
    with its probability and magnitude (level / 9 of the op's range, random sign)."""
    _check_batch(x)
    d = _draw_autoaugment(x.shape[0], generator, x.device)
    return _restore(_autoaugment_from(_as_float(x), d), x)


def _check_randaugment(num_ops: int, magnitude: int) -> None:
    if not 0 <= magnitude <= 30:
        raise InputError(f"RandAugment magnitude must be in 0..30, got {magnitude}.")
    if num_ops < 0:
        raise InputError(f"RandAugment num_ops must be >= 0, got {num_ops}.")


def _draw_randaugment(B: int, num_ops: int, generator, device) -> dict:
    """RandAugment's draws for ``B`` images: per op, which op (an index into the op set) and
    the sign's uniform."""
    d = {"op": [], "sign": []}
    for _ in range(num_ops):
        d["op"].append(_randint(len(RANDAUGMENT_OPS), (B,), generator, device))
        d["sign"].append(_rand(B, generator, device))
    return d


def _randaugment_from(
    x: torch.Tensor, d: dict, magnitude: int, subset: bool | None = None
) -> torch.Tensor:
    """RandAugment on float ``x`` with the draws of :func:`_draw_randaugment`."""
    B, dev = x.shape[0], x.device
    table = _const("ra_ops", lambda: torch.tensor([OP_INDEX[n] for n in RANDAUGMENT_OPS]), dev)
    frac = torch.full((B,), magnitude / 30.0, device=dev)
    for op_i, sign_u in zip(d["op"], d["sign"]):
        sign = torch.where(sign_u < 0.5, -1.0, 1.0)
        x = _apply_ops(x, table[op_i], frac, sign, RANDAUGMENT_OPS, subset=subset)
    return x


def rand_augment(x: torch.Tensor, num_ops: int = 2, magnitude: int = 9, generator=None):
    """RandAugment: ``num_ops`` ops drawn uniformly per image from ``RANDAUGMENT_OPS`` (Identity
    included), all at ``magnitude`` out of 30, random sign per op."""
    _check_batch(x)
    _check_randaugment(num_ops, magnitude)
    d = _draw_randaugment(x.shape[0], num_ops, generator, x.device)
    return _restore(_randaugment_from(_as_float(x), d, magnitude), x)


def _color_jitter_from(x: torch.Tensor, strength: float, u: torch.Tensor) -> torch.Tensor:
    """Colour jitter of float ``x`` with uniforms ``u`` [3, B] (brightness, contrast, colour)."""
    lo = max(0.0, 1.0 - strength)
    f = lo + (1.0 + strength - lo) * u
    return _color(_contrast(_brightness(x, f[0]), f[1]), f[2])


def color_jitter(x: torch.Tensor, strength: float, generator=None) -> torch.Tensor:
    """Brightness, contrast and saturation, each by a per-image factor in [1-s, 1+s]."""
    _check_batch(x)
    if strength <= 0:
        return x
    u = _rand((3, x.shape[0]), generator, x.device)
    return _restore(_color_jitter_from(_as_float(x), strength, u), x)


def _affine_from(x: torch.Tensor, degrees: float, translate: float, u: torch.Tensor):
    """Random affine of float ``x`` with uniforms ``u`` [3, B] (angle, shift x, shift y)."""
    _, _, H, W = x.shape
    u = u * 2 - 1
    A = _geo_affine("Rotate", u[0] * degrees)
    A[:, 0, 2] = -u[1] * translate * W
    A[:, 1, 2] = -u[2] * translate * H
    return _warp(x, A)


def random_affine(
    x: torch.Tensor, degrees: float = 0.0, translate: float = 0.0, generator=None
) -> torch.Tensor:
    """Rotate by U(-degrees, degrees) and shift by U(-translate, translate) of the size, per image."""
    _check_batch(x)
    if degrees <= 0 and translate <= 0:
        return x
    u = _rand((3, x.shape[0]), generator, x.device)
    return _restore(_affine_from(_as_float(x), degrees, translate, u), x)


def _draw_erasing(shape, floating: bool, generator, device) -> dict:
    """Random erasing's draws: box uniforms [5, B] and the fill (noise of the batch's shape)."""
    u = _rand((5, shape[0]), generator, device)
    if floating:
        return {"u": u, "noise": _randn(shape, generator, device)}
    return {"u": u, "noise": _randint(256, shape, generator, device)}


def _erasing_from(
    x: torch.Tensor,
    d: dict,
    p: float,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> torch.Tensor:
    """Random erasing of ``x`` with the draws of :func:`_draw_erasing`."""
    B, C, H, W = x.shape
    dev, u = x.device, d["u"]
    area = (scale[0] + (scale[1] - scale[0]) * u[0]) * (H * W)
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1]
    r = torch.exp(log_r)
    h = torch.sqrt(area * r).round().clamp(1, H)
    w = torch.sqrt(area / r).round().clamp(1, W)
    top = torch.floor(u[2] * (H - h + 1))
    left = torch.floor(u[3] * (W - w + 1))
    ii = torch.arange(H, device=dev).view(1, H, 1)
    jj = torch.arange(W, device=dev).view(1, 1, W)
    t, lft = top.view(B, 1, 1), left.view(B, 1, 1)
    box = (ii >= t) & (ii < t + h.view(B, 1, 1)) & (jj >= lft) & (jj < lft + w.view(B, 1, 1))
    box = box & (u[4] < p).view(B, 1, 1)
    return torch.where(box[:, None], d["noise"].to(x.dtype), x)


def random_erasing(
    x: torch.Tensor,
    p: float = 0.25,
    generator=None,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> torch.Tensor:
    """With probability ``p`` per image, replace a random rectangle (area fraction in ``scale``,
    aspect in ``ratio``) by random values: N(0, 1) noise for float (normalized) batches,
    uniform 0..255 for uint8."""
    _check_batch(x)
    if p <= 0:
        return x
    d = _draw_erasing(x.shape, x.is_floating_point(), generator, x.device)
    return _erasing_from(x, d, p, scale, ratio)


def _draw_mix(mixup_alpha: float, cutmix_alpha: float, generator, device) -> dict:
    """MixUp/CutMix draws: five uniforms (mixed?, which kind, box centre) and the gamma draws
    behind each lambda."""
    d = {"u": _rand(5, generator, device)}
    if mixup_alpha > 0:
        d["mixup"] = _draw_gamma(mixup_alpha, 2, generator, device)
    if cutmix_alpha > 0:
        d["cutmix"] = _draw_gamma(cutmix_alpha, 2, generator, device)
    return d


def _mix_from(x, y_soft, d: dict, mixup_alpha: float, cutmix_alpha: float, prob: float):
    """MixUp or CutMix of ``x`` / ``y_soft`` with the draws of :func:`_draw_mix`."""
    B, _, H, W = x.shape
    dev, u = x.device, d["u"]
    one = torch.ones((), device=dev)
    lam_mix = _beta_from(mixup_alpha, d["mixup"]) if mixup_alpha > 0 else one
    lam_cut = _beta_from(cutmix_alpha, d["cutmix"]) if cutmix_alpha > 0 else one
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cut = u[1] < 0.5
    else:
        use_cut = torch.full((), cutmix_alpha > 0, dtype=torch.bool, device=dev)
    # CutMix box: side ratio sqrt(1 - lam), centre uniform, clipped at the borders
    cut = torch.sqrt(1.0 - lam_cut)
    ch, cw = torch.round(H * cut), torch.round(W * cut)
    cy, cx = torch.floor(u[2] * H), torch.floor(u[3] * W)
    y0, y1 = (cy - ch / 2).floor().clamp(0, H), (cy + ch / 2).floor().clamp(0, H)
    x0, x1 = (cx - cw / 2).floor().clamp(0, W), (cx + cw / 2).floor().clamp(0, W)
    ii = torch.arange(H, device=dev).view(H, 1)
    jj = torch.arange(W, device=dev).view(1, W)
    box = (ii >= y0) & (ii < y1) & (jj >= x0) & (jj < x1)  # [H, W]
    lam_box = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)
    mixed = u[0] < prob
    lam = torch.where(mixed, torch.where(use_cut, lam_box, lam_mix), one)
    weight = torch.where(use_cut, (~box).float(), lam_mix.expand(H, W))  # share of x kept
    weight = torch.where(mixed, weight, one.expand(H, W)).view(1, 1, H, W)
    xf = _as_float(x)
    out = xf * weight + xf.flip(0) * (1.0 - weight)
    if not x.is_floating_point():
        out = out.round().clamp_(0, 255).to(x.dtype)
    y_soft = y_soft.float()
    return out, lam * y_soft + (1.0 - lam) * y_soft.flip(0)


def mixup_cutmix(
    x: torch.Tensor,
    y_soft: torch.Tensor,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    prob: float = 1.0,
    generator=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp or CutMix of the batch with its reverse (image b pairs with B-1-b).

    With probability ``prob`` the batch is mixed: one lambda ~ Beta(alpha, alpha) per batch;
    when both alphas are > 0, MixUp or CutMix is chosen 50/50. CutMix pastes a box of area
    about (1-lambda) and then sets lambda to the exact kept fraction. Targets become
    ``lam * y + (1 - lam) * y_partner`` (rows still sum to 1). No host sync.
    """
    _check_batch(x)
    if (mixup_alpha <= 0 and cutmix_alpha <= 0) or prob <= 0:
        return x, y_soft
    d = _draw_mix(mixup_alpha, cutmix_alpha, generator, x.device)
    return _mix_from(x, y_soft, d, mixup_alpha, cutmix_alpha, prob)


# ----------------------------------------------------------------------------- resize / normalize


def resize(x: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize float images to ``size`` x ``size`` (bilinear or bicubic; antialiasing only when
    shrinking). uint8 input is returned as uint8."""
    _check_batch(x)
    if mode not in ("bilinear", "bicubic"):
        raise InputError(f"resize mode must be 'bilinear' or 'bicubic', got {mode!r}.")
    H, W = x.shape[-2:]
    if (H, W) == (size, size):
        return x
    out = F.interpolate(
        _as_float(x),
        size=(size, size),
        mode=mode,
        align_corners=False,
        antialias=size < min(H, W),
    )
    return out.round().clamp_(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else out


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 or float [0, 255] -> float32 ``(x / 255 - mean) / std``."""
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def make():  # x * scale + shift == (x / 255 - mean) / std
        m, s = torch.tensor(mean), torch.tensor(std)
        return torch.stack([1.0 / (255.0 * s), -m / s]).view(2, 1, -1, 1, 1)

    ss = _const(("normalize", mean, std), make, x.device)
    return torch.addcmul(ss[1], x.float(), ss[0])


def eval_transform(x_uint8: torch.Tensor, spec) -> torch.Tensor:
    """Evaluation preprocessing: normalize with ``spec.mean/std`` and resize to ``spec.size``."""
    _check_batch(x_uint8, "images")
    x = normalize(x_uint8, spec.mean, spec.std)
    if x.shape[-1] != spec.size or x.shape[-2] != spec.size:
        x = resize(x, spec.size)
    return x


# ----------------------------------------------------------------------------- the pipeline


class GpuAugment:
    """The training-time pipeline for one :class:`~helpers.presets.AugConfig`:
    crop -> flip -> AutoAugment/RandAugment -> colour jitter / affine -> float + normalize ->
    random erasing -> resize to ``spec.size`` -> MixUp/CutMix.

    ``aug_fn(x_uint8, y, generator) -> (x float [B,3,S,S] normalized, y_soft float [B,C])``.
    It runs in two parts: :meth:`draw` makes every random number of the batch up front (crop
    offsets, flips, policy ops and signs, jitter, erasing boxes and noise, MixUp/CutMix lambda),
    in the order the single ops draw them, and :meth:`apply` is a pure function of
    (images, labels, draws), so :meth:`compile` can trace it as one graph. The output side S is
    ``spec.size`` (what the model expects); ``aug.resize`` is only the preset's note of it.
    Keep ``x``, ``y`` and ``generator`` on one device: a CPU generator with CUDA images works
    but copies every draw to the GPU.
    """

    def __init__(self, aug, spec, num_classes: int):
        if aug.policy not in (None, "none", "autoaugment", "randaugment"):
            raise InputError(
                f"augmentation policy must be None, 'autoaugment' or 'randaugment', got {aug.policy!r}."
            )
        if aug.crop_padding < 0:
            raise InputError(f"crop_padding must be >= 0, got {aug.crop_padding}.")
        if not 0 <= aug.ra_magnitude <= 30:
            raise InputError(f"ra_magnitude must be in 0..30, got {aug.ra_magnitude}.")
        for name in ("erasing", "mix_prob"):
            if not 0.0 <= getattr(aug, name) <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {getattr(aug, name)}.")
        if aug.mixup_alpha < 0 or aug.cutmix_alpha < 0:
            raise InputError("mixup_alpha and cutmix_alpha must be >= 0.")
        if num_classes < 1:
            raise InputError(f"num_classes must be >= 1, got {num_classes}.")
        self.aug, self.spec, self.num_classes = aug, spec, int(num_classes)
        self.compiled = None  # torch.compile(self.apply) once compile() succeeded
        self._compile_pending, self._log = False, print

    @property
    def mixes(self) -> bool:
        a = self.aug
        return (a.mixup_alpha > 0 or a.cutmix_alpha > 0) and a.mix_prob > 0

    def _check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        _check_batch(x, "images")
        if x.shape[1] != 3:
            raise InputError(f"expected RGB images [B, 3, H, W], got {tuple(x.shape)}.")
        if y.shape[0] != x.shape[0]:
            raise InputError(f"{x.shape[0]} images but {y.shape[0]} labels.")

    def draw(self, x: torch.Tensor, generator=None) -> dict:
        """Every random number the batch ``x`` needs, as tensors on ``x``'s device (no sync)."""
        a, (B, C, H, W), dev = self.aug, x.shape, x.device
        d: dict = {}
        if a.crop_padding > 0:
            d["crop"] = _randint(2 * int(a.crop_padding) + 1, (2, B), generator, dev)
        if a.flip:
            d["flip"] = _rand(B, generator, dev)
        if a.policy == "autoaugment":
            d["autoaugment"] = _draw_autoaugment(B, generator, dev)
        elif a.policy == "randaugment":
            d["randaugment"] = _draw_randaugment(B, a.ra_ops, generator, dev)
        if a.color_jitter > 0:
            d["jitter"] = _rand((3, B), generator, dev)
        if a.rotate_degrees > 0 or a.translate > 0:
            d["affine"] = _rand((3, B), generator, dev)
        if a.erasing > 0:
            d["erasing"] = _draw_erasing((B, C, H, W), True, generator, dev)
        if self.mixes:
            d["mix"] = _draw_mix(a.mixup_alpha, a.cutmix_alpha, generator, dev)
        return d

    def apply(self, x: torch.Tensor, y: torch.Tensor, d: dict, subset: bool | None = None):
        """The pipeline on uint8 ``x`` and labels ``y`` with the draws ``d`` of :meth:`draw`:
        a pure function (no randomness, no host sync on the ``torch.where`` path, which
        ``subset=False`` forces; by default CPU tensors take image subsets, as the ops do)."""
        a = self.aug
        B, dev = x.shape[0], x.device
        if a.crop_padding > 0 or a.flip:  # fused: one gather on the uint8 batch
            p = int(a.crop_padding)
            off = d["crop"] if p > 0 else torch.zeros(2, B, dtype=torch.long, device=dev)
            flip = (d["flip"] < 0.5) if a.flip else None
            x = _crop_flip_with_offsets(x, p, off[0], off[1], flip)
        x = _as_float(x)
        if a.policy == "autoaugment":
            x = _restore(_autoaugment_from(x, d["autoaugment"], subset), x)
        elif a.policy == "randaugment":
            x = _restore(_randaugment_from(x, d["randaugment"], a.ra_magnitude, subset), x)
        if a.color_jitter > 0:
            x = _restore(_color_jitter_from(x, a.color_jitter, d["jitter"]), x)
        if a.rotate_degrees > 0 or a.translate > 0:
            x = _restore(_affine_from(x, a.rotate_degrees, a.translate, d["affine"]), x)
        x = normalize(x, self.spec.mean, self.spec.std)
        if a.erasing > 0:
            x = _erasing_from(x, d["erasing"], a.erasing)
        x = resize(x, self.spec.size)
        y_soft = torch.zeros(B, self.num_classes, device=dev)
        y_soft.scatter_(1, y.to(dev).long().view(B, 1), 1.0)  # one-hot without a host sync
        if self.mixes:
            x, y_soft = _mix_from(x, y_soft, d["mix"], a.mixup_alpha, a.cutmix_alpha, a.mix_prob)
        return x, y_soft

    def _apply_where(self, x, y, d):
        return self.apply(x, y, d, subset=False)

    def compile(self, log=print) -> bool:
        """Compile :meth:`apply` (the ``torch.where`` path) as one graph; the first call that
        fails to compile falls back to eager with a warning. Returns whether it is on."""
        try:
            self.compiled = torch.compile(self._apply_where, fullgraph=True, dynamic=False)
        except Exception as e:
            log(f"warning: torch.compile of the augmentation unavailable ({type(e).__name__}).")
            self.compiled = None
        self._compile_pending, self._log = self.compiled is not None, log
        return self.compiled is not None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator=None):
        self._check(x, y)
        d = self.draw(x, generator)
        if self.compiled is None:
            return self.apply(x, y, d)
        if not self._compile_pending:
            return self.compiled(x, y, d)
        try:
            out = self.compiled(x, y, d)
        except (torch.cuda.OutOfMemoryError, KeyboardInterrupt):
            raise
        except Exception as e:
            self._log(
                f"warning: torch.compile of the augmentation failed ({type(e).__name__}: "
                f"{str(e)[:200]}); augmenting eagerly."
            )
            self.compiled = None
            out = self.apply(x, y, d)
        self._compile_pending = False
        return out

    def __repr__(self) -> str:
        on = ", compiled" if self.compiled is not None else ""
        return f"GpuAugment({self.aug}, size={self.spec.size}, classes={self.num_classes}{on})"


__all__ = [
    "CIFAR10_POLICY",
    "GpuAugment",
    "OP_NAMES",
    "RANDAUGMENT_OPS",
    "apply_op",
    "autoaugment_cifar10",
    "color_jitter",
    "eval_transform",
    "hflip",
    "mixup_cutmix",
    "normalize",
    "rand_augment",
    "random_affine",
    "random_crop",
    "random_erasing",
    "random_hflip",
    "resize",
]
