"""The identity policy as declared: its rules switch off by name, its numbers live in one config,
a track's state is one enum, the camera's motion is used, and per-frame output costs do not grow
with the ids a video has seen."""

import ast
import inspect

import numpy as np
import pytest

from helpers.errors import InputError
from helpers.textseg import identity, identity_config, look_evidence, track
from helpers.textseg.identity import (
    RULES,
    IdBook,
    IdentityConfig,
    State,
    mask_box,
)
from tests.textseg.test_identity import H, W, square
from tests.textseg.test_identity import dets as identity_dets


def dets(masks, labels=None):
    return identity_dets(masks, labels or ["person"] * len(masks))


def test_every_rule_is_a_switch_the_code_reads():
    """Each name in ``RULES`` is asked for (``uses``) where it applies, so switching it off
    changes something; an unknown name is refused in one line that lists the known ones."""
    src = "".join(inspect.getsource(m) for m in (identity, look_evidence, track))
    for rule in RULES:
        assert f'uses("{rule}")' in src, rule
    with pytest.raises(InputError, match="unknown identity rule.*take_back"):
        IdentityConfig(off=frozenset({"no_such_rule"})).check()
    with pytest.raises(KeyError):
        IdentityConfig().uses("no_such_rule")


def test_every_setting_says_its_unit_and_why():
    """Each field of ``IdentityConfig`` carries a comment on its line or the line above."""
    lines = inspect.getsource(IdentityConfig).splitlines()
    fields = [k for k, ln in enumerate(lines) if ln.startswith("    ") and ": " in ln
              and " = " in ln and not ln.strip().startswith(("#", "def", "for", "if", "v ="))]  # fmt: skip
    assert len(fields) >= 40
    for k in fields:
        assert "#" in lines[k] or lines[k - 1].strip().startswith("#"), lines[k]


def test_no_policy_number_is_written_inside_the_book():
    """``IdBook``'s methods hold no number of the policy: only 0, 1, 2, 3 (indices, halves of
    a sum) and tiny epsilons; everything else is a named field of ``IdentityConfig``."""
    tree = ast.parse(inspect.getsource(IdBook))
    found = {
        n.value for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float))
        and not isinstance(n.value, bool)
    }  # fmt: skip
    assert found <= {0, 1, 2, 3, 1e-3, 1e-6}, found - {0, 1, 2, 3, 1e-3, 1e-6}


def _panning_book(off=()) -> tuple[IdBook, int]:
    """Four people standing; the camera pans 20 px left while one of them (``hidden``) is
    behind something: the three in view move together, 1 px a frame, and are tracked."""
    book = IdBook(IdentityConfig(off=frozenset(off)))
    where = {"a": (55, 40), "b": (25, 10), "c": (90, 10), "d": (90, 65)}
    plan = book.keyframe(0, {}, dets([square(*p) for p in where.values()]))
    ids = dict(zip(where, plan.ids))
    for t in range(1, 21):  # the pan: what is in view moves 1 px left a frame
        boxes = {ids[k]: mask_box(square(x - t, y)) for k, (x, y) in where.items() if k != "a"}
        book.observe(t, boxes)
    seen = {ids[k]: square(x - 20, y) for k, (x, y) in where.items() if k != "a"}
    seen[ids["a"]] = np.zeros((H, W), bool)  # hidden: its mask is empty
    book.keyframe(20, seen, dets([m for i, m in seen.items() if i != ids["a"]]))
    assert ids["a"] not in book.live
    return book, ids


def test_a_hidden_object_comes_back_where_the_camera_moved_it():
    """No looks: the person who was hidden reappears 20 px from where it was last seen (the
    camera moved, it did not): the camera's motion gives its id back; without that rule it
    is a new id (its box no longer overlaps where it was)."""
    for off, same in (((), True), (("camera_motion",), False)):
        book, ids = _panning_book(off)
        assert book.camera[0] == pytest.approx(-20) and book.camera[1] == pytest.approx(0)
        masks = {ids[k]: square(x - 20, y) for k, (x, y) in
                 {"b": (25, 10), "c": (90, 10), "d": (90, 65)}.items()}  # fmt: skip
        back = square(55 - 20, 40)
        plan = book.keyframe(30, masks, dets([*masks.values(), back]))
        assert (plan.ids[-1] == ids["a"]) is same, off
        assert (ids["a"] in plan.revived) is same


def test_objects_going_their_own_ways_do_not_move_the_camera():
    """Three people walking apart, or only two walking together, are not a camera moving."""
    book = IdBook()
    plan = book.keyframe(0, {}, dets([square(40, 40), square(60, 40), square(50, 10)]))
    a, b, c = plan.ids
    for t in range(1, 11):
        book.observe(t, {a: mask_box(square(40 - t, 40)), b: mask_box(square(60 + t, 40)),
                         c: mask_box(square(50, 10 + t))})  # fmt: skip
    assert np.allclose(book.camera, 0)
    pair = IdBook()
    a, b = pair.keyframe(0, {}, dets([square(40, 40), square(80, 40)])).ids
    for t in range(1, 11):
        pair.observe(t, {a: mask_box(square(40 - t, 40)), b: mask_box(square(80 - t, 40))})
    assert np.allclose(pair.camera, 0)


def test_a_track_state_is_one_enum_and_taken_back_ids_leave_the_reports():
    """Tracked -> taken back (not reported) -> brought back by a detection (reported again);
    a taken-back id beyond ``max_retired`` is dropped, a retired one only forgotten."""
    book = IdBook(IdentityConfig(max_retired=1))
    first = book.keyframe(0, {}, dets([square(10, 10)])).ids[0]
    assert book.objects[first].state is State.TRACKED
    book.retire([first])
    book.take_back(first)
    assert book.objects[first].state is State.TAKEN_BACK
    assert first not in book.labels and book.label_of(first) == "object"
    plan = book.keyframe(5, {}, dets([square(11, 10)]))  # where it was: it is back
    assert plan.ids == [first] and first in plan.revived
    assert book.objects[first].state is State.TRACKED and book.labels[first] == "person"
    book.retire([first])
    book.take_back(first)
    second = book.keyframe(90, {}, dets([square(90, 60)])).ids[0]
    book.retire([second])  # two out of the state, one allowed: the older goes
    assert first not in book.objects  # taken back: no frame shows it
    assert book.objects[second].state is State.RETIRED
    third = book.keyframe(95, {}, dets([square(60, 10)])).ids[0]
    book.retire([third])
    assert book.objects[second].state is State.FORGOTTEN and second in book.labels


def test_per_frame_records_never_list_every_id(monkeypatch):
    """A frame's records and its overlay detections look up each object on the frame, never
    the labels or scores of every id the video has seen (2,000 here)."""
    book = IdBook()
    for k in range(2000):
        book.objects[k + 1] = identity.Identity("person", State.RETIRED, score=0.5)
    book.objects[7].state = State.TRACKED
    listed = []
    for name in ("labels", "scores"):
        real = getattr(IdBook, name)
        monkeypatch.setattr(
            IdBook, name, property(lambda s, r=real, n=name: listed.append(n) or r.fget(s))
        )
    from helpers.textseg.mask_encoder import rle_of

    m = square(10, 10)
    recs = track.frame_records({7: rle_of(m)}, book, {})
    assert recs[0]["label"] == "person" and recs[0]["score"] == 0.5
    d = track._frame_detections({7: m}, book, {})
    assert list(d.tracker_id) == [7] and listed == []


def test_the_rules_table_command_measures_a_rule(tmp_path):
    """``benchmarks/q2_tracking_rules.py`` (the docs' rule table): every rule on, and the gain
    of one switched off, on the real trajectories."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import q2_tracking_rules

    res = q2_tracking_rules.main(
        ["--rules", "take_back", "--sets", "real", "--levels", "distinct", "--seeds", "0",
         "--workers", "1"]
    )  # fmt: skip
    assert 0.5 < res["all_on"]["real/distinct"] <= 1
    assert set(res["gains"]) == {"take_back"} and "real/distinct" in res["gains"]["take_back"]


def test_identity_config_lives_in_its_own_module():
    """One place for the numbers: ``identity`` re-uses ``identity_config``'s class."""
    assert identity.IdentityConfig is identity_config.IdentityConfig
