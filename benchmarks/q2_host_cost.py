"""Q2 host cost: the per-frame host CPU time of the video path with SAM 2 replaced by a
stand-in, at 720p and 1080p with 3 and 16 objects, split by thread (CPU, milliseconds).

    python benchmarks/q2_host_cost.py --out q2_host.json

The stand-in (``q2_host_stub``) keeps sam2's state layout and returns what SAM 2 returns:
full-resolution logits per object on every frame, an object score per object, and on
keyframes a full-resolution mask and an embedding per detection box. The video path runs at
the CLI's tracking defaults (a keyframe every 30 frames, backfill, keyframes on demand,
keep-missed 2 s) on a 90-frame H.264 file; ``--render`` also draws the annotated MP4.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import q2_common  # noqa: E402

from helpers import files  # noqa: E402
from helpers.textseg import track  # noqa: E402

# (resolution, objects) -> per-frame targets on one idle core each: the thread that drives
# propagation / summed over all threads (what leaves the model's 40 FPS to the model)
TARGETS_MS = {
    ("720p", 3): (3.0, 12.0),
    ("1080p", 3): (8.0, 40.0),
    ("720p", 16): (8.0, 40.0),
    ("1080p", 16): (8.0, 40.0),
}
CONFIGS = list(TARGETS_MS)
# threads by the name the project gives them; "decode" also holds FFmpeg's own threads
THREADS = {"frame-loader": "decode", "frame-prep": "prepare", "mask-encode": "encode",
           "track-writer": "writer"}  # fmt: skip


@contextlib.contextmanager
def thread_cpu_ms():
    """{thread name: CPU seconds} of the Python threads started inside the block (each
    thread's own CPU clock, read as it ends); native threads (FFmpeg's) are not in it."""
    import threading

    spent: dict[str, float] = {}
    run = threading.Thread.run

    def timed(self):
        t0 = time.thread_time()
        try:
            run(self)
        finally:
            name = self.name.split("_")[0]
            spent[name] = spent.get(name, 0.0) + time.thread_time() - t0

    threading.Thread.run = timed
    try:
        yield spent
    finally:
        threading.Thread.run = run


class _Identity:
    """CPU seconds the propagating thread spends in the identity book (keyframe decisions,
    per-frame observations), measured around ``IdBook.keyframe`` / ``IdBook.observe``."""

    def __init__(self):
        self.seconds = 0.0

    @contextlib.contextmanager
    def measured(self):
        real = {k: getattr(track.IdBook, k) for k in ("keyframe", "observe")}

        def timed(fn):
            def inner(*a, **k):
                t0 = time.thread_time()
                try:
                    return fn(*a, **k)
                finally:
                    self.seconds += time.thread_time() - t0

            return inner

        for k, fn in real.items():
            setattr(track.IdBook, k, timed(fn))
        try:
            yield self
        finally:
            for k, fn in real.items():
                setattr(track.IdBook, k, fn)


def host_cost(frames: int = 90, res: str = "720p", objects: int = 3, repeats: int = 3,
              render: bool = False, work: Path | None = None) -> dict:  # fmt: skip
    """Per-frame host CPU time of ``track_video`` at the CLI's defaults with SAM 2 replaced
    by the stand-in (one torch / OpenCV thread). ``propagating_ms`` is the thread that drives
    propagation (``identity_ms`` of it is the identity book), ``all_ms`` every thread of the
    process; ``threads_ms`` splits the median run by job (``decode`` includes FFmpeg's
    threads). Each figure is the median of ``repeats`` runs; the stand-in's own work (making
    its fixed logits and keyframe masks) happens once per set of objects, outside the figures
    only in that it is not repeated per frame."""
    import cv2
    import q2_host_stub
    import supervision as sv
    import torch
    from q2_host_stub import StubPredictor, grid_boxes, stub_keyframe_features

    from helpers.textseg import sam2_video

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    h, w = q2_common.frame_size(res)
    tmp = Path(work or tempfile.mkdtemp(prefix="q2_host_"))
    video = q2_common.write_video_file(tmp / f"host_{w}x{h}_{frames}.mp4", frames, h, w)
    boxes = grid_boxes(objects, h, w)

    def detect_fn(image):
        return sv.Detections(
            xyxy=boxes, confidence=np.full(objects, 0.9, np.float32),
            class_id=np.zeros(objects, int), data={"class_name": np.array(["ball"] * objects)},
        )  # fmt: skip

    real = sam2_video.keyframe_features
    sam2_video.keyframe_features = stub_keyframe_features
    runs = []
    try:
        for r in range(repeats):
            tracker = track.VideoTracker(StubPredictor(), "sam2", torch.device("cpu"), "stub")
            q2_host_stub.own_seconds[0] = 0.0
            with thread_cpu_ms() as spent, _Identity().measured() as ident:
                c0, p0 = time.thread_time(), time.process_time()
                out = track.track_video(
                    video, "ball", None, tracker, tmp / f"out{r}", detect_fn=detect_fn,
                    render=render,
                )  # fmt: skip
                c1, p1 = time.thread_time(), time.process_time()
            n, stub = out.num_frames, q2_host_stub.own_seconds[0]  # the stand-in's own work
            per = {"propagating": (c1 - c0 - stub) * 1000 / n, "identity": ident.seconds * 1000 / n}
            for name, sec in spent.items():
                job = THREADS.get(name, name)
                per[job] = per.get(job, 0.0) + sec * 1000 / n
            total = (p1 - p0 - stub) * 1000 / n
            named = sum(v for k, v in per.items() if k != "identity")
            per["decode"] = per.get("decode", 0.0) + total - named  # FFmpeg's threads
            runs.append({"all": total, **per})
    finally:
        sam2_video.keyframe_features = real
    mid = sorted(runs, key=lambda x: x["all"])[len(runs) // 2]
    target = TARGETS_MS.get((res, objects))
    out = {
        "frames": n,
        "video": f"{w}x{h}",
        "objects": objects,
        "render": render,
        "propagating_ms": round(statistics.median(x["propagating"] for x in runs), 2),
        "identity_ms": round(statistics.median(x["identity"] for x in runs), 2),
        "all_ms": round(statistics.median(x["all"] for x in runs), 2),
        "propagating_ms_runs": [round(x["propagating"], 2) for x in runs],
        "all_ms_runs": [round(x["all"], 2) for x in runs],
        "threads_ms": {k: round(v, 2) for k, v in mid.items() if k != "all"},
        "target_ms": list(target) if target else None,
    }
    out["target_met"] = bool(target) and (
        out["propagating_ms"] <= target[0] and out["all_ms"] <= target[1]
    )
    verdict = "no target" if not target else ("met" if out["target_met"] else "NOT met")
    print(
        f"host work per frame ({res}, {objects} objects, stand-in model, 1 thread"
        f"{', MP4 drawn' if render else ''}): propagating thread {out['propagating_ms']} ms "
        f"(identity {out['identity_ms']}), all threads {out['all_ms']} ms "
        f"(target <= {target[0] if target else '-'} / <= {target[1] if target else '-'} ms: "
        f"{verdict}); by thread: {out['threads_ms']}",
        flush=True,
    )
    return out


def table(rows: list[dict]) -> str:
    """The results as a Markdown table (what the README shows)."""
    lines = [
        "| video, objects | propagating thread (identity) | all threads | decode | prepare "
        "| encode | writer | target (propagating / all) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["threads_ms"]
        tgt = r["target_ms"]
        lines.append(
            f"| {r['video']}, {r['objects']} | {r['propagating_ms']} ({r['identity_ms']}) | "
            f"{r['all_ms']} | {t.get('decode', 0)} | {t.get('prepare', 0)} | "
            f"{t.get('encode', 0)} | {t.get('writer', 0)} | "
            + (f"≤ {tgt[0]} / ≤ {tgt[1]} {'met' if r['target_met'] else 'NOT met'}"
               if tgt else "-")
            + " |"
        )  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=90, help="frames of each video")
    p.add_argument("--repeats", type=int, default=3, help="runs per configuration (median)")
    p.add_argument("--configs", nargs="+", default=[f"{r}/{n}" for r, n in CONFIGS],
                   help="resolution/objects pairs, e.g. 720p/3 1080p/16")  # fmt: skip
    p.add_argument("--render", action="store_true", help="also draw the annotated MP4")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    rows = []
    for cfg in args.configs:
        res, _, n = cfg.partition("/")
        if not res.endswith("p") or not n.isdigit():
            p.error(f"--configs takes resolution/objects pairs such as 720p/3, not {cfg!r}")
        rows.append(host_cost(args.frames, res, int(n), args.repeats, args.render))
    print(table(rows), flush=True)
    res = {"host_cost": rows}
    if args.out:
        files.atomic_write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
