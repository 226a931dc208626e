"""SAM 3 speed: warm text -> masks latency per image and video tracking FPS (one model, no
separate detector), on the same synthetic image / video and prompt as ``q2_image_speed.py`` and
``q2_video_speed.py`` (``q2_common``).

SAM 3 has random weights built from ``Sam3Config()`` / ``Sam3VideoConfig()`` (``--size full``,
the real sizes) or a toy config (``--size toy``, a CPU sanity run); nothing is downloaded.

image   ``sam3.segment_image_sam3`` (the SAM 3 route through the shared image pipeline): median of
        ``--n`` warm runs; the cost of encoding the prompt's phrases, which each image reuses
        (``text_encode_ms_saved``), and peak GPU memory
video   ``sam3_video.track_video_sam3`` on a JPEG folder of ``--video-frames`` frames, no
        rendering, at most 2 tracked objects (random weights score every query alike): FPS over
        the tracking time and end to end, peak GPU memory

    python benchmarks/q2_sam3_speed.py                        # GPU, the real sizes
    python benchmarks/q2_sam3_speed.py --size toy --device cpu --n 2 --video-frames 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import q2_common  # noqa: E402  (the shared image, video frames and GPU timing helpers)


def bench_image(size: str, device, image_px: int = 1024, n: int = 20, warmup: int = 3) -> dict:
    """Warm SAM 3 latency per image: processor + vision encoder + one DETR/mask pass per phrase
    (text features cached), and what the cached text encoding saves per image."""
    from helpers.textseg import sam3

    seg = sam3.random_sam3(size, device=device)
    h, w = (image_px * 3) // 4, image_px
    image = q2_common.synthetic_image(h, w)  # the image of q2_image_speed's SAM 2.1 rows
    phrases = [p.strip() for p in q2_common.PROMPT.split(".") if p.strip()]
    kw = {"threshold": 0.5, "mask_threshold": 0.5}
    for _ in range(warmup):
        sam3.segment_image_sam3(image, q2_common.PROMPT, seg, **kw)
    q2_common.reset_peak(device)
    times, found = [], 0
    for _ in range(n):
        q2_common.sync(device)
        t = time.perf_counter()
        res = sam3.segment_image_sam3(image, q2_common.PROMPT, seg, **kw)
        q2_common.sync(device)
        times.append((time.perf_counter() - t) * 1000)
        found = len(res.detections)
    peak = q2_common.peak_mib(device)
    text_ms = []
    for _ in range(max(2, n // 4)):
        seg.text_cache.clear()
        q2_common.sync(device)
        t = time.perf_counter()
        sam3.encode_phrases(seg, phrases)
        q2_common.sync(device)
        text_ms.append((time.perf_counter() - t) * 1000)
    return {
        "model": f"sam3 random-{size}",
        "config": seg.name,
        "image": f"{w}x{h}",
        "phrases": len(phrases),
        "instances": found,
        "runs": n,
        "warmup": warmup,
        "ms": float(np.median(times)),
        "text_encode_ms_saved": float(np.median(text_ms)),
        "peak_mib": peak,
    }


def bench_video(
    size: str, device, work: Path, frames: int = 120, video_res: str = "720p", chunk_size=200
) -> dict:
    """SAM 3 video FPS through our chunked path (track_video_sam3, no rendering)."""
    from helpers.textseg import sam3_video

    tracker = sam3_video.random_sam3_video(size, device=device)
    model = tracker.model
    # random weights score every query alike: admit detections but track at most 2 objects,
    # like q2_video_speed's SAM 2.1 rows (2 objects)
    model.score_threshold_detection = 0.0
    model.new_det_thresh = 0.0
    model.max_num_objects = 2
    h, w = q2_common.frame_size(video_res)
    frames_dir = q2_common.write_frames(work / "frames", frames, h, w)
    chunk = max(2, min(chunk_size, frames))
    q2_common.reset_peak(device)
    t = time.perf_counter()
    res = sam3_video.track_video_sam3(
        frames_dir, q2_common.PROMPT, tracker, work / "sam3_out", chunk_size=chunk, render=False
    )
    e2e = time.perf_counter() - t
    n = res.num_frames
    return {
        "model": f"sam3-video random-{size}",
        "config": tracker.name,
        "video": f"{w}x{h}",
        "frames": n,
        "fps": n / res.timings["track_s"],
        "e2e_fps": n / e2e,
        "chunk_size": chunk,
        "max_objects": model.max_num_objects,
        "ids": len(res.labels),
        "peak_mib": q2_common.peak_mib(device),
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="full", choices=("full", "toy"))
    p.add_argument("--device", default=None, help="cuda | cpu (default: the best available)")
    p.add_argument("--n", type=int, default=20, help="timed image runs (20)")
    p.add_argument("--image-px", type=int, default=1024, help="image long side (1024)")
    p.add_argument("--video-frames", type=int, default=120, help="frames of the video (120)")
    p.add_argument("--chunk-size", type=int, default=200, help="frames per SAM 3 session (200)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    from helpers.runtime import pick_device

    args = parse_args(argv)
    device = pick_device(args.device)
    warmup = 1 if args.size == "toy" else 3
    image = bench_image(args.size, device, args.image_px, args.n, warmup)
    print(f"SAM 3 image {image['image']}: {image['ms']:.1f} ms warm, "
          f"text encoding saved {image['text_encode_ms_saved']:.1f} ms/image")  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        video = bench_video(
            args.size, device, Path(work), args.video_frames, chunk_size=args.chunk_size
        )
    print(f"SAM 3 video {video['video']} x {video['frames']}: {video['fps']:.2f} fps tracking, "
          f"{video['e2e_fps']:.2f} fps end to end")  # fmt: skip
    return {"image": image, "video": video}


if __name__ == "__main__":
    main()
