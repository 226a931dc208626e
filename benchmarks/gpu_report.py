"""Every GPU figure the README needs, one short run per part: OUT/report.md and OUT/report.json.

--part q1  (1) the ``fast`` preset trained for ``--minutes`` (default 5): val accuracy against
           wall time (table + PNG), final val and test accuracy (test when the data has a test
           split), and the whole command's time beside the budget (data, setup with compile and
           calibration, training, final scoring); (2) training images/s on the seed000 network,
           decomposed: the seed000 pipeline, ours at the seed's batch and precision, at the
           seed's batch with our precision, at our batch (q1_throughput.py's rows), with what
           ran read from the run. The long run goes first, so a run that overruns its window
           loses the short one (rerun it with ``--only throughput``).
--part q2  (1) warm text -> masks latency per image (Grounding DINO tiny + SAM 2.1 large, 1024 px);
           (2) video tracking FPS for SAM 2.1 tiny and large (720p, 2 and 5 objects), sam2's
           documented init_state -> add_new_points_or_box -> propagate_in_video loop and ours
           in the same run, each as propagation FPS and end-to-end FPS, with the dtype,
           compile, TF32 and offload settings read from the run; (3) peak GPU memory, peak
           host RSS (and FPS) on a long 720p video (1,800 frames);
           (4) SAM 3 image latency (one model, text -> masks, same image and prompt) and
           (5) SAM 3 video tracking FPS (its own detector + tracker, 720p, at most 2 objects);
           (6) tracking identity (IDF1, ID switches, MOTA vs a Grounded-SAM-2-style policy; CPU,
           last: the full table when the budget has a few minutes left, else its quick variant).
           q2_image_speed.py, q2_video_speed.py and q2_long_video.py do the measuring of (1)-(3),
           q2_sam3_speed.py of (4)-(5), q2_tracking.py of (6).

This file is the runner (options, budget, which sections run); each figure is measured by the
benchmark that owns it (q1_time_to_accuracy.measure, q1_throughput.decomposed,
q2_image_speed.bench_image, q2_video_speed.bench_video, q2_long_video.bench_long,
q2_sam3_speed.bench_*, q2_tracking.main), gpu_report_q1.py / gpu_report_q2.py turn the results
into the report's tables and notes, and report_doc.py keeps the document (report.md,
report.json).

Q2's models have random weights built from the real configs (nothing is downloaded; speed and
memory do not depend on the weights). Each part is sized to finish within ``--budget-minutes``
(9) on one H100, compile and data decoding included: the elapsed time is printed after every
section, a warning says when the budget will be overrun, and the long video is shortened (and
the report says so) when what is left of the budget cannot hold it. A section that fails (e.g.
out of memory for one size) is recorded in the report and the others still run; both report
files are rewritten atomically after every section, so a killed run keeps what it measured.
The exit status is 1 when a section failed.

    python benchmarks/gpu_report.py --part q1 --data data/cifar10_jpeg --out runs/gpu_q1
    python benchmarks/gpu_report.py --part q1 --data cifar10 --minutes 4 --out runs/gpu_q1
    python benchmarks/gpu_report.py --part q2 --out runs/gpu_q2
    python benchmarks/gpu_report.py --part q1 --quick --out /tmp/q1   # CPU sanity run, seconds
    python benchmarks/gpu_report.py --part q2 --quick --out /tmp/q2   # CPU sanity run, seconds
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the package and the sibling benchmark scripts

from gpu_report_q1 import Q1_SECTIONS, run_q1  # noqa: E402
from gpu_report_q2 import Q2_SECTIONS, run_q2  # noqa: E402
from report_doc import Report, _log, md_table  # noqa: E402,F401  (md_table: for callers)

# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--part", required=True, choices=["q1", "q2"])
    p.add_argument("--data", help="q1: ImageFolder root (train/ + val/ [+ test/]) or 'cifar10'")
    p.add_argument("--out", help="output folder (default runs/gpu_report_<part>)")
    p.add_argument("--minutes", type=float, help="q1: the fast run's budget (default 5)")
    p.add_argument("--budget-minutes", type=float, default=9.0, help="whole part (default 9)")
    p.add_argument("--device", help="cuda | cpu (default: cuda when available; --quick: cpu)")
    p.add_argument("--quick", action="store_true", help="CPU sanity run with tiny sizes")
    p.add_argument(
        "--only",
        help="comma-separated sections: q1 throughput,fast; q2 image,video,long,sam3_image,"
        "sam3_video,tracking",
    )
    g = p.add_argument_group("q1")
    g.add_argument("--steps", type=int, help="timed throughput steps (default 100; quick 1)")
    g.add_argument("--warmup", type=int, help="throughput warm-up steps (default 20, CPU 1)")
    g.add_argument("--batch", type=int, help="our batch size (default 512; quick 8)")
    g.add_argument("--seed-batch", type=int, help="the seed's batch size (default 128; quick 8)")
    g.add_argument("--workers", type=int, help="the seed's DataLoader workers (default 2; quick 0)")
    g.add_argument("--target", type=float, default=0.91, help="val accuracy to time (0.91)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="q1: torch.compile ours (default on CUDA); q2: SAM 2 image encoder "
                   "(default off)")  # fmt: skip
    g = p.add_argument_group("q2")
    g.add_argument("--image-sizes", help="SAM 2.1 sizes for the image latency (large)")
    g.add_argument("--video-sizes", help="SAM 2.1 sizes for video FPS (tiny,large)")
    g.add_argument("--long-size", help="SAM 2.1 size for the long video (large)")
    g.add_argument("--n", type=int, help="timed image runs (default 20; quick 2)")
    g.add_argument("--video-frames", type=int, help="frames of the FPS video (120; quick 4)")
    g.add_argument("--long-frames", type=int, help="frames of the long video (1800; quick 8)")
    args = p.parse_args(argv)
    q = args.quick
    defaults = {
        "minutes": 0.1 if q else 5.0,
        "steps": 1 if q else 100,
        "batch": 8 if q else 512,
        "seed_batch": 8 if q else 128,
        "workers": 0 if q else 2,
        "n": 2 if q else 20,
        "video_frames": 4 if q else 120,
        "long_frames": 8 if q else 1800,
        "device": "cpu" if q else None,
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.out is None:
        args.out = f"runs/gpu_report_{args.part}"
    if args.part == "q1" and not args.data and not q:
        p.error("--part q1 needs --data (an ImageFolder root or 'cifar10'); --quick can do without")
    if args.minutes <= 0 or args.budget_minutes <= 0:
        p.error("--minutes and --budget-minutes must be > 0")
    if not 0 < args.target <= 1:
        p.error("--target is a fraction in (0, 1], e.g. 0.91")
    if min(args.steps, args.batch, args.seed_batch, args.n, args.video_frames) < 1:
        p.error("--steps, --batch, --seed-batch, --n and --video-frames must be >= 1")
    if args.long_frames < 2:
        p.error("--long-frames must be >= 2")
    valid = Q1_SECTIONS if args.part == "q1" else Q2_SECTIONS
    if args.only:
        args.only = [s.strip() for s in args.only.split(",") if s.strip()]
        bad = [s for s in args.only if s not in valid]
        if bad:
            p.error(f"--only {','.join(bad)}: sections of --part {args.part} are {valid}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from helpers.errors import InputError
    from helpers.runtime import pick_device

    try:
        device = pick_device(args.device)
    except InputError as e:
        sys.exit(f"error: {e}")
    shown = sys.argv[1:] if argv is None else list(argv)
    command = "python benchmarks/gpu_report.py " + shlex.join(shown)
    report = Report(args, device, command)
    _log(f"{report.doc['device']} | torch {report.doc['torch']} | part {args.part}")
    report.save()
    try:
        (run_q1 if args.part == "q1" else run_q2)(args, device, report)
    finally:
        report.save()
    _log(f"wrote {Path(args.out) / 'report.md'} and report.json in {report.elapsed():.1f} s")
    failed = report.failed()
    if report.elapsed() > report.budget_s:
        _log(f"warning: over the {args.budget_minutes:g}-minute budget")
    if failed:
        _log(f"{len(failed)} section(s) failed: {', '.join(failed)}; see report.md")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
