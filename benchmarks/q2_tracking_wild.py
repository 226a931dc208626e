"""Q2 tracking identity on eight more kinds of scene, beside ``q2_tracking.py``'s table.

The same stand-ins, policies, metrics and targets as ``q2_tracking.py`` (its docstring says how
they work), on scenes of kinds its table does not have, written to probe the identity rules
after they were settled:

- ``camera_pan_sweep``: a handheld sweep, everything slides 3 px a frame out of view and back;
- ``fast_small_birds``: five 8 x 8 birds flying 3 px a frame (11 of their sizes a second),
  turning at random waypoints;
- ``person_car_crossing_grow``: people and cars crossing, one of each growing 2x as it
  approaches the camera, false boxes anywhere;
- ``edge_traffic``: objects leave and come back through both edges, at the same or the
  opposite one;
- ``still_behind_post``: a person stands 600 frames swaying 0-60 % behind a post;
- ``long_wander_pillar``: 900 frames, four people on random waypoints, a pillar;
- ``side_by_side_then_split``: two people overlap for 100 frames, then part;
- ``crowded_ten``: seven people and three dogs on random waypoints, a post, false boxes.

Rules that came from them: an object's reach grows with the fastest it was seen moving (small
fast objects cover many of their sizes in a second); reach is measured on the detected size,
not on a clipped mask; a swap is not measured as a slide; an unconfirmed track keeps its masks
only if it left through an edge it was moving towards. The figures are in the README.

    python benchmarks/q2_tracking_wild.py                    # both cadences, three levels
    python benchmarks/q2_tracking_wild.py --detect-every 30 --seeds 3 4 5
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import q2_tracking  # noqa: E402
from q2_tracking import H, Obj, Scene, W  # noqa: E402


@dataclass
class GrowingObj(Obj):
    """An object whose size follows (frame, w, h) keys; its feet (bottom centre) follow the
    path of its first size."""

    sizes: list[tuple[int, float, float]] | None = None

    def box(self, t: int):
        b = super().box(t)
        if b is None or not self.sizes:
            return b
        fs = [k[0] for k in self.sizes]
        w = float(np.interp(t, fs, [k[1] for k in self.sizes]))
        h = float(np.interp(t, fs, [k[2] for k in self.sizes]))
        cx, bottom = b[0] + self.size[0] / 2, b[1] + self.size[1]
        return np.array([cx - w / 2, bottom - h, cx + w / 2, bottom], np.float32)


def wander(rng, frames: int, size, speed: float) -> list[tuple[int, float, float]]:
    """Waypoints of a random walk at ``speed`` px a frame that sometimes stands a while."""
    lo, hi = np.zeros(2), np.array([W - size[0], H - size[1]], float)
    p = rng.uniform(lo, hi)
    keys, t = [(0, *p)], 0
    while t < frames:
        nxt = rng.uniform(lo, hi)
        t += max(int(np.linalg.norm(nxt - p) / speed), 1)
        keys.append((t, *nxt))
        p = nxt
        if rng.random() < 0.3:
            t += int(rng.integers(5, 30))
            keys.append((t, *p))
    return keys


def pan(t: int) -> float:
    """The camera's offset: 60 frames panning 3 px a frame, 60 still, 60 back, 60 still."""
    ph = t % 240
    if ph < 60:
        return -3.0 * ph
    if ph < 180:
        return -180.0 + 3.0 * max(ph - 120, 0)
    return 0.0


def wild_scenes() -> list[Scene]:
    n = 480
    world = [("person", (18, 36), 20, 40, 0.05), ("person", (18, 36), 70, 80, -0.04),
             ("person", (18, 36), 140, 30, 0.0), ("car", (34, 20), 230, 90, 0.1),
             ("person", (18, 36), 300, 50, -0.05)]  # fmt: skip
    frames = sorted({n - 1, *range(0, n, 60)})
    panned = [Obj(lab, size, [(t, x + vx * t + pan(t), y) for t in frames])
              for lab, size, x, y, vx in world]  # fmt: skip
    scenes = [Scene("camera_pan_sweep", n, panned, miss=0.1, jitter=2.0, drift=0.1, loss=0.002,
                    seed=101)]  # fmt: skip

    rng = np.random.default_rng(102)
    birds = [Obj("bird", (8, 8), wander(rng, 360, (8, 8), 3.0)) for _ in range(5)]
    scenes.append(Scene("fast_small_birds", 360, birds, miss=0.15, jitter=1.5, swap=True,
                        drift=0.05, seed=102))  # fmt: skip

    n = 360
    crossing = [
        Obj("person", (16, 34), [(0, 60, -34), (n, 64, 130)]),
        Obj("person", (16, 34), [(0, 120, 130), (n, 110, -34)]),
        Obj("person", (16, 34), [(0, 90, 20), (n, 96, 80)]),
        Obj("car", (34, 20), [(0, -34, 50), (150, W, 52)], [(0, 150)]),
        Obj("car", (34, 20), [(100, W, 70), (300, -34, 66)], [(100, 300)]),
        GrowingObj("car", (30, 18), [(0, 150, 20), (n, 120, 90)], sizes=[(0, 30, 18), (n, 60, 36)]),
        GrowingObj("person", (14, 30), [(0, 20, 40), (n, 30, 90)], sizes=[(0, 14, 30), (n, 28, 60)]),
    ]  # fmt: skip
    scenes.append(Scene("person_car_crossing_grow", n, crossing, miss=0.1, jitter=2.0, fp=0.2,
                        swap=True, drift=0.1, seed=103))  # fmt: skip

    n = 480
    edges = [
        Obj("person", (18, 36), [(0, 40, 10), (60, -20, 10), (120, -20, 14), (200, 60, 14),
            (260, W + 2, 14), (320, W + 2, 50), (400, 120, 50), (n, 150, 50)],
            [(0, 60), (120, 260), (320, n)]),
        Obj("person", (18, 36), [(0, W + 2, 60), (90, 20, 60), (110, -20, 60), (220, -20, 80),
            (300, 100, 80), (380, W + 2, 80)], [(0, 110), (220, 380)]),
        Obj("person", (18, 36), [(40, -20, 90), (160, W + 2, 90), (250, W + 2, 88),
            (370, -20, 88)], [(40, 160), (250, 370)]),
        Obj("person", (18, 36), [(0, 100, 40), (n, 110, 44)]),
        Obj("dog", (26, 18), [(0, -26, 108), (80, W, 108), (200, W, 100), (280, -26, 100),
            (380, -26, 105), (n, 100, 105)], [(0, 80), (200, 280), (380, n)]),
    ]  # fmt: skip
    scenes.append(Scene("edge_traffic", n, edges, miss=0.1, jitter=2.0, loss=0.002, fp_near=0.2,
                        seed=104))  # fmt: skip

    n = 600
    sway = [(t, 30 if (t // 75) % 2 == 0 else 42, 40) for t in range(0, n + 75, 75)]
    still = [
        Obj("person", (20, 40), sway),
        Obj("person", (20, 40), [(0, 100, 44), (n, 104, 44)]),
        Obj("person", (20, 40), [(0, W + 2, 84), (300, -22, 84), (n, W + 2, 86)]),
    ]
    scenes.append(Scene("still_behind_post", n, still, occluders=[(50, 0, 90, 90)], miss=0.1,
                        jitter=2.0, drift=0.1, shrink=0.05, seed=105))  # fmt: skip

    rng = np.random.default_rng(106)
    people = [Obj("person", (18, 36), wander(rng, 900, (18, 36), rng.uniform(0.6, 1.4)))
              for _ in range(4)]  # fmt: skip
    scenes.append(Scene("long_wander_pillar", 900, people, occluders=[(88, 0, 104, H)],
                        miss=0.1, jitter=2.0, drift=0.15, swap=True, loss=0.002, fp=0.1,
                        seed=106))  # fmt: skip

    n = 360
    pair = [
        Obj("person", (20, 40), [(0, 10, 60), (60, 40, 50), (160, 110, 50), (n, 170, 10)]),
        Obj("person", (20, 40), [(0, 10, 10), (60, 54, 50), (160, 124, 50), (n, 120, 88)]),
        Obj("person", (20, 40), [(0, 170, 88), (n, 20, 80)]),
    ]
    scenes.append(Scene("side_by_side_then_split", n, pair, miss=0.1, jitter=2.0, swap=True,
                        drift=0.1, fp_near=0.3, seed=107))  # fmt: skip

    rng = np.random.default_rng(108)
    crowd = [Obj("person", (16, 32), wander(rng, 360, (16, 32), rng.uniform(0.5, 1.2)))
             for _ in range(7)]  # fmt: skip
    crowd += [Obj("dog", (24, 16), wander(rng, 360, (24, 16), rng.uniform(0.8, 1.6)))
              for _ in range(3)]  # fmt: skip
    scenes.append(Scene("crowded_ten", 360, crowd, occluders=[(140, 20, 156, 100)], miss=0.15,
                        jitter=2.5, fp=0.5, fp_near=0.3, swap=True, drift=0.1, loss=0.002,
                        seed=108))  # fmt: skip
    return scenes


def main(argv=None) -> dict:
    # the levels its figures were first taken at; --levels nearidentical adds the fourth
    return q2_tracking.main(
        argv, scenes=wild_scenes(), doc=__doc__, levels=q2_tracking.QUICK_LEVELS
    )


if __name__ == "__main__":
    main()
