"""Keyframes on demand (``helpers.textseg.doubt``): when an object's own signals say that
propagation is failing, the loop detects early instead of waiting for the next fixed keyframe."""

import numpy as np
from scripted_session import ScriptedSession

from helpers.textseg import track
from helpers.textseg.doubt import Doubt
from helpers.textseg.identity import Detections, IdBook, Identity, State

H, W = 48, 96
SIZE = 12


def _box(t: int) -> np.ndarray:  # the object moves right 1 px per frame
    x = 4 + t
    return np.array([x, 18, x + SIZE, 18 + SIZE], np.float32)


def _mask(box) -> np.ndarray:
    m = np.zeros((H, W), bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    m[y0:y1, x0:x1] = True
    return m


def _book(velocity=(1.0, 0.0)) -> IdBook:
    book = IdBook()
    v = None if velocity is None else np.array(velocity, np.float32)
    book.objects[1] = Identity("dog", State.TRACKED, velocity=v)
    return book


def _doubt_at_key(book, key=30, box=None, area=144.0) -> Doubt:
    d = Doubt(gap=10)
    d.observed({1: _box(key) if box is None else box}, {1: area})
    d.keyframe(key, book.live, detected=book.live)
    return d


def _asks(d, book, t, box, area, next_key=60, scores=None) -> bool:
    d.observed({} if box is None else {1: box}, {} if box is None else {1: area})
    return d.wants(t, book, next_key, scores)


def test_an_object_that_follows_its_velocity_raises_no_doubt():
    book = _book()
    d = _doubt_at_key(book)
    assert not any(_asks(d, book, t, _box(t), 144.0) for t in range(31, 50))
    assert d.extra == 0


def test_each_signal_of_failing_propagation_asks_for_a_detection():
    book = _book()
    assert _asks(_doubt_at_key(book), book, 40, None, 0)  # lost
    assert _asks(_doubt_at_key(book), book, 40, _box(40), 144.0, scores={1: -3.0})  # SAM 2: gone
    assert _asks(_doubt_at_key(book), book, 40, _box(40), 60.0)  # area under half
    assert _asks(_doubt_at_key(book), book, 40, _box(40), 300.0)  # area over twice
    slid = _box(40) + np.array([5, 5, 5, 5], np.float32)  # 5 px off where it should be
    assert _asks(_doubt_at_key(book), book, 40, slid, 144.0)
    still = _box(30)  # the mask stayed behind while the object walked on
    assert _asks(_doubt_at_key(book), book, 40, still, 144.0)
    empty = Doubt(gap=10)  # no mask on the keyframe, one now: propagation re-acquired something
    empty.observed({}, {})
    empty.keyframe(30, book.live, detected=book.live)
    assert _asks(empty, book, 40, _box(40), 144.0)
    # a small slide (1 px) is not a doubt
    assert not _asks(_doubt_at_key(book), book, 40, _box(40) + 1, 144.0)


def test_a_missed_object_keeps_the_reference_of_its_last_detection():
    """A keyframe that missed the object did not check its mask: the slide since the object
    was last detected still counts (a blank keyframe does not hide a mask sliding away)."""
    book = _book()

    def slid(t):  # the mask slides 0.1 px per frame off the object from frame 30 on
        return _box(t) + (t - 30) * 0.1

    missed = _doubt_at_key(book, key=30)
    missed.observed({1: slid(60)}, {1: 144.0})
    missed.keyframe(60, book.live, detected=set())
    assert _asks(missed, book, 70, slid(70), 144.0, next_key=90)
    again = _doubt_at_key(book, key=30)  # detected on frame 60: 10 frames of slide since
    again.observed({1: slid(60)}, {1: 144.0})
    again.keyframe(60, book.live, detected={1})
    assert not _asks(again, book, 70, slid(70), 144.0, next_key=90)


def test_an_unconfirmed_track_raises_no_doubt():
    """A track started by one detection (no velocity yet) that fades is most likely a false
    box: detecting again for it would only bring more of them."""
    book = _book(velocity=None)
    assert not _asks(_doubt_at_key(book), book, 40, None, 0)


def test_extra_keyframes_are_spaced_by_the_gap():
    book = _book()
    assert not _asks(_doubt_at_key(book), book, 35, None, 0)  # 5 frames after a keyframe
    assert not _asks(_doubt_at_key(book), book, 55, None, 0)  # 5 frames before the next fixed
    assert _asks(_doubt_at_key(book), book, 40, None, 0, next_key=None)  # chunk's last stretch


class LosingSession(ScriptedSession):
    """Propagation that follows the object until frame ``lose_at``, then loses it until it
    is prompted again; ``object_scores`` like SAM 2's (negative: not there)."""

    def __init__(self, lose_at: int):
        super().__init__()
        self.lose_at, self.object_scores = lose_at, {}

    def prompt(self, t, prompts):
        for i, _kind, _value in prompts:
            self.objs[i] = True
        return self._frame(t)

    def _frame(self, t):
        out = {i: _mask(_box(t)) if ok else np.zeros((H, W), bool) for i, ok in self.objs.items()}
        self.object_scores = {i: 4.0 if ok else -4.0 for i, ok in self.objs.items()}
        return out

    def _step(self, t, reverse):
        if t == self.lose_at and not reverse:
            self.objs = dict.fromkeys(self.objs, False)


class LosingProp:
    def __init__(self, lose_at):
        self.lose_at = lose_at

    def open(self, first, end):
        return LosingSession(self.lose_at)


def _run(on: bool, n: int = 75):
    calls = []

    def keyframe_fn(t):
        calls.append(t)
        b = _box(t)
        return Detections(b[None], ["dog"], np.array([0.9]), _mask(b)[None])

    opts = track.LoopOptions(30, "mask", chunk_size=200, detect_on_doubt=on)
    frames = list(track.track_frames(n, LosingProp(40), keyframe_fn, IdBook(), opts))
    return calls, frames


def _area(frame, i=1) -> int:
    from helpers.textseg.render import rle_area

    return int(rle_area(frame[i])) if i in frame else 0


def test_a_lost_object_is_detected_again_on_the_frame_it_was_lost():
    calls, frames = _run(on=True)
    assert calls == [0, 30, 40, 60]
    assert [g for g, _ in frames] == list(range(75))  # every frame once, in order
    assert all(_area(f) == SIZE * SIZE for g, f in frames if g >= 40)  # tracked on, its id
    calls, frames = _run(on=False)
    assert calls == [0, 30, 60]  # the fixed cadence alone: lost from 40 to 59
    assert all(_area(f) == 0 for g, f in frames if 40 <= g < 60)
    assert all(_area(f) == SIZE * SIZE for g, f in frames if g < 40 or g >= 60)


def test_real_sam2_takes_a_keyframe_mid_chunk(sam2_tiny, tmp_path, monkeypatch):
    """The SAM 2 session stops propagating where a doubt is raised (the generator is closed
    early), takes the keyframe there and propagates on from the next frame: every frame comes
    out once, in one chunk, with the detector called on the fixed and the extra keyframe.
    (Random weights give no meaningful signals, so the doubt is raised on frame 4 here.)"""
    from test_track import color_boxes, two_squares_video

    from helpers.textseg import doubt

    monkeypatch.setattr(doubt.Doubt, "wants", lambda self, t, *a, **k: t == 4)
    calls = []

    def detect(image):
        calls.append(1)
        return color_boxes(image)

    src = two_squares_video(tmp_path, n=8)
    r = track.track_video(
        src, "square", None, sam2_tiny, tmp_path / "o", detect_every=100, chunk_size=100,
        detect_fn=detect, render=False,
    )  # fmt: skip
    assert len(calls) == 2  # frame 0 and the extra keyframe on frame 4
    assert sorted(r.masks) == list(range(8)) and r.labels
    off = track.track_video(
        src, "square", None, sam2_tiny, tmp_path / "p", detect_every=100, chunk_size=100,
        detect_fn=detect, render=False, detect_on_doubt=False,
    )  # fmt: skip
    assert len(calls) == 3 and sorted(off.masks) == list(range(8))
