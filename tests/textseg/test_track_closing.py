"""The video's end judges the tracks still unconfirmed: a closing detection on the last frame
confirms the real ones; a false box that started on the last keyframes and is not detected
again is taken back, as it would have been had the video gone on."""

import numpy as np
from test_track_unconfirmed import H, Propagator, W, _mask

from helpers.textseg import render, track
from helpers.textseg.identity import Detections, IdBook, IdentityConfig

N = 60  # frames; keyframes every 10, the last fixed one on frame 50

SCENE = {
    "walker": lambda t: _mask(5 + t),  # detected on every keyframe
    "blob": lambda t: _mask(90, 30) if t >= 45 else _mask(-99),  # a false box's still mask
    "late": lambda t: _mask(40, 2) if t >= 48 else _mask(-99),  # real, came in at frame 48
}


def _run(doubt: bool, detected):
    calls = []

    def detect(t: int) -> Detections:
        calls.append(t)
        names = [k for k in SCENE if t in detected[k] and SCENE[k](t).any()]
        masks = np.stack([SCENE[k](t) for k in names]) if names else np.zeros((0, H, W), bool)
        boxes = np.array([track.mask_box(m) for m in masks]).reshape(-1, 4)
        looks = np.eye(8)[[list(SCENE).index(k) for k in names]]
        return Detections(boxes, ["thing"] * len(names), [0.9] * len(names), masks, looks)

    opts = track.LoopOptions(10, "mask", chunk_size=200, detect_on_doubt=doubt)
    book = IdBook(IdentityConfig(fps=10))
    frames = list(track.track_frames(N, Propagator(SCENE), detect, book, opts))
    assert [t for t, _ in frames] == list(range(N))
    out = {t: {i: render.rle_to_mask(r) for i, r in rles.items()} for t, rles in frames}
    return out, book, calls


def _frames_of(out, name) -> int:
    return sum(
        any(m.any() and (m & SCENE[name](t)).sum() > 0.5 * m.sum() for m in f.values())
        for t, f in out.items()
    )


def test_a_false_box_on_the_last_keyframe_is_judged_by_a_closing_detection():
    seen = {"walker": range(0, N), "blob": [50], "late": [50, N - 1]}
    out, book, calls = _run(True, seen)
    assert calls[-1] == N - 1  # the closing detection
    assert _frames_of(out, "blob") == 0  # not detected again: taken back, no id
    assert sorted(book.labels) == [1, 3]  # the walker and the late one (confirmed)
    assert _frames_of(out, "late") == N - 48  # backfilled to where it came in, kept
    # without keyframes on demand nothing is judged at the end: the false box stays
    out, book, calls = _run(False, seen)
    assert calls[-1] == 50 and _frames_of(out, "blob") == N - 45 and len(book.labels) == 3


def test_no_closing_detection_when_every_track_is_confirmed():
    seen = {"walker": range(0, N), "blob": [], "late": []}
    _, _, calls = _run(True, seen)
    assert calls == list(range(0, N, 10))


def test_the_closing_detection_starts_no_track():
    seen = {"walker": range(0, N), "blob": [N - 1], "late": []}
    out, book, calls = _run(True, {**seen, "late": [50]})
    assert calls[-1] == N - 1 and _frames_of(out, "blob") == 0
    assert sorted(book.labels) == [1]  # the late one, never detected again, taken back too
