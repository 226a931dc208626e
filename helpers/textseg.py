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


FALLBACK_STEPS = ("lower-threshold", "clipseg")
DEFAULT_FALLBACK = ("lower-threshold", "clipseg")
LOWER_THRESHOLD_FACTOR = 0.5  # the retry's thresholds: half the given ones ...
LOWER_THRESHOLD_FLOOR = 0.05  # ... but never below this


@dataclass
class ImageResult:
    image: np.ndarray  # full-size RGB
    detections: Any  # sv.Detections with masks [N,H,W] at the full size
    prompt: str  # normalized prompt
    timings: dict = field(default_factory=dict)  # ms per stage
    # (masks [N,3,h,w], scores [N,3]) at the model-input size when multimask, else None
    candidates: Any = None
    scale: float = 1.0  # model-input size / full size
    # what produced the masks: "detector", "lower-threshold", "clipseg", "none" (nothing found),
    # or "model" (a one-model route that records no steps, e.g. SAM 3)
    produced_by: str = "model"
    attempts: list = field(default_factory=list)  # every step tried, in order (JSON-ready)
    choice: list | None = None  # per instance: the multi-criteria breakdown (mask_weights)

    @property
    def note(self) -> str:
        """One line saying which step produced the masks and why (see :func:`describe`)."""
        return describe(self.produced_by, self.attempts, len(self.detections))


def describe(produced_by: str, attempts: list, instances: int) -> str:
    """``"2 instance(s) from the detector"``, ``"... from lower-threshold: the detector found
    nothing at box 0.35 / text 0.25"`` or ``"nothing found: detector (box 0.35 / text 0.25) 0,
    ..."``."""

    def one(a: dict) -> str:
        if a.get("step") in ("detector", "lower-threshold"):
            what = f"{a['step']} (box {a['box_threshold']:g} / text {a['text_threshold']:g})"
        elif a.get("step") == "clipseg":
            what = f"clipseg (mask threshold {a.get('mask_threshold', 0):g})"
        else:
            what = str(a.get("step"))
        return f"{what} skipped: {a['skipped']}" if "skipped" in a else f"{what} {a['instances']}"

    tried = "; ".join(one(a) for a in attempts)
    if produced_by == "none" or (not attempts and not instances):
        return f"nothing found: {tried}" if tried else "nothing found"
    if len(attempts) <= 1:
        return (
            f"{instances} instance(s) from {'the model' if produced_by == 'model' else produced_by}"
        )
    return f"{instances} instance(s) from {produced_by} (fallback; tried: {tried})"


def result_info(result) -> dict:
    """What the JSON and the CLI report about how an image's masks were made."""
    info = {
        "produced_by": getattr(result, "produced_by", "model"),
        "attempts": list(getattr(result, "attempts", None) or []),
    }
    info["note"] = describe(info["produced_by"], info["attempts"], len(result.detections))
    choice = getattr(result, "choice", None)
    if choice is not None:
        info["mask_choice"] = choice
    return info


def check_fallback(fallback) -> tuple[str, ...]:
    """The fallback steps as a tuple (``None``, ``()``, ``"none"`` -> no fallback)."""
    if fallback is None or fallback is False:
        return ()
    if isinstance(fallback, str):
        fallback = () if fallback.strip().lower() in ("", "none", "off") else fallback.split(",")
    steps = tuple(str(s).strip().lower() for s in fallback if str(s).strip())
    for step in steps:
        if step not in FALLBACK_STEPS:
            raise InputError(
                f"unknown fallback step {step!r}; use {', '.join(FALLBACK_STEPS)} (in the order "
                "to try them), or none."
            )
    return steps


def lower_thresholds(box_threshold: float, text_threshold: float) -> tuple[float, float]:
    """The thresholds of the lower-threshold retry: halved, floored at 0.05 (never raised)."""

    def low(t):
        return round(
            min(float(t), max(LOWER_THRESHOLD_FLOOR, float(t) * LOWER_THRESHOLD_FACTOR)), 4
        )

    return low(box_threshold), low(text_threshold)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 2)


def _clean_scaled(masks, fraction, hole_floor, speck_floor):
    from helpers.segment import clean_masks, scaled_clean_areas

    return clean_masks(
        masks,
        scaled_clean_areas(masks, fraction, hole_floor),
        scaled_clean_areas(masks, fraction, speck_floor),
    )


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
    min_hole_area: int = 16,
    min_sprinkle_area: int = 16,
    clean_fraction: float = 0.01,
    clip=None,
    mask_threshold: float = 0.4,
    fallback=DEFAULT_FALLBACK,
    clipseg=None,
    mask_weights=None,
) -> ImageResult:
    """Segment everything ``prompt`` names in one image.

    ``image_or_source``: anything ``media.load_image`` takes (array, path, URL, bytes, upload).
    Detection and segmentation run on a copy whose long side is at most ``max_side``; boxes
    and masks come back at the full size. With ``multimask`` SAM 2 returns three candidates
    per box and the best is kept (by CLIP similarity to the phrase when ``clip`` is given,
    else by SAM's own score).

    ``mask_weights`` (a :class:`helpers.segment.MaskWeights`, a dict or ``"sam=1,clip=0.5,
    compact=0.25,box=0.25"``) picks among the three candidates by a weighted sum of SAM's
    score, CLIP's preference (needs ``clip``), compactness and the fit to the box instead
    (implies ``multimask``; the breakdown lands in ``result.choice``).

    Cleanup (``clean``) fills holes and drops specks smaller than ``clean_fraction`` of each
    mask's area, at least ``min_hole_area`` / ``min_sprinkle_area`` px (model-input pixels).

    Nothing detected -> the ``fallback`` steps in order: ``"lower-threshold"`` retries the
    detector at :func:`lower_thresholds`, ``"clipseg"`` takes the CLIPSeg route with
    ``clipseg`` (a model, or a function that loads one on first need; skipped when None).
    ``result.produced_by`` names the step that produced the masks (``"none"`` when none did)
    and ``result.attempts`` lists every step tried. ``fallback=()`` turns this off.

    A CLIPSeg model (``segment.load_clipseg`` / ``random_clipseg``) as ``segmenter`` takes the
    other route: no detector (``detector`` may be None), one coarse mask per phrase from
    CLIPSeg's probabilities >= ``mask_threshold`` (see :func:`segment_image_clipseg`).
    """
    clean_kw = dict(
        clean=clean,
        max_side=max_side,
        min_hole_area=min_hole_area,
        min_sprinkle_area=min_sprinkle_area,
        clean_fraction=clean_fraction,
    )
    if getattr(segmenter, "kind", None) == "clipseg":
        res = segment_image_clipseg(
            image_or_source, prompt, segmenter, threshold=mask_threshold, **clean_kw
        )
        res.produced_by = "clipseg"
        res.attempts = [
            {"step": "clipseg", "mask_threshold": float(mask_threshold),
             "instances": len(res.detections)}
        ]  # fmt: skip
        return res
    import supervision as sv

    from helpers import media
    from helpers.detect import detect, normalize_prompt
    from helpers.segment import choose_mask, clip_rescore, parse_weights, segment_boxes

    steps = check_fallback(fallback)
    weights = parse_weights(mask_weights) if mask_weights is not None else None
    if weights is not None and weights.clip > 0 and clip is None:
        raise InputError(
            "the mask weights give CLIP a weight but no CLIP model was given: load one "
            "(segment.load_clip, --rescore clip) or set clip=0."
        )
    multimask = bool(multimask or weights is not None)
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

    def run_detector(box_t, text_t):
        return detect(
            detector,
            small,
            norm,
            box_threshold=box_t,
            text_threshold=text_t,
            nms_iou=nms_iou,
            max_side=None,
        )

    t0 = time.perf_counter()
    dets = run_detector(box_threshold, text_threshold)
    timings["detect"] = _ms(t0)
    attempts = [
        {"step": "detector", "box_threshold": float(box_threshold),
         "text_threshold": float(text_threshold), "instances": len(dets)}
    ]  # fmt: skip
    produced_by = "detector" if len(dets) else "none"
    if not len(dets) and steps:
        t0 = time.perf_counter()
        for step in steps:
            if step == "lower-threshold":
                low_box, low_text = lower_thresholds(box_threshold, text_threshold)
                record = {"step": step, "box_threshold": low_box, "text_threshold": low_text}
                if (low_box, low_text) == (float(box_threshold), float(text_threshold)):
                    attempts.append({**record, "skipped": "the thresholds are at the floor"})
                    continue
                dets = run_detector(low_box, low_text)
                attempts.append({**record, "instances": len(dets)})
                if len(dets):
                    produced_by = step
                    break
            elif step == "clipseg":
                record = {"step": step, "mask_threshold": float(mask_threshold)}
                model = clipseg() if callable(clipseg) else clipseg
                if model is None:
                    attempts.append({**record, "skipped": "no CLIPSeg model given"})
                    continue
                res = segment_image_clipseg(
                    image, norm, model, threshold=mask_threshold, **clean_kw
                )
                attempts.append({**record, "instances": len(res.detections)})
                if len(res.detections):
                    timings["fallback"] = _ms(t0)
                    timings.update({f"clipseg_{k}": v for k, v in res.timings.items()})
                    timings["total"] = _ms(t_all)
                    res.timings, res.produced_by, res.attempts = timings, step, attempts
                    return res
        timings["fallback"] = _ms(t0)

    candidates = choice = None
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
        names = dets.data["class_name"]
        if multimask and clip is not None and (weights is None or weights.clip > 0):
            t0 = time.perf_counter()
            sims = [
                clip_rescore(clip, image, candidates[0][i], str(names[i])) for i in range(len(dets))
            ]
            if weights is None:  # CLIP alone decides
                for i in range(len(dets)):
                    best = int(np.argmax(sims[i]))
                    masks_small[i] = candidates[0][i, best]
                    mask_scores[i] = candidates[1][i, best]
            timings["rescore"] = _ms(t0)
        else:
            sims = [None] * len(dets)
        if weights is not None:
            t0 = time.perf_counter()
            full_boxes = dets.xyxy.reshape(-1, 4) / np.array([sx, sy, sx, sy], np.float32)
            choice = []
            for i in range(len(dets)):
                best, info = choose_mask(
                    candidates[0][i], candidates[1][i], weights, box=full_boxes[i],
                    clip_sims=sims[i],
                )  # fmt: skip
                masks_small[i] = candidates[0][i, best]
                mask_scores[i] = candidates[1][i, best]
                choice.append(info)
            timings["choose"] = _ms(t0)
        if clean:
            t0 = time.perf_counter()
            area = (H * W) / (h * w)  # the floors are in model-input pixels
            masks_small = _clean_scaled(
                masks_small, clean_fraction, min_hole_area * area, min_sprinkle_area * area
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
    return ImageResult(
        image, detections, norm, timings, candidates, float(min(sx, sy)), produced_by,
        attempts, choice,
    )  # fmt: skip


def segment_image_clipseg(
    image_or_source,
    prompt: str,
    clipseg,
    *,
    threshold: float = 0.4,
    clean: bool = True,
    max_side: int = 1024,
    min_hole_area: int = 16,
    min_sprinkle_area: int = 16,
    clean_fraction: float = 0.01,
) -> ImageResult:
    """The CLIPSeg route: one coarse mask per prompt phrase, no detector and no SAM.

    CLIPSeg's per-pixel probability for each phrase is upsampled to the full size and kept
    where >= ``threshold``; a phrase whose mask is empty gives no instance. An instance's
    confidence is its mean probability inside the mask, its box the mask's bounding box.
    Cleanup as in :func:`segment_image` (the floors in full-size pixels here).
    """
    import supervision as sv

    from helpers import media
    from helpers.detect import normalize_prompt, prompt_phrases
    from helpers.segment import clipseg_probs

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
    probs = clipseg_probs(clipseg, small, phrases, size=(H, W))
    masks = probs >= float(threshold)
    timings["segment"] = _ms(t0)
    if clean:
        masks = _clean_scaled(masks, clean_fraction, min_hole_area, min_sprinkle_area)
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
    return ImageResult(image, detections, norm, timings, None, 1.0, "clipseg")


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


# formats PIL lists but cannot decode without outside help (stubs, Ghostscript, Windows)
_NOT_PHOTOS = {".bufr", ".grib", ".h5", ".hdf", ".eps", ".ps", ".emf", ".wmf", ".mpeg", ".mpg"}
_NOT_PHOTOS |= {".fit", ".fits"}


def image_suffixes() -> tuple[str, ...]:
    """Every suffix single-image mode reads (PIL's decoders, AVIF and, with pillow-heif
    registered, HEIC included), so a folder run takes the same files."""
    from PIL import Image

    Image.init()
    readable = {e for e, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return tuple(sorted((set(IMAGE_SUFFIXES) | readable) - _NOT_PHOTOS))


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"the folder {folder} does not exist or is not a folder.")
    suffixes = set(image_suffixes())
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def not_images(folder: str | os.PathLike) -> list[str]:
    """Names of the files in ``folder`` a folder run leaves out (not a format it reads), so
    the summary can say so (a ``.heic`` without pillow-heif, a ``.txt``)."""
    suffixes = set(image_suffixes())
    return sorted(
        p.name
        for p in Path(folder).iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in suffixes
    )


def safe_stem(name: str, fallback: str = "image") -> str:
    """See :func:`helpers.naming.safe_stem` (names cut by bytes, Unicode kept)."""
    from helpers.naming import safe_stem as stem

    return stem(name, fallback)


def _stems(paths: list[Path], owner=None) -> list[str]:
    """Output stems, unique even on case-insensitive drives, that never take a name ``owner``
    (name -> the source recorded there, or None) says another input holds: the file stem,
    else stem_ext, else stem_<hash of the path> (see :func:`helpers.naming.claim_names`)."""
    from helpers.naming import claim_names

    return claim_names(paths, owner or (lambda name: None))


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
    overlay: dict | None = None,
    **kw,
) -> dict:
    """Segment every image of ``in_dir`` into ``out_dir`` (``{stem}_mask.png``,
    ``{stem}_overlay.png``, ``{stem}.json`` each).

    Resuming is keyed on the input and the settings: each image's JSON stores a
    ``fingerprint`` of its bytes, the prompt, the models and every setting in ``kw``; an image
    is skipped only when its three outputs exist with the same fingerprint, so a new prompt or
    threshold re-does it (``overwrite`` re-does everything). A file that fails is recorded and
    the run goes on; a write that fails because of the place (disk full, read-only) stops the
    run (``files.WriteError``): the summary's ``stopped`` says where, and it is still returned. ``kw`` go to ``segment_image``
    (or ``segment_fn``, same signature, e.g. SAM 3's in ``helpers.sam3``).
    Returns ``{"status": "ok"|"partial"|"failed", "done", "redone", "skipped", "empty",
    "failed": [{"file", "error"}], "files": [{"file", "status", ...}], "out_dir"}``.

    ``overlay`` (``{"color": ..., "opacity": ...}``) goes to ``render.annotate`` for the
    overlay PNGs. Each JSON says which step produced the masks (``produced_by``, ``attempts``:
    see :func:`segment_image`'s fallback); the summary counts images per step in ``produced_by``.

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
            f"no images ({', '.join(IMAGE_SUFFIXES)}, ...) found in {in_dir}; put the images there."
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
        **{k: v for k, v in sorted(kw.items()) if k not in ("clip", "clipseg")},
    }
    if kw.get("clipseg") is not None:
        settings["fallback_clipseg"] = str(getattr(kw["clipseg"], "name", "clipseg"))
    if overlay:
        settings["overlay"] = dict(sorted(overlay.items()))
    summary: dict[str, Any] = {"status": "ok", "done": 0, "redone": 0, "skipped": 0, "empty": 0}
    summary.update({"produced_by": {}, "failed": [], "files": [], "out_dir": str(out)})
    left_out = not_images(in_dir)
    if left_out:  # named, never skipped without a word
        summary["not_images"] = left_out
        summary["note"] = (
            f"{len(left_out)} file(s) are not images this run reads and were left out (e.g. "
            f"{left_out[0]}); convert them to JPEG or PNG (HEIC: pip install pillow-heif)."
        )
    from helpers.naming import json_owner, source_key

    work = list(zip(paths, _stems(paths, lambda name: json_owner(out / f"{name}.json"))))
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
            info = result_info(res)
            save_image_outputs(
                res.image,
                res.detections,
                out,
                stem,
                prompt=norm,
                extra={
                    "source": path.name,
                    "source_path": source_key(path),
                    "timings_ms": res.timings,
                    **info,
                    "fingerprint": fingerprint,
                    "settings": settings,
                },
                **(overlay or {}),
            )
        except WriteError as e:  # the disk is full / read-only: every later image would fail
            summary["failed"].append({"file": path.name, "error": str(e)})
            summary["files"].append({"file": path.name, "status": "failed", "error": str(e)})
            summary["stopped"] = f"stopped at {path.name}: {e}"  # the rest are left to resume
            break
        except Exception as e:  # a bad file must not stop the folder
            msg = str(e) if isinstance(e, InputError) else f"{type(e).__name__}: {e}"
            summary["failed"].append({"file": path.name, "error": msg})
            summary["files"].append({"file": path.name, "status": "failed", "error": msg})
            continue
        n = len(res.detections)
        summary["done"] += 1
        summary["redone"] += int(redo)
        summary["empty"] += int(n == 0)
        by = info["produced_by"]
        summary["produced_by"][by] = summary["produced_by"].get(by, 0) + 1
        summary["files"].append(
            {
                "file": path.name,
                "status": "done",
                "stem": stem,
                "instances": n,
                "produced_by": by,
                "ms": res.timings["total"],
            }
        )
    if summary.get("stopped"):
        listed = {f["file"] for f in summary["files"]}
        summary["files"] += [
            {"file": p.name, "status": "not started"} for p, _ in work if p.name not in listed
        ]
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
    merged["produced_by"] = {}
    for p in parts:
        for k, v in p.get("produced_by", {}).items():
            merged["produced_by"][k] = merged["produced_by"].get(k, 0) + v
    for key in ("failed", "files"):
        merged[key] = sorted((x for p in parts for x in p[key]), key=lambda x: x["file"])
    stopped = [p["stopped"] for p in parts if p.get("stopped")]
    if stopped:
        merged["stopped"] = stopped[0]
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
