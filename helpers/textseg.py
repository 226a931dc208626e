"""The image pipeline: text -> boxes (Grounding DINO / OWLv2) -> masks (SAM 2) -> outputs.

``segment_image`` does one image, ``segment_folder`` a folder (resumable: images whose JSON
already exists are skipped), ``evaluate_folder`` scores predicted masks against ground truth.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpers.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


@dataclass
class ImageResult:
    image: np.ndarray  # full-size RGB
    detections: Any  # sv.Detections with masks [N,H,W] at the full size
    prompt: str  # normalized prompt
    timings: dict = field(default_factory=dict)  # ms per stage
    # (masks [N,3,h,w], scores [N,3]) at the model-input size when multimask, else None
    candidates: Any = None
    scale: float = 1.0  # model-input size / full size


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 2)


def segment_image(
    image_or_source,
    prompt: str,
    detector,
    segmenter,
    *,
    box_threshold: float = 0.35,
    text_threshold: float = 0.25,
    multimask: bool = False,
    clean: bool = True,
    max_side: int = 1024,
    nms_iou: float = 0.5,
    min_hole_area: int = 64,
    min_sprinkle_area: int = 64,
    clip=None,
) -> ImageResult:
    """Segment everything ``prompt`` names in one image.

    ``image_or_source``: anything ``media.load_image`` takes (array, path, URL, bytes, upload).
    Detection and segmentation run on a copy whose long side is at most ``max_side``; boxes
    and masks come back at the full size. With ``multimask`` SAM 2 returns three candidates
    per box and the best is kept (by CLIP similarity to the phrase when ``clip`` is given,
    else by SAM's own score). Nothing detected -> a result with empty detections.
    """
    import supervision as sv

    from helpers import media
    from helpers.detect import detect, normalize_prompt
    from helpers.segment import clean_masks, clip_rescore, segment_boxes

    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    norm = normalize_prompt(prompt)  # InputError on an empty prompt, before any work
    t0 = time.perf_counter()
    image = media.load_image(image_or_source)
    timings["load"] = _ms(t0)
    H, W = image.shape[:2]

    t0 = time.perf_counter()
    small, _ = media.fit_for_model(image, max_side)
    h, w = small.shape[:2]
    sx, sy = w / W, h / H
    timings["resize"] = _ms(t0)

    t0 = time.perf_counter()
    dets = detect(
        detector,
        small,
        norm,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        nms_iou=nms_iou,
        max_side=None,
    )
    timings["detect"] = _ms(t0)

    candidates = None
    if len(dets) == 0:
        masks_small = np.zeros((0, h, w), bool)
        mask_scores = np.zeros((0,), np.float32)
    else:
        t0 = time.perf_counter()
        # masks at the full size: SAM's logits are upsampled, then thresholded
        masks_small, mask_scores, candidates = segment_boxes(
            segmenter, small, dets.xyxy, multimask=multimask, out_size=(H, W)
        )
        timings["segment"] = _ms(t0)
        if multimask and clip is not None:
            t0 = time.perf_counter()
            names = dets.data["class_name"]
            for i in range(len(dets)):
                sims = clip_rescore(clip, image, candidates[0][i], str(names[i]))
                best = int(np.argmax(sims))
                masks_small[i] = candidates[0][i, best]
                mask_scores[i] = candidates[1][i, best]
            timings["rescore"] = _ms(t0)
        if clean:
            t0 = time.perf_counter()
            area = (H * W) / (h * w)  # the areas are in model-input pixels
            masks_small = clean_masks(
                masks_small, round(min_hole_area * area), round(min_sprinkle_area * area)
            )
            timings["clean"] = _ms(t0)

    t0 = time.perf_counter()
    masks = media.masks_to_size(masks_small, (H, W))  # a no-op: already full size
    xyxy = dets.xyxy.astype(np.float32).reshape(-1, 4) / np.array([sx, sy, sx, sy], np.float32)
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, W)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, H)
    timings["upscale"] = _ms(t0)

    data = {"class_name": np.asarray(dets.data.get("class_name", []), dtype=str)}
    data["mask_score"] = np.asarray(mask_scores, np.float32)
    detections = sv.Detections(
        xyxy=xyxy,
        mask=masks.astype(bool),
        confidence=np.asarray(dets.confidence, np.float32).reshape(-1),
        class_id=np.asarray(dets.class_id, int).reshape(-1),
        data=data,
    )
    timings["total"] = _ms(t_all)
    return ImageResult(image, detections, norm, timings, candidates, float(min(sx, sy)))


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"the folder {folder} does not exist or is not a folder.")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _stems(paths: list[Path]) -> list[str]:
    """Output stems: the file stem, or stem_ext when two images share a stem (a.jpg, a.png)."""
    counts: dict[str, int] = {}
    for p in paths:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    return [p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix[1:].lower()}" for p in paths]


def segment_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    prompt: str,
    detector,
    segmenter,
    *,
    overwrite: bool = False,
    **kw,
) -> dict:
    """Segment every image of ``in_dir`` into ``out_dir`` (``{stem}_mask.png``,
    ``{stem}_overlay.png``, ``{stem}.json`` each).

    Images whose JSON already exists are skipped (so an interrupted run resumes) unless
    ``overwrite``. A file that fails is recorded and the run goes on. ``kw`` go to
    ``segment_image``. Returns ``{"done", "skipped", "empty", "failed": [{"file", "error"}],
    "files": [{"file", "status", ...}], "out_dir"}``.
    """
    from tqdm.auto import tqdm

    from helpers.detect import normalize_prompt
    from helpers.render import save_image_outputs

    norm = normalize_prompt(prompt)
    paths = list_images(in_dir)
    if not paths:
        raise InputError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {in_dir}; put the images there."
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"done": 0, "skipped": 0, "empty": 0, "failed": [], "files": []}
    summary["out_dir"] = str(out)
    for path, stem in tqdm(list(zip(paths, _stems(paths))), desc="images", unit="img"):
        if not overwrite and (out / f"{stem}.json").exists():
            summary["skipped"] += 1
            summary["files"].append({"file": path.name, "status": "skipped"})
            continue
        try:
            res = segment_image(path, norm, detector, segmenter, **kw)
            save_image_outputs(
                res.image,
                res.detections,
                out,
                stem,
                prompt=norm,
                extra={"source": path.name, "timings_ms": res.timings},
            )
        except Exception as e:  # a bad file must not stop the folder
            msg = str(e) if isinstance(e, InputError) else f"{type(e).__name__}: {e}"
            summary["failed"].append({"file": path.name, "error": msg})
            summary["files"].append({"file": path.name, "status": "failed", "error": msg})
            continue
        n = len(res.detections)
        summary["done"] += 1
        summary["empty"] += int(n == 0)
        summary["files"].append(
            {"file": path.name, "status": "done", "instances": n, "ms": res.timings["total"]}
        )
    return summary


def evaluate_folder(data_dir: str | os.PathLike, prompt: str, detector, segmenter, **kw) -> dict:
    """Predict the union mask of ``prompt`` for each ``data_dir/images/X`` and score it against
    ``data_dir/masks/X.*`` (same stem) with ``mask_metrics.iou_summary``.

    Returns the summary (mean_iou, cumulative_iou, per_image) plus ``unmatched_images`` /
    ``unmatched_masks`` (stems without a partner) and ``prompt``.
    """
    from tqdm.auto import tqdm

    from helpers.detect import normalize_prompt
    from helpers.mask_metrics import MASK_SUFFIXES, iou_summary, read_mask

    norm = normalize_prompt(prompt)
    data_dir = Path(data_dir)
    img_dir, mask_dir = data_dir / "images", data_dir / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise InputError(
                f"{d} is missing: the data folder needs images/ and masks/ with matching names "
                "(images/cat1.jpg <-> masks/cat1.png)."
            )
    images = {p.stem: p for p in list_images(img_dir)}
    masks = {
        p.stem: p
        for p in sorted(mask_dir.iterdir())
        if p.is_file() and p.suffix.lower() in MASK_SUFFIXES
    }
    stems = sorted(set(images) & set(masks))
    if not stems:
        raise InputError(
            f"no image in {img_dir} has a mask with the same name in {mask_dir}; name them alike."
        )
    preds, gts = [], []
    for stem in tqdm(stems, desc="evaluate", unit="img"):
        res = segment_image(images[stem], norm, detector, segmenter, **kw)
        H, W = res.image.shape[:2]
        pred = res.detections.mask.any(axis=0) if len(res.detections) else np.zeros((H, W), bool)
        preds.append(pred)
        gts.append(read_mask(masks[stem]))
    summary = iou_summary(preds, gts, names=stems)
    summary["unmatched_images"] = sorted(set(images) - set(masks))
    summary["unmatched_masks"] = sorted(set(masks) - set(images))
    summary["prompt"] = norm
    return summary
