"""Masks and boxes compared: IoU, boxes of masks, optimal pairing, and ``LowRes`` (masks
reduced once to at most ``COMPARE_SIDE`` cells a side, so a keyframe's comparisons cost the
same at any resolution). No model and no policy here: ``identity`` decides with these."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helpers.errors import InputError


def masks_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [K, M] between bool masks ``a`` [K,H,W] and ``b`` [M,H,W] (one matmul)."""
    a = np.asarray(a, dtype=bool).reshape(len(a), -1)
    b = np.asarray(b, dtype=bool).reshape(len(b), -1)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    if a.shape[1] != b.shape[1]:
        raise InputError("masks_iou: the two sets of masks have different sizes.")
    af, bf = a.astype(np.float32), b.astype(np.float32)
    inter = af @ bf.T
    union = af.sum(1)[:, None] + bf.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [K, M] between xyxy boxes ``a`` [K,4] and ``b`` [M,4]."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """xyxy box (float32) around the set pixels of a 2-D mask; zeros when empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return np.zeros(4, dtype=np.float32)
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=np.float32)


# masks are compared at most this many cells a side: IoU within 0.04 of full resolution's for
# objects 25 px across at 1080p (0.015 at 50 px), at one cost whatever the video's resolution
COMPARE_SIDE = 256
_CODE = np.array([(1 << k) - 1 for k in range(9)], np.uint8)  # k eighths -> k low bits set
_BITS = np.array([bin(v).count("1") for v in range(256)], np.uint8)  # set bits of a byte


def _ones(x: np.ndarray) -> np.ndarray:
    """Set bits in each row of the uint8 array ``x`` [..., P] (P a multiple of 8)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(np.ascontiguousarray(x).view(np.uint64)).sum(-1, dtype=np.int64)
    return _BITS[x].sum(-1, dtype=np.int64)


@dataclass
class LowRes:
    """Masks as identity compares them: each ``scale`` x ``scale`` block of pixels is one
    cell (``scale`` the smallest integer that brings the long side to at most
    ``COMPARE_SIDE`` cells; 1 for smaller frames, where every comparison is exact).

    A cell holds how much of it the mask covers, in eighths (at least one for any pixel: an
    object smaller than a cell never vanishes), as one byte with that many low bits set. The
    overlap of two masks in a cell is then the smaller of their two coverages, the set bits of
    the two bytes' AND (``overlaps``: packed bit sets, every pair at once): that is the
    overlap whenever one mask's share of the cell lies inside the other's, as it does along
    the edges of two outlines of one object, so IoU and shares covered stay close to their
    full-resolution values. (A cell kept only when half covered loses thin and small
    objects; a product of coverages counts a half-covered cell two outlines share as a
    quarter.) ``area`` is the masks' exact full-resolution pixel count."""

    code: np.ndarray  # [N, P] uint8, P = cells rounded up to a multiple of 8
    area: np.ndarray  # [N] full-resolution pixels in each mask
    scale: int  # full-resolution pixels per cell side
    grid: tuple[int, int]  # cells down and across

    @classmethod
    def of(cls, masks, hw: tuple[int, int], side: int | None = None) -> LowRes:
        """``masks``: bool [H, W] masks of size ``hw`` (a sequence or an [N, H, W] array)."""
        side = COMPARE_SIDE if side is None else int(side)
        h, w = int(hw[0]), int(hw[1])
        f = max(1, -(-max(h, w) // side))
        ch, cw = -(-h // f), -(-w // f)
        code = np.zeros((len(masks), -(-ch * cw // 8) * 8), np.uint8)
        area = np.zeros(len(masks), np.int64)
        # pixels covered in a cell -> its byte (cells that hang over the right or bottom edge
        # count the part outside the frame as uncovered)
        n = np.arange(f * f + 1)
        to_code = _CODE[np.maximum(np.rint(8 * n / (f * f)), n > 0).astype(np.intp)]
        for k, m in enumerate(masks):
            u = np.ascontiguousarray(m, dtype=bool).view(np.uint8)
            if (ch * f, cw * f) != (h, w):
                u = np.pad(u, ((0, ch * f - h), (0, cw * f - w)))
            rows = u[0::f].astype(np.uint32)  # pixel counts: f rows at a time, then f columns
            for r in range(1, f):
                rows += u[r::f]
            counts = rows[:, 0::f].copy()
            for c in range(1, f):
                counts += rows[:, c::f]
            code[k, : ch * cw] = to_code[counts.reshape(-1)]
            area[k] = int(counts.sum())
        return cls(code, area, f, (ch, cw))

    def __len__(self) -> int:
        return len(self.code)

    def take(self, rows) -> LowRes:
        return LowRes(self.code[rows], self.area[rows], self.scale, self.grid)

    @property
    def size(self) -> np.ndarray:
        """[N] each mask's overlap with itself (eighths of a cell)."""
        return _ones(self.code)

    def overlaps(self, other: LowRes) -> np.ndarray:
        """[N, M] overlap of each mask with each of ``other``'s (eighths of a cell)."""
        out = np.zeros((len(self), len(other)), np.int64)
        step = max(1, 2**24 // max(other.code.size, 1))  # rows at a time: 16 MB at most
        for k in range(0, len(self), step):
            out[k : k + step] = _ones(self.code[k : k + step, None] & other.code[None])
        return out


def overlap_iou(inter: np.ndarray, size_a: np.ndarray, size_b: np.ndarray) -> np.ndarray:
    """IoU [K, M] from overlaps [K, M] and the two sets' own sizes [K], [M]."""
    union = size_a[:, None] + size_b[None, :] - inter
    return np.where(union > 0, _ratio(inter, union), 0).astype(np.float32)


def covered_share(inter: np.ndarray, size_b: np.ndarray) -> np.ndarray:
    """[K, M]: share of each mask of the second set covered by each mask of the first."""
    return _ratio(inter, np.broadcast_to(size_b[None, :], inter.shape))


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / np.maximum(b, 1).astype(np.float32)


def assign(score: np.ndarray, threshold: float) -> dict[int, int]:
    """Optimal one-to-one pairs (column -> row) with ``score >= threshold``."""
    from scipy.optimize import linear_sum_assignment

    if score.size == 0:
        return {}
    rows, cols = linear_sum_assignment(score, maximize=True)
    return {int(c): int(r) for r, c in zip(rows, cols) if score[r, c] >= threshold}


def match_ids(
    track_masks: dict[int, np.ndarray], det_masks: np.ndarray, iou_threshold: float = 0.5
) -> list[int | None]:
    """Id of the tracked mask each detection mask belongs to (None = a new object).

    ``track_masks`` maps id -> bool [H,W] (the masks being tracked on this frame);
    ``det_masks`` is bool [M,H,W]. Pairs are chosen by optimal assignment on mask IoU and
    kept when IoU >= ``iou_threshold``; each id is given to at most one detection.
    """
    ids = list(track_masks)
    if len(det_masks) == 0:
        return []
    if not ids:
        return [None] * len(det_masks)
    iou = masks_iou(np.stack([track_masks[i] for i in ids]), det_masks)
    pairs = assign(iou, iou_threshold)
    return [ids[pairs[j]] if j in pairs else None for j in range(len(det_masks))]


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)
