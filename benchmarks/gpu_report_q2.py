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

Q2_SECTIONS = ("image", "video", "long", "sam3_image", "sam3_video", "tracking")
# the full identity table (q2_tracking: 16 scenes x 3 seeds x 6 conditions) on the CPU: 224 s
# on one idle core of a 2-core cloud VM; run only with 1.5x that left of the budget, else its
# quick variant (6 scenes, 2 seeds, 3 conditions)
TRACKING_FULL_S = 360


def _q2_args(args):
    import q2_common

    argv = ["--n", str(args.n), "--video-frames", str(args.video_frames)]
    argv += ["--long-frames", str(args.long_frames)]
    if args.quick:
        argv += ["--quick", "--sizes", "tiny"]
    if args.compile:
        argv.append("--compile")
    qargs = q2_common.parse_args(argv)
    if args.quick:  # parse_args --quick caps these; keep ours when given smaller
        qargs.video_frames = min(qargs.video_frames, args.video_frames)
    return qargs


SIZE_DEFAULTS = {"image_sizes": "large", "video_sizes": "tiny,large", "long_size": "large"}


def _sizes(args, name: str) -> list[str]:
    from helpers.textseg import segment

    value = getattr(args, name) or ("tiny" if args.quick else SIZE_DEFAULTS[name])
    sizes = [s.strip() for s in value.split(",") if s.strip()]
    for s in sizes:
        segment.normalize_size(s)
    return sizes


def _per_size(sec: dict, report: Report, sizes: list[str], fn) -> list[dict]:
    """``fn(size) -> list of rows`` for each size; a failure becomes an error row."""
    rows: list[dict] = []
    sec["result"] = rows
    for size in sizes:
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
        _log(f"  {size}: {time.perf_counter() - t:.1f} s")
        report.save()
    return rows


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

    rows = _per_size(sec, report, sizes, one)
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["size"], "", "", f"failed: {_short(r['error'], 120)}", "", "", ""])
            continue
        table.append(
            [
                r["size"],
                r["image"],
                r["boxes"],
                f"{r['ours_ms']:.1f}",
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
            "ours ms",
            "seed-style ms (fp32)",
            "speedup",
            "ours peak MiB",
        ],
        table,
        right={2, 3, 4, 5, 6},
    )
    sec["notes"] += [
        f"Grounding DINO {qargs.detector_size} + SAM 2.1, {_weights(qargs)}; "
        f"median of {qargs.n} warm runs after {qargs.warmup} warm-up; prompt "
        f"'{q2_common.PROMPT}'",
        "ours: inference_mode, bf16 autocast + TF32 (Ampere+), all boxes in one SAM 2 call"
        + ("; SAM 2 image encoder compiled" if qargs.compile else "")
        + "; seed-style: fp32 (TF32 off) under no_grad",
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

    rows = _per_size(sec, report, sizes, one)
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["size"], "", f"failed: {_short(r['error'], 120)}"] + [""] * 6)
            continue
        table.append(
            [
                r["size"],
                r["objects"],
                f"{r['official_prop_fps']:.2f}",
                f"{r['official_e2e_fps']:.2f}",
                f"{r['ours_prop_fps']:.2f}",
                f"{r['ours_e2e_fps']:.2f}",
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
            "peak GPU MiB sam2 / ours",
            "peak RSS MiB sam2 / ours",
            "ours offload",
        ],
        table,
        right={1, 2, 3, 4, 5, 6, 7},
    )
    ok = [r for r in rows if "error" not in r]
    for r in ok[:1] + [x for x in ok[1:] if x["settings"] != ok[0]["settings"]]:
        sec["notes"].append(f"{r['size']}: ran as {_settings_note(r['settings'])}")
    for r in ok:
        sec["notes"].append(
            f"{r['size']}, {r['objects']} objects: warm-up on 8 frames (compiles a compiled "
            f"predictor for these shapes) {r['warmup_s']:.1f} s, not inside any fps"
        )
    sec["notes"] += [
        f"{qargs.video_frames} frames of {w}x{h} in an H.264 file; the same boxes on frame 0 "
        "for both loops (one shared predictor, "
        f"{_weights(qargs)})",
        "sam2 loop: its README's init_state -> add_new_points_or_box -> propagate_in_video on "
        "the video as a JPEG folder; ours: track_video on the file (frames decoded in memory)",
        "propagation fps: between the first and last frame propagation delivered (frames "
        "loaded beforehand, as Meta measures); end to end: video file -> masks on the host",
    ]


def q2_long(sec: dict, args, qargs, device, detector, report: Report, work: Path) -> None:
    import q2_long_video

    size = _sizes(args, "long_size")[-1]
    a = copy.copy(qargs)
    a.sizes = [size]
    n = a.long_frames
    # Budget: project from this run's 120-frame ours speed for the same size; shorten to fit.
    video = report.doc["sections"].get("video", {}).get("result") or []
    fps = next((r.get("ours_e2e_fps") for r in video if r.get("size") == size), None)
    if fps and not args.quick:
        per_frame = 1.2 / fps + 0.005  # tracking + frame writing, with a margin
        fits = int((report.left() - 20) / per_frame)
        if fits < n:
            n_new = max(min(n, 2 * a.chunk_size), fits)
            sec["notes"].append(
                f"shortened from {n:,} to {n_new:,} frames to stay within the "
                f"{args.budget_minutes:g}-minute budget (projected {n * per_frame:.0f} s, "
                f"{report.left():.0f} s left)"
            )
            _log(f"  {sec['notes'][-1]}")
            n = n_new
    a.long_frames = n
    res = q2_long_video.bench_long(a, device, detector, work)
    sec["result"] = res
    short = next((r for r in video if r.get("size") == size and "error" not in r), None)
    rows = [
        [
            size,
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
                short["video"],
                f"{short['frames']:,}",
                a.chunk_size,
                f"{short['ours_e2e_fps']:.2f}",
                _fmt(short.get("ours_peak_mib")),
                _fmt(short.get("ours_rss_mib")),
            ]
        )
    sec["table"] = md_table(
        ["SAM 2.1 (ours)", "video", "frames", "chunk", "fps end to end", "peak GPU MiB",
         "peak RSS MiB"],
        rows,
        right={2, 3, 4, 5, 6},
    )  # fmt: skip
    sec["notes"] += [
        "peak GPU = torch.cuda.max_memory_allocated, peak RSS = the process's resident memory "
        "sampled every 20 ms, both over the run; the second row is the short video of the "
        "video section, for comparison (memory should stay flat)",
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
        ["model", "image", "phrases", "warm ms", "text encoding saved / image ms", "peak MiB"],
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
        ["model", "video", "frames", "fps", "fps end to end", "chunk", "ids", "peak MiB"],
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

    report.run("setup", "Q2 setup (random-weight Grounding DINO)", setup)
    if "detector" in state:
        _gpu_sections(args, qargs, device, report, sections, state["detector"])
    if "tracking" in sections:  # CPU only, after the GPU sections: it never squeezes them
        title = "Q2 tracking identity: IDF1 / ID switches / MOTA vs a Grounded-SAM-2-style policy"
        report.run("tracking", title, q2_tracking, args, report)


def _gpu_sections(args, qargs, device, report: Report, sections, det) -> None:
    with tempfile.TemporaryDirectory(prefix="gpu_report_") as tmp:
        work = Path(tmp)
        if "image" in sections:
            title = "Q2 image: text -> masks latency (warm)"
            report.run("image", title, q2_image, args, qargs, device, det, report)
        if "video" in sections:
            title = "Q2 video: tracking FPS, sam2's documented loop vs ours"
            report.run("video", title, q2_video, args, qargs, device, det, report, work)
        if "long" in sections:
            title = "Q2 long video: peak GPU and host memory"
            report.run("long", title, q2_long, args, qargs, device, det, report, work)
        if "sam3_image" in sections:
            title = "Q2 SAM 3 image: text -> masks latency with one model (warm)"
            report.run("sam3_image", title, q2_sam3_image, args, qargs, device, report)
        if "sam3_video" in sections:
            title = "Q2 SAM 3 video: tracking FPS with its own detector + tracker"
            report.run("sam3_video", title, q2_sam3_video, args, qargs, device, report, work / "s3")


def q2_tracking(sec: dict, args, report: Report) -> None:
    """Identity across keyframes (``q2_tracking``: scripted scenes, stand-in models, CPU only):
    per condition, ours vs the Grounded-SAM-2-style baseline and the oracle."""
    import q2_tracking as bench

    full = not args.quick and report.left() >= TRACKING_FULL_S
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
