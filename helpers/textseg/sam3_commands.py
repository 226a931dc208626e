"""``segment`` / ``track`` / ``eval-masks`` with ``--backend sam3`` (one SAM 3 model, text ->
masks; see ``helpers.textseg.sam3`` and ``helpers.textseg.sam3_video``).

    python -m helpers segment --backend sam3 --image photo.jpg --prompt "car. person" --out runs/s3
    python -m helpers segment --backend sam3 --folder photos/ --prompt "car" --out runs/s3cars
    python -m helpers track --backend sam3 --video clip.mp4 --prompt "person" --out runs/t3

``--score-threshold`` (default 0.5) keeps instances; ``--random-weights`` uses a toy random
SAM 3 (offline smoke tests). What follows the route is shared with the SAM 2 backend: the
cleanup scaled to each object (``--clean-fraction`` / ``--clean-floor`` / ``--no-clean``), the
overlay's ``--color`` / ``--opacity``, ``--side-by-side``, ``--no-render``, ``--overwrite``.
Options SAM 3 cannot honour (``--fallback``, ``--multimask``, ``--mask-weights``, ``--rescore``,
``--route``, ``--max-side``, the detector's and SAM 2's model and threshold flags, the SAM 2
tracker's keyframe and id settings) are refused, naming the route (:mod:`helpers.textseg.routes`).
"""

from __future__ import annotations

from pathlib import Path

from helpers.errors import InputError
from helpers.textseg import command_checks as checks
from helpers.textseg import model_cache
from helpers.textseg.image_settings import RouteSettings
from helpers.textseg.track_summary import run_track


def _segmenter(args):
    from helpers.textseg import sam3

    key = ("sam3-image", bool(args.random_weights), args.device)
    if args.random_weights:
        return model_cache.cached(key, lambda: sam3.random_sam3("toy", device=args.device))
    return model_cache.cached(key, lambda: sam3.load_sam3(device=args.device))


def _tracker(args):
    from helpers.textseg import sam3_video

    key = ("sam3-video", bool(args.random_weights), args.device)
    if args.random_weights:
        return model_cache.cached(
            key, lambda: sam3_video.random_sam3_video("toy", device=args.device)
        )
    return model_cache.cached(key, lambda: sam3_video.load_sam3_video(device=args.device))


def _check(args) -> str:
    from helpers.textseg import sam3

    sam3.require_sam3()
    prompt = checks.check_prompt(args.prompt)
    checks.check_threshold("score-threshold", args.score_threshold)
    checks.check_device(args)
    return prompt


def _image_kw(args) -> dict:
    mask_threshold = getattr(args, "mask_threshold", None)
    if mask_threshold is None:  # not given: SAM 3's documented default
        mask_threshold = RouteSettings.MASK_THRESHOLDS["sam3"]
    checks.check_threshold("mask-threshold", mask_threshold)
    return {
        "threshold": args.score_threshold,
        "mask_threshold": mask_threshold,
        **checks.check_cleanup(args),  # the same cleanup, scaled to each object, as every route
    }


def image_job(args):
    """The SAM 3 route's part of ``segment`` (the rest: :mod:`helpers.textseg.image_command`)."""
    from helpers.textseg import routes, sam3
    from helpers.textseg.image_command import ImageJob
    from helpers.textseg.image_settings import Cleanup, Fallback, ImageSettings, Overlay

    prompt = _check(args)
    overlay = checks.check_overlay(args)
    kw = _image_kw(args)
    settings = ImageSettings(
        route=RouteSettings(score_threshold=kw["threshold"], mask_threshold=kw["mask_threshold"]),
        cleanup=Cleanup(
            kw["clean"], kw["clean_fraction"], kw["min_hole_area"], kw["min_sprinkle_area"]
        ),
        fallback=Fallback(steps=()),  # no separate detector: nothing to fall back from
    )

    def run_folder(folder, out, dist, overlay):
        return sam3.segment_folder_sam3(
            folder, out, prompt, _segmenter(args), overwrite=getattr(args, "overwrite", False),
            dist=dist, overlay=overlay, **kw,
        )  # fmt: skip

    return ImageJob(
        prompt,
        lambda: (routes.Sam3(_segmenter(args)), settings),
        run_folder,
        Overlay(**overlay),
        tags={"backend": "sam3"},
        json_extra={"settings": kw},
    )


def cmd_track(args) -> dict:
    from helpers.textseg import routes

    prompt = _check(args)
    checks.check_threshold("iou-threshold", args.iou_threshold)
    if args.chunk_size < 2:
        raise InputError(f"--chunk-size must be >= 2 with SAM 3, got {args.chunk_size}.")
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {args.max_frames}.")
    if not Path(args.video).exists():
        raise InputError(f"--video {args.video} does not exist; give a video file or frame folder.")
    checks.check_out(args.out)
    settings = routes.TrackSettings(
        score_threshold=args.score_threshold, iou_threshold=args.iou_threshold,
        chunk_size=args.chunk_size, offload=not args.no_offload, max_frames=args.max_frames,
        render=not args.no_render,
    )  # fmt: skip
    route = routes.Sam3(tracker=_tracker(args))
    return run_track(args, prompt, route, settings, tags={"backend": "sam3"})


def cmd_eval_masks(args) -> dict:
    """``eval-masks --data DIR --prompt P --backend sam3``: predict with SAM 3, then score."""
    from helpers import files
    from helpers.textseg import folder_eval, sam3

    if args.data is None or args.pred or args.gt:
        raise InputError("--backend sam3 applies to eval-masks --data DIR --prompt P only.")
    prompt = _check(args)
    data = Path(args.data)
    if not (data / "images").is_dir() or not (data / "masks").is_dir():
        raise InputError(f"--data {data} needs images/ and masks/ subfolders (same stems).")
    seg = _segmenter(args)
    kw = {
        "threshold": args.score_threshold,
        "mask_threshold": RouteSettings.MASK_THRESHOLDS["sam3"],
    }
    summary = folder_eval.evaluate_folder(
        data, prompt, seg, None, segment_fn=sam3._folder_step, **kw
    )
    result = {"command": "eval-masks", "backend": "sam3", "data": str(data), "prompt": prompt}
    result.update(summary)
    if args.out:
        result["json_path"] = str(files.atomic_write_json(Path(args.out) / "eval.json", result))
    return result
