"""helpers.textseg.mask_encoder: masks encoded off the propagating thread, held compactly.

The RLEs must be exactly pycocotools' (the encoder reads only the columns an object covers);
the boxes and areas the identity reads must be the ones it read from bool masks; the chunk
loop must hold a constant number of frames' masks, not a chunk's.
"""

import tracemalloc

import numpy as np
import pytest
import torch

from helpers.textseg import mask_encoder, track
from helpers.textseg.identity import Detections, IdBook, IdentityConfig


def _coco(m: np.ndarray) -> str:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()


def _masks():
    rng = np.random.default_rng(0)
    for h, w in [(7, 5), (1, 9), (9, 1), (3, 3), (33, 47), (720, 1280)]:
        yield np.zeros((h, w), bool)
        yield np.ones((h, w), bool)
        for p in (0.01, 0.5, 0.99):
            yield rng.random((h, w)) < p
        for cols in (np.s_[:, :1], np.s_[:, -1:], np.s_[h // 2 :, w // 3 : w // 2 + 1]):
            m = np.zeros((h, w), bool)
            m[cols] = True
            yield m
        for y, x in [(0, 0), (-1, -1), (0, -1), (-1, 0)]:
            m = np.zeros((h, w), bool)
            m[y, x] = True
            yield m


def test_rles_equal_pycocotools_from_logits_and_from_masks():
    enc = mask_encoder.MaskEncoder()
    try:
        for m in _masks():
            want = _coco(m)
            logits = torch.from_numpy(np.where(m, 4.0, -4.0).astype(np.float32))[None, None]
            (got,) = enc.logits([7], logits).values()
            assert got.rle()["counts"] == want, m.shape
            assert got.rle()["size"] == list(m.shape)
            assert mask_encoder.rle_of(m)["counts"] == want
            assert mask_encoder.rle_of(np.asfortranarray(m))["counts"] == want
            assert np.array_equal(np.asarray(got), m) and got.any() == m.any()
    finally:
        enc.close()


def test_boxes_and_areas_are_what_identity_read_from_bool_masks():
    """The propagating thread reads them on every s-th pixel of the logits: the same numbers
    ``track._box_area`` gives for the thresholded mask (so identity decides the same)."""
    rng = np.random.default_rng(1)
    h, w = 720, 1280
    yy, xx = np.mgrid[:h, :w]
    logits = np.full((3, 1, h, w), -2.0, np.float32)
    for k in range(3):
        cx, cy, r = rng.integers(100, w - 100), rng.integers(100, h - 100), rng.integers(3, 90)
        logits[k, 0][(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 2.0
    enc = mask_encoder.MaskEncoder()
    try:
        pending = enc.logits([4, 5, 6], torch.from_numpy(logits))
        held = enc.masks({i: logits[k, 0] > 0 for k, i in enumerate([4, 5, 6])})
    finally:
        enc.close()
    for k, i in enumerate([4, 5, 6]):
        box, area = track._box_area(logits[k, 0] > 0)
        for m in (pending[i], held[i]):
            got_box, got_area = track._box_area(m)
            assert np.array_equal(got_box, box) and got_area == area
            assert m.shape == (h, w)


def test_at_most_depth_frames_wait_for_the_encoder():
    enc = mask_encoder.MaskEncoder(depth=2)
    gate = __import__("threading").Event()
    try:
        enc._submit(gate.wait)
        enc._submit(gate.wait)
        assert not enc._slots.acquire(timeout=0.2)  # a third frame would wait
        gate.set()
        assert enc._slots.acquire(timeout=5)
        enc._slots.release()
    finally:
        gate.set()
        enc.close()


class _Discs:
    """A propagator whose session gives every object a disc at full resolution, fresh bool
    arrays per frame (what ``sam2_video._to_masks`` gave the loop)."""

    def __init__(self, h, w):
        self.h, self.w = h, w
        self.held = []  # traced bytes in use on each propagated frame

    def disc(self, i, t):
        yy, xx = np.ogrid[: self.h, : self.w]
        cx, cy, r = self.w * (0.1 + 0.17 * (i % 5)), self.h * 0.5, self.h * 0.08
        return (xx - cx - t) ** 2 + (yy - cy) ** 2 <= r * r

    def open(self, first, end):
        return _DiscSession(self)


class _DiscSession:
    def __init__(self, prop):
        self.prop, self.ids = prop, []

    def prompt(self, t, prompts):
        self.ids += [i for i, _, _ in prompts if i not in self.ids]
        return {i: self.prop.disc(i, t) for i in self.ids}

    def propagate(self, a, b, reverse=False):
        for t in range(a, b - 1, -1) if reverse else range(a, b + 1):
            self.prop.held.append(tracemalloc.get_traced_memory()[0])
            yield t, {i: self.prop.disc(i, t) for i in self.ids}

    def remove(self, ids):
        self.ids = [i for i in self.ids if i not in ids]
        return True

    def reset(self):
        self.ids = []

    def close(self):
        pass


@pytest.mark.parametrize("chunk", [32, 64])
def test_chunk_loop_holds_a_constant_number_of_frames_masks(chunk):
    """1080p, 5 objects: a frame's masks are 10 MB as bool arrays. Until the keyframe after
    them is seen the loop keeps every frame of the chunk; held as RLE (and at most
    ``DEPTH`` frames waiting for the encoder; the frame being made, the masks carried into
    the chunk and the keyframe's detections besides) the memory in use while propagating
    stays under 12 frames' worth whatever the chunk's length (holding bool masks it reached
    the chunk's length: 31 / 63 frames' worth)."""
    h, w, n, k = 1080, 1920, 64, 5
    prop = _Discs(h, w)

    def keyframe(t):
        masks = np.stack([prop.disc(i, t) for i in range(1, k + 1)])
        boxes = np.stack([track.mask_box(m) for m in masks])
        return Detections(boxes, ["ball"] * k, np.full(k, 0.9, np.float32), masks)

    book = IdBook(IdentityConfig(fps=30.0))
    opts = track.LoopOptions(detect_every=100, chunk_size=chunk)
    frame_bytes = k * h * w
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        seen = 0
        for _, rles in track.track_frames(n, prop, keyframe, book, opts):
            seen += 1
            assert sorted(rles) == [1, 2, 3, 4, 5]
    finally:
        tracemalloc.stop()
    assert seen == n and len(prop.held) >= n - 1
    held = max(prop.held) - base
    assert held < 12 * frame_bytes, held / frame_bytes


# --------------------------------------------------------------------------- the device branch
# (the branch a GPU takes, run here on CPU tensors: ``device_side=True``)


def test_device_branch_rles_equal_pycocotools_and_stats_are_exact():
    """Run boundaries found on the device (one ``nonzero`` per frame) give pycocotools' RLE;
    boxes and areas are the exact full-resolution ones; scores pass through."""
    from helpers.textseg.identity import mask_box

    enc = mask_encoder.MaskEncoder(device_side=True)
    try:
        for m in _masks():
            logits = torch.from_numpy(np.where(m, 4.0, -4.0).astype(np.float32))[None, None]
            two = torch.cat([logits, -logits])  # the mask and its complement, one frame
            got = enc.logits([7, 8], two, torch.tensor([1.5, -2.0]))
            for g, want in zip(got.values(), (m, ~m)):
                assert g.rle()["counts"] == _coco(want), m.shape
                assert g.area == float(want.sum())
                assert np.array_equal(g.box, mask_box(want))
            assert got[7].score == 1.5 and got[8].score == -2.0
    finally:
        enc.close()


def _ops_on_this_thread(fn) -> dict[str, int]:
    """Counts of the aten ops ``fn`` runs on this thread (dispatch modes are per thread)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: dict[str, int] = {}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name == "_to_copy" and (kwargs or {}).get("device") is None:
                name = "_to_copy (dtype only)"  # a conversion on the device, not a transfer
            counts[name] = counts.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return counts


# ops that make a CUDA host wait for the device (a value, a data-dependent size) or copy
# device memory to the host
SYNCING = ("_local_scalar_dense", "nonzero", "masked_select", "item", "_to_copy", "copy_", "to")


@pytest.mark.parametrize("objects", [1, 16])
def test_device_branch_one_transfer_per_frame_whatever_the_objects(objects):
    """The propagating thread's work per frame on the device branch: no item(), float() or
    nonzero (no hidden wait), and one copy to the host (the [N,6] stats) whatever the
    number of objects; bytes copied = 24 per object."""
    from helpers.textseg import sam2_video

    h, w, frames = 72, 128, 5
    logits = torch.randn(objects, 1, h, w)
    state = {
        "obj_id_to_idx": {i: i for i in range(objects)},
        "output_dict_per_obj": {
            i: {"cond_frame_outputs": {},
                "non_cond_frame_outputs": {t: {"object_score_logits": torch.randn(1, 1)}
                                           for t in range(frames)}}
            for i in range(objects)
        },
    }  # fmt: skip
    tracker = sam2_video.VideoTracker(None, "sam2", torch.device("cpu"), "stub")
    enc = mask_encoder.MaskEncoder(device_side=True)
    ids = list(range(objects))
    copied = []
    real_copy = torch.Tensor.copy_
    try:
        per_frame = []
        for t in range(frames):

            def step(t=t):
                scores = sam2_video._score_logits(tracker, state, t, ids)
                masks = enc.logits(ids, logits, scores)
                assert len(sam2_video._scores(masks)) == objects

            per_frame.append(_ops_on_this_thread(step))
            copied.append(enc._host[:objects].numel() * enc._host.element_size())
    finally:
        enc.close()
        assert torch.Tensor.copy_ is real_copy
    for counts in per_frame:
        syncing = {k: v for k, v in counts.items() if k in SYNCING}
        assert syncing == {"copy_": 1}, counts  # the stats, into the (pinned) host buffer
    assert copied == [24 * objects] * frames


def test_device_branch_is_the_gpu_default():
    """``device_side`` None follows the logits: CPU tensors take the host branch."""
    enc = mask_encoder.MaskEncoder()
    try:
        (m,) = enc.logits([1], torch.ones(1, 1, 8, 8)).values()
        assert m.area == 64 and m.score is None
    finally:
        enc.close()


def test_device_branch_uses_no_opencv(monkeypatch):
    """The device branch never hands a mask to OpenCV (its host-side column reduce was
    slower than the whole device path): every cv2 call fails here, the RLEs still come."""
    import cv2

    def refuse(*a, **k):
        raise AssertionError("cv2 called on the device branch")

    for name in ("reduce", "transpose", "compare", "resize", "LUT", "split"):
        monkeypatch.setattr(cv2, name, refuse)
    m = np.zeros((40, 60), bool)
    m[5:20, 10:50] = True
    logits = torch.from_numpy(np.where(m, 3.0, -3.0).astype(np.float32))[None, None]
    enc = mask_encoder.MaskEncoder(device_side=True)
    try:
        (got,) = enc.logits([1], logits).values()
        assert got.rle()["counts"] == _coco(m)
    finally:
        enc.close()
