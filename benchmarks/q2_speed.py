"""Q2 speed: text -> masks latency per image and video tracking FPS, ours vs a seed-style loop.

Models have random weights built from the real configs (Grounding DINO tiny, SAM 2.1
tiny/small/base_plus/large): the compute is the same as with the trained weights, and nothing
is downloaded. Both variants run in the same process on the same inputs:

image, per SAM 2 size (long side ``--image-px``, default 1024; ``--boxes`` boxes per image):
  ours   detect.detect + segment.segment_boxes: inference_mode, bf16 autocast and TF32 on
         Ampere+ GPUs, all boxes in one SAM 2 call; ``--compile`` also torch.compiles SAM 2's
         image encoder
  seed   the loop the earlier write-ups used: Grounding DINO and SAM 2 in fp32 (TF32 off) under
         no_grad, no compile
video, per size and ``--objects`` count (an H.264 file of ``--video-frames`` synthetic 1280x720
frames; the same fixed boxes prompted on frame 0 for both, one shared predictor):
  official  sam2's documented loop as its README shows: the video as a JPEG folder,
            init_state -> add_new_points_or_box per object -> propagate_in_video, inference
            mode and bf16 autocast on a GPU that has it, masks = logits > 0 on the host
  ours      track.track_video on the video file: frames decoded in memory and prepared on
            the device, masks encoded on a worker thread, offload decided from free memory
Each is reported as propagation FPS (between the first and last frame propagation delivered:
frames loaded beforehand, as Meta measures) and end-to-end FPS (video file -> masks on the host),
with peak GPU memory and peak host RSS while it ran. A warm-up on 8 frames runs first (it
compiles the compiled predictor's parts; its time is reported as ``warmup_s``, never inside an
FPS). The settings (dtype, compile, TF32, offload) are read from the run.

``--long`` adds an 1,800-frame 720p run (ours only): FPS, peak GPU memory and peak host RSS.
``--host-cost`` measures only the per-frame host work of the video path (stub model, CPU).

    python benchmarks/q2_speed.py --out q2_speed.json                 # GPU, all sizes
    python benchmarks/q2_speed.py --device cpu --quick                # sanity check, minutes on CPU
    python benchmarks/q2_speed.py --host-cost                         # host ms per frame, CPU
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import files, runtime
from helpers.textseg import detect, segment, track  # noqa: E402

SIZES = ("tiny", "small", "base_plus", "large")
# per-frame host work of the video path (stub model, 720p, 3 objects, one thread): on the
# thread that drives propagation / summed over all threads (what leaves 40-100 FPS possible)
HOST_TARGET_MS = (3.0, 12.0)
PROMPT = "red ball. blue box"


# --------------------------------------------------------------------------- helpers


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


@contextlib.contextmanager
def _tf32(enabled: bool):
    """TF32 on/off for the block (the seed loop runs with PyTorch's fp32 defaults)."""
    import torch

    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _median_ms(fn, n: int, warmup: int, device) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), times


def synthetic_image(h: int, w: int, t: float = 0.0) -> np.ndarray:
    """Sky/grass background, a red disc and a blue rectangle; ``t`` in [0, 1] moves them."""
    img = np.empty((h, w, 3), np.uint8)
    img[: h // 2] = (150, 190, 240)
    img[h // 2 :] = (90, 160, 80)
    yy, xx = np.ogrid[:h, :w]
    cx, cy, r = w * (0.15 + 0.6 * t), h * 0.65, h * 0.09
    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = (220, 40, 40)
    x0 = int(w * (0.7 - 0.4 * t))
    img[int(h * 0.4) : int(h * 0.6), x0 : x0 + w // 8] = (40, 70, 210)
    return img


def _top(dets, k: int, h: int, w: int) -> np.ndarray:
    """The ``k`` most confident boxes, padded with fixed boxes when fewer were found."""
    boxes = np.asarray(dets.xyxy, np.float32).reshape(-1, 4)
    if len(boxes):
        boxes = boxes[np.argsort(-np.asarray(dets.confidence))][:k]
    pad = [[w * (0.1 + 0.2 * i), h * 0.3, w * (0.25 + 0.2 * i), h * 0.7] for i in range(k)]
    if len(boxes) < k:
        boxes = np.concatenate([boxes, np.asarray(pad[: k - len(boxes)], np.float32)])
    return boxes


def _top_detections(dets, k: int):
    order = np.argsort(-np.asarray(dets.confidence))[:k]
    return dets[order]


# --------------------------------------------------------------------------- seed-style calls


def seed_detect(detector, image: np.ndarray, prompt: str, k: int):
    """Grounding DINO the way the earlier notebooks ran it: fp32, no_grad, per call."""
    import supervision as sv
    import torch

    text = detect.normalize_prompt(prompt)
    inputs = detector.processor(images=image, text=text, return_tensors="pt").to(detector.device)
    with torch.no_grad():
        outputs = detector.model(**inputs)
    res = detector.processor.post_process_grounded_object_detection(
        outputs,
        input_ids=inputs["input_ids"],
        threshold=0.0,
        text_threshold=0.0,
        target_sizes=[image.shape[:2]],
    )[0]
    boxes = res["boxes"].float().cpu().numpy().reshape(-1, 4)
    scores = res["scores"].float().cpu().numpy().reshape(-1)
    order = np.argsort(-scores)[:k]
    return sv.Detections(
        xyxy=boxes[order],
        confidence=scores[order],
        class_id=np.zeros(len(order), int),
        data={"class_name": np.array(["object"] * len(order))},
    )


def seed_segment(segmenter, image: np.ndarray, boxes: np.ndarray):
    """SAM 2 image predictor in fp32 under no_grad."""
    import torch

    pred = segmenter.predictor
    with torch.no_grad():
        pred.set_image(image)
        masks, scores, _ = pred.predict(box=boxes, multimask_output=False)
    return masks, scores


# --------------------------------------------------------------------------- image benchmark


def bench_image(args, device, detector) -> list[dict]:
    import torch

    rows = []
    h, w = (args.image_px * 3) // 4, args.image_px
    image = synthetic_image(h, w)
    for size in args.sizes:
        seg = segment.load_segmenter(
            size, random_weights=True, device=device, image_size=args.sam_image_size
        )
        encoder = seg.predictor.model.image_encoder
        compiled = None
        if args.compile:
            compiled = torch.compile(encoder)

        def ours(seg=seg):
            dets = detect.detect(
                detector, image, PROMPT, box_threshold=0.0, text_threshold=0.0, max_side=None
            )
            segment.segment_boxes(seg, image, _top(dets, args.boxes, h, w))

        def seed(seg=seg):
            with _tf32(False):
                dets = seed_detect(detector, image, PROMPT, args.boxes)
                seed_segment(seg, image, _top(dets, args.boxes, h, w))

        row = {"size": size, "image": f"{w}x{h}", "boxes": args.boxes}
        for name, fn in (("seed", seed), ("ours", ours)):
            if name == "ours" and compiled is not None:
                seg.predictor.model.image_encoder = compiled
            _reset_peak(device)
            med, times = _median_ms(fn, args.n, args.warmup, device)
            seg.predictor.model.image_encoder = encoder
            row[f"{name}_ms"] = round(med, 2)
            row[f"{name}_peak_mib"] = _peak_mib(device)
            row[f"{name}_all_ms"] = [round(t, 2) for t in times]
        row["speedup"] = round(row["seed_ms"] / row["ours_ms"], 2)
        rows.append(row)
        print(
            f"image {size:9s} seed {row['seed_ms']:9.1f} ms  ours {row['ours_ms']:9.1f} ms  "
            f"x{row['speedup']:.2f}",
            flush=True,
        )
        del seg, encoder, compiled
        _reset_peak(device)
    return rows


# --------------------------------------------------------------------------- video benchmark


def write_frames(folder: Path, n: int, h: int, w: int, workers: int | None = None) -> Path:
    """``n`` JPEG frames 00000.jpg.. of two objects crossing the frame (SAM 2's folder format).

    Frames already there are kept; the rest are drawn and encoded on ``workers`` threads
    (default: up to 8, one per CPU core) -- an 1,800-frame 720p video takes seconds, not a minute.
    """
    from concurrent.futures import ThreadPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        path = folder / f"{i:05d}.jpg"
        if not path.exists():
            files.atomic_save_image(path, synthetic_image(h, w, i / max(1, n - 1)))

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, range(n)))
    return folder


class RssPeak:
    """Peak resident memory of this process (MiB) while the block runs, sampled every 20 ms."""

    def __init__(self):
        import threading

        self.peak = self._now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _now() -> float:
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._now())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = round(max(self.peak, self._now()), 1)


def object_boxes(k: int, h: int, w: int) -> np.ndarray:
    """``k`` fixed boxes across the frame (the same objects for both loops)."""
    return np.array(
        [[w * (0.04 + 0.19 * i), h * 0.3, w * (0.17 + 0.19 * i), h * 0.75] for i in range(k)],
        np.float32,
    )


def _rate(stamps: list[float]) -> float:
    """Frames per second between the first and the last frame delivered."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return 0.0
    return round((len(stamps) - 1) / (stamps[-1] - stamps[0]), 3)


def official_loop(tracker, video: Path, boxes: np.ndarray, work: Path, device) -> dict:
    """sam2's documented usage, as its README shows: the video as a JPEG folder,
    ``init_state`` -> ``add_new_points_or_box`` per object on frame 0 -> ``propagate_in_video``
    under inference mode (and bf16 autocast on a GPU that has it), masks = logits > 0 on the
    host. Timed from the video file (end to end) and over the propagation alone."""
    import torch

    from helpers.textseg import media

    predictor = tracker.predictor
    t0 = time.perf_counter()
    frames = media.video_to_frames(video, work / "official_frames")
    stamps: list[float] = []
    amp = (
        torch.autocast(device.type, dtype=tracker.dtype)
        if tracker.dtype is not None
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), amp:
        state = predictor.init_state(str(frames.frame_dir))
        for oid, box in enumerate(boxes, start=1):
            predictor.add_new_points_or_box(state, frame_idx=0, obj_id=oid, box=box)
        for _t, _ids, logits in predictor.propagate_in_video(state):
            (logits > 0).cpu().numpy()
            stamps.append(time.perf_counter())
    _sync(device)
    total = time.perf_counter() - t0
    del state
    return {"prop_fps": _rate(stamps), "e2e_fps": round(frames.num_frames / total, 3)}


def our_loop(tracker, video: Path, boxes: np.ndarray, out: Path, device, chunk_size: int,
             max_frames: int | None = None) -> dict:  # fmt: skip
    """``track.track_video`` on the video file with the same boxes on frame 0 (one keyframe,
    as the documented loop prompts once). Propagation fps: between the first and the last
    frame propagation delivered (decoding and preparing overlap it); end to end: from the
    video file to ``tracks.json`` written."""
    import supervision as sv

    from helpers.textseg import sam2_video

    stamps: list[float] = []
    real = sam2_video._propagate

    def timed(*a, **k):
        for item in real(*a, **k):
            stamps.append(time.perf_counter())
            yield item

    def detect_fn(image):
        n = len(boxes)
        return sv.Detections(
            xyxy=boxes, confidence=np.full(n, 0.9, np.float32), class_id=np.zeros(n, int),
            data={"class_name": np.array(["object"] * n)},
        )  # fmt: skip

    sam2_video._propagate = timed
    try:
        t0 = time.perf_counter()
        res = track.track_video(
            video, PROMPT, None, tracker, out, detect_fn=detect_fn, detect_every=10**9,
            chunk_size=chunk_size, render=False, max_frames=max_frames,
        )  # fmt: skip
        _sync(device)
        total = time.perf_counter() - t0
    finally:
        sam2_video._propagate = real
    doc = json_settings(res)
    return {
        "prop_fps": _rate(stamps),
        "e2e_fps": round(res.num_frames / total, 3),
        "frames": res.num_frames,
        "offload": doc.get("offload"),
        "seconds": round(total, 3),
    }


def json_settings(res) -> dict:
    import json

    return json.loads(Path(res.json_path).read_text()).get("settings", {})


def bench_video(args, device, detector, frames_dir: Path | None, work: Path) -> list[dict]:
    """Per size and object count, on the same video file and boxes: sam2's documented loop
    and ours, each as propagation fps and end-to-end fps, with peak GPU memory and peak host
    memory (RSS) while it ran. ``detector`` and ``frames_dir`` are unused (kept for callers):
    both loops prompt the same fixed boxes, so they do the same model work."""
    from helpers.textseg import sam2_video

    h, w = _res(args.video_res)
    video = work / f"video_{w}x{h}_{args.video_frames}.mp4"
    if not video.exists():
        write_video_file(video, args.video_frames, h, w)
    rows = []
    for size in args.sizes:
        tracker = track.load_video_tracker(
            size, random_weights=True, device=device, image_size=args.sam_image_size,
            compile=args.video_compile,
        )  # fmt: skip
        for k in args.objects:
            boxes = object_boxes(k, h, w)
            # warm-up on 8 frames with this many objects: compiles the compiled predictor's
            # parts for these shapes, so no compilation falls inside either loop's FPS
            t0 = time.perf_counter()
            our_loop(tracker, video, boxes, work / f"{size}_{k}_warm", device, args.chunk_size,
                     max_frames=min(args.video_frames, 8))  # fmt: skip
            compile_s = round(time.perf_counter() - t0, 2)
            row = {"size": size, "objects": k, "frames": args.video_frames, "video": f"{w}x{h}"}
            for name in ("official", "ours"):
                _reset_peak(device)
                with RssPeak() as rss:
                    if name == "official":
                        got = official_loop(tracker, video, boxes, work / f"{size}_{k}", device)
                    else:
                        got = our_loop(tracker, video, boxes, work / f"{size}_{k}_ours", device,
                                       args.chunk_size)  # fmt: skip
                row[f"{name}_prop_fps"] = got["prop_fps"]
                row[f"{name}_e2e_fps"] = got["e2e_fps"]
                row[f"{name}_peak_mib"] = _peak_mib(device)
                row[f"{name}_rss_mib"] = rss.peak
                if name == "ours":
                    row["ours_offload"] = got["offload"]
            row["warmup_s"] = compile_s
            row["settings"] = sam2_video.run_settings(tracker)
            row["speedup_e2e"] = round(row["ours_e2e_fps"] / max(row["official_e2e_fps"], 1e-9), 2)
            rows.append(row)
            print(
                f"video {size:9s} {k} objects  official {row['official_prop_fps']:.2f} / "
                f"{row['official_e2e_fps']:.2f} fps  ours {row['ours_prop_fps']:.2f} / "
                f"{row['ours_e2e_fps']:.2f} fps (propagation / end to end)  RSS MiB "
                f"{row['official_rss_mib']} / {row['ours_rss_mib']}",
                flush=True,
            )
        del tracker
        _reset_peak(device)
    return rows


def bench_long(args, device, detector, work: Path) -> dict:
    """Ours on a long 720p video file: fps, peak GPU memory and peak host memory (RSS)."""
    from helpers.textseg import sam2_video

    n = args.long_frames
    h, w = _res(args.video_res)
    video = write_video_file(work / f"long_{w}x{h}_{n}.mp4", n, h, w)
    size = args.sizes[-1]
    tracker = track.load_video_tracker(
        size, random_weights=True, device=device, image_size=args.sam_image_size,
        compile=args.video_compile,
    )  # fmt: skip
    boxes = object_boxes(2, h, w)
    our_loop(tracker, video, boxes, work / "long_warm", device, args.chunk_size, max_frames=8)
    _reset_peak(device)
    with RssPeak() as rss:
        got = our_loop(tracker, video, boxes, work / "long_out", device, args.chunk_size)
    out = {
        "size": size,
        "frames": got["frames"],
        "video": f"{w}x{h}",
        "fps": got["e2e_fps"],
        "prop_fps": got["prop_fps"],
        "peak_mib": _peak_mib(device),
        "rss_mib": rss.peak,
        "settings": {**sam2_video.run_settings(tracker), "offload": got["offload"]},
    }
    print(
        f"long  {size:9s} {n} frames {out['fps']:.2f} fps, peak GPU {out['peak_mib']} MiB, "
        f"peak RSS {out['rss_mib']} MiB",
        flush=True,
    )
    return out


def write_video_file(path: Path, n: int, h: int, w: int) -> Path:
    """An H.264 MP4 of ``n`` frames of the synthetic scene (what a user would upload)."""
    from helpers.textseg import media

    frames = (synthetic_image(h, w, i / max(1, n - 1)) for i in range(n))
    return media.write_video(frames, path, fps=30.0)


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
    h, w = _res(res)
    tmp = Path(work or tempfile.mkdtemp(prefix="q2_host_"))
    video = write_video_file(tmp / f"host_{w}x{h}_{frames}.mp4", frames, h, w)
    boxes = np.array(
        [[w * (0.08 + 0.25 * k), h * 0.38, w * (0.32 + 0.25 * k), h * 0.62] for k in range(objects)],
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


def _res(name: str) -> tuple[int, int]:
    h = int(name.rstrip("p"))
    return h, (h * 16 // 9) // 2 * 2


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--sizes", default=",".join(SIZES), help="SAM 2.1 sizes, comma-separated")
    p.add_argument("--n", type=int, default=20, help="timed runs per variant (median)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--image-px", type=int, default=1024, help="long side of the test image")
    p.add_argument("--boxes", type=int, default=3, help="boxes per image for SAM 2")
    p.add_argument("--compile", action="store_true", help="torch.compile SAM 2's image encoder")
    p.add_argument("--video-frames", type=int, default=120)
    p.add_argument("--video-res", default="720p")
    p.add_argument("--detect-every", type=int, default=30)
    p.add_argument("--objects", default="2,5", help="objects tracked, comma-separated counts")
    p.add_argument(
        "--video-compile",
        default="auto",
        choices=("auto", "on", "off"),
        help="sam2's compiled predictor (vos_optimized) for both video loops (auto: on CUDA)",
    )
    p.add_argument("--chunk-size", type=int, default=200)
    p.add_argument(
        "--long", action="store_true", help="also an 1,800-frame run (ours, peak memory)"
    )
    p.add_argument("--long-frames", type=int, default=1800)
    p.add_argument("--skip-image", action="store_true")
    p.add_argument("--skip-video", action="store_true")
    p.add_argument(
        "--quick",
        action="store_true",
        help="sanity check: toy detector, SAM 2 tiny at 256 px, 2 runs, 6 frames of 180p",
    )
    p.add_argument(
        "--host-cost",
        action="store_true",
        help="only the per-frame host work of the video path (stub model, 720p, 3 objects, one "
        "thread); CPU, seconds",
    )
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    args.objects = [int(k) for k in str(args.objects).split(",") if k.strip()]
    if not args.objects or min(args.objects) < 1 or max(args.objects) > 5:
        p.error("--objects: counts between 1 and 5, e.g. 2,5")
    args.video_compile = {"on": True, "off": False}.get(args.video_compile, "auto")
    for s in args.sizes:
        segment.normalize_size(s)
    args.sam_image_size = None
    args.detector_size = "tiny"
    if args.quick:
        args.sizes = args.sizes if "--sizes" in (argv or sys.argv) else ["tiny"]
        args.n, args.warmup, args.image_px, args.boxes = 2, 1, 320, 2
        args.video_frames, args.video_res, args.detect_every = 6, "180p", 3
        args.long_frames = min(args.long_frames, 12)
        args.objects = args.objects if "--objects" in (argv or sys.argv) else [2]
        args.sam_image_size, args.detector_size = 256, "toy"
    return args


def make_detector(args, device):
    """Grounding DINO (``args.detector_size``: tiny, or toy for --quick) with random weights."""
    return detect.random_grounding_dino(
        words=detect.prompt_phrases(PROMPT), size=args.detector_size, device=device
    )


def main(argv=None) -> dict:
    import torch

    args = parse_args(argv)
    if args.host_cost:
        res = {"host_cost": host_cost(frames=args.video_frames if args.quick else 90)}
        if args.out:
            files.atomic_write_json(args.out, res)
        return res
    device = runtime.pick_device(args.device)
    if device.type == "cuda":
        runtime.enable_fast_matmul()
    print(f"{runtime.gpu_summary()} | sizes {args.sizes} | quick={args.quick}", flush=True)
    detector = make_detector(args, device)
    results: dict = {
        "device": runtime.gpu_summary(),
        "torch": torch.__version__,
        "random_weights": True,
        "detector": f"grounding-dino ({args.detector_size}, random weights)",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
    }
    with tempfile.TemporaryDirectory(prefix="q2_speed_") as tmp:
        work = Path(tmp)
        if not args.skip_image:
            results["image"] = bench_image(args, device, detector)
        if not args.skip_video:
            results["video"] = bench_video(args, device, detector, None, work)
        if args.long:
            results["long"] = bench_long(args, device, detector, work)
    print_table(results)
    if args.out:
        files.atomic_write_json(args.out, results)
        print("wrote", args.out)
    return results


def print_table(results: dict) -> None:
    if results.get("image"):
        print("\nimage: text -> masks, median ms per image (warm)")
        print(f"{'size':10s} {'seed ms':>10s} {'ours ms':>10s} {'speedup':>8s} {'peak MiB':>9s}")
        for r in results["image"]:
            peak = r["ours_peak_mib"] if r["ours_peak_mib"] is not None else "-"
            print(
                f"{r['size']:10s} {r['seed_ms']:10.1f} {r['ours_ms']:10.1f} "
                f"{r['speedup']:7.2f}x {peak!s:>9s}"
            )
    if results.get("video"):
        print("\nvideo: FPS, propagation (frames loaded beforehand) / end to end (file -> masks)")
        print(
            f"{'size':10s} {'objects':>7s} {'official':>15s} {'ours':>15s} "
            f"{'GPU MiB o/u':>13s} {'RSS MiB o/u':>13s}"
        )
        for r in results["video"]:
            print(
                f"{r['size']:10s} {r['objects']:7d} "
                f"{r['official_prop_fps']:7.2f}/{r['official_e2e_fps']:<7.2f} "
                f"{r['ours_prop_fps']:7.2f}/{r['ours_e2e_fps']:<7.2f} "
                f"{r['official_peak_mib']!s:>6s}/{r['ours_peak_mib']!s:<6s} "
                f"{r['official_rss_mib']!s:>6s}/{r['ours_rss_mib']!s:<6s}"
            )
            print(f"{'':10s} settings: {r['settings']}, offload {r['ours_offload']}")
    if results.get("long"):
        r = results["long"]
        print(
            f"\nlong video: {r['frames']} frames {r['video']}, {r['fps']} fps, peak GPU "
            f"{r['peak_mib']} MiB, peak RSS {r['rss_mib']} MiB"
        )


if __name__ == "__main__":
    main()
