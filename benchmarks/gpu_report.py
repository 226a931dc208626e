"""Every GPU figure the README needs in one budgeted run: OUT/report.md and OUT/report.json.

Both parts run by default (``--part q1`` or ``--part q2`` runs one of them):

Q1  (1) the ``fast`` preset trained for ``--minutes`` (default 2 beside Q2, 5 with ``--part
    q1``): val accuracy against wall time (table + PNG), final val and test accuracy (test when
    the data has a test split), and the whole command's time beside its budget (data, setup
    with compile and calibration, training, final scoring); (2) training images/s on the
    seed000 network, decomposed: the seed000 pipeline, ours at the seed's batch and
    precision, at the seed's batch with our precision, at our batch (q1_throughput.py's
    rows), with what ran read from the run.
Q2  (1) warm text -> masks latency per image (Grounding DINO tiny + SAM 2.1 large, 1024 px):
    ours, each library's documented usage, the write-ups' fp32 loop; (2) video tracking FPS
    for SAM 2.1 tiny and large (720p, 1, 3 and 16 objects), sam2's documented init_state ->
    add_new_points_or_box -> propagate_in_video loop and ours in the same run, each as
    propagation FPS and end-to-end FPS, compile time in its own column and never inside an
    FPS, with the dtype, compile, TF32 and offload settings read from the run; (3) peak GPU
    memory, peak host RSS (and FPS) on a long 720p video (1,800 frames); (4) SAM 3 image
    latency and (5) SAM 3 video tracking FPS; (6) tracking identity (IDF1, ID switches,
    MOTA vs a Grounded-SAM-2-style policy; CPU, last: the full table when the budget has a
    few minutes left, else its quick variant).

This file is the runner (options, budget, which sections run); each figure is measured by the
benchmark that owns it (q1_time_to_accuracy.measure, q1_throughput.decomposed,
q2_image_speed.bench_image, q2_video_speed.bench_video, q2_long_video.bench_long,
q2_sam3_speed.bench_*, q2_tracking.main), gpu_report_q1.py / gpu_report_q2.py estimate their
sections and turn the results into the report's tables and notes, and report_doc.py keeps
the document (report.md, report.json).

Budget: ``--budget-s`` (540, nine minutes on one H100) for the whole run. Every section has an
estimate on one H100 with its compile included (named constants in gpu_report_q1.py and
gpu_report_q2.py, each with its reason); the plan (every estimate and their total) is printed
first, and before each section (and each model size) one line gives its estimate and the time
left. What does not fit what is left is skipped, and the skip is printed and written into
report.md and report.json; the long video is shortened (the report says so) when what is
left cannot hold all of it. Q2's models have random weights built from the real configs
(nothing is downloaded; speed and memory do not depend on the weights). A section that fails
(e.g. out of memory for one size) is recorded in the report and the others still run; both
report files are rewritten atomically after every section, so a killed run keeps what it
measured. The exit status is 1 when a section failed (a skipped one is not a failure).

    python benchmarks/gpu_report.py                          # both parts, 9 minutes, one H100
    python benchmarks/gpu_report.py --plan                   # the estimates only, runs nothing
    python benchmarks/gpu_report.py --part q1 --data data/cifar10_jpeg --out runs/gpu_q1
    python benchmarks/gpu_report.py --only video,long        # some sections again
    python benchmarks/gpu_report.py --quick --out /tmp/gpu   # CPU sanity run, a few minutes
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the package and the sibling benchmark scripts

from gpu_report_q1 import Q1_SECTIONS, plan_q1, run_q1  # noqa: E402
from gpu_report_q2 import Q2_SECTIONS, plan_q2, run_q2  # noqa: E402
from report_doc import Report, _log, md_table  # noqa: E402,F401  (md_table: for callers)

# --------------------------------------------------------------------------- main

BUDGET_S = 540  # nine minutes: one GPU window of ten, with a minute to start and copy back
# the fast run beside Q2 in one budget: 1 minute leaves Q2 room for SAM 2.1 large video (the
# headline figure); alone (--part q1), the 5 minutes of its target
FAST_MINUTES_WITH_Q2 = 1.0
FAST_MINUTES_ALONE = 5.0
SECTIONS = {"q1": Q1_SECTIONS, "q2": Q2_SECTIONS}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--part", choices=["q1", "q2"], help="run one part only (default: both)")
    p.add_argument("--data", help="q1: ImageFolder root (train/ + val/ [+ test/]) or 'cifar10' "
                   "(the default; read from data/, downloaded only when missing)")  # fmt: skip
    p.add_argument("--out", help="output folder (default runs/gpu_report[_<part>])")
    p.add_argument("--minutes", type=float,
                   help=f"q1: the fast run's budget (default {FAST_MINUTES_WITH_Q2:g} beside q2, "
                   f"{FAST_MINUTES_ALONE:g} with --part q1)")  # fmt: skip
    g = p.add_mutually_exclusive_group()
    g.add_argument("--budget-s", type=float,
                   help=f"the whole run's budget in seconds (default {BUDGET_S}; --quick: none)")  # fmt: skip
    g.add_argument("--budget-minutes", type=float, help="the same in minutes")
    p.add_argument("--plan", action="store_true",
                   help="print every section's estimate and their total; run nothing")  # fmt: skip
    p.add_argument("--device", help="cuda | cpu (default: cuda when available; --quick: cpu)")
    p.add_argument("--quick", action="store_true", help="CPU sanity run with tiny sizes")
    p.add_argument(
        "--only",
        help="comma-separated sections: q1 throughput,fast; q2 image,video,long,sam3_image,"
        "sam3_video,tracking (the parts they belong to run, no other)",
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
    g.add_argument("--objects", nargs="+", default=["1", "3", "16"],
                   help="objects tracked in the video section, one run per count (1 3 16)")  # fmt: skip
    g.add_argument("--long-size", help="SAM 2.1 size for the long video (large)")
    g.add_argument("--n", type=int, help="timed image runs (default 20; quick 2)")
    g.add_argument("--video-frames", type=int, help="frames of the FPS video (120; quick 3)")
    g.add_argument("--long-frames", type=int, help="frames of the long video (1800; quick 8)")
    args = p.parse_args(argv)
    q = args.quick
    defaults = {
        "minutes": 0.1 if q else FAST_MINUTES_ALONE if args.part == "q1" else FAST_MINUTES_WITH_Q2,
        "steps": 1 if q else 100,
        "batch": 8 if q else 512,
        "seed_batch": 8 if q else 128,
        "workers": 0 if q else 2,
        "n": 2 if q else 20,
        "video_frames": 3 if q else 120,
        "long_frames": 8 if q else 1800,
        "device": "cpu" if q else None,
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.budget_minutes is not None:
        args.budget_s = args.budget_minutes * 60
    if args.budget_s is None:
        args.budget_s = math.inf if q else float(BUDGET_S)
    try:
        import q2_common

        args.objects = q2_common.parse_objects(args.objects)
    except ValueError as e:
        p.error(str(e))
    if args.minutes <= 0 or args.budget_s <= 0:
        p.error("--minutes and --budget-s (or --budget-minutes) must be > 0")
    if not 0 < args.target <= 1:
        p.error("--target is a fraction in (0, 1], e.g. 0.91")
    if min(args.steps, args.batch, args.seed_batch, args.n, args.video_frames) < 1:
        p.error("--steps, --batch, --seed-batch, --n and --video-frames must be >= 1")
    if args.long_frames < 2:
        p.error("--long-frames must be >= 2")
    args.parts = [args.part] if args.part else ["q1", "q2"]
    if args.only:
        args.only = [s.strip() for s in args.only.split(",") if s.strip()]
        valid = [s for part in args.parts for s in SECTIONS[part]]
        bad = [s for s in args.only if s not in valid]
        if bad:
            p.error(f"--only {','.join(bad)}: the sections are {valid}")
        args.parts = [part for part in args.parts if set(args.only) & set(SECTIONS[part])]
    if "q1" in args.parts and not args.data and not q:
        args.data = "cifar10"
    if args.out is None:
        args.out = "runs/gpu_report" + (f"_{args.part}" if args.part else "")
    return args


def plan(args, device) -> list[tuple[str, str, float]]:
    """Every section this run will try, in run order: (key, what, estimated seconds)."""
    out = []
    if "q1" in args.parts:
        out += plan_q1(args, device)
    if "q2" in args.parts:
        out += plan_q2(args, device)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from helpers.errors import InputError
    from helpers.runtime import pick_device

    if args.plan:  # the estimates of a run on the device named (default: a CUDA GPU)
        device = torch.device(args.device or "cuda")
        Report(args, torch.device("cpu"), "", save=False).set_plan(plan(args, device))
        return 0
    try:
        device = pick_device(args.device)
    except InputError as e:
        sys.exit(f"error: {e}")
    shown = sys.argv[1:] if argv is None else list(argv)
    command = "python benchmarks/gpu_report.py " + shlex.join(shown)
    report = Report(args, device, command)
    _log(f"{report.doc['device']} | torch {report.doc['torch']} | parts {' + '.join(args.parts)}")
    report.set_plan(plan(args, device))
    report.save()
    try:
        if "q1" in args.parts:
            run_q1(args, device, report)
        if "q2" in args.parts:
            run_q2(args, device, report)
    finally:
        report.save()
    _log(f"wrote {Path(args.out) / 'report.md'} and report.json in {report.elapsed():.1f} s")
    if report.elapsed() > report.budget_s:
        _log(f"warning: over the {report.budget_s:.0f} s budget")
    skipped = report.skipped()
    if skipped:
        _log(f"{len(skipped)} skipped: {', '.join(skipped)}; report.md says why for each")
    failed = report.failed()
    if failed:
        _log(f"{len(failed)} section(s) failed: {', '.join(failed)}; see report.md")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
