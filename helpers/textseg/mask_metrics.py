"""Mask quality: IoU per image, mean IoU and cumulative IoU over a set, folder scoring."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from helpers.errors import InputError

MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".gif", ".webp")


def _as_bool(mask, what: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[-1] in (3, 4):  # colour mask: any non-zero colour channel
        m = m[..., :3].any(axis=-1)
    if m.ndim != 2:
        raise InputError(f"{what} must be a 2-D mask; got shape {tuple(m.shape)}.")
    return m.astype(bool)


def _inter_union(pred, gt, what: str = "masks") -> tuple[int, int]:
    p, g = _as_bool(pred, "pred"), _as_bool(gt, "gt")
    if p.shape != g.shape:
        raise InputError(
            f"{what}: prediction is {p.shape[1]}x{p.shape[0]} but ground truth is "
            f"{g.shape[1]}x{g.shape[0]}; masks must have the same size."
        )
    return int(np.count_nonzero(p & g)), int(np.count_nonzero(p | g))


def mask_iou(pred, gt) -> float:
    """Intersection over union of two masks (non-zero = foreground); both empty -> 1.0."""
    inter, union = _inter_union(pred, gt)
    return 1.0 if union == 0 else inter / union


def iou_summary(preds, gts, names: list[str] | None = None) -> dict:
    """Mean IoU (average of per-image IoUs) and cumulative IoU (sum of intersections / sum of
    unions) over paired masks, plus the per-image numbers."""
    preds, gts = list(preds), list(gts)
    if len(preds) != len(gts):
        raise InputError(f"Got {len(preds)} predicted masks but {len(gts)} ground-truth masks.")
    if not preds:
        raise InputError("No mask pairs to score.")
    names = list(names) if names is not None else [str(i) for i in range(len(preds))]
    per_image = []
    tot_i = tot_u = 0
    for name, p, g in zip(names, preds, gts):
        inter, union = _inter_union(p, g, what=str(name))
        tot_i += inter
        tot_u += union
        per_image.append(
            {
                "name": name,
                "iou": 1.0 if union == 0 else inter / union,
                "intersection": inter,
                "union": union,
            }
        )
    return {
        "mean_iou": float(np.mean([r["iou"] for r in per_image])),
        "cumulative_iou": 1.0 if tot_u == 0 else tot_i / tot_u,
        "num_images": len(per_image),
        "per_image": per_image,
    }


LOSSY_FORMATS = ("JPEG", "WEBP", "MPO")  # formats whose masks come back with noise


def _threshold(a: np.ndarray, lossy: bool = False) -> np.ndarray:
    """Foreground of grey/colour mask values. A lossless mask (PNG, BMP, TIFF, GIF): every
    non-zero value (0/255 masks, 0/1/2 instance ids, a grey 100, 16-bit ids). A lossy one
    (JPEG, WebP): above half its largest value, so the noise around 0 (and 255) does not
    count; 0/1 label images still count every non-zero pixel."""
    if a.size == 0 or a.dtype == bool:
        return a.astype(bool)
    if not lossy:
        return a != 0
    top = float(a.max())
    if top <= 1:
        return a > 0
    return a > top / 2


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Load a mask image as bool [H,W], upright (its EXIF orientation applied).

    Palette (indexed) masks: any non-zero index counts. Grey or colour masks stored losslessly
    (PNG, BMP, TIFF, GIF): any non-zero value (any channel for colour), whatever the values
    mean (0/255, instance ids 0/1/2, 16-bit ids). JPEG / WebP masks are thresholded at half
    their largest value, so a mask saved as JPEG reads back as it was drawn. Transparent
    pixels are background."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as raw:
            lossy = raw.format in LOSSY_FORMATS
            try:
                im = ImageOps.exif_transpose(raw) or raw
            except Exception:  # a broken EXIF block: the pixels as stored
                im = raw
            if im.mode in ("P", "1"):
                return _as_bool(np.asarray(im), str(path))
            if im.mode in ("RGBA", "LA", "PA"):
                a = np.asarray(im.convert("RGBA"))
                return _threshold(a[..., :3], lossy).any(axis=-1) & (a[..., 3] > 127)
            a = np.asarray(im)
            if a.ndim == 3:
                return _threshold(a[..., :3], lossy).any(axis=-1)
            return _as_bool(_threshold(a, lossy), str(path))
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"Could not read mask {path} ({e}).") from None


def _index(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.suffix.lower() not in MASK_SUFFIXES:
            continue
        if p.stem in out:
            raise InputError(
                f"{folder} has two masks with the stem {p.stem!r} ({out[p.stem].name}, {p.name}); "
                "keep one."
            )
        out[p.stem] = p
    return out


def score_mask_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> dict:
    """Score predicted masks against ground truth, pairing files by stem.

    A prediction ``x_mask.png`` (as ``render.save_image_outputs`` writes) also matches ``x``.
    Returns ``iou_summary``'s dict plus ``unmatched_pred`` / ``unmatched_gt`` (stems).
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for d, what in ((pred_dir, "prediction"), (gt_dir, "ground-truth")):
        if not d.is_dir():
            raise InputError(f"The {what} folder {d} does not exist or is not a folder.")
    preds, gts = _index(pred_dir), _index(gt_dir)
    pairs: list[tuple[str, Path, Path]] = []
    used_gt: set[str] = set()
    unmatched_pred = []
    for stem, p in preds.items():
        key = stem
        if key not in gts and key.endswith("_mask"):
            key = key[: -len("_mask")]
        if key in gts and key not in used_gt:
            pairs.append((key, p, gts[key]))
            used_gt.add(key)
        else:
            unmatched_pred.append(stem)
    unmatched_gt = sorted(set(gts) - used_gt)
    if not pairs:
        raise InputError(
            f"No prediction in {pred_dir} has a ground-truth mask with the same name in {gt_dir}; "
            "name them alike (e.g. cat1.png in both)."
        )
    pairs.sort()
    p_masks, g_masks = [], []
    for key, pp, gp in pairs:
        pm, gm = read_mask(pp), read_mask(gp)
        if pm.shape != gm.shape:
            raise InputError(
                f"mask size mismatch for {key!r}: the prediction {pp} is "
                f"{pm.shape[1]}x{pm.shape[0]} but the ground truth {gp} is "
                f"{gm.shape[1]}x{gm.shape[0]}; predict at the ground truth's size."
            )
        p_masks.append(pm)
        g_masks.append(gm)
    out = iou_summary(p_masks, g_masks, names=[k for k, _, _ in pairs])
    out["unmatched_pred"] = sorted(unmatched_pred)
    out["unmatched_gt"] = unmatched_gt
    return out
