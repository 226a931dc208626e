"""Masks turned into compressed COCO RLE on a worker thread, off the thread that propagates.

The video loop (``helpers.textseg.track``) keeps every frame's masks since the last keyframe
(a keyframe may find that two tracks swapped objects and relabel those frames). Held as
full-resolution bool arrays that is chunk x objects x H x W bytes (200 frames x 5 objects at
1080p: 2 GB); held as ``PendingMask`` it is their RLE, a few hundred bytes to a few KB each.

``MaskEncoder.logits(ids, logits, scores)`` takes a frame's SAM 2 logits [N,1,H,W] as the model
gave them (and its object scores) and returns at once ``{id: PendingMask}``: each knows its
box, area and score now while a worker thread RLE-encodes the full-resolution mask.
``MaskEncoder.masks`` does the same for bool masks. At most ``depth`` frames wait for the
worker (the propagating thread waits beyond that), so the raw masks held are a constant
number of frames whatever the chunk size.

Two branches, by where the logits are:

- **device** (a GPU; ``device_side=True`` runs it on CPU tensors in tests): the propagating
  thread thresholds the frame's masks (``> 0``, sam2's rule) and computes every object's box,
  area and score as batched tensor ops (``frame_stats``), then copies those [N,6] numbers
  into pinned memory: one copy and one wait per frame, whatever the number of objects. The
  worker finds each mask's column-major run boundaries on the device (``device_runs``: one
  ``nonzero`` over the whole frame) and copies only those indices to the host.
- **host** (the CPU): boxes and areas are read on every ``s``-th pixel (what identity needs,
  a few pixels' precision) and the worker thresholds and encodes with OpenCV.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from helpers.textseg.identity import mask_box

DEPTH = 4  # frames waiting for the encoder at most


def stride_for(hw) -> int:
    """Boxes and areas are read on every s-th pixel: about 240 samples along the long side."""
    return max(1, max(int(v) for v in hw) // 240)


def box_area_sampled(v: np.ndarray, s: int) -> tuple[np.ndarray, float]:
    """(xyxy box, area) of a mask from its every-``s``-th-pixel sample ``v`` (bool [h,w])."""
    a = float(np.count_nonzero(v)) * s * s
    if not a:
        return np.zeros(4, np.float32), 0.0
    return mask_box(v) * s, a


class PendingMask:
    """One object's mask on one frame: ``box`` and ``area`` now, its RLE (``rle()``) once the
    encoder has it. ``np.asarray(m)`` decodes it to a bool [H,W] array."""

    __slots__ = ("_frame", "_key", "box", "area", "shape", "score")

    def __init__(self, frame: Future, key: int, box, area: float, shape, score=None):
        self._frame, self._key = frame, key
        self.box, self.area, self.shape = box, float(area), tuple(shape)
        self.score = score  # SAM 2's object score logit (> 0: the object is there), or None

    def rle(self) -> dict:
        return self._frame.result()[self._key]

    def __array__(self, dtype=None, copy=None):
        from helpers.textseg.render import rle_to_mask

        m = rle_to_mask(self.rle())
        return m if dtype is None else m.astype(dtype)

    def any(self) -> bool:
        from helpers.textseg.render import rle_area

        return rle_area(self.rle()) > 0


def resolve(masks: dict) -> dict:
    """``{id: bool array}`` from a frame's masks (``PendingMask`` decoded, arrays as they are)."""
    return {i: np.asarray(m) if isinstance(m, PendingMask) else m for i, m in masks.items()}


def rle_of(m) -> dict:
    """A mask's compressed RLE: a ``PendingMask``'s, or a bool array encoded here."""
    if isinstance(m, PendingMask):
        return m.rle()
    if isinstance(m, dict):
        return m
    return _encode_bool(np.asarray(m, dtype=bool))


def frame_stats(masks, scores=None):
    """[N,6] float32 on the masks' device: xyxy box (exclusive ends; zeros when empty), area
    and object score (nan when ``scores`` is None) of bool masks [N,H,W]. Batched: a fixed
    handful of kernels whatever N, no host sync."""
    import torch

    n, h, w = masks.shape
    cols, rows = masks.any(1).to(torch.uint8), masks.any(2).to(torch.uint8)  # [N,W], [N,H]
    area = masks.sum((1, 2), dtype=torch.int32)
    box = (
        torch.stack(
            [
                cols.argmax(1),
                rows.argmax(1),
                w - cols.flip(1).argmax(1),
                h - rows.flip(1).argmax(1),
            ],
            1,
        ).float()
        * (area > 0)[:, None]
    )
    if scores is None:
        score = torch.full((n, 1), float("nan"), device=masks.device)
    else:
        score = scores.reshape(n, 1).float().to(masks.device)
    return torch.cat([box, area[:, None].float(), score], 1)


def sampled_stats(masks: np.ndarray, scores=None) -> np.ndarray:
    """``frame_stats`` of bool numpy masks [N,h,w] on the host (numpy's reductions: a few
    times faster than torch's on such small arrays)."""
    n, h, w = masks.shape
    cols, rows = masks.any(1), masks.any(2)
    area = np.count_nonzero(masks.reshape(n, -1), axis=1).astype(np.float32)
    ends = [
        cols.argmax(1),
        rows.argmax(1),
        w - cols[:, ::-1].argmax(1),
        h - rows[:, ::-1].argmax(1),
    ]
    box = np.stack(ends, 1).astype(np.float32) * (area > 0)[:, None]
    score = np.full(n, np.nan, np.float32) if scores is None else np.reshape(scores, n)
    return np.concatenate([box, area[:, None], score[:, None]], 1)


def device_runs(masks) -> list[np.ndarray]:
    """COCO RLE counts (column-major, zeros first) of bool masks [N,H,W], computed where the
    masks are: the positions where each column-major mask changes value come from one
    ``nonzero`` over the frame; only those indices (and each mask's first pixel) reach the
    host. Exact: the same counts as pycocotools' ``encode``."""
    n, h, w = masks.shape
    flat = masks.transpose(1, 2).reshape(n, h * w)
    obj, pos = (flat[:, 1:] != flat[:, :-1]).nonzero(as_tuple=True)
    first = flat[:, 0].cpu().numpy()
    obj, pos = obj.cpu().numpy(), pos.cpu().numpy() + 1
    cut = np.searchsorted(obj, np.arange(n + 1))
    out = []
    for k in range(n):
        edges = np.concatenate(([0], pos[cut[k] : cut[k + 1]], [h * w]))
        runs = np.diff(edges).astype(np.int64)
        out.append(np.concatenate(([0], runs)) if first[k] else runs)
    return out


class MaskEncoder:
    def __init__(self, depth: int = DEPTH, device_side: bool | None = None):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mask-encode")
        self._slots = threading.BoundedSemaphore(max(1, int(depth)))
        self._stream = None
        self._host = None  # pinned [N,6] buffers for the frame stats, reused
        self.device_side = device_side  # None: where the logits are (a GPU -> device)

    def logits(self, ids, logits, scores=None) -> dict[int, PendingMask]:
        """``{id: PendingMask}`` for SAM 2 logits [N,1,H,W] (device tensor) and its object
        score logits [N] (a device tensor, or None)."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        device = self.device_side
        if device is None:
            device = bool(getattr(logits, "is_cuda", False))
        if device:
            return self._on_device(ids, logits, scores)
        h, w = (int(v) for v in logits.shape[-2:])
        s = stride_for((h, w))
        arr = logits.detach().cpu().numpy() if hasattr(logits, "detach") else np.asarray(logits)
        sc = None if scores is None else np.asarray(scores.detach().cpu(), np.float32)
        stats = sampled_stats(arr[: len(ids), 0, ::s, ::s] > 0, sc)  # every object at once
        fut = self._submit(_encode_logits, logits, len(ids), None, None)
        out = {}
        for k, i in enumerate(ids):
            box, area, score = stats[k, :4] * s, float(stats[k, 4]) * s * s, float(stats[k, 5])
            out[i] = PendingMask(fut, k, box, area, (h, w), None if score != score else score)
        return out

    def _on_device(self, ids, logits, scores) -> dict[int, PendingMask]:
        """The device branch: stats batched on the device, one copy and one wait; the
        masks go to the worker as they are (it encodes them on its own stream)."""
        import torch

        n = len(ids)
        h, w = (int(v) for v in logits.shape[-2:])
        masks = (logits[:n] > 0).reshape(n, h, w)
        stats = frame_stats(masks, scores)
        cuda = masks.is_cuda
        if self._host is None or len(self._host) < n:
            self._host = torch.empty((max(n, 16), 6), pin_memory=cuda)
        host = self._host[:n]
        host.copy_(stats, non_blocking=cuda)
        ready = None
        if cuda:  # on the masks' own device's stream (not only the current device's)
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(masks.device))
            ready.synchronize()  # the one wait of the frame: its stats
        values = host.numpy().copy()
        fut = self._submit(_encode_device, masks, ready, self._cuda_stream(masks))
        out = {}
        for k, i in enumerate(ids):
            box, area, score = values[k, :4], float(values[k, 4]), float(values[k, 5])
            out[i] = PendingMask(fut, k, box, area, (h, w), None if score != score else score)
        return out

    def masks(self, masks: dict) -> dict:
        """``{id: PendingMask}`` for bool [H,W] masks (other values are kept as they are)."""
        todo = {i: m for i, m in masks.items() if isinstance(m, np.ndarray)}
        if not todo:
            return dict(masks)
        arrays = [np.asarray(m, dtype=bool) for m in todo.values()]
        fut = self._submit(lambda: [_encode_bool(m) for m in arrays])
        out = dict(masks)
        for k, (i, m) in enumerate(zip(todo, arrays)):
            s = stride_for(m.shape)
            out[i] = PendingMask(fut, k, *box_area_sampled(m[::s, ::s], s), m.shape)
        return out

    def _cuda_stream(self, logits):
        if not getattr(logits, "is_cuda", False):
            return None
        if self._stream is None:
            import torch

            self._stream = torch.cuda.Stream(logits.device)
        return self._stream

    def _submit(self, fn, *args) -> Future:
        self._slots.acquire()
        try:
            fut = self._pool.submit(fn, *args)
        except BaseException:
            self._slots.release()
            raise
        fut.add_done_callback(lambda _: self._slots.release())
        return fut

    def close(self, wait: bool = True) -> None:
        """Stop the worker; ``wait``: finish what was submitted (else drop it)."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


def _encode_device(masks, ready, stream) -> list[dict]:
    """RLEs of bool masks [N,H,W] on the device, on the worker thread (its own CUDA stream,
    after the propagating thread's ``ready`` event)."""
    import torch

    _, h, w = masks.shape
    if stream is None:
        return [_rle_dict(r, h, w) for r in device_runs(masks)]
    with torch.cuda.stream(stream):
        stream.wait_event(ready)
        masks.record_stream(stream)
        runs = device_runs(masks)
    return [_rle_dict(r, h, w) for r in runs]


def _encode_logits(logits, n: int, ready, stream) -> list[dict]:
    """RLEs of ``logits[:n] > 0`` (full resolution, CPU tensors), on the worker thread."""
    h, w = (int(v) for v in logits.shape[-2:])
    arr = logits.detach().float().cpu().numpy().reshape(-1, h, w)
    try:
        import cv2
    except ImportError:
        return [_encode_bool(arr[k] > 0) for k in range(n)]
    out = []
    for k in range(n):
        # the columns holding any pixel > 0 (one read of the logits), then only those
        # columns thresholded (0/255) and transposed so each column is a row
        cols = np.flatnonzero(_column_max(arr[k]) > 0)
        if len(cols) == 0:
            out.append(_rle_dict(np.array([h * w], np.int64), h, w))
            continue
        x0, x1 = int(cols[0]), int(cols[-1]) + 1
        sub = arr[k][:, x0:x1]
        if min(sub.shape) < 4:  # OpenCV takes an [N,1] array for a scalar
            block = np.ascontiguousarray((sub > 0).T).view(np.uint8)
        else:
            block = cv2.transpose(cv2.compare(sub, 0.0, cv2.CMP_GT))
        out.append(_rle_dict(_runs(block, h, w, x0, x1), h, w))
    return out


def _column_max(a: np.ndarray) -> np.ndarray:
    import cv2

    return a.max(axis=0) if min(a.shape) < 4 else cv2.reduce(a, 0, cv2.REDUCE_MAX)[0]


def _encode_transposed(mt: np.ndarray, h: int, w: int) -> dict:
    """Compressed RLE of a mask given transposed (uint8 [W,H], C-ordered: column x is row x)."""
    cols = np.flatnonzero(mt.max(axis=1))  # a numpy max: 40x faster than cv2.reduce here
    if len(cols) == 0:
        return _rle_dict(np.array([h * w], np.int64), h, w)
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    return _rle_dict(_runs(mt[x0:x1], h, w, x0, x1), h, w)


def _runs(block: np.ndarray, h: int, w: int, x0: int, x1: int) -> np.ndarray:
    """COCO RLE counts (zeros first, column by column) of an [H,W] mask that is empty outside
    columns x0..x1-1, from those columns as rows (``block``: [x1-x0, H], 0 / non-zero)."""
    flat = block.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [flat.size]))).astype(np.int64)
    if flat[0]:  # the block starts inside the object: a zero-long run of zeros first
        runs = np.concatenate(([0], runs))
    runs[0] += x0 * h
    tail = (w - x1) * h
    if tail:
        if len(runs) % 2:  # ends with a run of zeros
            runs[-1] += tail
        else:
            runs = np.append(runs, tail)
    return runs


def _rle_dict(runs: np.ndarray, h: int, w: int) -> dict:
    """``{"size", "counts"}`` with COCO's compressed counts string for uncompressed runs."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        from helpers.textseg.render import compress_counts

        return {"size": [h, w], "counts": compress_counts([int(c) for c in runs])}
    enc = mask_utils.frPyObjects({"size": [h, w], "counts": runs.tolist()}, h, w)
    counts = enc["counts"]
    return {"size": [h, w], "counts": counts.decode() if isinstance(counts, bytes) else counts}


def _encode_bool(m: np.ndarray) -> dict:
    """Compressed RLE of a bool [H,W] mask (C- or Fortran-ordered)."""
    h, w = m.shape
    try:
        import cv2
    except ImportError:
        from helpers.textseg.render import mask_to_rle

        return mask_to_rle(m, compressed=True)
    if m.flags.f_contiguous and not m.flags.c_contiguous:
        mt = m.T.view(np.uint8)  # already column-major: its transpose is C-ordered
    else:  # a C-ordered mask: transpose it (fast)
        mt = cv2.transpose(np.ascontiguousarray(m).view(np.uint8))
    return _encode_transposed(mt, h, w)
