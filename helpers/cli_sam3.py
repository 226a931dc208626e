"""``segment`` / ``track`` / ``eval-masks`` with ``--backend sam3`` (one SAM 3 model, text ->
masks; see ``helpers.sam3`` and ``helpers.sam3_video``).

    python -m helpers segment --backend sam3 --image photo.jpg --prompt "car. person" --out runs/s3
    python -m helpers segment --backend sam3 --folder photos/ --prompt "car" --out runs/s3cars
    python -m helpers track --backend sam3 --video clip.mp4 --prompt "person" --out runs/t3

``--score-threshold`` (default 0.5) keeps instances; ``--random-weights`` uses a toy random
SAM 3 (offline smoke tests). The Grounding DINO / SAM 2 flags (--detector, --size,
--box-threshold, --text-threshold, --multimask, --route, --rescore, ...) do not apply.
"""

from __future__ import annotations

import time
from pathlib import Path

from helpers.errors import InputError


def _segmenter(args):
    from helpers import cli_segment, sam3

    key = ("sam3-image", bool(args.random_weights), args.device)
    if args.random_weights:
        return cli_segment._cached(key, lambda: sam3.random_sam3("toy", device=args.device))
    return cli_segment._cached(key, lambda: sam3.load_sam3(device=args.device))


def _tracker(args):
    from helpers import cli_segment, sam3_video

    key = ("sam3-video", bool(args.random_weights), args.device)
    if args.random_weights:
        return cli_segment._cached(
            key, lambda: sam3_video.random_sam3_video("toy", device=args.device)
        )
    return cli_segment._cached(key, lambda: sam3_video.load_sam3_video(device=args.device))


def _check(args) -> str:
    from helpers import cli_segment, sam3

    sam3.require_sam3()
    prompt = cli_segment._check_prompt(args.prompt)
    cli_segment._check_threshold("score-threshold", args.score_threshold)
    cli_segment._check_device(args)
    return prompt


def _image_kw(args) -> dict:
    from helpers import cli_segment

    mask_threshold = getattr(args, "mask_threshold", None)
    if mask_threshold is None:  # not given: SAM 3's documented default
        mask_threshold = 0.5
    cli_segment._check_threshold("mask-threshold", mask_threshold)
    return {
        "threshold": args.score_threshold,
        "mask_threshold": mask_threshold,
        "clean": not getattr(args, "no_clean", False),
    }


def cmd_segment(args) -> dict | None:
    from helpers import cli_segment, media, render, sam3
    from helpers.naming import source_key

    prompt = _check(args)
    out = cli_segment._check_out(args.out)
    kw = _image_kw(args)
    if args.folder is not None:
        folder = Path(args.folder)
        if not folder.is_dir():
            raise InputError(f"--folder {folder} is not a folder; give a folder of images.")
        if out.exists() and out.resolve() == folder.resolve():
            raise InputError("--out is the input folder; give another --out.")
        from helpers import distributed

        dist = distributed.from_env(args.device)  # under torchrun: this process's share
        seg = _segmenter(args)
        summary = sam3.segment_folder_sam3(
            folder, out, prompt, seg, overwrite=getattr(args, "overwrite", False), dist=dist, **kw
        )
        if summary is None:  # another process of the job reports the merged summary
            return None
        result = {
            "command": "segment",
            "backend": "sam3",
            "folder": str(folder),
            "out": str(out),
            **summary,
        }
        return cli_segment.stop_if_failed(
            result, len(summary["files"]), "images", out, "Run again to retry them."
        )
    source = args.image
    if "://" not in source and not Path(source).is_file():
        raise InputError(f"--image {source} does not exist; give an image file path or a URL.")
    image = media.load_image(source)  # a bad image fails before the model loads
    seg = _segmenter(args)
    result = sam3.segment_image_sam3(image, prompt, seg, **kw)
    dets = result.detections
    timings = {k: round(float(v), 2) for k, v in result.timings.items()}
    paths = render.save_image_outputs(
        result.image,
        dets,
        out,
        cli_segment._image_stem(source, out),
        prompt=result.prompt,
        extra={
            "source": source,
            "source_path": source_key(source),
            "backend": "sam3",
            "timings_ms": timings,
            "settings": kw,
        },
    )
    return {
        "command": "segment",
        "backend": "sam3",
        "image": source,
        "prompt": prompt,
        "instances": len(dets),
        "labels": [str(n) for n in dets.data.get("class_name", [])],
        "scores": [round(float(s), 4) for s in dets.confidence],
        "boxes": [[round(float(v), 1) for v in b] for b in dets.xyxy],
        "outputs": {k: str(v) for k, v in paths.items()},
        "timings_ms": timings,
    }


def cmd_track(args) -> dict:
    from helpers import cli_segment, sam3_video

    prompt = _check(args)
    cli_segment._check_threshold("iou-threshold", args.iou_threshold)
    if args.chunk_size < 2:
        raise InputError(f"--chunk-size must be >= 2 with SAM 3, got {args.chunk_size}.")
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {args.max_frames}.")
    if not Path(args.video).exists():
        raise InputError(f"--video {args.video} does not exist; give a video file or frame folder.")
    cli_segment._check_out(args.out)
    tracker = _tracker(args)
    model = tracker.model
    saved = model.score_threshold_detection
    model.score_threshold_detection = float(args.score_threshold)
    t0 = time.perf_counter()
    try:
        result = sam3_video.track_video_sam3(
            args.video,
            prompt,
            tracker,
            Path(args.out),
            chunk_size=args.chunk_size,
            offload=not args.no_offload,
            iou_threshold=args.iou_threshold,
            max_frames=args.max_frames,
            render=not args.no_render,
        )
    finally:
        model.score_threshold_detection = saved
    elapsed = time.perf_counter() - t0
    return {
        "command": "track",
        "backend": "sam3",
        "video": args.video,
        "prompt": prompt,
        **cli_segment.track_summary(result),
        "elapsed_s": round(elapsed, 3),
        "processing_fps": round(result.num_frames / elapsed, 3) if elapsed > 0 else None,
    }


def cmd_eval_masks(args) -> dict:
    """``eval-masks --data DIR --prompt P --backend sam3``: predict with SAM 3, then score."""
    from helpers import files, sam3, textseg

    if args.data is None or args.pred or args.gt:
        raise InputError("--backend sam3 applies to eval-masks --data DIR --prompt P only.")
    prompt = _check(args)
    data = Path(args.data)
    if not (data / "images").is_dir() or not (data / "masks").is_dir():
        raise InputError(f"--data {data} needs images/ and masks/ subfolders (same stems).")
    seg = _segmenter(args)
    kw = {"threshold": args.score_threshold, "mask_threshold": 0.5}
    summary = textseg.evaluate_folder(data, prompt, seg, None, segment_fn=sam3._folder_step, **kw)
    result = {"command": "eval-masks", "backend": "sam3", "data": str(data), "prompt": prompt}
    result.update(summary)
    if args.out:
        result["json_path"] = str(files.atomic_write_json(Path(args.out) / "eval.json", result))
    return result
