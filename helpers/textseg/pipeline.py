"""The image pipeline: text -> boxes (Grounding DINO / OWLv2) -> masks (SAM 2) -> outputs.

``segment_image`` does one image, ``segment_folder`` a folder (resumable: images whose JSON
already exists are skipped), ``evaluate_folder`` scores predicted masks against ground truth.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from helpers.errors import InputError
from helpers.textseg.image_settings import (
    DEFAULT_FALLBACK,
    Cleanup,
    Fallback,
    ImageSettings,
    MaskChoice,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


FALLBACK_STEPS = ("lower-threshold", "clipseg")
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


def clean_scaled(masks, fraction, hole_floor, speck_floor):
    from helpers.textseg.segment import clean_masks, scaled_clean_areas

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
    """Segment everything ``prompt`` names in one image: the detect-sam2 route (or the clipseg
    route when ``segmenter`` is a CLIPSeg model) run by :func:`run_route`; the keywords are
    :func:`image_settings`'.

    ``image_or_source``: anything ``media.load_image`` takes (array, path, URL, bytes, upload).
    Detection and segmentation run on a copy whose long side is at most ``max_side``; boxes
    and masks come back at the full size. With ``multimask`` SAM 2 returns three candidates
    per box and the best is kept (by CLIP similarity to the phrase when ``clip`` is given,
    else by SAM's own score).

    ``mask_weights`` (a :class:`helpers.textseg.segment.MaskWeights`, a dict or ``"sam=1,clip=0.5,
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
    from helpers.textseg import routes

    kw = dict(locals())
    for name in ("image_or_source", "prompt", "detector", "segmenter", "routes"):
        kw.pop(name)
    if getattr(segmenter, "kind", None) == "clipseg":
        kw.update(fallback=(), mask_weights=None, clip=None, multimask=False)
        settings = image_settings(**kw)
        settings = replace(settings, route=replace(settings.route, mask_threshold=mask_threshold))
        return run_route(routes.ClipSeg(segmenter), image_or_source, prompt, settings)
    return run_route(
        routes.DetectSam2(detector, segmenter), image_or_source, prompt, image_settings(**kw)
    )


def image_settings(
    *, box_threshold=0.35, text_threshold=0.25, multimask=False, clean=True, max_side=1024,
    nms_iou=0.5, min_hole_area=16, min_sprinkle_area=16, clean_fraction=0.01, clip=None,
    mask_threshold=0.4, fallback=DEFAULT_FALLBACK, clipseg=None, mask_weights=None,
) -> ImageSettings:  # fmt: skip
    """:class:`ImageSettings` from :func:`segment_image`'s keywords (checked: fallback steps,
    mask weights, a CLIP weight without a CLIP model)."""
    from helpers.textseg.routes import RouteSettings
    from helpers.textseg.segment import parse_weights

    steps = check_fallback(fallback)
    weights = parse_weights(mask_weights) if mask_weights is not None else None
    if weights is not None and weights.clip > 0 and clip is None:
        raise InputError(
            "the mask weights give CLIP a weight but no CLIP model was given: load one "
            "(segment.load_clip, --rescore clip) or set clip=0."
        )
    route = RouteSettings(
        box_threshold=box_threshold, text_threshold=text_threshold, max_side=max_side,
        nms_iou=nms_iou, multimask=bool(multimask or weights is not None),
    )  # fmt: skip
    return ImageSettings(
        route=route,
        choice=MaskChoice(weights=weights, clip=clip),
        cleanup=Cleanup(clean, clean_fraction, min_hole_area, min_sprinkle_area),
        fallback=Fallback(steps, clipseg, mask_threshold),
    )


def run_route(route, image_or_source, prompt: str, settings: ImageSettings) -> ImageResult:
    """One image through ``route`` (a :mod:`helpers.textseg.routes` route) and the steps after
    it, the same for every route: the fallback when it finds nothing, the choice among SAM 2's
    candidates, the cleanup scaled to each object. ``result.produced_by`` / ``attempts`` say
    which step produced the masks (see :func:`describe`)."""
    from helpers.textseg import media
    from helpers.textseg.detect import normalize_prompt, prompt_phrases

    t_all = time.perf_counter()
    norm = normalize_prompt(prompt)  # InputError on an empty prompt, before any work
    phrases = prompt_phrases(norm)
    t0 = time.perf_counter()
    image = media.load_image(image_or_source)
    timings, info = {"load": _ms(t0)}, {}
    dets = route.segment(image, phrases, settings.route, info)
    timings.update(info["timings"])
    step = getattr(route, "step", None)
    attempts = [_attempt(step, settings, len(dets))] if step else []
    produced_by = (step if len(dets) or step == "clipseg" else "none") if step else "model"
    if not len(dets) and settings.fallback.steps:
        t0 = time.perf_counter()
        found = _fallback(route, image, norm, phrases, settings, attempts)
        timings["fallback"] = _ms(t0)
        if isinstance(found, ImageResult):  # the CLIPSeg step: a whole result of its own
            found.timings = {**timings, **{f"clipseg_{k}": v for k, v in found.timings.items()}}
            found.timings["total"], found.attempts = _ms(t_all), attempts
            return found
        if found is not None:
            dets, info, produced_by = found
            timings.update({k: v for k, v in info["timings"].items() if k == "segment"})
    choice = _choose_masks(image, dets, info, settings.choice, timings)
    dets = _clean(route, dets, info, settings.cleanup, timings)
    h, w = info["model_size"]
    timings["total"] = _ms(t_all)
    scale = float(min(w / image.shape[1], h / image.shape[0]))
    return ImageResult(
        image, dets, norm, timings, info.get("candidates"), scale, produced_by, attempts, choice
    )


def _attempt(step: str, settings: ImageSettings, instances: int) -> dict:
    if step == "clipseg":
        return {"step": step, "mask_threshold": float(settings.fallback.mask_threshold),
                "instances": instances}  # fmt: skip
    return {"step": step, "box_threshold": float(settings.route.box_threshold),
            "text_threshold": float(settings.route.text_threshold), "instances": instances}  # fmt: skip


def _fallback(route, image, norm, phrases, settings: ImageSettings, attempts: list):
    """The fallback steps in order, each recorded in ``attempts``: ``(detections, info, step)``
    from the lower-threshold retry, a CLIPSeg :class:`ImageResult`, or None (nothing found)."""
    from helpers.textseg import routes

    for step in settings.fallback.steps:
        if step == "lower-threshold":
            first = settings.route
            low_box, low_text = lower_thresholds(first.box_threshold, first.text_threshold)
            record = {"step": step, "box_threshold": low_box, "text_threshold": low_text}
            if (low_box, low_text) == (float(first.box_threshold), float(first.text_threshold)):
                attempts.append({**record, "skipped": "the thresholds are at the floor"})
                continue
            info: dict = {}
            low = replace(first, box_threshold=low_box, text_threshold=low_text)
            dets = route.segment(image, phrases, low, info)
            attempts.append({**record, "instances": len(dets)})
            if len(dets):
                return dets, info, step
        elif step == "clipseg":
            record = {"step": step, "mask_threshold": float(settings.fallback.mask_threshold)}
            model = settings.fallback.clipseg
            model = model() if callable(model) else model
            if model is None:
                attempts.append({**record, "skipped": "no CLIPSeg model given"})
                continue
            only = replace(
                settings, fallback=Fallback(), choice=MaskChoice(),
                route=replace(settings.route, mask_threshold=settings.fallback.mask_threshold),
            )  # fmt: skip
            res = run_route(routes.ClipSeg(model), image, norm, only)
            attempts.append({**record, "instances": len(res.detections)})
            if len(res.detections):
                res.produced_by = step
                return res
    return None


def _choose_masks(image, dets, info: dict, choice: MaskChoice, timings: dict):
    """Keep one of SAM 2's three candidates per box (in place): CLIP's pick when only ``clip``
    is given, the weighted pick with ``weights`` (its breakdown returned), else SAM's own."""
    from helpers.textseg.segment import choose_mask, clip_rescore

    candidates = info.get("candidates")
    if candidates is None or not len(dets):
        return None
    weights, names, choice_info = choice.weights, dets.data["class_name"], None
    sims = [None] * len(dets)
    if choice.clip is not None and (weights is None or weights.clip > 0):
        t0 = time.perf_counter()
        sims = [clip_rescore(choice.clip, image, candidates[0][i], str(names[i]))
                for i in range(len(dets))]  # fmt: skip
        if weights is None:  # CLIP alone decides
            for i in range(len(dets)):
                _keep_candidate(dets, candidates, i, int(np.argmax(sims[i])))
        timings["rescore"] = _ms(t0)
    if weights is not None:
        t0 = time.perf_counter()
        choice_info = []
        for i in range(len(dets)):
            best, why = choose_mask(
                candidates[0][i], candidates[1][i], weights, box=info["boxes_unclipped"][i],
                clip_sims=sims[i],
            )  # fmt: skip
            _keep_candidate(dets, candidates, i, best)
            choice_info.append(why)
        timings["choose"] = _ms(t0)
    return choice_info


def _keep_candidate(dets, candidates, i: int, best: int) -> None:
    dets.mask[i] = candidates[0][i, best]
    dets.data["mask_score"][i] = candidates[1][i, best]


def _clean(route, dets, info: dict, cleanup: Cleanup, timings: dict):
    """The cleanup scaled to each object, for every route; boxes that come from the masks
    (CLIPSeg) are redone from the cleaned masks (a mask emptied by it is dropped)."""
    if not cleanup.clean or not len(dets):
        return dets
    from helpers.textseg.routes import boxes_from_masks

    t0 = time.perf_counter()
    H, W = dets.mask.shape[1:]
    h, w = info["model_size"]
    area = (H * W) / (h * w) if getattr(route, "floors_at_model_size", False) else 1
    masks = clean_scaled(
        dets.mask, cleanup.fraction, cleanup.hole_floor * area, cleanup.speck_floor * area
    )
    timings["clean"] = _ms(t0)
    if "probabilities" in info:  # boxes and scores from the masks: redone
        probs = info["probabilities"][dets.class_id]
        return boxes_from_masks(masks, probs, info["phrases"], dets.class_id)
    dets.mask = masks.astype(bool)
    return dets


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
    from helpers.textseg import routes

    settings = ImageSettings(
        route=routes.RouteSettings(mask_threshold=threshold, max_side=max_side),
        cleanup=Cleanup(clean, clean_fraction, min_hole_area, min_sprinkle_area),
    )
    res = run_route(routes.ClipSeg(clipseg), image_or_source, prompt, settings)
    res.attempts = []
    return res


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
    """See :func:`helpers.textseg.naming.safe_stem` (names cut by bytes, Unicode kept)."""
    from helpers.textseg.naming import safe_stem as stem

    return stem(name, fallback)


def _stems(paths: list[Path], owner=None) -> list[str]:
    """Output stems, unique even on case-insensitive drives, that never take a name ``owner``
    (name -> the source recorded there, or None) says another input holds: the file stem,
    else stem_ext, else stem_<hash of the path> (see :func:`helpers.textseg.naming.claim_names`)."""
    from helpers.textseg.naming import claim_names

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
    (or ``segment_fn``, same signature, e.g. SAM 3's in ``helpers.textseg.sam3``).
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

    from helpers.textseg.detect import normalize_prompt
    from helpers.textseg.render import save_image_outputs

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
    from helpers.textseg.naming import json_owner, source_key

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

    from helpers.textseg.detect import normalize_prompt
    from helpers.textseg.mask_metrics import MASK_SUFFIXES, iou_summary, read_mask

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
