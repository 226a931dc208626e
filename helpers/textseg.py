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
    mask_threshold: float = 0.4,
) -> ImageResult:
    """Segment everything ``prompt`` names in one image.

    ``image_or_source``: anything ``media.load_image`` takes (array, path, URL, bytes, upload).
    Detection and segmentation run on a copy whose long side is at most ``max_side``; boxes
    and masks come back at the full size. With ``multimask`` SAM 2 returns three candidates
    per box and the best is kept (by CLIP similarity to the phrase when ``clip`` is given,
    else by SAM's own score). Nothing detected -> a result with empty detections.

    A CLIPSeg model (``segment.load_clipseg`` / ``random_clipseg``) as ``segmenter`` takes the
    other route: no detector (``detector`` may be None), one coarse mask per phrase from
    CLIPSeg's probabilities >= ``mask_threshold`` (see :func:`segment_image_clipseg`).
    """
    if getattr(segmenter, "kind", None) == "clipseg":
        return segment_image_clipseg(
            image_or_source,
            prompt,
            segmenter,
            threshold=mask_threshold,
            clean=clean,
            max_side=max_side,
            min_hole_area=min_hole_area,
            min_sprinkle_area=min_sprinkle_area,
        )
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


def segment_image_clipseg(
    image_or_source,
    prompt: str,
    clipseg,
    *,
    threshold: float = 0.4,
    clean: bool = True,
    max_side: int = 1024,
    min_hole_area: int = 64,
    min_sprinkle_area: int = 64,
) -> ImageResult:
    """The CLIPSeg route: one coarse mask per prompt phrase, no detector and no SAM.

    CLIPSeg's per-pixel probability for each phrase is upsampled to the full size and kept
    where >= ``threshold``; a phrase whose mask is empty gives no instance. An instance's
    confidence is its mean probability inside the mask, its box the mask's bounding box.
    """
    import supervision as sv
    import torch

    from helpers import media
    from helpers.detect import normalize_prompt, prompt_phrases
    from helpers.segment import clean_masks, inference_context

    if not 0.0 <= float(threshold) <= 1.0:
        raise InputError(f"the CLIPSeg mask threshold must be in [0, 1], got {threshold}.")
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    norm = normalize_prompt(prompt)
    phrases = prompt_phrases(norm)
    t0 = time.perf_counter()
    image = media.load_image(image_or_source)
    timings["load"] = _ms(t0)
    H, W = image.shape[:2]
    small, _ = media.fit_for_model(image, max_side)

    t0 = time.perf_counter()
    inputs = clipseg.processor(
        text=phrases, images=[small] * len(phrases), padding=True, return_tensors="pt"
    )
    inputs = {k: v.to(clipseg.device) for k, v in inputs.items()}
    with inference_context(clipseg.device):
        logits = clipseg.model(**inputs).logits
    logits = logits.float().reshape(len(phrases), 1, *logits.shape[-2:])
    probs = torch.nn.functional.interpolate(
        logits.sigmoid(), size=(H, W), mode="bilinear", align_corners=False
    )[:, 0]
    probs = probs.cpu().numpy()
    masks = probs >= float(threshold)
    timings["segment"] = _ms(t0)
    if clean:
        masks = clean_masks(masks, min_hole_area, min_sprinkle_area)
    keep = [i for i in range(len(phrases)) if masks[i].any()]
    xyxy = np.zeros((len(keep), 4), np.float32)
    conf = np.zeros((len(keep),), np.float32)
    for k, i in enumerate(keep):
        ys, xs = np.nonzero(masks[i])
        xyxy[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        conf[k] = float(probs[i][masks[i]].mean())
    detections = sv.Detections(
        xyxy=xyxy,
        mask=masks[keep].astype(bool).reshape(len(keep), H, W),
        confidence=conf,
        class_id=np.asarray(keep, int),
        data={
            "class_name": np.asarray([phrases[i] for i in keep], dtype=str),
            "mask_score": conf.copy(),
        },
    )
    timings["total"] = _ms(t_all)
    return ImageResult(image, detections, norm, timings, None, 1.0)


def settings_fingerprint(settings: dict) -> str:
    """A short, stable hash of the settings that produce an image's outputs (prompt, models,
    thresholds, ...): a folder run re-does an image whose stored fingerprint differs."""
    import hashlib
    import json

    blob = json.dumps(settings, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def model_settings(detector, segmenter, clip=None) -> dict:
    """What identifies the models of a run (for the resume fingerprint)."""
    out = {}
    if detector is not None:
        out["detector"] = str(getattr(detector, "name", type(detector).__name__))
    kind = getattr(segmenter, "kind", None) or getattr(segmenter, "backend", None)
    out["segmenter"] = ":".join(
        str(v)
        for v in (
            kind or type(segmenter).__name__,
            getattr(segmenter, "size", None) or getattr(segmenter, "name", ""),
            getattr(segmenter, "image_size", ""),
        )
    )
    if clip is not None:
        out["rescore"] = f"clip:{getattr(clip, 'name', '')}"
    return out


def _done_before(out: Path, stem: str, fingerprint: str) -> bool:
    """True when ``stem``'s outputs are all there and were made by these settings."""
    import json

    doc_path = out / f"{stem}.json"
    if not doc_path.is_file():
        return False
    if not (out / f"{stem}_mask.png").is_file() or not (out / f"{stem}_overlay.png").is_file():
        return False
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("fingerprint") == fingerprint


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"the folder {folder} does not exist or is not a folder.")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def safe_stem(name: str, fallback: str = "image") -> str:
    """A file stem that keeps Unicode (``猫`` stays ``猫``), NFC-normalised, with only the
    characters no file system accepts (``/ \\ : * ? " < > |``, control characters) replaced."""
    import re
    import unicodedata

    name = unicodedata.normalize("NFC", str(name))
    name = re.sub(r'[\x00-\x1f\x7f/\\:*?"<>|]+', "_", name).strip(" ._")
    return name[:120] or fallback


def _stems(paths: list[Path]) -> list[str]:
    """Output stems, unique even on case-insensitive drives: the file stem, or stem_ext when
    two images share a stem (a.jpg, a.png), then _2, _3, ... for any clash left."""
    counts: dict[str, int] = {}
    for p in paths:
        key = safe_stem(p.stem).casefold()
        counts[key] = counts.get(key, 0) + 1
    out: list[str] = []
    taken: set[str] = set()
    for p in paths:
        stem = safe_stem(p.stem)
        if counts[stem.casefold()] > 1:
            stem = f"{stem}_{p.suffix[1:].lower()}"
        base, k = stem, 2
        while stem.casefold() in taken:
            stem, k = f"{base}_{k}", k + 1
        taken.add(stem.casefold())
        out.append(stem)
    return out


def segment_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    prompt: str,
    detector,
    segmenter,
    *,
    overwrite: bool = False,
    segment_fn=None,
    dist=None,
    **kw,
) -> dict:
    """Segment every image of ``in_dir`` into ``out_dir`` (``{stem}_mask.png``,
    ``{stem}_overlay.png``, ``{stem}.json`` each).

    Resuming is keyed on the input and the settings: each image's JSON stores a
    ``fingerprint`` of its bytes, the prompt, the models and every setting in ``kw``; an image
    is skipped only when its three outputs exist with the same fingerprint, so a new prompt or
    threshold re-does it (``overwrite`` re-does everything). A file that fails is recorded and
    the run goes on; a write that fails because of the place (disk full, read-only) stops the
    run with an ``InputError`` (``files.WriteError``). ``kw`` go to ``segment_image``
    (or ``segment_fn``, same signature, e.g. SAM 3's in ``helpers.sam3``).
    Returns ``{"status": "ok"|"partial"|"failed", "done", "redone", "skipped", "empty",
    "failed": [{"file", "error"}], "files": [{"file", "status", ...}], "out_dir"}``.

    ``dist`` (a :class:`helpers.distributed.Dist`, under ``torchrun``): process k of N takes
    images k, k+N, ... of the sorted list (names are made unique over the whole folder first),
    and the first process returns the merged summary of all of them (the others return None).
    """
    from tqdm.auto import tqdm

    from helpers.detect import normalize_prompt
    from helpers.render import save_image_outputs

    try:
        from helpers.files import WriteError
    except ImportError:  # an older files.py
        WriteError = ()  # noqa: N806

    norm = normalize_prompt(prompt)
    paths = list_images(in_dir)
    if not paths:
        raise InputError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {in_dir}; put the images there."
        )
    out = Path(out_dir)
    if out.exists() and out.resolve() == Path(in_dir).resolve():
        raise InputError(
            f"the output folder {out} is the input folder; outputs would be read as new inputs "
            "on the next run. Give another output folder."
        )
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "prompt": norm,
        **model_settings(detector, segmenter, kw.get("clip")),
        **{k: v for k, v in sorted(kw.items()) if k != "clip"},
    }
    summary: dict[str, Any] = {"status": "ok", "done": 0, "redone": 0, "skipped": 0, "empty": 0}
    summary.update({"failed": [], "files": [], "out_dir": str(out)})
    work = list(zip(paths, _stems(paths)))
    if dist is not None and dist.on:
        work = work[dist.rank :: dist.world]
    quiet = {} if dist is None or dist.main else {"disable": True}  # one progress bar per job
    for path, stem in tqdm(work, desc="images", unit="img", **quiet):
        try:
            fingerprint = settings_fingerprint({**settings, "input": _file_digest(path)})
        except OSError as e:
            fingerprint = None
            digest_error = f"could not read {path.name} ({e.strerror or e})"
        if fingerprint is not None and not overwrite and _done_before(out, stem, fingerprint):
            summary["skipped"] += 1
            summary["files"].append({"file": path.name, "status": "skipped", "stem": stem})
            continue
        redo = (out / f"{stem}.json").exists()
        try:
            if fingerprint is None:
                raise InputError(digest_error)
            res = (segment_fn or segment_image)(path, norm, detector, segmenter, **kw)
            save_image_outputs(
                res.image,
                res.detections,
                out,
                stem,
                prompt=norm,
                extra={
                    "source": path.name,
                    "timings_ms": res.timings,
                    "fingerprint": fingerprint,
                    "settings": settings,
                },
            )
        except WriteError:  # the disk is full / read-only: every later image would fail too
            raise
        except Exception as e:  # a bad file must not stop the folder
            msg = str(e) if isinstance(e, InputError) else f"{type(e).__name__}: {e}"
            summary["failed"].append({"file": path.name, "error": msg})
            summary["files"].append({"file": path.name, "status": "failed", "error": msg})
            continue
        n = len(res.detections)
        summary["done"] += 1
        summary["redone"] += int(redo)
        summary["empty"] += int(n == 0)
        summary["files"].append(
            {
                "file": path.name,
                "status": "done",
                "stem": stem,
                "instances": n,
                "ms": res.timings["total"],
            }
        )
    if dist is not None and dist.on:
        parts = dist.gather(summary)  # every process waits here for the others
        if not dist.main:
            return None
        summary = merge_summaries(parts)
    if summary["failed"]:
        ok = summary["done"] + summary["skipped"]
        summary["status"] = "partial" if ok else "failed"
    return summary


def merge_summaries(parts: list[dict]) -> dict:
    """One folder summary from the summaries of the processes that shared the folder."""
    merged = dict(parts[0])
    for key in ("done", "redone", "skipped", "empty"):
        merged[key] = sum(p[key] for p in parts)
    for key in ("failed", "files"):
        merged[key] = sorted((x for p in parts for x in p[key]), key=lambda x: x["file"])
    merged["status"] = "ok"
    merged["processes"] = len(parts)
    return merged


def evaluate_folder(
    data_dir: str | os.PathLike, prompt: str, detector, segmenter, *, segment_fn=None, **kw
) -> dict:
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
        res = (segment_fn or segment_image)(images[stem], norm, detector, segmenter, **kw)
        H, W = res.image.shape[:2]
        pred = res.detections.mask.any(axis=0) if len(res.detections) else np.zeros((H, W), bool)
        preds.append(pred)
        gts.append(read_mask(masks[stem]))
    summary = iou_summary(preds, gts, names=stems)
    summary["unmatched_images"] = sorted(set(images) - set(masks))
    summary["unmatched_masks"] = sorted(set(masks) - set(images))
    summary["prompt"] = norm
    return summary
