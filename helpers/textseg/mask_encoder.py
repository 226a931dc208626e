"""Masks turned into compressed COCO RLE on a worker thread, off the thread that propagates.

The video loop (``helpers.textseg.track``) keeps every frame's masks since the last keyframe
(a keyframe may find that two tracks swapped objects and relabel those frames). Held as
full-resolution bool arrays that is chunk x objects x H x W bytes (200 frames x 5 objects at
1080p: 2 GB); held as ``PendingMask`` it is their RLE, a few hundred bytes to a few KB each.

``MaskEncoder.logits(ids, logits)`` takes a frame's SAM 2 logits [N,1,H,W] as the model gave
them (on the GPU or the CPU) and returns at once ``{id: PendingMask}``: each knows its box and
area (read on every ``s``-th pixel: what identity needs, a few pixels' precision, computed
once) while a worker thread thresholds the logits (``> 0``, sam2's rule) and RLE-encodes the
full-resolution mask. ``MaskEncoder.masks`` does the same for bool masks. At most ``depth``
frames wait for the worker (the propagating thread waits beyond that), so the raw masks held
are a constant number of frames whatever the chunk size.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from helpers.textseg.identity import mask_box

DEPTH = 8  # frames waiting for the encoder at most


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

    __slots__ = ("_frame", "_key", "box", "area", "shape")

    def __init__(self, frame: Future, key: int, box, area: float, shape):
        self._frame, self._key = frame, key
        self.box, self.area, self.shape = box, float(area), tuple(shape)

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


class MaskEncoder:
    def __init__(self, depth: int = DEPTH):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mask-encode")
        self._slots = threading.BoundedSemaphore(max(1, int(depth)))
        self._stream = None

    def logits(self, ids, logits) -> dict[int, PendingMask]:
        """``{id: PendingMask}`` for SAM 2 logits [N,1,H,W] (device tensor)."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        h, w = (int(v) for v in logits.shape[-2:])
        s = stride_for((h, w))
        small = logits[: len(ids), 0, ::s, ::s] > 0
        small = small.cpu().numpy() if hasattr(small, "cpu") else np.asarray(small)
        ready = None
        if getattr(logits, "is_cuda", False):
            import torch

            ready = torch.cuda.Event()
            ready.record()
        fut = self._submit(_encode_logits, logits, len(ids), ready, self._cuda_stream(logits))
        return {
            i: PendingMask(fut, k, *box_area_sampled(small[k], s), (h, w))
            for k, i in enumerate(ids)
        }

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


def _encode_logits(logits, n: int, ready, stream) -> list[dict]:
    """RLEs of ``logits[:n] > 0`` (full resolution), on the worker thread."""
    h, w = (int(v) for v in logits.shape[-2:])
    if stream is not None:  # threshold and transpose on the GPU, one copy to pinned memory
        import torch

        with torch.cuda.stream(stream):
            stream.wait_event(ready)
            m = (logits[:n] > 0).reshape(n, h, w).transpose(1, 2)
            host = torch.empty(m.shape, dtype=torch.bool, pin_memory=True)
            host.copy_(m, non_blocking=True)
            done = torch.cuda.Event()
            done.record(stream)
        done.synchronize()
        arr = host.numpy()
        return [_encode_fortran(arr[k].T.view(np.uint8)) for k in range(n)]
    arr = logits.detach().float().numpy().reshape(-1, h, w)
    try:
        import cv2
    except ImportError:
        return [_encode_bool(arr[k] > 0) for k in range(n)]
    out = []
    for k in range(n):
        # 0/255 per pixel, transposed so the RLE encoder reads it column by column
        m = cv2.transpose(cv2.compare(np.ascontiguousarray(arr[k]), 0.0, cv2.CMP_GT))
        out.append(_encode_fortran(m.T))
    return out


def _encode_bool(m: np.ndarray) -> dict:
    """Compressed RLE of a bool [H,W] mask (C- or Fortran-ordered)."""
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is None or m.flags.f_contiguous:
        f = np.asfortranarray(m).view(np.uint8)
    else:  # a C-ordered mask: transpose it (fast) into Fortran order
        f = cv2.transpose(np.ascontiguousarray(m).view(np.uint8)).T
    return _encode_fortran(f)


def _encode_fortran(f: np.ndarray) -> dict:
    """Compressed RLE of a Fortran-ordered uint8 [H,W] mask (any non-zero value is set)."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        from helpers.textseg.render import mask_to_rle

        return mask_to_rle(f != 0, compressed=True)
    enc = mask_utils.encode(f)
    return {"size": [int(f.shape[0]), int(f.shape[1])], "counts": enc["counts"].decode()}
