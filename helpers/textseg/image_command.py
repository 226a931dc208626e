"""The ``segment`` command after its route is chosen, the same for every route: the image or
folder checks, then the models load, then the outputs (overlay, mask PNG, JSON with COCO RLE;
a folder resumable) and the command's result.

A route's command module (``commands`` for detect-sam2 / clipseg, ``sam3_commands`` for SAM 3)
makes an :class:`ImageJob`: the checked prompt, how to load its route and its
:class:`~helpers.textseg.image_settings.ImageSettings` (models are loaded only after every check),
and how a folder is run; nothing after that differs between routes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.errors import InputError
from helpers.textseg.command_checks import image_stem, stop_if_failed
from helpers.textseg.image_settings import ImageSettings, Overlay

FOLDER_ADVICE = "Fix or remove the failed files and run again (finished images are skipped)."


@dataclass(frozen=True)
class ImageJob:
    """One ``segment`` run's route-specific part."""

    prompt: str  # as the user gave it (checked)
    # -> (the route (helpers.textseg.routes), its ImageSettings), its models loaded
    load: Callable[[], tuple[Any, ImageSettings]]
    # (folder, out, dist, overlay dict) -> the folder summary (None on a torchrun worker)
    run_folder: Callable[..., dict | None]
    overlay: Overlay = field(default_factory=Overlay)
    tags: dict = field(default_factory=dict)  # e.g. {"backend": "sam3"} in the result and JSON
    json_extra: dict = field(default_factory=dict)  # more for each image's JSON
    max_side: int | None = None  # an image too elongated for this model input size is refused


def run(args, job: ImageJob, out: Path) -> dict | None:
    """``segment --image`` or ``--folder`` with ``job``: the command's result (one JSON line)."""
    if args.folder is not None:
        return _folder(args, job, out)
    return _image(args.image, job, out)


def _folder(args, job: ImageJob, out: Path) -> dict | None:
    from helpers import distributed

    folder = Path(args.folder)
    if folder.is_file():
        raise InputError(
            f"--folder {folder} is a file, not a folder; use --image {folder} for one image."
        )
    if not folder.is_dir():
        raise InputError(f"--folder {folder} is not a folder; give a folder of images.")
    if out.exists() and out.resolve() == folder.resolve():
        raise InputError(
            "--out is the input folder; outputs would be read as new inputs next time. "
            "Give another --out."
        )
    dist = distributed.from_env(args.device)  # under torchrun: this process's share
    summary = job.run_folder(folder, out, dist, _overlay(job))
    if summary is None:  # another process of the job reports the merged summary
        return None
    result = {"command": "segment", **job.tags, "folder": str(folder), "out": str(out), **summary}
    total = len(summary["files"])
    return stop_if_failed(result, total, "images", out, FOLDER_ADVICE, summary["status"])


def _image(source: str, job: ImageJob, out: Path) -> dict:
    from helpers.textseg import media, pipeline, render
    from helpers.textseg.naming import source_key

    if "://" not in source:
        if Path(source).is_dir():
            raise InputError(
                f"--image {source} is a folder, not an image; use --folder {source} to segment "
                "every image in it."
            )
        if not Path(source).is_file():
            raise InputError(f"--image {source} does not exist; give an image file path or a URL.")
    image = media.load_image(source)  # fail on a bad image before loading models
    if job.max_side is not None:
        media.fit_for_model(image, job.max_side)  # ... or one too elongated for the models
    route, settings = job.load()
    result = pipeline.run_route(route, image, job.prompt, settings)
    dets = result.detections
    timings = {k: round(float(v), 2) for k, v in (result.timings or {}).items()}
    info = pipeline.result_info(result)
    extra = {"source": source, "source_path": source_key(source), **job.tags}
    paths = render.save_image_outputs(
        result.image,
        dets,
        out,
        image_stem(source, out),
        prompt=job.prompt,
        extra={**extra, "timings_ms": timings, **info, **job.json_extra},
        **_overlay(job),
    )
    names = dets.data.get("class_name", []) if dets.data else []
    return {
        "command": "segment",
        **job.tags,
        "image": source,
        "prompt": job.prompt,
        "instances": len(dets),
        "labels": [str(n) for n in names],
        "scores": [round(float(s), 4) for s in (dets.confidence if len(dets) else [])],
        "boxes": [[round(float(v), 1) for v in b] for b in dets.xyxy],
        "produced_by": info["produced_by"],
        "note": info["note"],
        "attempts": info["attempts"],
        "outputs": {k: str(v) for k, v in paths.items()},
        "timings_ms": timings,
    }


def _overlay(job: ImageJob) -> dict:
    return {"color": job.overlay.color, "opacity": job.overlay.opacity}
