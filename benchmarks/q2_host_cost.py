"""Q2 host cost: the per-frame host CPU time of the video path with SAM 2 replaced by a stub
(720p, 3 objects, one thread; CPU, seconds).

    python benchmarks/q2_host_cost.py --out q2_host.json
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

# per-frame host work of the video path (stub model, 720p, 3 objects, one thread): on the
# thread that drives propagation / summed over all threads (what leaves 40-100 FPS possible)
HOST_TARGET_MS = (3.0, 12.0)


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


def host_cost(frames: int = 90, res: str = "720p", objects: int = 3, repeats: int = 3,
              chunk_size: int = 200, work: Path | None = None) -> dict:  # fmt: skip
    """Per-frame host CPU time of ``track_video`` with the model replaced by a stub.

    The stub (``q2_host_stub.StubPredictor``) returns fixed logits for ``objects`` objects and
    reads every frame it visits from sam2's state, so what is measured is the video path's own
    work: decoding, preparing frames for the model, turning logits into masks, encoding them
    (RLE, JSON) and the bookkeeping. One torch / OpenCV thread; ``render=False`` (no MP4).
    Returns ms per frame on the thread that drives propagation (``main_ms``) and summed over
    all threads of the process (``all_ms``): the median of ``repeats`` runs; ``threads_ms``
    splits the median run's ``all_ms`` by thread (``other``: threads the libraries start,
    FFmpeg's decoder threads).
    """
    import cv2
    import supervision as sv
    import torch
    from q2_host_stub import StubPredictor

    from helpers.textseg import sam2_video

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    h, w = q2_common.frame_size(res)
    tmp = Path(work or tempfile.mkdtemp(prefix="q2_host_"))
    video = q2_common.write_video_file(tmp / f"host_{w}x{h}_{frames}.mp4", frames, h, w)
    boxes = np.array(
        [
            [w * (0.08 + 0.25 * k), h * 0.38, w * (0.32 + 0.25 * k), h * 0.62]
            for k in range(objects)
        ],
        np.float32,
    )

    def detect_fn(image):
        return sv.Detections(
            xyxy=boxes, confidence=np.full(objects, 0.9, np.float32),
            class_id=np.zeros(objects, int), data={"class_name": np.array(["ball"] * objects)},
        )  # fmt: skip

    def stub_features(tracker, image, bxs, masks, *a, **k):  # no image encoder: model work
        emb = np.eye(len(bxs), 8, dtype=np.float32)
        return masks, emb

    real = sam2_video.keyframe_features
    sam2_video.keyframe_features = stub_features
    stub = StubPredictor()
    main_ms, all_ms, split = [], [], []
    try:
        for r in range(repeats):
            tracker = track.VideoTracker(stub, "sam2", torch.device("cpu"), "stub")
            with thread_cpu_ms() as spent:
                c0, p0 = time.thread_time(), time.process_time()
                res_ = track.track_video(
                    video, "ball", None, tracker, tmp / f"out{r}", detect_fn=detect_fn,
                    render=False, chunk_size=chunk_size,
                )  # fmt: skip
                c1, p1 = time.thread_time(), time.process_time()
            n = res_.num_frames
            main_ms.append((c1 - c0) * 1000 / n)
            all_ms.append((p1 - p0) * 1000 / n)
            per = {"main": main_ms[-1], **{k: v * 1000 / n for k, v in spent.items()}}
            per["other"] = all_ms[-1] - sum(per.values())
            split.append({k: round(v, 2) for k, v in per.items()})
    finally:
        sam2_video.keyframe_features = real
    out = {
        "frames": n,
        "video": f"{w}x{h}",
        "objects": objects,
        "main_ms": round(statistics.median(main_ms), 2),
        "all_ms": round(statistics.median(all_ms), 2),
        "main_ms_runs": [round(x, 2) for x in main_ms],
        "all_ms_runs": [round(x, 2) for x in all_ms],
        "threads_ms": split[all_ms.index(sorted(all_ms)[len(all_ms) // 2])],
    }
    met = out["main_ms"] <= HOST_TARGET_MS[0] and out["all_ms"] <= HOST_TARGET_MS[1]
    out["target_met"] = met
    print(
        f"host work per frame ({out['video']}, {objects} objects, stub model, 1 thread): "
        f"propagating thread {out['main_ms']} ms, all threads {out['all_ms']} ms "
        f"(target <= {HOST_TARGET_MS[0]} / <= {HOST_TARGET_MS[1]} ms: "
        f"{'met' if met else 'NOT met'}); by thread: {out['threads_ms']}",
        flush=True,
    )
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=90, help="frames of the 720p video")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    res = {"host_cost": host_cost(frames=args.frames)}
    if args.out:
        files.atomic_write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
