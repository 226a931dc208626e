"""The GPU report's Q2 sections: Grounding DINO + SAM 2.1 image latency (``q2_image_speed``),
video FPS (``q2_video_speed``) and the long video's memory (``q2_long_video``), SAM 3 image
latency and video FPS (``q2_sam3_speed``), tracking identity (``q2_tracking``, CPU); each
measured by its benchmark, tabled here."""

from __future__ import annotations

import copy
import tempfile
import time
import traceback
from pathlib import Path

from report_doc import Report, _error, _fmt, _free_gpu, _log, _short, md_table

from helpers.textseg.sam2_compile import COMPILE_SECONDS

Q2_SECTIONS = ("image", "video", "long", "sam3_image", "sam3_video", "tracking")

# Estimates in seconds on one H100, compile included: the budget check before each section
# (and each model size) reads them; gpu_report.py prints each with the time left and skips
# what does not fit.
# importing transformers and building Grounding DINO tiny with random weights
SETUP_S = 15
# a SAM 2.1 image model with random weights (large: 224 M parameters) on the GPU
IMAGE_BUILD_S = 10
# one image through the slowest of the three loops: fp32 Grounding DINO tiny + SAM 2.1 large
IMAGE_CALL_S = 0.3
# --compile: SAM 2's image encoder through torch.compile in the first warm-up call
IMAGE_COMPILE_S = 60
# a SAM 2.1 video predictor with random weights, per size
VIDEO_BUILD_S = 10
# the H.264 file both loops read (120 frames of 720p), drawn and encoded once
VIDEO_FILE_S = 5
# the compile of SAM 2 on a size's first frames (helpers.textseg.sam2_compile: max-autotune
# of the image encoder, memory encoder and attention, prompt encoder and mask decoder); sam2
# 1.1.0 propagates each object at batch 1, so a further object count compiles nothing new
VIDEO_COMPILE_S = COMPILE_SECONDS
# model time per frame at 2 objects = 1 / the README's target FPS for the size
VIDEO_TARGET_FPS = {"tiny": 100, "small": 80, "base_plus": 60, "large": 40}
# share of a 2-object frame spent in the image encoder (once per frame); the rest (memory
# attention, mask decoder, memory encoder) runs once per object
ENCODER_SHARE = 0.5
# the target FPS are goals, not measurements: frames may take a quarter longer
FRAME_MARGIN = 1.25
# frames of the warm-up run before each object count's two timed loops (q2_video_speed)
WARMUP_FRAMES = 8
# per object count: the documented loop's JPEG folder written and read back, our decoding
VIDEO_IO_S = 6
# the long video: a fresh predictor of its size, built and compiled again (Inductor's caches
# from the video section make this shorter than the first compile), then its warm-up
LONG_SETUP_S = 60
# per frame of the long video beyond the model: drawing and H.264-encoding it (one thread),
# then its masks encoded and written
LONG_FRAME_HOST_S = 0.015
# SAM 3 (about 850 M parameters) initialised with random weights and moved to the GPU
SAM3_BUILD_S = 30
# one warm 1024-px image through SAM 3 (2 phrases: 1 vision pass + 2 DETR/mask passes)
SAM3_IMAGE_CALL_S = 0.15
# one 720p frame of SAM 3 video: its detector on every frame + the tracker, 2 objects
SAM3_VIDEO_FRAME_S = 0.15
# the full identity table (q2_tracking: 16 scenes x 3 seeds x 6 conditions) on the CPU: 224 s
# on one idle core of a 2-core cloud VM; run only with 1.5x that left of the budget, else its
# quick variant (6 scenes, 2 seeds, 3 conditions)
TRACKING_FULL_S = 360
# the quick variant: 6 scenes x 2 seeds x 3 conditions on the CPU, with a margin
TRACKING_QUICK_S = 60


def frame_seconds(size: str, objects: int) -> float:
    """Model seconds per video frame with ``objects`` objects, from the target FPS at 2."""
    at_two = 1.0 / VIDEO_TARGET_FPS[size]
    return at_two * (ENCODER_SHARE + (1 - ENCODER_SHARE) * objects / 2) * FRAME_MARGIN


def _video_compiled(qargs, device) -> bool:
    return device.type == "cuda" and qargs.video_compile is not False


def estimate_image(args, qargs, size: str) -> float:
    calls = 3 * (qargs.warmup + qargs.n)  # three loops: seed, documented, ours
    return IMAGE_BUILD_S + calls * IMAGE_CALL_S + (IMAGE_COMPILE_S if qargs.compile else 0)


def estimate_video(qargs, device, size: str) -> float:
    """One size: build, compile (when compiled), and per object count the warm-up and the
    two timed loops over the video."""
    total = VIDEO_BUILD_S + (VIDEO_COMPILE_S[size] if _video_compiled(qargs, device) else 0)
    frames = min(qargs.video_frames, WARMUP_FRAMES) + 2 * qargs.video_frames
    for k in qargs.objects:
        total += VIDEO_IO_S + frames * frame_seconds(size, k)
    return total


def estimate_long(qargs, device, size: str, frames: int, per_frame: float | None = None) -> float:
    """The long video at ``frames``: setup (compile when compiled), the file, the tracking;
    ``per_frame``: tracking seconds per frame measured by this run, else from the targets."""
    setup = LONG_SETUP_S if _video_compiled(qargs, device) else VIDEO_BUILD_S
    if per_frame is None:
        per_frame = frame_seconds(size, 2)
    return setup + (WARMUP_FRAMES + frames) * (per_frame + LONG_FRAME_HOST_S)


def estimate_sam3_image(args) -> float:
    return SAM3_BUILD_S + ((1 if args.quick else 3) + args.n) * SAM3_IMAGE_CALL_S


def estimate_sam3_video(qargs) -> float:
    return SAM3_BUILD_S + qargs.video_frames * SAM3_VIDEO_FRAME_S


def plan_q2(args, device) -> list[tuple[str, str, float]]:
    """(section, what, estimated seconds) of the Q2 sections this run will try, in run order."""
    qargs = _q2_args(args)
    sections = args.only or list(Q2_SECTIONS)
    counts = " ".join(map(str, qargs.objects))
    plan = [("setup", "Q2 Grounding DINO build", SETUP_S)]
    if "image" in sections:
        for size in _sizes(args, "image_sizes"):
            what = f"image latency, SAM 2.1 {size}"
            plan.append((f"image:{size}", what, estimate_image(args, qargs, size)))
    if "video" in sections:
        for i, size in enumerate(_sizes(args, "video_sizes")):
            what = f"video FPS, SAM 2.1 {size}, {counts} objects"
            est = estimate_video(qargs, device, size) + (VIDEO_FILE_S if i == 0 else 0)
            plan.append((f"video:{size}", what, est))
    if "long" in sections:
        size = _sizes(args, "long_size")[-1]
        what = f"long video, {qargs.long_frames:,} frames, SAM 2.1 {size}"
        plan.append(("long", what, estimate_long(qargs, device, size, qargs.long_frames)))
    if "sam3_image" in sections:
        plan.append(("sam3_image", "SAM 3 image latency", estimate_sam3_image(args)))
    if "sam3_video" in sections:
        plan.append(("sam3_video", "SAM 3 video FPS", estimate_sam3_video(qargs)))
    if "tracking" in sections:
        plan.append(("tracking", "tracking identity (CPU), quick table", TRACKING_QUICK_S))
    return plan


def _q2_args(args):
    import q2_common

    argv = ["--n", str(args.n), "--video-frames", str(args.video_frames)]
    argv += ["--long-frames", str(args.long_frames), "--objects", *map(str, args.objects)]
    if args.quick:
        argv += ["--quick", "--sizes", "tiny"]
    if args.compile:
        argv.append("--compile")
    qargs = q2_common.parse_args(argv)
    if args.quick:  # parse_args --quick caps these; keep ours when given smaller
        qargs.video_frames = min(qargs.video_frames, args.video_frames)
    return qargs


# large first: its FPS is the headline figure, so it is the one a tight budget keeps
SIZE_DEFAULTS = {"image_sizes": "large", "video_sizes": "large,tiny", "long_size": "large"}


def _sizes(args, name: str) -> list[str]:
    from helpers.textseg import segment

    value = getattr(args, name) or ("tiny" if args.quick else SIZE_DEFAULTS[name])
    sizes = [s.strip() for s in value.split(",") if s.strip()]
    for s in sizes:
        segment.normalize_size(s)
    return sizes


def _per_size(sec: dict, report: Report, key: str, sizes: list[str], fn, estimate) -> list[dict]:
    """``fn(size) -> list of rows`` for each size that fits the time left by
    ``estimate(size)`` (one that does not is a skipped row); a failure becomes an error row."""
    rows: list[dict] = []
    sec["result"] = rows
    for size in sizes:
        est = estimate(size)
        sec.setdefault("size_estimate_s", {})[size] = round(est)
        why = report.check(f"{key}:{size}", f"{key} SAM 2.1 {size}", est)
        if why is not None:
            rows.append({"size": size, "skipped": why})
            sec.setdefault("skipped_sizes", {})[size] = why
            sec["notes"].append(f"SAM 2.1 {size}: {why}")
            report.save()
            continue
        err = None
        t = time.perf_counter()
        try:
            got = fn(size)
        except Exception as e:
            err = _error(e)
            traceback.print_exc()
        if err is not None:
            rows.append({"size": size, "error": err})
            sec.setdefault("errors", {})[size] = err
            _free_gpu()
        else:
            rows.extend(got)
        took = time.perf_counter() - t
        sec.setdefault("size_seconds", {})[size] = round(took, 1)
        _log(f"  {size}: {took:.1f} s (estimate {est:.0f} s)")
        report.save()
    return rows


def _not_run(r: dict) -> str | None:
    """The cell text of a row that did not run (skipped by the budget, or failed)."""
    if "skipped" in r:
        return r["skipped"]
    if "error" in r:
        return f"failed: {_short(r['error'], 120)}"
    return None


def _weights(qargs) -> str:
    toy = qargs.detector_size == "toy"
    return "random weights" + (" (toy detector config)" if toy else " from the real configs")


def q2_image(sec: dict, args, qargs, device, detector, report: Report) -> None:
    import q2_common
    import q2_image_speed

    sizes = _sizes(args, "image_sizes")

    def one(size):
        a = copy.copy(qargs)
        a.sizes = [size]
        return q2_image_speed.bench_image(a, device, detector)

    rows = _per_size(sec, report, "image", sizes, one, lambda z: estimate_image(args, qargs, z))
    table = []
    for r in rows:
        why = _not_run(r)
        if why is not None:
            table.append([r["size"], "", "", why, "", "", "", "", ""])
            continue
        table.append(
            [
                r["size"],
                r["image"],
                r["boxes"],
                f"{r['ours_ms']:.1f}",
                f"{r['documented_ms']:.1f}",
                f"{r['speedup_vs_documented']:.2f}×",
                f"{r['seed_ms']:.1f}",
                f"{r['speedup']:.2f}×",
                _fmt(r.get("ours_peak_mib"), ",.0f"),
            ]
        )
    sec["table"] = md_table(
        [
            "SAM 2.1",
            "image",
            "boxes",
            "ours ms (warm)",
            "documented usage ms (warm)",
            "× documented",
            "write-ups' fp32 loop ms (warm)",
            "× fp32 loop",
            "ours peak MiB",
        ],
        table,
        right={2, 3, 4, 5, 6, 7, 8},
    )
    ok = [r for r in rows if _not_run(r) is None]
    amp = ok[0].get("documented_autocast") if ok else None
    sec["notes"] += [
        f"Grounding DINO {qargs.detector_size} + SAM 2.1, {_weights(qargs)}; "
        f"median of {qargs.n} warm runs after {qargs.warmup} warm-up (any compile happens in "
        f"the warm-up, never inside a figure); prompt '{q2_common.PROMPT}'",
        "ours: inference_mode, bf16 autocast + TF32 (Ampere+), all boxes in one SAM 2 call"
        + ("; SAM 2 image encoder compiled" if qargs.compile else ""),
        "documented usage: Grounding DINO as transformers documents it (fp32 under no_grad), "
        "SAM 2.1 as sam2's README shows it (torch.inference_mode() and "
        'torch.autocast("cuda", dtype=torch.bfloat16) around set_image and predict, one mask '
        "per box"
        + ("" if amp == "bfloat16" else "; no autocast here: not a CUDA device")
        + "), TF32 and cuDNN as PyTorch leaves them (matmul TF32 off, cuDNN TF32 on: neither "
        "library changes them), nothing compiled",
        "write-ups' fp32 loop: Grounding DINO and SAM 2 in fp32 with TF32 off, under no_grad",
    ]


def _settings_note(settings: dict) -> str:
    """What ran, from ``sam2_video.run_settings`` of the run (never typed in)."""
    return (
        f"{settings.get('predictor')} ({'compiled' if settings.get('compiled') else 'not compiled'}), "
        f"{settings.get('dtype')}, TF32 {'on' if settings.get('tf32') else 'off'}, "
        f"device {settings.get('device')}"
    )


def q2_video(sec: dict, args, qargs, device, detector, report: Report, work: Path) -> None:
    import q2_common
    import q2_video_speed

    sizes = _sizes(args, "video_sizes")
    h, w = q2_common.frame_size(qargs.video_res)

    def one(size):
        a = copy.copy(qargs)
        a.sizes = [size]
        return q2_video_speed.bench_video(a, device, detector, work)

    def estimate(size):  # the video file is written by the first size that runs
        written = any(_not_run(r) is None for r in sec.get("result") or [])
        return estimate_video(qargs, device, size) + (0 if written else VIDEO_FILE_S)

    rows = _per_size(sec, report, "video", sizes, one, estimate)
    table = []
    for r in rows:
        why = _not_run(r)
        if why is not None:
            table.append([r["size"], "", why] + [""] * 7)
            continue
        table.append(
            [
                r["size"],
                r["objects"],
                f"{r['official_prop_fps']:.2f}",
                f"{r['official_e2e_fps']:.2f}",
                f"{r['ours_prop_fps']:.2f}",
                f"{r['ours_e2e_fps']:.2f}",
                f"{r['warmup_s']:.1f}",
                f"{_fmt(r.get('official_peak_mib'))} / {_fmt(r.get('ours_peak_mib'))}",
                f"{_fmt(r.get('official_rss_mib'))} / {_fmt(r.get('ours_rss_mib'))}",
                "on" if r.get("ours_offload") else "off",
            ]
        )
    sec["table"] = md_table(
        [
            "SAM 2.1",
            "objects",
            "sam2 loop fps (propagation)",
            "sam2 loop fps (end to end)",
            "ours fps (propagation)",
            "ours fps (end to end)",
            "warm-up s incl. compile (not in any fps)",
            "peak GPU MiB sam2 / ours",
            "peak RSS MiB sam2 / ours",
            "ours offload",
        ],
        table,
        right={1, 2, 3, 4, 5, 6, 7, 8},
    )
    ok = [r for r in rows if _not_run(r) is None]
    for r in ok[:1] + [x for x in ok[1:] if x["settings"] != ok[0]["settings"]]:
        sec["notes"].append(f"{r['size']}: ran as {_settings_note(r['settings'])}")
    sec["notes"] += [
        "every fps excludes compile: a warm-up run on the first "
        f"{min(qargs.video_frames, WARMUP_FRAMES)} frames per size and object count (where a "
        "compiled predictor compiles for its shapes) comes first, timed in its own column",
        f"{qargs.video_frames} frames of {w}x{h} in an H.264 file; the same boxes on frame 0 "
        "for both loops (one shared predictor, "
        f"{_weights(qargs)}); objects {', '.join(map(str, qargs.objects))}, boxes apart on "
        "a grid over the frame",
        "sam2 loop: its README's init_state -> add_new_points_or_box -> propagate_in_video on "
        "the video as a JPEG folder; ours: track_video on the file (frames decoded in memory)",
        "propagation fps: between the first and last frame propagation delivered (frames "
        "loaded beforehand, as Meta measures); end to end: video file -> masks on the host",
    ]


def long_frames(args, qargs, device, report: Report, size: str) -> tuple[int, float, str | None]:
    """Frames for the long video, its estimate, and a note when shortened: tracking seconds
    per frame from this run's video section (the same size, the object count nearest 2, with
    a 20 % margin), else from the targets; shortened (to no fewer than two chunks) when what
    is left of the budget cannot hold all ``--long-frames``."""
    n = qargs.long_frames
    video = report.doc["sections"].get("video", {}).get("result") or []
    ran = [r for r in video if r.get("size") == size and r.get("ours_e2e_fps")]
    ran.sort(key=lambda r: (abs(r["objects"] - 2), r["objects"]))
    per_frame = 1.2 / ran[0]["ours_e2e_fps"] if ran else None
    est = estimate_long(qargs, device, size, n, per_frame)
    if args.quick or est <= report.left():
        return n, est, None
    step = (per_frame or frame_seconds(size, 2)) + LONG_FRAME_HOST_S
    setup = est - (WARMUP_FRAMES + n) * step
    fits = int((report.left() - setup) / step) - WARMUP_FRAMES
    n_new = max(min(n, 2 * qargs.chunk_size), fits)
    if n_new >= n:
        return n, est, None
    note = (
        f"shortened from {n:,} to {n_new:,} frames to stay within the budget (projected "
        f"{est:.0f} s, {report.left():.0f} s left)"
    )
    return n_new, estimate_long(qargs, device, size, n_new, per_frame), note


def q2_long(sec: dict, args, qargs, device, detector, report: Report, work: Path, frames: int,
            shortened: str | None) -> None:  # fmt: skip
    import q2_long_video

    size = _sizes(args, "long_size")[-1]
    a = copy.copy(qargs)
    a.sizes = [size]
    if shortened:
        sec["notes"].append(shortened)
        _log(f"  {shortened}")
    video = report.doc["sections"].get("video", {}).get("result") or []
    a.long_frames = frames
    res = q2_long_video.bench_long(a, device, detector, work)
    sec["result"] = res
    same = [r for r in video if r.get("size") == size and _not_run(r) is None]
    same.sort(key=lambda r: (abs(r["objects"] - 2), r["objects"]))
    short = same[0] if same else None
    rows = [
        [
            size,
            2,
            res["video"],
            f"{res['frames']:,}",
            a.chunk_size,
            f"{res['fps']:.2f}",
            _fmt(res.get("peak_mib")),
            _fmt(res.get("rss_mib")),
        ]
    ]
    if short is not None:
        rows.append(
            [
                size,
                short["objects"],
                short["video"],
                f"{short['frames']:,}",
                a.chunk_size,
                f"{short['ours_e2e_fps']:.2f}",
                _fmt(short.get("ours_peak_mib")),
                _fmt(short.get("ours_rss_mib")),
            ]
        )
    sec["table"] = md_table(
        ["SAM 2.1 (ours)", "objects", "video", "frames", "chunk",
         "fps end to end (after warm-up)", "peak GPU MiB", "peak RSS MiB"],
        rows,
        right={1, 3, 4, 5, 6, 7},
    )  # fmt: skip
    sec["notes"] += [
        "peak GPU = torch.cuda.max_memory_allocated, peak RSS = the process's resident memory "
        "sampled every 20 ms, both over the run; the second row is the short video of the "
        "video section (the object count nearest 2), for comparison (memory should stay flat)",
        "fps excludes compile: an 8-frame warm-up run (where a compiled predictor compiles) "
        "comes first, untimed",
        f"ran as {_settings_note(res['settings'])}, offload "
        f"{'on' if res['settings'].get('offload') else 'off'}",
    ]


def _sam3_size(args) -> str:
    return "toy" if args.quick else "full"


def _config_words(row: dict, real: str) -> str:
    """How the run built SAM 3, read from the model it ran (``random-toy`` / ``random-full``)."""
    return (
        "toy config" if str(row.get("config", "")).endswith("toy") else f"{real} (the real sizes)"
    )


def q2_sam3_image(sec: dict, args, qargs, device, report: Report) -> None:
    """Warm SAM 3 latency per image (``q2_sam3_speed.bench_image``)."""
    import q2_common
    import q2_sam3_speed

    warmup = 1 if args.quick else 3
    row = q2_sam3_speed.bench_image(_sam3_size(args), device, qargs.image_px, args.n, warmup)
    sec["result"] = [row]
    sec["table"] = md_table(
        [
            "model",
            "image",
            "phrases",
            "warm ms (after warm-up)",
            "text encoding saved / image ms",
            "peak MiB",
        ],
        [
            [
                row["model"],
                row["image"],
                row["phrases"],
                f"{row['ms']:.1f}",
                f"{row['text_encode_ms_saved']:.1f}",
                _fmt(row["peak_mib"]),
            ]
        ],
        right={2, 3, 4, 5},
    )
    sec["notes"] += [
        f"SAM 3 {_config_words(row, 'Sam3Config()')}, random weights; median of {row['runs']} "
        f"warm runs after {row['warmup']} warm-up; prompt '{q2_common.PROMPT}'; compare with the "
        "Grounding DINO + SAM 2.1 rows of the image section (same image size and prompt)",
        "per image: 1 vision pass + 1 DETR/mask pass per phrase; each phrase's text features "
        "are computed once per process and reused (the last column is what that saves)",
        "inference_mode, bf16 autocast + TF32 on Ampere+ (fp32 elsewhere)",
    ]
    _free_gpu()


def q2_sam3_video(sec: dict, args, qargs, device, report: Report, work: Path) -> None:
    """SAM 3 video FPS through our chunked path (``q2_sam3_speed.bench_video``)."""
    import q2_sam3_speed

    row = q2_sam3_speed.bench_video(
        _sam3_size(args), device, work, qargs.video_frames, qargs.video_res, qargs.chunk_size
    )
    sec["result"] = [row]
    sec["table"] = md_table(
        [
            "model",
            "video",
            "frames",
            "fps (no warm-up; nothing compiled)",
            "fps end to end",
            "chunk",
            "ids",
            "peak MiB",
        ],
        [
            [
                row["model"],
                row["video"],
                row["frames"],
                f"{row['fps']:.2f}",
                f"{row['e2e_fps']:.2f}",
                row["chunk_size"],
                row["ids"],
                _fmt(row["peak_mib"]),
            ]
        ],
        right={2, 3, 4, 5, 6, 7},
    )
    sec["notes"] += [
        "SAM 3 video (detector on every frame + memory tracker), "
        f"{_config_words(row, 'Sam3VideoConfig()')}, random weights, at most "
        f"{row['max_objects']} tracked objects; frames preprocessed and stored on the CPU "
        f"(offload), sessions of at most {row['chunk_size']} frames",
        "fps = frames / tracking time (SAM 3 detection + tracking + RLE of the masks); end to "
        "end also counts reading the frames; compare with the SAM 2.1 rows of the video section",
        "nothing of SAM 3 is compiled, so no compile time is inside its fps; there is no "
        "separate warm-up run, so the first frames' one-off set-up is inside it",
    ]
    _free_gpu()


def run_q2(args, device, report: Report) -> None:
    import q2_common

    from helpers import runtime

    if device.type == "cuda":
        runtime.enable_fast_matmul()
    qargs = _q2_args(args)
    sections = args.only or list(Q2_SECTIONS)
    state: dict = {}

    def setup(sec):
        t = time.perf_counter()
        state["detector"] = q2_common.make_detector(qargs, device)
        build_s = time.perf_counter() - t
        sec["result"] = {
            "detector": f"grounding-dino {qargs.detector_size}",
            "build_seconds": round(build_s, 1),
            "sam_image_size": qargs.sam_image_size or "model default (1024)",
        }
        sec["table"] = md_table(
            ["detector", "weights", "build s", "SAM 2.1 input"],
            [
                [
                    f"Grounding DINO {qargs.detector_size}",
                    "random, " + ("toy config" if qargs.detector_size == "toy" else "real config"),
                    f"{build_s:.1f}",
                    f"{qargs.sam_image_size or 1024} px",
                ]
            ],
            right={2},
        )

    report.run("setup", "Q2 setup (random-weight Grounding DINO)", setup, estimate_s=SETUP_S)
    _gpu_sections(args, qargs, device, report, sections, state.get("detector"))
    if "tracking" in sections:  # CPU only, after the GPU sections: it never squeezes them
        title = "Q2 tracking identity: IDF1 / ID switches / MOTA vs a Grounded-SAM-2-style policy"
        full = not args.quick and report.left() >= TRACKING_FULL_S
        est = TRACKING_FULL_S if full else TRACKING_QUICK_S
        report.run("tracking", title, q2_tracking, args, report, full, estimate_s=est)


def _gpu_sections(args, qargs, device, report: Report, sections, det) -> None:
    """The GPU sections in order; without ``det`` (the setup did not run) those that use
    Grounding DINO are recorded as skipped and the SAM 3 ones still run."""
    if det is None:
        for key in [k for k in ("image", "video", "long") if k in sections]:
            report.skip(key, f"Q2 {key}", "skipped: needs the Q2 setup, which did not run")
        sections = [k for k in sections if k not in ("image", "video", "long")]
    with tempfile.TemporaryDirectory(prefix="gpu_report_") as tmp:
        work = Path(tmp)
        if "image" in sections:
            title = "Q2 image: text -> masks latency (warm)"
            est = [estimate_image(args, qargs, z) for z in _sizes(args, "image_sizes")]
            report.run("image", title, q2_image, args, qargs, device, det, report,
                       estimate_s=sum(est), first_part_s=est[0])  # fmt: skip
        if "video" in sections:
            title = "Q2 video: tracking FPS, sam2's documented loop vs ours"
            est = [estimate_video(qargs, device, z) for z in _sizes(args, "video_sizes")]
            est[0] += VIDEO_FILE_S
            report.run("video", title, q2_video, args, qargs, device, det, report, work,
                       estimate_s=sum(est), first_part_s=est[0])  # fmt: skip
        if "long" in sections:
            title = "Q2 long video: peak GPU and host memory"
            size = _sizes(args, "long_size")[-1]
            frames, est, note = long_frames(args, qargs, device, report, size)
            report.run("long", title, q2_long, args, qargs, device, det, report, work, frames,
                       note, estimate_s=est)  # fmt: skip
        if "sam3_image" in sections:
            title = "Q2 SAM 3 image: text -> masks latency with one model (warm)"
            report.run("sam3_image", title, q2_sam3_image, args, qargs, device, report,
                       estimate_s=estimate_sam3_image(args))  # fmt: skip
        if "sam3_video" in sections:
            title = "Q2 SAM 3 video: tracking FPS with its own detector + tracker"
            report.run("sam3_video", title, q2_sam3_video, args, qargs, device, report,
                       work / "s3", estimate_s=estimate_sam3_video(qargs))  # fmt: skip


def q2_tracking(sec: dict, args, report: Report, full: bool) -> None:
    """Identity across keyframes (``q2_tracking``: scripted scenes, stand-in models, CPU only):
    per condition, ours vs the Grounded-SAM-2-style baseline and the oracle; the full table
    when ``full``, else its quick variant."""
    import q2_tracking as bench

    if not args.quick and not full:
        sec["notes"].append(
            f"the quick variant (6 scenes, 2 seeds, detection every 30 frames): "
            f"{report.left():.0f} s of the budget left, the full table needs about "
            f"{TRACKING_FULL_S} s"
        )
    # --quick (a sanity run): the quick variant on one seed, to stay fast
    res = bench.main([] if full else ["--quick", "--seeds", "0"] if args.quick else ["--quick"])
    sec["result"] = res
    policies = ("ours", "baseline", "oracle")
    rows = []
    for cond, r in res["conditions"].items():
        overall = [r[p]["OVERALL"] for p in policies]
        rows.append(
            [cond]
            + [f"{o['idf1']:.3f}" for o in overall]
            + [o["idsw"] for o in overall]
            + [f"{o['mota']:.3f}" for o in overall]
        )
    head = [f"{m} {p}" for m in ("IDF1", "ID switches", "MOTA") for p in policies]
    sec["table"] = md_table(
        ["condition (appearance@cadence)", *head], rows, right=set(range(1, 10))
    )
    met = res["targets_met"]
    missed = [k for k, v in met.items() if not v]
    sec["notes"] += [
        f"targets: {len(met) - len(missed)}/{len(met)} met"
        + (f" (missed: {'; '.join(missed)})" if missed else ""),
        f"scripted scenes with stand-in detector and propagation (no model, no GPU), seeds "
        f"{res['seeds']}; baseline: re-seed every keyframe by mask IoU >= 0.5; oracle: every "
        "keyframe identity decision from the ground truth; the per-scene tables: "
        "`python benchmarks/q2_tracking.py`",
    ]
