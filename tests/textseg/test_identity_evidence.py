"""helpers.textseg.identity: looks weighted by how well they separate a video's objects, motion
that exchanges crossed tracks, one-detection tracks found where their mask faded, and a frame's
records at a cost independent of the ids ever seen."""

import numpy as np
import pytest
from test_identity import H, W, dets, look, square, step

from helpers.textseg import track
from helpers.textseg.identity import IdBook, IdentityConfig, LookEvidence


def _towards(e1, e2, c1, c2, rng):
    """A unit vector with cosine ``c1`` with ``e1`` and ``c2`` with ``e2``."""
    g = np.array([[e1 @ e1, e1 @ e2], [e2 @ e1, e2 @ e2]])
    a, b = np.linalg.solve(g, [c1, c2])
    v = a * e1 + b * e2
    w = rng.normal(size=len(e1))
    w -= (w @ e1) * e1
    w -= (w @ (e2 - (e2 @ e1) * e1)) * (e2 - (e2 @ e1) * e1) / np.sum((e2 - (e2 @ e1) * e1) ** 2)
    rest = 1 - float(v @ v)
    assert rest > 0
    return v + np.sqrt(rest) * w / np.linalg.norm(w)


def test_before_any_evidence_the_configured_thresholds_decide():
    cfg = IdentityConfig()
    same_at, other_below = LookEvidence().cut(cfg)
    assert same_at == pytest.approx(cfg.reid_threshold)
    assert other_below == pytest.approx(cfg.veto_threshold)


def test_looks_that_do_not_separate_are_ignored():
    """Features that say nothing (every cosine random): once the video shows it, a detection
    on object 1's mask whose look resembles object 2 stays object 1, as it does with no looks
    at all; trusting the look would swap the two."""
    rng = np.random.default_rng(3)
    d = 8

    def rand():
        v = rng.normal(size=d)
        return v / np.linalg.norm(v)

    a, b = (20, 30), (48, 30)  # side by side: each plausible where the other is
    seeing, blind = IdBook(IdentityConfig(fps=30.0)), IdBook(IdentityConfig(fps=30.0))
    for t in range(0, 300, 30):
        tracked = {i: square(*p) for i, p in zip((1, 2), (a, b))} if t else {}
        p1, _ = step(seeing, t, tracked, dets([square(*a), square(*b)], looks=[rand(), rand()]))
        p2, _ = step(blind, t, tracked, dets([square(*a), square(*b)]))
        assert p1.ids == p2.ids == [1, 2], t
    assert np.isnan(seeing.look_cuts([1, 2])[0]).all()  # no separation: looks ignored
    e1, e2 = seeing.objects[1].embedding, seeing.objects[2].embedding
    crossed = [_towards(e1, e2, 0.0, 0.8, rng), _towards(e1, e2, 0.8, 0.0, rng)]
    tracked = {1: square(*a), 2: square(*b)}
    p1, _ = step(seeing, 300, tracked, dets([square(*a), square(*b)], looks=crossed))
    p2, _ = step(blind, 300, tracked, dets([square(*a), square(*b)]))
    assert p1.ids == p2.ids == [1, 2]


def test_a_few_confirmed_looks_already_lower_the_bar():
    """Two keyframes teach the book that one object's looks are ~0.75 alike and others' ~0.3:
    a dog returning elsewhere at cosine 0.72 with its old look (0.35 or less with the rival's)
    gets its id back, where the fixed 0.8 would refuse it."""
    rng = np.random.default_rng(0)
    book = IdBook(IdentityConfig(fps=30.0, keep_seconds=0))
    a, b = (10, 10), (80, 60)
    for t in (0, 30, 60):
        d = dets([square(*a), square(*b)], looks=[look(1, 0.7, rng), look(2, 0.7, rng)])
        tracked = {i: square(*p) for i, p in zip((1, 2), (a, b))} if t else {}
        plan, _ = step(book, t, tracked, d)
        assert plan.ids == [1, 2]
    assert book.looks["same"][1] < 5  # too few for the video-wide threshold
    step(book, 90, {1: np.zeros((H, W), bool), 2: square(*b)}, dets([square(*b)], looks=[look(2)]))
    e1, e2 = book.objects[1].embedding, book.objects[2].embedding
    back = _towards(e1, e2, 0.72, min(0.35, float(e1 @ e2) + 0.1), rng)
    assert book.look_cuts([1])[0][0] < 0.72 < book.reid_threshold
    plan, _ = step(book, 120, {2: square(*b)}, dets([square(40, 10), square(*b)],
                                                    looks=[back, look(2)]))  # fmt: skip
    assert plan.ids == [1, 2] and plan.revived == {1}


def test_motion_exchanges_tracks_that_propagation_crossed():
    """Two look-alike dogs walk towards each other and pass; propagation exchanged their masks
    at the crossing. With no looks, where each one's motion puts it gives each detection its
    own id back (and says whose mask sat where, for the repair)."""
    book = IdBook(IdentityConfig(fps=30.0))
    for t in (0, 30):  # dog 1 moves right, dog 2 left, 0.5 px a frame
        x1, x2 = 10 + t // 2, 90 - t // 2
        tracked = {1: square(x1, 40), 2: square(x2, 40)} if t else {}
        plan, _ = step(book, t, tracked, dets([square(x1, 40), square(x2, 40)]))
        assert plan.ids == [1, 2]
    x1, x2 = 10 + 90 // 2, 90 - 90 // 2  # frame 90: they passed each other
    swapped = {1: square(x2, 40), 2: square(x1, 40)}  # each mask on the other dog
    plan, _ = step(book, 90, swapped, dets([square(x1, 40), square(x2, 40)]))
    assert plan.ids == [1, 2] and plan.moved == {1: 2, 2: 1}


def test_a_frames_records_do_not_build_every_ids_labels(monkeypatch):
    """``frame_records`` looks up the frame's own ids only (``IdBook.label_of``)."""
    from helpers.textseg import render

    book = IdBook()
    step(book, 0, {}, dets([square(10, 10), square(60, 40)], ["dog", "cat"]))
    monkeypatch.setattr(IdBook, "labels", property(lambda self: pytest.fail("labels built")))
    monkeypatch.setattr(IdBook, "scores", property(lambda self: pytest.fail("scores built")))
    recs = track.frame_records({2: render.mask_to_rle(square(60, 40))}, book, {})
    assert [(r["id"], r["label"], r["score"]) for r in recs] == [(2, "cat", 0.9)]
    assert book.label_of(99) == "object" and book.score_of(99) == 0.0
    assert W > 0
