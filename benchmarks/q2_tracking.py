"""Q2 tracking identity: MOT metrics on scripted scenes, ours vs a Grounded-SAM-2-style policy.

No trained weights and no images: each scene scripts objects (box paths, labels, an
appearance vector), occluders and a camera frame, so the ground truth is exact. Two stand-ins
replace the models:

- the *detector* runs on keyframes (every ``--detect-every`` frames): one box + mask per
  object that is at least half visible, with box jitter, misses and false positives; the
  appearance "feature extractor" returns the object's vector plus noise (false positives get
  random vectors);
- the *propagation* (where SAM 2 video propagation sits) follows the object a prompt landed
  on, with scripted errors: drift (the mask slides a few px per frame until re-prompted),
  swaps (two tracks exchange objects where same-label objects cross), loss (an object that
  goes out of view, or at random, is never found again until re-prompted).

Both policies drive the same stand-ins:

- **ours**: ``helpers.textseg.track.track_frames`` with ``helpers.textseg.identity.IdBook`` (re-seed matched
  objects from fresh detections, keep missed ones ``keep_missed`` keyframes then retire them,
  re-identify returning objects by appearance + label);
- **baseline**: Grounded-SAM-2's continuous-id recipe: at each keyframe reset, re-seed every
  object from the fresh detections, give a detection the id of the tracked mask it overlaps
  (mask IoU >= ``--iou``), new ids for the rest; objects the detector missed are dropped.

Scored with ``motmetrics`` (IDF1, ID switches, MOTA; a hypothesis matches a ground-truth object
when mask IoU >= 0.5), per scene and overall. ``--memory`` also measures compressed-RLE memory
and ``tracks.json`` size for 1,800 frames x 5 objects at 1080p.

    python benchmarks/q2_tracking.py                      # full table (about a minute on a CPU)
    python benchmarks/q2_tracking.py --memory --out q2_tracking.json
    python benchmarks/q2_tracking.py --quick              # CI sanity mode (seconds)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import files
from helpers.textseg import identity, render, track  # noqa: E402

W, H = 192, 128
DIM = 64  # appearance vector size
TARGETS = {"idf1_overall": 0.95, "idsw_ratio": 1 / 3}

# --------------------------------------------------------------------------- scenes


@dataclass
class Obj:
    label: str
    size: tuple[int, int]  # w, h
    keys: list[tuple[int, float, float]]  # (frame, x, y) waypoints; linear in between
    present: list[tuple[int, int]] | None = None  # frame ranges [a, b) in the scene (None = all)

    def box(self, t: int) -> np.ndarray | None:
        if self.present is not None and not any(a <= t < b for a, b in self.present):
            return None
        fs = [k[0] for k in self.keys]
        x = float(np.interp(t, fs, [k[1] for k in self.keys]))
        y = float(np.interp(t, fs, [k[2] for k in self.keys]))
        return np.array([x, y, x + self.size[0], y + self.size[1]], np.float32)


@dataclass
class Scene:
    name: str
    frames: int
    objects: list[Obj]
    occluders: list[tuple[int, int, int, int]] = field(default_factory=list)  # xyxy, in front
    miss: float = 0.05  # detector miss rate per object and keyframe
    fp: float = 0.0  # false positives per keyframe (expected)
    jitter: float = 1.5  # box jitter, px (std)
    look_noise: float = 0.35  # appearance noise (std of the whole vector)
    drift: float = 0.0  # px per frame the propagated mask slides until re-prompted
    swap: bool = False  # tracks exchange objects where same-label objects cross
    loss: float = 0.0  # chance per frame that propagation loses an object
    seed: int = 0


def _raster(box, occluders=()) -> np.ndarray:
    m = np.zeros((H, W), bool)
    if box is None:
        return m
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    m[max(0, y0) : max(0, min(H, y1)), max(0, x0) : max(0, min(W, x1))] = True
    for ox0, oy0, ox1, oy1 in occluders:
        m[oy0:oy1, ox0:ox1] = False
    return m


class Truth:
    """Ground truth of a scene: visible masks per frame and each object's look."""

    def __init__(self, scene: Scene):
        self.scene = scene
        rng = np.random.default_rng(scene.seed)
        labels = sorted({o.label for o in scene.objects})
        centre = {lab: rng.normal(size=DIM) for lab in labels}
        # objects of one class look alike (shared part) but not the same
        self.looks = [
            identity.normalize_rows(
                0.6 * _unit(centre[o.label]) + 0.8 * _unit(rng.normal(size=DIM))
            )
            for o in scene.objects
        ]
        self.full = [[_raster(o.box(t)) for o in scene.objects] for t in range(scene.frames)]
        self.masks = [
            [_raster(o.box(t), scene.occluders) for o in scene.objects] for t in range(scene.frames)
        ]

    def visible(self, t: int, k: int, frac: float = 0.3) -> bool:
        full = self.full[t][k].sum()
        return (
            full > 0
            and self.masks[t][k].sum() >= frac * max(full, 1)
            and self.masks[t][k].sum() >= 20
        )

    def frame(self, t: int) -> dict[int, np.ndarray]:
        return {k: self.masks[t][k] for k in range(len(self.scene.objects)) if self.visible(t, k)}


def _unit(v):
    return v / np.linalg.norm(v)


class ScriptedDetector:
    """Keyframe detections from the ground truth, with misses, jitter and false positives."""

    def __init__(self, truth: Truth, seed: int):
        self.truth, self.rng = truth, np.random.default_rng(seed)
        self.cache: dict[int, identity.Detections] = {}

    def __call__(self, t: int) -> identity.Detections:
        if t in self.cache:  # both policies see the same detections
            return self.cache[t]
        sc, rng = self.truth.scene, self.rng
        boxes, labels, masks, looks = [], [], [], []
        for k, o in enumerate(sc.objects):
            if not self.truth.visible(t, k, 0.5) or rng.random() < sc.miss:
                continue
            b = identity.mask_box(self.truth.masks[t][k]) + rng.normal(0, sc.jitter, 4)
            boxes.append(b)
            labels.append(o.label)
            masks.append(_raster(b))
            looks.append(self.truth.looks[k] + sc.look_noise * rng.normal(size=DIM) / np.sqrt(DIM))
        for _ in range(rng.poisson(sc.fp)):
            w, h = rng.integers(12, 30, 2)
            x, y = rng.integers(0, W - w), rng.integers(0, H - h)
            b = np.array([x, y, x + w, y + h], np.float32)
            boxes.append(b)
            labels.append(str(rng.choice([o.label for o in sc.objects])))
            masks.append(_raster(b))
            looks.append(rng.normal(size=DIM))
        n = len(boxes)
        d = identity.Detections(
            np.array(boxes, np.float32).reshape(-1, 4),
            labels,
            rng.uniform(0.4, 0.95, n),
            np.stack(masks) if n else np.zeros((0, H, W), bool),
            np.stack(looks) if n else None,
        )
        self.cache[t] = d
        return d


class StandInSession:
    """Propagation stand-in: prompt -> the object it lands on; scripted drift, swaps, loss."""

    def __init__(self, truth: Truth, rng: np.random.Generator, first: int, end: int):
        self.truth, self.rng, self.first, self.end = truth, rng, first, end
        self.objs: dict[int, dict] = {}  # id -> {"target": k | None, "off": [dx, dy], ...}
        self.crossing: set[tuple[int, int]] = set()

    def _check(self, t):
        if not self.first <= t < self.end:
            raise IndexError(f"frame {t} outside the session {self.first}..{self.end - 1}")

    def prompt(self, t, prompts):
        self._check(t)
        for oid, kind, val in prompts:
            m = val if kind == "mask" else _raster(val)
            ious = [
                identity.masks_iou(m[None], g[None])[0, 0] if self.truth.visible(t, k) else 0.0
                for k, g in enumerate(self.truth.masks[t])
            ]
            k = int(np.argmax(ious)) if ious and max(ious) >= 0.3 else None
            self.objs[oid] = {"target": k, "off": np.zeros(2), "static": m, "life": 15}
        return {i: self._mask(t, o) for i, o in self.objs.items()}

    def _mask(self, t, o) -> np.ndarray:
        if o["target"] is None:  # a false positive: a still blob that fades after a while
            return o["static"] if o["life"] > 0 else np.zeros((H, W), bool)
        if o["target"] < 0:
            return np.zeros((H, W), bool)
        m = self.truth.masks[t][o["target"]]
        dx, dy = (int(round(v)) for v in o["off"])
        if dx or dy:
            m = np.roll(m, (dy, dx), axis=(0, 1))
        return m

    def propagate(self, a, b, reverse=False):
        sc = self.truth.scene
        if reverse:  # backwards: follows each object where it is visible, changes nothing
            for t in range(a, b - 1, -1):
                self._check(t)
                yield t, {i: self._back(t, o) for i, o in self.objs.items()}
            return
        for t in range(a, b + 1):
            self._check(t)
            for o in self.objs.values():
                if o["target"] is None:
                    o["life"] -= 1
                elif o["target"] >= 0:
                    if not self.truth.visible(t, o["target"]) or self.rng.random() < sc.loss:
                        o["target"] = -1  # lost for good
                    else:
                        o["off"] += self.rng.normal(sc.drift, sc.drift / 2 + 1e-9, 2)
            if sc.swap:
                self._swaps(t)
            yield t, {i: self._mask(t, o) for i, o in self.objs.items()}

    def _back(self, t, o) -> np.ndarray:
        k = o["target"]
        if k is None or k < 0 or not self.truth.visible(t, k):
            return np.zeros((H, W), bool)
        return self.truth.masks[t][k]

    def _swaps(self, t):
        live = [o for o in self.objs.values() if o["target"] is not None and o["target"] >= 0]
        for x in range(len(live)):
            for y in range(x + 1, len(live)):
                oi, oj = live[x], live[y]
                ki, kj = oi["target"], oj["target"]
                if self.truth.scene.objects[ki].label != self.truth.scene.objects[kj].label:
                    continue
                pair = (min(ki, kj), max(ki, kj))
                bi, bj = self.truth.scene.objects[ki].box(t), self.truth.scene.objects[kj].box(t)
                close = bi is not None and bj is not None and identity.box_iou(bi, bj)[0, 0] > 0.2
                if close and pair not in self.crossing:
                    self.crossing.add(pair)
                    oi["target"], oj["target"] = kj, ki
                elif not close:
                    self.crossing.discard(pair)

    def remove(self, ids):
        for i in ids:
            self.objs.pop(i, None)
        return True

    def reset(self):
        self.objs = {}

    def close(self):
        pass


class StandInPropagator:
    def __init__(self, truth: Truth, seed: int):
        self.truth, self.rng = truth, np.random.default_rng(seed)

    def open(self, first, end):
        return StandInSession(self.truth, self.rng, first, end)


# --------------------------------------------------------------------------- policies


def run_ours(truth, detector, args) -> list[dict[int, np.ndarray]]:
    cfg = identity.IdentityConfig(
        iou_threshold=args.iou, reid_threshold=args.reid, keep_missed=args.keep_missed
    )
    opts = track.LoopOptions(args.detect_every, "mask", args.chunk_size, args.backfill)
    prop = StandInPropagator(truth, truth.scene.seed + 1)
    out = []
    for _, rles in track.track_frames(
        truth.scene.frames, prop, detector, identity.IdBook(cfg), opts
    ):
        out.append({i: render.rle_to_mask(r) for i, r in rles.items()})
    return out


def run_baseline(truth, detector, args) -> list[dict[int, np.ndarray]]:
    """Grounded-SAM-2 continuous ids: re-seed all from detections, match by mask IoU, drop
    the undetected."""
    n = truth.scene.frames
    prop = StandInPropagator(truth, truth.scene.seed + 1)
    session = prop.open(0, n)
    out: list[dict[int, np.ndarray]] = [{} for _ in range(n)]
    next_id, last = 1, {}
    keys = list(range(0, n, args.detect_every))
    for x, k in enumerate(keys):
        stop = keys[x + 1] - 1 if x + 1 < len(keys) else n - 1
        d = detector(k)
        session.reset()
        if len(d) == 0:
            last = {}
            continue
        ids = identity.match_ids(last, d.masks, args.iou) if last else [None] * len(d)
        prompts = []
        for j, i in enumerate(ids):
            if i is None:
                i, next_id = next_id, next_id + 1
            prompts.append((i, "mask", d.masks[j]))
        out[k] = session.prompt(k, prompts)
        last = out[k]
        if stop > k:
            for t, masks in session.propagate(k + 1, stop):
                out[t] = masks
                last = masks
    return out


# --------------------------------------------------------------------------- scoring


def accumulate(truth: Truth, hyp: list[dict[int, np.ndarray]]):
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for t in range(truth.scene.frames):
        gt = truth.frame(t)
        h = {i: m for i, m in hyp[t].items() if m.any()}
        gids, hids = list(gt), list(h)
        if gids and hids:
            iou = identity.masks_iou(
                np.stack([gt[k] for k in gids]), np.stack([h[i] for i in hids])
            )
            dist = np.where(iou >= 0.5, 1.0 - iou, np.nan)
        else:
            dist = np.empty((len(gids), len(hids)))
        acc.update(gids, hids, dist)
    return acc


def score(accs: dict[str, object]) -> dict[str, dict]:
    import motmetrics as mm

    mh = mm.metrics.create()
    names = list(accs)
    df = mh.compute_many(
        [accs[k] for k in names],
        names=names,
        metrics=["idf1", "num_switches", "mota", "num_false_positives", "num_misses"],
        generate_overall=True,
    )
    return {
        str(name): {
            "idf1": round(float(r["idf1"]), 4),
            "idsw": int(r["num_switches"]),
            "mota": round(float(r["mota"]), 4),
            "fp": int(r["num_false_positives"]),
            "fn": int(r["num_misses"]),
        }
        for name, r in df.iterrows()
    }


# --------------------------------------------------------------------------- the scenes


def scenes(quick: bool) -> list[Scene]:
    n = 90 if quick else 300
    f = n / 300  # waypoint frames scale with the length
    s = lambda frame: int(frame * f)  # noqa: E731
    out = [
        Scene(  # a person leaves at the right edge and comes back in at the left
            "reenter_elsewhere",
            n,
            [
                Obj(
                    "person",
                    (22, 40),
                    [(0, 60, 40), (s(110), W + 5, 40), (s(170), -25, 70), (n, 80, 70)],
                    [(0, s(110)), (s(170), n)],
                ),  # fmt: skip
                Obj("person", (22, 40), [(0, 20, 80), (n, 150, 80)]),
                Obj("dog", (30, 20), [(0, 150, 10), (n, 120, 20)]),
            ],
            seed=1,
        ),
        Scene(  # two cars drive behind a wall and move 40+ px while hidden
            "occlusion_motion",
            n,
            [
                Obj("car", (34, 20), [(0, 5, 30), (n, 175, 30)]),
                Obj("car", (34, 20), [(0, 170, 80), (n, 0, 80)]),
                Obj("person", (16, 36), [(0, 30, 70), (n, 40, 75)]),
            ],
            occluders=[(70, 0, 125, H)],
            seed=2,
        ),
        Scene(  # same-label objects cross; propagation swaps them at each crossing
            "crossing_swaps",
            n,
            [
                Obj("person", (20, 40), [(0, 10, 40), (n, 170, 50)]),
                Obj("person", (20, 40), [(0, 170, 45), (n, 10, 40)]),
                Obj("person", (20, 40), [(0, 90, 0), (s(150), 90, 85), (n, 90, 0)]),
            ],
            swap=True,
            seed=3,
        ),
        Scene(  # propagation drifts ~0.35 px per frame until re-seeded
            "drift",
            n,
            [
                Obj("dog", (26, 20), [(0, 10, 10), (n, 150, 90)]),
                Obj("dog", (26, 20), [(0, 150, 10), (n, 20, 90)]),
                Obj("cat", (18, 16), [(0, 90, 60), (n, 95, 20)]),
            ],
            drift=0.25,
            seed=4,
        ),
        Scene(  # a weak detector: misses, false positives, jitter; random propagation losses
            "misses_fp_jitter",
            n,
            [
                Obj("bird", (20, 16), [(0, 10, 20), (n, 160, 30)]),
                Obj("bird", (20, 16), [(0, 160, 90), (n, 20, 60)]),
                Obj("bird", (20, 16), [(0, 80, 50), (s(150), 120, 100), (n, 60, 50)]),
            ],
            miss=0.3,
            fp=0.3,
            jitter=3.0,
            loss=0.003,
            seed=5,
        ),
        Scene(  # all of it at once
            "crowd",
            n,
            [
                Obj("person", (18, 36), [(0, -20, 40), (n, 200, 50)], [(0, s(130)), (s(190), n)]),
                Obj("person", (18, 36), [(0, 170, 60), (n, 10, 40)]),
                Obj("person", (18, 36), [(0, 100, 90), (s(150), 20, 85), (n, 100, 88)]),
                Obj("dog", (26, 18), [(0, 20, 105), (n, 160, 100)]),
                Obj("dog", (26, 18), [(0, 160, 5), (n, 40, 8)]),
            ],
            occluders=[(120, 0, 150, H)],
            miss=0.15,
            fp=0.2,
            jitter=2.0,
            drift=0.2,
            swap=True,
            loss=0.002,
            seed=6,
        ),
    ]
    return out[:3] if quick else out


def run(args) -> dict:
    accs = {"ours": {}, "baseline": {}}
    t0 = time.perf_counter()
    for sc in scenes(args.quick):
        truth = Truth(sc)
        detector = ScriptedDetector(truth, sc.seed + 100)
        accs["ours"][sc.name] = accumulate(truth, run_ours(truth, detector, args))
        accs["baseline"][sc.name] = accumulate(truth, run_baseline(truth, detector, args))
    res = {k: score(v) for k, v in accs.items()}
    res["seconds"] = round(time.perf_counter() - t0, 1)
    names = list(accs["ours"]) + ["OVERALL"]
    print(f"{'scene':20s} | {'IDF1 ours':>9s} {'base':>6s} | {'IDSW ours':>9s} {'base':>5s} | "
          f"{'MOTA ours':>9s} {'base':>6s}")  # fmt: skip
    for name in names:
        o, b = res["ours"][name], res["baseline"][name]
        print(
            f"{name:20s} | {o['idf1']:9.3f} {b['idf1']:6.3f} | {o['idsw']:9d} {b['idsw']:5d} | "
            f"{o['mota']:9.3f} {b['mota']:6.3f}"
        )
    o, b = res["ours"]["OVERALL"], res["baseline"]["OVERALL"]
    checks = {
        "idf1_overall": o["idf1"] >= TARGETS["idf1_overall"],
        "idf1_every_scene": all(
            res["ours"][k]["idf1"] >= res["baseline"][k]["idf1"] for k in names
        ),
        "idsw_third": o["idsw"] <= b["idsw"] * TARGETS["idsw_ratio"],
    }
    res["targets_met"] = checks
    print("targets:", ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in checks.items()))
    return res


# --------------------------------------------------------------------------- memory


def memory(frames: int, objects: int = 5, h: int = 1080, w: int = 1920) -> dict:
    """RAM held by ``track.MaskStore`` and ``tracks.json`` size for ``frames`` x ``objects``
    blobs at ``h`` x ``w`` (smooth ellipses of 150-400 px moving across the frame)."""
    import gc
    import tracemalloc

    import cv2
    from tqdm.auto import tqdm

    rng = np.random.default_rng(0)
    sizes = rng.integers(75, 200, (objects, 2))
    starts = rng.uniform(0.1, 0.9, (objects, 2)) * (w, h)
    speed = rng.uniform(-2, 2, (objects, 2))
    book = identity.IdBook()
    for _ in range(objects):
        book._new("person")
    gc.collect()
    tracemalloc.start()
    store = track.MaskStore()
    records: list[dict] = []
    label_ids: dict[str, int] = {}
    list_bytes = 0
    for t in tqdm(range(frames), desc="masks", unit="frame"):
        masks = {}
        for i in range(objects):
            cx, cy = (starts[i] + speed[i] * t) % (w, h)
            m = np.zeros((h, w), np.uint8)
            cv2.ellipse(
                m, (int(cx), int(cy)), (int(sizes[i, 0]), int(sizes[i, 1])), 15.0 * i, 0, 360, 1, -1
            )
            masks[i + 1] = m.astype(bool)
        rles = {i: render.mask_to_rle(m, compressed=True) for i, m in masks.items()}
        if t < 20:  # the old plain run-length lists, for comparison
            list_bytes += sum(
                sys.getsizeof(c) + 8 * len(c) + 32 * len(c)
                for c in (render.mask_to_rle(m)["counts"] for m in masks.values())
            )
        store.put_rles(t, rles)
        records.append({"frame": t, "objects": track.frame_records(rles, book, label_ids)})
    del masks, m  # the last frame's bool masks are not part of what is held
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()  # the store + the JSON records (same RLEs)
    tracemalloc.stop()
    doc = track.tracks_document(records, book, "person", (30.0, w, h, frames), {})
    size = len(json.dumps(doc, separators=(",", ":")).encode())
    res = {
        "frames": frames,
        "objects": objects,
        "resolution": f"{w}x{h}",
        "held_mib": round(held / 2**20, 1),
        "rle_bytes_mib": round(store.nbytes() / 2**20, 1),
        "json_mib": round(size / 2**20, 2),
        "plain_lists_mib_estimate": round(list_bytes / 20 * frames / 2**20, 1),
    }
    print(
        f"memory {frames} frames x {objects} objects at {w}x{h}: held {res['held_mib']} MiB "
        f"(RLE strings {res['rle_bytes_mib']} MiB; plain run lists would be about "
        f"{res['plain_lists_mib_estimate']} MiB), tracks.json {res['json_mib']} MiB"
    )
    return res


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="3 short scenes (CI sanity mode)")
    p.add_argument("--detect-every", type=int, default=10)
    p.add_argument("--chunk-size", type=int, default=200)
    p.add_argument("--iou", type=float, default=0.5)
    p.add_argument("--reid", type=float, default=0.8)
    p.add_argument("--keep-missed", type=int, default=2)
    p.add_argument("--backfill", action="store_true", help="ours: track new objects backwards")
    p.add_argument("--memory", action="store_true", help="also measure RLE memory at 1080p")
    p.add_argument("--memory-frames", type=int, default=1800)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = p.parse_args(argv)
    res = run(args)
    if args.memory:
        res["memory"] = memory(20 if args.quick else args.memory_frames)
    if args.out:
        files.atomic_write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
