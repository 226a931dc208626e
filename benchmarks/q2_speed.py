"""Q2 speed: text -> masks latency per image and video tracking FPS, ours vs a seed-style loop.

One front over the Q2 SAM 2.1 speed measurements, one file each (their docstrings say what
each measures and how); the options are theirs (``q2_common.parse_args``):

  image        q2_image_speed.py   warm latency per image, per SAM 2 size, ours vs the seed loop
  video        q2_video_speed.py   tracking FPS per size and object count, sam2's documented
                                   loop vs ours (propagation and end to end, GPU and host memory)
  --long       q2_long_video.py    an 1,800-frame 720p run (ours only): FPS, peak GPU memory and
                                   peak host RSS
  --host-cost  q2_host_cost.py     only the per-frame host work of the video path (stub model, CPU)

    python benchmarks/q2_speed.py --out q2_speed.json                 # GPU, all sizes
    python benchmarks/q2_speed.py --device cpu --quick                # sanity check, minutes on CPU
    python benchmarks/q2_speed.py --host-cost                         # host ms per frame, CPU
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import q2_common  # noqa: E402
import q2_host_cost  # noqa: E402
import q2_image_speed  # noqa: E402
import q2_long_video  # noqa: E402
import q2_video_speed  # noqa: E402


def _front_options(p) -> None:
    p.add_argument(
        "--long", action="store_true", help="also an 1,800-frame run (ours, peak memory)"
    )
    p.add_argument("--skip-image", action="store_true")
    p.add_argument("--skip-video", action="store_true")
    p.add_argument(
        "--host-cost",
        action="store_true",
        help="only the per-frame host work of the video path (stand-in model, 720p and 1080p, 3 and 16 objects, one "
        "thread); CPU, seconds",
    )


def main(argv=None) -> dict:
    args = q2_common.parse_args(argv, add=_front_options, description=__doc__.split("\n")[0])
    if args.host_cost:
        frames = args.video_frames if args.quick else 90
        out = ["--out", args.out] if args.out else []
        return q2_host_cost.main(["--frames", str(frames), *out])
    parts = []
    if not args.skip_image:
        parts.append(q2_image_speed.PART)
    if not args.skip_video:
        parts.append(q2_video_speed.PART)
    if args.long:
        parts.append(q2_long_video.PART)
    return q2_common.run(args, parts)


if __name__ == "__main__":
    main()
