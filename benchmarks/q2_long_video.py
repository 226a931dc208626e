"""Q2 long video: our tracker on an 1,800-frame 720p video file (``--long-frames``): FPS,
peak GPU memory and peak host memory (RSS), with the largest SAM 2.1 size of ``--sizes``
(random weights from the real config; nothing is downloaded).

    python benchmarks/q2_long_video.py --sizes large --out q2_long.json   # GPU
    python benchmarks/q2_long_video.py --device cpu --quick               # sanity check on CPU
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import q2_common  # noqa: E402
from q2_video_speed import our_loop  # noqa: E402

from helpers.textseg import track  # noqa: E402


def bench_long(args, device, detector, work: Path) -> dict:
    """Ours on a long 720p video file: fps, peak GPU memory and peak host memory (RSS)."""
    from helpers.textseg import sam2_video

    n = args.long_frames
    h, w = q2_common.frame_size(args.video_res)
    video = q2_common.write_video_file(work / f"long_{w}x{h}_{n}.mp4", n, h, w)
    size = args.sizes[-1]
    tracker = track.load_video_tracker(
        size, random_weights=True, device=device, image_size=args.sam_image_size,
        compile=args.video_compile,
    )  # fmt: skip
    boxes = q2_common.object_boxes(2, h, w)
    our_loop(tracker, video, boxes, work / "long_warm", device, args.chunk_size, max_frames=8)
    q2_common.reset_peak(device)
    with q2_common.RssPeak() as rss:
        got = our_loop(tracker, video, boxes, work / "long_out", device, args.chunk_size)
    out = {
        "size": size,
        "frames": got["frames"],
        "video": f"{w}x{h}",
        "fps": got["e2e_fps"],
        "prop_fps": got["prop_fps"],
        "peak_mib": q2_common.peak_mib(device),
        "rss_mib": rss.peak,
        "settings": {**sam2_video.run_settings(tracker), "offload": got["offload"]},
    }
    print(
        f"long  {size:9s} {n} frames {out['fps']:.2f} fps, peak GPU {out['peak_mib']} MiB, "
        f"peak RSS {out['rss_mib']} MiB",
        flush=True,
    )
    return out


def print_rows(r: dict) -> None:
    print(
        f"\nlong video: {r['frames']} frames {r['video']}, {r['fps']} fps, peak GPU "
        f"{r['peak_mib']} MiB, peak RSS {r['rss_mib']} MiB"
    )


PART = ("long", bench_long, print_rows)


def main(argv=None) -> dict:
    args = q2_common.parse_args(argv, description=__doc__.split("\n")[0])
    return q2_common.run(args, [PART])


if __name__ == "__main__":
    main()
