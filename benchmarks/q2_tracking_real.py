"""Q2 tracking identity on real trajectories: two MOT sequences' ground truth drives the stand-ins.

``motmetrics`` ships the MOT-format ground truth of two real pedestrian sequences,
TUD-Campus (71 frames, 8 people) and TUD-Stadtmitte (179 frames, 10 people): boxes that real
people walked, stopped, crossed and hid behind each other in. Their boxes (scaled onto the
benchmark's canvas) replace the scripted paths of ``q2_tracking.py``; everything else is its
stand-ins, policies and scoring, at the same look levels, with what real footage adds:

- people nearer the camera (lower bottom edge) hide those behind them: a person's mask is
  its box less the boxes in front of it;
- the detector misses a person more often the more of it is hidden (``MISS`` when in full
  view, rising linearly to ``MISS + MISS_HIDDEN`` at half hidden, never below that), its box
  jitters by ``JITTER`` of its size, and false boxes come at ``FP`` per keyframe;
- propagation swaps tracks where two people's boxes overlap (``Scene.swap``), drifts and loses
  people at random as in the scripted scenes.

    python benchmarks/q2_tracking.py --real --detect-every 30
    python benchmarks/q2_tracking_real.py --detect-every 30 --seeds 0 1 2
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import q2_tracking  # noqa: E402
from q2_tracking import DIM, H, Obj, Scene, Truth, W  # noqa: E402

from helpers.textseg import identity  # noqa: E402

MISS = 0.05  # detector misses per person and keyframe in full view
MISS_HIDDEN = 0.4  # ... plus this much more at half hidden (linear in the hidden share)
JITTER = 0.04  # box jitter: this share of the box's size (std, per edge)
FP = 0.2  # false boxes anywhere per keyframe (expected)
SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")


def gt_path(name: str) -> Path:
    import motmetrics

    return Path(motmetrics.__file__).parent / "data" / name / "gt.txt"


def load_gt(path: Path) -> dict[int, dict[int, np.ndarray]]:
    """MOT ground truth: person id -> {frame (from 0): xyxy box in the sequence's pixels}."""
    out: dict[int, dict[int, np.ndarray]] = {}
    for line in path.read_text().splitlines():
        f = line.split(",")
        if len(f) < 6 or (len(f) > 6 and float(f[6]) == 0):  # 0: not to be scored
            continue
        t, i = int(float(f[0])) - 1, int(float(f[1]))
        x, y, w, h = (float(v) for v in f[2:6])
        out.setdefault(i, {})[t] = np.array([x, y, x + w, y + h], np.float32)
    return out


@dataclass
class PathObj(Obj):
    """An object whose box on each frame is given (None where it is not in the scene)."""

    path: dict[int, np.ndarray] = field(default_factory=dict)

    def box(self, t: int):
        b = self.path.get(t)
        return None if b is None else b.copy()


@dataclass
class RealScene(Scene):
    truth_class = None  # set below: the scene's ground truth builds its own occlusions


def real_scene(name: str, seed: int) -> RealScene:
    gt = load_gt(gt_path(name))
    frames = 1 + max(t for p in gt.values() for t in p)
    sw = max(b[2] for p in gt.values() for b in p.values())  # the sequence's size, from boxes
    sh = max(b[3] for p in gt.values() for b in p.values())
    s = min(W / max(sw, 640.0), H / max(sh, 480.0))
    objs = [
        PathObj("person", (0, 0), [(0, 0.0, 0.0)], path={t: b * s for t, b in p.items()})
        for _, p in sorted(gt.items())
    ]
    return RealScene(
        name.lower(), frames, objs, miss=MISS, fp=FP, swap=True, drift=0.1, loss=0.002,
        seed=seed,
    )  # fmt: skip


class RealTruth(Truth):
    """``Truth`` where people in front (lower bottom edge) hide those behind them."""

    def __init__(self, scene: Scene, seed: int = 0):
        super().__init__(scene, seed)
        for t, boxes in enumerate(self.boxes):
            order = sorted(
                (k for k, b in enumerate(boxes) if b is not None), key=lambda k: -boxes[k][3]
            )
            front = np.zeros((H, W), bool)
            for k in order:  # nearest first
                self.masks[t][k] = self.full[t][k] & ~front
                front |= self.full[t][k]
        self.area = np.array([[m.sum() for m in per] for per in self.masks])

    detector_class = None  # set below


class RealDetector(q2_tracking.ScriptedDetector):
    """Misses that rise with occlusion, jitter by size, false boxes anywhere."""

    def __call__(self, t: int) -> identity.Detections:
        truth, sc = self.truth, self.truth.scene
        rng = np.random.default_rng([sc.seed, truth.seed, t, 7])
        boxes, labels, looks, source = [], [], [], []
        for k, o in enumerate(sc.objects):
            full, vis = truth.full_area[t, k], truth.area[t, k]
            hidden = 1 - vis / full if full else 1.0
            miss = rng.random() < MISS + MISS_HIDDEN * min(hidden / 0.5, 1.0)
            b = identity.mask_box(truth.masks[t][k])
            size = max(b[2] - b[0], b[3] - b[1], 1.0)
            b = b + rng.normal(0, JITTER * size, 4)
            noise = truth.noise * rng.normal(size=DIM) / np.sqrt(DIM)
            if miss or not truth.visible(t, k, 0.5):
                continue
            boxes.append(b)
            labels.append(o.label)
            looks.append(truth.look(k, t) + noise)
            source.append(k)
        for _ in range(rng.poisson(sc.fp)):
            w, h = rng.integers(12, 30), rng.integers(30, 70)
            x, y = rng.integers(0, W - w), rng.integers(0, H - h)
            boxes.append(np.array([x, y, x + w, y + h], np.float32))
            labels.append("person")
            looks.append(rng.normal(size=DIM))
            source.append(-1)
        return q2_tracking.detections(boxes, labels, looks, source, rng)


RealScene.truth_class = RealTruth
RealTruth.detector_class = RealDetector


def real_scenes() -> list[Scene]:
    return [real_scene(name, 40 + k) for k, name in enumerate(SEQUENCES)]


def main(argv=None) -> dict:
    return q2_tracking.main(argv, scenes=real_scenes(), doc=__doc__)


if __name__ == "__main__":
    main()
