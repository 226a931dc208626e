"""Q2 commands: ``segment`` (an image or a folder), ``track`` (a video) and ``eval-masks``.

    python -m helpers segment --image photo.jpg --prompt "dog. ball" --out runs/seg
    python -m helpers segment --folder photos/ --prompt "car" --out runs/cars   # resumable
    python -m helpers track --video clip.mp4 --prompt "person" --out runs/track
    python -m helpers eval-masks --pred runs/seg --gt data/masks
    python -m helpers eval-masks --data data/ --prompt "cat"        # images/ + masks/

``--random-weights`` swaps the pretrained models for a toy Grounding DINO and a randomly
initialised SAM 2 of the chosen size (offline smoke tests; the masks are meaningless).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
from dataclasses import replace
from pathlib import Path

from helpers.errors import InputError
from helpers.textseg.command_checks import (
    check_cleanup,
    check_device,
    check_out,
    check_overlay,
    check_prompt,
    check_threshold,
    stop_if_failed,
)
from helpers.textseg.durations import KEEP_MISSED_HELP
from helpers.textseg.durations import seconds as keep_seconds
from helpers.textseg.image_settings import Cleanup, Fallback, Overlay, RouteSettings
from helpers.textseg.model_cache import cached, seeded
from helpers.textseg.track_summary import run_track

SAM2_SIZES = ("tiny", "small", "base_plus", "large")
DETECTOR_NAMES = ("grounding-dino-tiny", "grounding-dino-base", "owlv2")
PROMPT_TYPES = ("box", "point", "mask")


# --------------------------------------------------------------------------- parser


def register(sub) -> None:
    """Add ``segment``, ``track`` and ``eval-masks`` to the argparse sub-parsers ``sub``; every
    default is the settings dataclasses' (``image_settings``, ``routes.TrackSettings``)."""
    from helpers.textseg.routes import TrackSettings as T

    R = RouteSettings  # noqa: N806
    p = sub.add_parser(
        "segment",
        help="segment what a text prompt names in an image or a folder of images",
        description="Text -> boxes (Grounding DINO / OWLv2) -> masks (SAM 2.1). Writes "
        "{stem}_overlay.png, {stem}_mask.png and {stem}.json per image.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="image path or http(s) URL")
    src.add_argument("--folder", help="folder of images (already-done images are skipped)")
    p.add_argument("--prompt", required=True, help="what to segment, e.g. 'dog. red car'")
    p.add_argument("--out", default="runs/segment", help="output folder (default: runs/segment)")
    _model_args(p)
    _text_threshold(p)
    p.add_argument(
        "--multimask", action="store_true", help="ask SAM 2 for 3 masks per box, keep the best"
    )
    p.add_argument("--no-clean", action="store_true", help="keep small holes / islands")
    p.add_argument(
        "--max-side",
        type=int,
        default=R.max_side,
        help=f"detect-sam2 / clipseg: model input long side ({R.max_side})",
    )
    p.add_argument(
        "--route",
        default="detect-sam2",
        help="detect-sam2 (default: detector boxes -> SAM 2 masks) | clipseg (CLIPSeg: one "
        "coarse mask per phrase, no detector, no SAM)",
    )
    p.add_argument(
        "--rescore",
        default="none",
        help="none (default) | clip: SAM 2 proposes 3 masks per box and CLIP picks the one "
        "that best matches the phrase",
    )
    p.add_argument(
        "--mask-threshold",
        type=float,
        default=None,
        help="probability a pixel needs: CLIPSeg (--route clipseg, or the clipseg step of "
        f"--fallback; default {R.MASK_THRESHOLDS['clipseg']:g}) or SAM 3 (--backend sam3; "
        f"default {R.MASK_THRESHOLDS['sam3']:g})",
    )
    p.add_argument(
        "--fallback",
        default=",".join(Fallback.steps),
        help="when the detector finds nothing, try these in order: lower-threshold (the "
        "detector again at half the thresholds, at least 0.05), clipseg (the CLIPSeg route). "
        f"Default: {','.join(Fallback.steps)}. The result says which step produced the masks",
    )
    p.add_argument("--no-fallback", action="store_true", help="no fallback: empty is empty")
    p.add_argument(
        "--mask-weights",
        default=None,
        help="pick among SAM 2's 3 masks per box by a weighted score, e.g. "
        "'sam=1,clip=0.5,compact=0.25,box=0.25' (or 'default' = sam=1,compact=.25,box=.25); "
        "clip > 0 loads CLIP. Default: SAM's own best score",
    )
    p.add_argument(
        "--clean-fraction",
        type=float,
        default=Cleanup.fraction,
        help="cleanup fills holes / drops specks below this fraction of each mask's area "
        f"({Cleanup.fraction:g})",
    )
    p.add_argument(
        "--clean-floor",
        type=int,
        default=int(Cleanup.hole_floor),
        help="... and at least below this many px of the full-size image, the same on every "
        f"route (default {Cleanup.hole_floor:g})",
    )
    _overlay_args(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="--folder: redo every image (default: skip images done with the same settings)",
    )
    p.set_defaults(func=cmd_segment)
    _remember_defaults("segment", p)

    t = sub.add_parser(
        "track",
        help="track what a text prompt names through a video (SAM 2 video predictor)",
        description="Detect on frame 0 and every N frames, propagate masks with SAM 2, keep "
        "ids by mask IoU. Writes an annotated MP4 and a per-frame JSON.",
    )
    t.add_argument(
        "--video",
        required=True,
        nargs="+",
        help="video file (MP4, ...) or folder of frames; several: each into --out/<name>/ "
        "(resumable; split among the processes of a torchrun job)",
    )
    t.add_argument("--prompt", required=True, help="what to track, e.g. 'car. person'")
    t.add_argument("--out", default="runs/track", help="output folder (default: runs/track)")
    _model_args(t)
    _text_threshold(t)
    t.add_argument(
        "--detect-every",
        type=int,
        default=T.detect_every,
        help=f"re-detect every N frames ({T.detect_every})",
    )
    t.add_argument(
        "--prompt-type",
        default=T.prompt_type,
        help=f"{' | '.join(PROMPT_TYPES)} (default {T.prompt_type})",
    )
    t.add_argument(
        "--iou-threshold",
        type=float,
        default=T.iou_threshold,
        help=f"id matching IoU ({T.iou_threshold:g})",
    )
    t.add_argument(
        "--chunk-size",
        type=int,
        default=T.chunk_size,
        help=f"frames per chunk ({T.chunk_size})",
    )
    t.add_argument(
        "--reid-threshold",
        type=float,
        default=T.reid_threshold,
        help="appearance similarity that gives a returning object its old id until the "
        f"video's own looks calibrate it ({T.reid_threshold:g})",
    )
    t.add_argument(
        "--keep-missed",
        default=T.keep_missed,
        metavar="DURATION",
        help=KEEP_MISSED_HELP,
    )
    t.add_argument(
        "--backfill",
        action=argparse.BooleanOptionalAction,
        default=T.backfill,
        help="track an object that a keyframe starts backwards to the previous keyframe, so "
        "its masks begin where it came into view (default; --no-backfill saves that backward "
        "pass, at most one per keyframe that starts an object)",
    )
    t.add_argument(
        "--no-detect-on-doubt",
        action="store_true",
        help="detect only every --detect-every frames (default: also on a frame where an "
        "object's mask is lost, reappears, halves or doubles, or leaves its expected place; "
        "at most once every 10 frames)",
    )
    t.add_argument("--max-frames", type=int, default=T.max_frames, help="only the first N frames")
    t.add_argument(
        "--max-objects",
        type=int,
        default=T.max_objects,
        help="keep at most the N most confident detections per keyframe (default: all)",
    )
    t.add_argument(
        "--offload",
        action="store_true",
        help="keep SAM 2's state on the CPU (default: only when the GPU would not hold it)",
    )
    t.add_argument("--no-offload", action="store_true", help="keep video/state on the GPU")
    t.add_argument("--no-render", action="store_true", help="JSON only, no annotated MP4")
    t.add_argument(
        "--side-by-side",
        action="store_true",
        help="also write side_by_side.mp4: the input | the annotated video, with the "
        "processing FPS drawn on it",
    )
    t.set_defaults(func=cmd_track)
    _remember_defaults("track", t)

    e = sub.add_parser(
        "eval-masks",
        help="IoU of predicted masks against ground truth",
        description="Either score existing masks (--pred DIR --gt DIR, pairs matched by file "
        "stem) or predict them first (--data DIR with images/ and masks/, plus --prompt).",
    )
    e.add_argument("--pred", help="folder of predicted masks")
    e.add_argument("--gt", help="folder of ground-truth masks")
    e.add_argument("--data", help="folder with images/ and masks/ (same stems)")
    e.add_argument("--prompt", help="what to segment (with --data)")
    e.add_argument("--out", default=None, help="also write the summary JSON here (a folder)")
    _model_args(e)
    _text_threshold(e)
    e.set_defaults(func=cmd_eval_masks)


_DEFAULTS: dict[str, dict[str, object]] = {}  # command -> its route-dependent options' defaults


def _remember_defaults(command: str, p: argparse.ArgumentParser) -> None:
    from helpers.textseg.routes import OPTIONS

    _DEFAULTS[command] = {name: p.get_default(name) for name in OPTIONS[command]}


def _refuse_unhonoured(args, command: str) -> None:
    """Every option the user set is applied or refused here, before any model loads: one the
    chosen route cannot honour (``routes.ROUTES``) is one error naming the route; so is one that
    another option makes moot (``--clean-floor`` with ``--no-clean``, ...)."""
    from helpers.textseg import routes

    given = routes.given_options(args, _DEFAULTS.get(command, {}))
    route = routes.route_of(args)
    routes.refuse_unhonoured(route, given)
    _refuse_moot(args, route, given)


def _refuse_moot(args, route, given: dict[str, object]) -> None:
    """An option set where another option (or the input) leaves it nothing to do."""
    from helpers.textseg import routes

    def moot(name: str, why: str, instead: str) -> None:
        flag, shown = routes.shown_flag(name, given[name])
        raise InputError(f"{shown} {why}; leave {flag} out{instead}.")

    if getattr(args, "no_clean", False):
        for name in ("clean_fraction", "clean_floor"):
            if name in given:
                moot(name, "sets the cleanup that --no-clean turns off", " or drop --no-clean")
    if getattr(args, "no_fallback", False) and "fallback" in given:
        moot("fallback", "sets the fallback that --no-fallback turns off", " or drop --no-fallback")
    if "overwrite" in given and getattr(args, "folder", None) is None:
        moot("overwrite", "redoes a --folder run's finished images (an --image run always "
             "writes its outputs)", "")  # fmt: skip
    if "offload" in given and getattr(args, "no_offload", False):
        moot("offload", "and --no-offload ask for opposite things", " or drop --no-offload")
    if "detector" in given and args.detector == "grounding-dino-base" and args.random_weights:
        moot("detector", "has no random-weight model: --random-weights builds a toy Grounding "
             "DINO (grounding-dino-tiny) or a toy OWLv2 (owlv2)", " or choose one of those")  # fmt: skip
    if route.name == "detect-sam2" and "text_threshold" in given and args.detector == "owlv2":
        moot(
            "text_threshold",
            "is Grounding DINO's phrase score, and OWLv2 keeps boxes by --box-threshold alone",
            " or choose a Grounding DINO --detector",
        )
    if route.name == "detect-sam2" and "mask_threshold" in given:
        from helpers.textseg import pipeline

        steps = () if args.no_fallback else pipeline.check_fallback(args.fallback)
        if "clipseg" not in steps:
            moot("mask_threshold", "is CLIPSeg's, and the detect-sam2 route runs CLIPSeg only "
                 "as the clipseg step of --fallback", ", or add clipseg to --fallback")  # fmt: skip


def _text_threshold(p: argparse.ArgumentParser) -> None:
    default = RouteSettings.text_threshold
    p.add_argument(
        "--text-threshold",
        type=float,
        default=default,
        help=f"detect-sam2: the detector's phrase score (default {default:g})",
    )


def _overlay_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--color",
        default=Overlay.color,
        help=f"overlay colour: auto (default {Overlay.color}: a colour per instance id), a name "
        "(red), #rrggbb or r,g,b for every instance",
    )
    p.add_argument(
        "--opacity",
        type=float,
        default=Overlay.opacity,
        help=f"mask opacity in the overlay, 0..1 ({Overlay.opacity:g})",
    )


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--detector",
        default="grounding-dino-tiny",
        help=f"one of {', '.join(DETECTOR_NAMES)} (default grounding-dino-tiny)",
    )
    p.add_argument("--size", default="tiny", help=f"SAM 2.1 size: {', '.join(SAM2_SIZES)}")
    p.add_argument(
        "--box-threshold",
        type=float,
        default=RouteSettings.box_threshold,
        help=f"detect-sam2: the detector's box score (default {RouteSettings.box_threshold:g})",
    )
    p.add_argument("--device", default=None, help="cuda | cpu | mps (default: best available)")
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="offline smoke test: a toy detector (OWLv2 with --detector owlv2, else Grounding "
        "DINO) + random-weight SAM 2 (meaningless masks)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="SAM 2 input size override (random weights only; small = fast CPU tests)",
    )
    p.add_argument(
        "--backend",
        default="sam2",
        choices=("sam2", "sam3"),
        help="sam2 (default: Grounding DINO/OWLv2 boxes -> SAM 2.1 masks) | sam3 (one SAM 3 "
        "model from text to every instance; gated weights facebook/sam3)",
    )
    p.add_argument(
        "--score-threshold",
        type=float,
        default=RouteSettings.score_threshold,
        help=f"--backend sam3: instance score to keep (default {RouteSettings.score_threshold:g})",
    )


# --------------------------------------------------------------------------- checks


PATH_FLAGS = ("image", "folder", "out", "video", "pred", "gt", "data")
NAME_MAX_BYTES = 255  # one name in a path (ext4, APFS, NTFS, Drive)
PATH_MAX_BYTES = 4095


def _check_path_length(flag: str, value) -> None:
    """A path whose file system would answer "File name too long" is an InputError first."""
    text = os.fsdecode(value)
    if "://" in text:
        return
    if len(os.fsencode(text)) > PATH_MAX_BYTES:
        raise InputError(
            f"{flag} is {len(os.fsencode(text)):,} bytes long, more than the {PATH_MAX_BYTES} a "
            "path may have; use a shorter path."
        )
    for part in Path(text).parts:
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > NAME_MAX_BYTES:
            raise InputError(
                f"{flag} has a name of {size} bytes ({part[:24]}...); file systems allow "
                f"{NAME_MAX_BYTES} bytes per name: rename it or use a shorter path."
            )


def _check_inputs(args) -> None:
    """Checks every Q2 command and route shares, before any route-specific work: path lengths
    and the SAM 3 score threshold (given to the SAM 2 route it is still a number in [0, 1])."""
    for name in PATH_FLAGS:
        value = getattr(args, name, None)
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                _check_path_length(f"--{name}", v)
    if getattr(args, "score_threshold", None) is not None:
        check_threshold("score-threshold", args.score_threshold)


def _check_common(args) -> None:
    if args.size not in SAM2_SIZES:
        raise InputError(f"unknown --size {args.size!r}; choose one of {', '.join(SAM2_SIZES)}.")
    if args.detector not in DETECTOR_NAMES:
        raise InputError(
            f"unknown --detector {args.detector!r}; choose one of {', '.join(DETECTOR_NAMES)}."
        )
    check_threshold("box-threshold", args.box_threshold)
    check_threshold("text-threshold", args.text_threshold)
    if args.image_size is not None and not args.random_weights:
        raise InputError("--image-size only applies with --random-weights.")
    if args.image_size is not None and (args.image_size < 128 or args.image_size % 32):
        raise InputError(
            f"--image-size must be a multiple of 32 and >= 128, got {args.image_size}."
        )


ROUTES = ("detect-sam2", "clipseg")
RESCORERS = ("none", "clip")


def _check_choice(args) -> dict:
    """The fallback, mask-choice and cleanup settings of ``segment`` as ``segment_image`` kw
    (the cleanup's part is the same for every route: :func:`command_checks.check_cleanup`)."""
    from helpers.textseg import pipeline, segment

    steps = () if args.no_fallback else pipeline.check_fallback(args.fallback)
    kw: dict = {"fallback": steps}
    if args.mask_weights is not None:  # the clipseg route refused it (routes.ROUTES)
        kw["mask_weights"] = segment.parse_weights(args.mask_weights)
    return {**kw, **check_cleanup(args)}


def _check_route(args) -> None:
    if args.route not in ROUTES:
        raise InputError(f"unknown --route {args.route!r}; choose one of {', '.join(ROUTES)}.")
    if args.rescore not in RESCORERS:
        raise InputError(
            f"unknown --rescore {args.rescore!r}; choose one of {', '.join(RESCORERS)}."
        )
    if args.mask_threshold is None:  # CLIPSeg's (the clipseg route or the fallback's step)
        args.mask_threshold = RouteSettings.MASK_THRESHOLDS["clipseg"]
    check_threshold("mask-threshold", args.mask_threshold)


# --------------------------------------------------------------------------- models


def load_models(args, *, video: bool = False):
    """(detector, segmenter-or-tracker) for the parsed ``args``.

    Models stay cached for the life of the process, so repeated ``cli.main`` calls from a
    notebook (or a test session) load each model once."""
    from helpers.textseg import detect

    device = args.device
    if getattr(args, "route", "detect-sam2") == "clipseg":
        from helpers.textseg import segment

        if args.random_weights:
            return None, cached(
                ("clipseg-random", device), seeded(lambda: segment.random_clipseg(device))
            )
        return None, cached(("clipseg", device), lambda: segment.load_clipseg(device))
    if video and not args.random_weights:
        from helpers.textseg import segment

        # the video predictor asks the hub first: fail in seconds when it cannot be reached
        detect.hub_local_only(segment.SAM2_HUB_IDS[segment.normalize_size(args.size)])
    if args.random_weights and args.detector == "owlv2":
        detector = cached(
            ("toy-owlv2", device), seeded(lambda: detect.random_owlv2("toy", device=device))
        )
    elif args.random_weights:
        words = tuple(detect.prompt_phrases(args.prompt)) if getattr(args, "prompt", None) else ()
        detector = cached(
            ("toy-detector", words, device),
            seeded(
                lambda: detect.random_grounding_dino(words=list(words), size="toy", device=device)
            ),
        )
    else:
        detector = cached(
            ("detector", args.detector, device),
            lambda: detect.load_detector(args.detector, device=device),
        )
    kw = {"random_weights": bool(args.random_weights), "device": device}
    if args.image_size is not None:
        kw["image_size"] = args.image_size
    key = (args.size, bool(args.random_weights), device, args.image_size)
    if video:
        from helpers.textseg import track

        build = functools.partial(track.load_video_tracker, args.size, **kw)
    else:
        from helpers.textseg import segment

        build = functools.partial(segment.load_segmenter, args.size, **kw)
    if args.random_weights:
        build = seeded(build)
    return detector, cached(("tracker" if video else "segmenter", *key), build)


def _clipseg_loader(args):
    """A function that loads (once) the CLIPSeg model of the clipseg fallback."""
    from helpers.textseg import segment

    def load():
        if args.random_weights:
            return cached(
                ("clipseg-random", args.device),
                seeded(lambda: segment.random_clipseg(args.device)),
            )
        return cached(("clipseg", args.device), lambda: segment.load_clipseg(args.device))

    load.name = "clipseg-random" if args.random_weights else "clipseg"
    return load


def _load_clip(args):
    """The CLIP model for ``--rescore clip`` or a CLIP weight in ``--mask-weights`` (else None)."""
    wants = getattr(args, "rescore", "none") == "clip"
    if getattr(args, "mask_weights", None) is not None:
        from helpers.textseg import segment

        wants = wants or segment.parse_weights(args.mask_weights).clip > 0
    if not wants:
        return None
    from helpers.textseg import segment

    if args.random_weights:
        return cached(("clip-random", args.device), lambda: segment.random_clip(args.device))
    return cached(("clip", args.device), lambda: segment.load_clip(args.device))


# --------------------------------------------------------------------------- commands


def cmd_segment(args) -> dict | None:
    with sigterm_as_interrupt():
        return _segment(args)


def _segment(args) -> dict | None:
    from helpers.textseg import image_command

    _check_inputs(args)
    _refuse_unhonoured(args, "segment")
    if getattr(args, "backend", "sam2") == "sam3":
        from helpers.textseg import sam3_commands

        job = sam3_commands.image_job(args)
    else:
        job = _image_job(args)
    return image_command.run(args, job, check_out(args.out))


def _image_job(args):
    """The detect-sam2 / clipseg routes' part of ``segment`` (checked before any model loads)."""
    from helpers.textseg import folder_run, pipeline, routes
    from helpers.textseg.image_command import ImageJob
    from helpers.textseg.image_settings import Overlay

    _check_common(args)
    _check_route(args)
    prompt = check_prompt(args.prompt)
    if args.max_side < 64:
        raise InputError(f"--max-side must be >= 64, got {args.max_side}.")
    check_device(args)
    overlay = check_overlay(args)
    choice = _check_choice(args)
    kw = {
        "box_threshold": args.box_threshold,
        "text_threshold": args.text_threshold,
        "multimask": args.multimask or args.rescore == "clip",
        "clean": not args.no_clean,
        "max_side": args.max_side,
        **choice,
    }
    if args.route == "clipseg" or "clipseg" in choice["fallback"]:
        kw["mask_threshold"] = args.mask_threshold
    if args.route != "clipseg" and "clipseg" in choice["fallback"]:
        kw["clipseg"] = _clipseg_loader(args)  # loaded only when an image needs it

    def with_clip() -> dict:
        clip = _load_clip(args)
        return kw if clip is None else {**kw, "clip": clip}

    def load():
        detector, segmenter = load_models(args)
        if args.route == "clipseg":
            return routes.ClipSeg(segmenter), _clipseg_settings(args, kw)
        return routes.DetectSam2(detector, segmenter), pipeline.image_settings(**with_clip())

    def run_folder(folder, out, dist, overlay):
        detector, segmenter = load_models(args)
        return folder_run.segment_folder(
            folder, out, prompt, detector, segmenter, overwrite=args.overwrite, dist=dist,
            overlay=overlay, **with_clip(),
        )  # fmt: skip

    return ImageJob(prompt, load, run_folder, Overlay(**overlay), max_side=args.max_side)


def _clipseg_settings(args, kw: dict):
    """The clipseg route's settings: its mask threshold and the shared cleanup."""
    from helpers.textseg import pipeline

    made = pipeline.image_settings(**{**kw, "fallback": (), "mask_weights": None})
    return replace(made, route=replace(made.route, mask_threshold=args.mask_threshold))


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (what ``timeout``, ``kill`` and job schedulers send) handled like Ctrl-C while
    the block runs: temporary frame folders are removed and finished outputs kept, instead
    of the process vanishing mid-write."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # handlers: main only
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_track(args) -> dict | None:
    """One video into ``--out``; several (or under torchrun) each into ``--out/<name>/``."""
    videos = args.video if isinstance(args.video, list) else [args.video]
    _check_inputs(args)
    _refuse_unhonoured(args, "track")
    with sigterm_as_interrupt():
        if len(videos) == 1 and int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
            return _track_single(args, videos[0])
        return _track_many(args, videos)


def _track_single(args, video: str) -> dict:
    """One video straight into ``--out``, with a ``job.json`` beside its tracks (its content's
    digest: the same video moved elsewhere may track into this ``--out`` again)."""
    from helpers import files

    out = Path(args.out)
    _check_tracks_owner(out, video)
    job = _video_job(args, video) if Path(video).exists() else None
    res = _track_one(argparse.Namespace(**{**vars(args), "video": video}))
    if job is not None:
        files.atomic_write_json(out / "job.json", job)
    return res


def _check_tracks_owner(out: Path, video: str) -> None:
    """One video's tracks go straight into ``--out``: never over another video's. Tracks of a
    path that is gone, whose ``job.json`` records this video's bytes, are this video's (it
    was moved or its folder renamed)."""
    from helpers.textseg.naming import source_key
    from helpers.textseg.resume_keys import input_digest, moved_here

    doc = _read_json(out / "tracks.json")
    owner = doc.get("settings", {}).get("source_path") if isinstance(doc, dict) else None
    if owner and owner != source_key(video):
        job = _read_json(out / "job.json")
        if isinstance(job, dict) and job.get("source_path") == owner:  # of these very tracks
            try:
                if moved_here(job, input_digest(video)):
                    return
            except OSError:  # unreadable: refused below, or by the checks of the video itself
                pass
        raise InputError(
            f"--out {out} already holds the tracks of {owner}; choose another --out for "
            f"{video} (or track both in one command: each video gets its own folder)."
        )


def _video_job(args, video: str) -> dict:
    """What defines one video's result: its content (not its path, size or time stamp), the
    prompt and every setting; and which video it is (see ``resume_keys.video_job``)."""
    from helpers.textseg.resume_keys import video_job

    keep = {k: v for k, v in sorted(vars(args).items()) if k not in ("video", "out", "func")}
    return video_job(video, keep)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _track_many(args, videos: list[str]) -> dict | None:
    """Track several videos, each into ``out/<name>/`` with a ``job.json`` naming the settings
    that made it: a re-run skips videos done with the same settings. Under torchrun process k
    of N takes videos k, k+N, ...; the first process prints the merged summary."""
    from helpers import distributed, files
    from helpers.textseg.folder_run import merge_summaries, output_stems
    from helpers.textseg.naming import json_owner
    from helpers.textseg.resume_keys import moved_here

    missing = [v for v in videos if not Path(v).exists()]
    if missing:
        raise InputError(f"--video {missing[0]} does not exist; give video files or frame folders.")
    check_out(args.out)
    dist = distributed.from_env(args.device)
    out = Path(args.out)
    jobs = {v: _video_job(args, v) for v in videos}
    job_of = {Path(v): job for v, job in jobs.items()}

    def owner(name: str) -> str | None:
        return json_owner(out / name / "job.json")

    def adopt(name: str, path: Path) -> bool:  # this video's result, from before it moved
        doc, job = _read_json(out / name / "job.json"), job_of[path]
        if isinstance(doc, dict) and not doc.get("source_path"):  # from before source_path
            return doc.get("fingerprint") == job["fingerprint"]
        return moved_here(doc, job["input_digest"])

    names = output_stems([Path(v) for v in videos], owner, adopt)
    work = list(zip(videos, names))[dist.rank :: dist.world]
    summary: dict = {"status": "ok", "done": 0, "redone": 0, "skipped": 0, "empty": 0}
    summary.update({"failed": [], "files": [], "out_dir": str(out)})
    for video, stem in work:
        job, dest = jobs[video], out / stem
        before = _read_json(dest / "job.json")
        same = isinstance(before, dict) and before.get("fingerprint") == job["fingerprint"]
        if same and (dest / "tracks.json").is_file():
            if before.get("source_path") != job["source_path"]:  # moved: the record follows
                with contextlib.suppress(OSError):  # not written: the next run finds it again
                    files.atomic_write_json(dest / "job.json", job)
            summary["skipped"] += 1
            summary["files"].append({"file": video, "status": "skipped", "stem": stem})
            continue
        one = argparse.Namespace(**{**vars(args), "video": video, "out": str(dest)})
        try:
            res = _track_one(one)
        except files.WriteError as e:  # the disk is full / read-only: the rest would fail too
            summary["failed"].append({"file": video, "error": str(e)})
            summary["files"].append({"file": video, "status": "failed", "error": str(e)})
            summary["stopped"] = f"stopped at {video}: {e}"
            listed = {f["file"] for f in summary["files"]}
            summary["files"] += [
                {"file": v, "status": "not started"} for v, _ in work if v not in listed
            ]
            break
        except InputError as e:
            summary["failed"].append({"file": video, "error": str(e)})
            summary["files"].append({"file": video, "status": "failed", "error": str(e)})
            continue
        files.atomic_write_json(dest / "job.json", job)
        summary["done"] += 1
        summary["files"].append(
            {"file": video, "status": "done", "stem": stem, "frames": res["frames"],
             "ids": res["ids"]}
        )  # fmt: skip
    if dist.on:
        parts = dist.gather(summary)
        if not dist.main:
            return None
        summary = merge_summaries(parts)
    result = {"command": "track", "videos": list(videos), "prompt": args.prompt, **summary}
    return stop_if_failed(result, len(videos), "videos", out, "Run again to retry them.")


def _track_one(args) -> dict:
    from helpers.textseg.media import probe_video

    if getattr(args, "backend", "sam2") == "sam3":
        from helpers.textseg import sam3_commands

        if Path(args.video).exists():  # a named pipe, no video stream, a side under 8 px
            probe_video(args.video)

        return sam3_commands.cmd_track(args)
    _check_common(args)
    prompt = check_prompt(args.prompt)
    check_threshold("iou-threshold", args.iou_threshold)
    check_threshold("reid-threshold", args.reid_threshold)
    keep_seconds(args.keep_missed, 30.0)  # a bad duration fails before any model loads
    if args.prompt_type not in PROMPT_TYPES:
        raise InputError(
            f"unknown --prompt-type {args.prompt_type!r}; choose one of {', '.join(PROMPT_TYPES)}."
        )
    for name in ("detect_every", "chunk_size"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    for name in ("max_frames", "max_objects"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    if not Path(args.video).exists():
        raise InputError(f"--video {args.video} does not exist; give a video file or frame folder.")
    if getattr(args, "side_by_side", False) and args.no_render:
        raise InputError("--side-by-side needs the annotated MP4: leave out --no-render.")
    check_device(args)
    check_out(args.out)
    probe_video(args.video)  # a named pipe, no video stream, a side under 8 px
    from helpers.textseg import routes

    detector, tracker = load_models(args, video=True)
    settings = routes.TrackSettings(
        box_threshold=args.box_threshold, text_threshold=args.text_threshold,
        iou_threshold=args.iou_threshold, chunk_size=args.chunk_size,
        offload=False if args.no_offload else (True if args.offload else None),
        max_frames=args.max_frames, render=not args.no_render, detect_every=args.detect_every,
        prompt_type=args.prompt_type, reid_threshold=args.reid_threshold,
        keep_missed=args.keep_missed, backfill=args.backfill, max_objects=args.max_objects,
        detect_on_doubt=not args.no_detect_on_doubt,
    )  # fmt: skip
    return run_track(args, prompt, routes.DetectSam2(detector, tracker=tracker), settings)


def cmd_eval_masks(args) -> dict:
    with sigterm_as_interrupt():
        return _eval_masks(args)


def _eval_masks(args) -> dict:
    from helpers import files

    _check_inputs(args)
    if getattr(args, "backend", "sam2") == "sam3":
        from helpers.textseg import sam3_commands

        return sam3_commands.cmd_eval_masks(args)
    if args.out:
        check_out(args.out)
    if args.data is not None:
        if args.pred or args.gt:
            raise InputError("use either --data (with --prompt) or --pred and --gt, not both.")
        _check_common(args)
        prompt = check_prompt(args.prompt)
        check_device(args)
        data = Path(args.data)
        if not (data / "images").is_dir() or not (data / "masks").is_dir():
            raise InputError(f"--data {data} needs images/ and masks/ subfolders (same stems).")
        from helpers.textseg import folder_eval

        detector, segmenter = load_models(args)
        summary = folder_eval.evaluate_folder(data, prompt, detector, segmenter)
        result = {"command": "eval-masks", "data": str(data), "prompt": prompt, **summary}
    else:
        if not args.pred or not args.gt:
            raise InputError("eval-masks needs --pred DIR and --gt DIR, or --data DIR --prompt.")
        for flag, d in (("--pred", args.pred), ("--gt", args.gt)):
            if not Path(d).is_dir():
                raise InputError(f"{flag} {d} is not a folder of mask images.")
        from helpers.textseg import mask_metrics

        summary = mask_metrics.score_mask_folders(args.pred, args.gt)
        result = {"command": "eval-masks", "pred": args.pred, "gt": args.gt, **summary}
    if args.out:
        result["json_path"] = str(files.atomic_write_json(Path(args.out) / "eval.json", result))
    return result


# --------------------------------------------------------------------------- summaries
