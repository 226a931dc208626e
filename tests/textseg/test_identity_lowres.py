"""helpers.textseg.identity at video resolutions: masks compared once reduced (``LowRes``)."""

import numpy as np
import pytest

from helpers.textseg import identity, mask_geometry
from helpers.textseg.identity import Detections, IdBook, LowRes, mask_box, masks_iou

SIZES = {"720p": ((720, 1280), 16), "1080p": ((1080, 1920), 11)}


def ellipse(hw, cx, cy, rx, ry):
    m = np.zeros(hw, bool)
    y0, y1 = max(int(cy - ry), 0), min(int(cy + ry) + 2, hw[0])
    x0, x1 = max(int(cx - rx), 0), min(int(cx + rx) + 2, hw[1])
    if y1 <= y0 or x1 <= x0:  # out of the frame
        return m
    yy, xx = np.ogrid[y0:y1, x0:x1]
    m[y0:y1, x0:x1] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    return m


def detections(masks, looks, labels=None):
    masks = np.stack(masks)
    n = len(masks)
    return Detections(
        np.stack([mask_box(m) for m in masks]),
        labels or ["person"] * n,
        np.full(n, 0.9),
        masks,
        looks,
    )


class Walkers:
    """Objects on a 4 x 4 grid walking slowly; each keyframe's detections (some missed, a
    false box beside an object now and then) and the propagated masks (a few px off)."""

    def __init__(self, hw, n, seed):
        self.hw, self.n = hw, n
        self.rng = np.random.default_rng(seed)
        h, w = hw
        cells = [(c, r) for r in range(4) for c in range(4)][:n]
        self.pos = np.array([((c + 0.5) * w / 4, (r + 0.5) * h / 4) for c, r in cells])
        self.radii = self.rng.uniform([0.04 * w, 0.05 * h], [0.09 * w, 0.1 * h], (n, 2))
        self.vel = self.rng.uniform(-1.0, 1.0, (n, 2))
        self.looks = identity.normalize_rows(self.rng.normal(size=(n, 32)))

    def mask(self, k, dx=0.0, dy=0.0):
        (x, y), (rx, ry) = self.pos[k], self.radii[k]
        return ellipse(self.hw, x + dx, y + dy, rx, ry)

    def keyframe(self, t, book):
        self.pos += self.vel * 30 if t else 0
        seen = [k for k in range(self.n) if t == 0 or self.rng.random() > 0.15]
        masks = [self.mask(k, *self.rng.normal(0, 2, 2)) for k in seen]
        noise = self.rng.normal(size=(len(seen), 32)) * 0.3 / np.sqrt(32)
        looks = list(self.looks[seen] + noise)
        if t and self.rng.random() < 0.5:  # a false box half on an object
            k = int(self.rng.integers(self.n))
            masks.append(self.mask(k, self.radii[k][0], 0))
            looks.append(identity.normalize_rows(self.rng.normal(size=32)))
        track = {}
        for i in book.live:  # ids are 1 + the object's index here (all start on frame 0)
            k = i - 1
            if k < self.n:
                track[i] = self.mask(k, *self.rng.normal(0, 4, 2))
        return track, detections(masks, np.stack(looks))


def plan_of(p):
    return (p.ids, p.reseed, p.start, p.revived, sorted(p.retire), p.moved)


@pytest.mark.parametrize("size", SIZES)
def test_keyframe_compares_masks_at_most_compare_side(size, monkeypatch):
    (h, w), n = SIZES[size]
    reduced, compared = [], []
    of, overlaps = LowRes.of.__func__, LowRes.overlaps

    def record_of(cls, masks, hw, side=None):
        small = of(cls, masks, hw, side)
        reduced.append((len(small), small.grid, small.scale))
        return small

    def record_overlaps(self, other):
        compared.append((self.grid, other.grid, self.code.shape, other.code.shape))
        return overlaps(self, other)

    def no_full_resolution(*_):
        raise AssertionError("a keyframe compared masks at full resolution")

    monkeypatch.setattr(LowRes, "of", classmethod(record_of))
    monkeypatch.setattr(LowRes, "overlaps", record_overlaps)
    monkeypatch.setattr(identity, "masks_iou", no_full_resolution)
    scene, book = Walkers((h, w), n, seed=0), IdBook()
    for t in (0, 30, 60):
        reduced.clear()
        compared.clear()
        track, d = scene.keyframe(t, book)
        book.keyframe(t, track, d)
        # each keyframe reduces the tracked masks once and the detections once
        assert [r[0] for r in reduced] == [len(track), len(d)]
        for _, (ch, cw), f in reduced:
            assert max(ch, cw) <= identity.COMPARE_SIDE and f > 1
            assert (ch - 1) * f < h <= ch * f and (cw - 1) * f < w <= cw * f
        # one comparison of every detection with every detection, one of the tracked
        # masks with the detections (none before there are tracks)
        assert len(compared) == (1 if t == 0 else 2)
        for grid_a, grid_b, shape_a, shape_b in compared:
            assert max(*grid_a, *grid_b) <= identity.COMPARE_SIDE
            assert shape_a[1] == shape_b[1] <= identity.COMPARE_SIDE**2
    assert d.masks.shape[1:] == (h, w)  # the detections keep their full-resolution masks


@pytest.mark.parametrize(("size", "seed"), [("720p", 1), ("1080p", 2)])
def test_decisions_match_full_resolution(size, seed, monkeypatch):
    """The same keyframes give the same plans, and the same areas, whether the masks are
    compared reduced or at full resolution."""
    (h, w), n = SIZES[size]
    books = {"low": IdBook(), "full": IdBook()}
    sides = {"low": identity.COMPARE_SIDE, "full": max(h, w)}  # full: one cell a pixel
    scene = Walkers((h, w), n, seed)
    for t in range(0, 210, 30):
        track, d = scene.keyframe(t, books["low"])
        plans = {}
        for name, book in books.items():
            monkeypatch.setattr(mask_geometry, "COMPARE_SIDE", sides[name])
            plans[name] = plan_of(book.keyframe(t, track, d))
        assert plans["low"] == plans["full"], f"frame {t}"
        for i, o in books["low"].objects.items():
            assert o.area == pytest.approx(books["full"].objects[i].area)
    assert len(books["low"].objects) >= n


def test_areas_stay_in_full_resolution_pixels():
    hw = (1080, 1920)
    masks = [ellipse(hw, 400, 500, 120, 200), ellipse(hw, 1500, 300, 60, 40)]
    book = IdBook()
    book.keyframe(0, {}, detections(masks, None))
    assert [book.objects[i].area for i in (1, 2)] == [float(m.sum()) for m in masks]
    small = LowRes.of(masks, hw)
    assert small.scale == 8 and small.grid == (135, 240)
    assert list(small.area) == [m.sum() for m in masks]


def test_tiny_object_at_1080p_is_still_matched():
    hw = (1080, 1920)
    tiny = np.zeros(hw, bool)
    tiny[601:603, 1203:1206] = True  # 6 px, inside one 8 x 8 cell
    big = ellipse(hw, 500, 400, 150, 220)
    looks = identity.normalize_rows(np.random.default_rng(0).normal(size=(2, 16)))
    book = IdBook()
    plan = book.keyframe(0, {}, detections([big, tiny], looks, ["person", "ball"]))
    assert plan.start == {1: 0, 2: 1} and book.objects[2].area == 6
    assert LowRes.of([tiny], hw).size[0] > 0  # not empty once reduced
    # the ball rolls one pixel; its propagated mask stayed put: the same id, re-seeded
    moved = np.roll(tiny, 1, axis=1)
    plan = book.keyframe(30, {1: big, 2: tiny}, detections([big, moved], looks, ["person", "ball"]))
    assert plan.ids == [1, 2] and plan.reseed == {1: 0, 2: 1} and plan.retire == []
    # a propagated mask that lost it (empty) retires it
    plan = book.keyframe(60, {1: big, 2: np.zeros(hw, bool)}, detections([big], looks[:1]))
    assert plan.retire == [2]


def test_box_detections_with_full_resolution_tracked_masks():
    hw = (1080, 1920)
    a, b = ellipse(hw, 400, 500, 120, 200), ellipse(hw, 1500, 300, 60, 40)
    book = IdBook()
    book.keyframe(0, {}, Detections(np.stack([mask_box(a), mask_box(b)]), ["x", "x"], [0.9] * 2))
    plan = book.keyframe(
        30, {1: a, 2: b}, Detections(np.stack([mask_box(b), mask_box(a)]), ["x", "x"], [0.9] * 2)
    )
    assert plan.ids == [2, 1] and plan.reseed == {2: 0, 1: 1}


def test_full_resolution_cells_are_exact():
    """Frames within ``COMPARE_SIDE``: one cell a pixel, the same IoU as ``masks_iou``."""
    rng = np.random.default_rng(3)
    a = rng.random((5, 90, 120)) < 0.3
    b = rng.random((7, 90, 120)) < 0.5
    a[0] = b[0]
    b[1] = False
    sa, sb = LowRes.of(a, (90, 120)), LowRes.of(b, (90, 120))
    assert sa.scale == 1 and sa.grid == (90, 120)
    got = mask_geometry.overlap_iou(sa.overlaps(sb), sa.size, sb.size)
    assert got.dtype == np.float32 and np.array_equal(got, masks_iou(a, b))
    share = mask_geometry.covered_share(sa.overlaps(sb), sb.size)
    inter = a.reshape(5, -1).astype(np.float32) @ b.reshape(7, -1).astype(np.float32).T
    assert np.array_equal(share, inter / np.maximum(b.reshape(7, -1).sum(1), 1).astype(np.float32))


def test_reduced_iou_is_close_to_full_resolution():
    hw = (1080, 1920)
    rng = np.random.default_rng(1)
    for _ in range(10):
        cx, cy, r = rng.uniform(300, 1500), rng.uniform(300, 700), rng.uniform(40, 150)
        a = ellipse(hw, cx, cy, r, 1.3 * r)
        b = ellipse(hw, cx + rng.uniform(-0.4, 0.4) * r, cy + 3, 1.1 * r, 1.3 * r)
        sa, sb = LowRes.of([a], hw), LowRes.of([b], hw)
        low = mask_geometry.overlap_iou(sa.overlaps(sb), sa.size, sb.size)[0, 0]
        assert abs(low - masks_iou(a[None], b[None])[0, 0]) < 0.02


def test_bit_counts_without_numpy_bitwise_count(monkeypatch):
    """numpy < 2 has no ``bitwise_count``: a byte table counts the same bits."""
    x = np.random.default_rng(4).integers(0, 256, (3, 5, 64), dtype=np.uint8)
    fast = mask_geometry._ones(x)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert np.array_equal(mask_geometry._ones(x), fast)
    assert fast.shape == (3, 5) and fast.sum() == sum(bin(v).count("1") for v in x.ravel())
