"""Q2 video speed: tracking FPS, sam2's documented loop vs ours.

SAM 2.1 has random weights built from the real configs (nothing is downloaded). Per size and
``--objects`` count (1, 3 and 16 by default; the boxes lie apart on a grid,
``q2_common.object_boxes``), on an H.264 file of ``--video-frames`` synthetic 1280x720 frames
with the same fixed boxes prompted on frame 0 for both loops and one shared predictor:

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

    python benchmarks/q2_video_speed.py --out q2_video.json        # GPU, all sizes
    python benchmarks/q2_video_speed.py --device cpu --quick       # sanity check on CPU
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import q2_common  # noqa: E402
from q2_common import PROMPT  # noqa: E402

from helpers.textseg import track  # noqa: E402


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
    q2_common.sync(device)
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
        q2_common.sync(device)
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
    return json.loads(Path(res.json_path).read_text()).get("settings", {})


def bench_video(args, device, detector, work: Path) -> list[dict]:
    """Per size and object count, on the same video file and boxes: sam2's documented loop
    and ours, each as propagation fps and end-to-end fps, with peak GPU memory and peak host
    memory (RSS) while it ran. ``detector`` is unused (kept for callers): both loops prompt
    the same fixed boxes, so they do the same model work."""
    from helpers.textseg import sam2_video

    h, w = q2_common.frame_size(args.video_res)
    video = work / f"video_{w}x{h}_{args.video_frames}.mp4"
    if not video.exists():
        q2_common.write_video_file(video, args.video_frames, h, w)
    rows = []
    for size in args.sizes:
        tracker = track.load_video_tracker(
            size, random_weights=True, device=device, image_size=args.sam_image_size,
            compile=args.video_compile,
        )  # fmt: skip
        for k in args.objects:
            boxes = q2_common.object_boxes(k, h, w)
            # warm-up on 8 frames with this many objects: compiles the compiled predictor's
            # parts for these shapes, so no compilation falls inside either loop's FPS
            t0 = time.perf_counter()
            our_loop(tracker, video, boxes, work / f"{size}_{k}_warm", device, args.chunk_size,
                     max_frames=min(args.video_frames, 8))  # fmt: skip
            compile_s = round(time.perf_counter() - t0, 2)
            row = {"size": size, "objects": k, "frames": args.video_frames, "video": f"{w}x{h}"}
            for name in ("official", "ours"):
                q2_common.reset_peak(device)
                with q2_common.RssPeak() as rss:
                    if name == "official":
                        got = official_loop(tracker, video, boxes, work / f"{size}_{k}", device)
                    else:
                        got = our_loop(tracker, video, boxes, work / f"{size}_{k}_ours", device,
                                       args.chunk_size)  # fmt: skip
                row[f"{name}_prop_fps"] = got["prop_fps"]
                row[f"{name}_e2e_fps"] = got["e2e_fps"]
                row[f"{name}_peak_mib"] = q2_common.peak_mib(device)
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
        q2_common.reset_peak(device)
    return rows


def print_rows(rows: list[dict]) -> None:
    print("\nvideo: FPS, propagation (frames loaded beforehand) / end to end (file -> masks)")
    print(
        f"{'size':10s} {'objects':>7s} {'official':>15s} {'ours':>15s} "
        f"{'GPU MiB o/u':>13s} {'RSS MiB o/u':>13s}"
    )
    for r in rows:
        print(
            f"{r['size']:10s} {r['objects']:7d} "
            f"{r['official_prop_fps']:7.2f}/{r['official_e2e_fps']:<7.2f} "
            f"{r['ours_prop_fps']:7.2f}/{r['ours_e2e_fps']:<7.2f} "
            f"{r['official_peak_mib']!s:>6s}/{r['ours_peak_mib']!s:<6s} "
            f"{r['official_rss_mib']!s:>6s}/{r['ours_rss_mib']!s:<6s}"
        )
        print(f"{'':10s} settings: {r['settings']}, offload {r['ours_offload']}")


PART = ("video", bench_video, print_rows)


def main(argv=None) -> dict:
    args = q2_common.parse_args(argv, description=__doc__.split("\n")[0])
    return q2_common.run(args, [PART])


if __name__ == "__main__":
    main()
