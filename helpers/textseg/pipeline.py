"""The image pipeline: text -> boxes (Grounding DINO / OWLv2) -> masks (SAM 2) -> outputs.

``run_route`` is everything after a route, once for every route (fallback, mask choice,
cleanup scaled to each object); ``segment_image`` is the keyword door to it. A folder run
(resume keys included) is ``folder_run.segment_folder``; scoring against ground-truth masks
is ``folder_eval.evaluate_folder``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from helpers.errors import InputError
from helpers.textseg.image_settings import (
    DEFAULT_FALLBACK,
    Cleanup,
    Fallback,
    ImageSettings,
    MaskChoice,
    RouteSettings,
)

FALLBACK_STEPS = DEFAULT_FALLBACK  # every step there is, in its default order
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
    box_threshold: float = RouteSettings.box_threshold,
    text_threshold: float = RouteSettings.text_threshold,
    multimask: bool = RouteSettings.multimask,
    clean: bool = Cleanup.clean,
    max_side: int = RouteSettings.max_side,
    nms_iou: float = RouteSettings.nms_iou,
    min_hole_area: float = Cleanup.hole_floor,
    min_sprinkle_area: float = Cleanup.speck_floor,
    clean_fraction: float = Cleanup.fraction,
    clip=None,
    mask_threshold: float = Fallback.mask_threshold,
    fallback=Fallback.steps,
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
    mask's area, at least ``min_hole_area`` / ``min_sprinkle_area`` px of the full-size image
    (the same unit on every route).

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
    *, box_threshold=RouteSettings.box_threshold, text_threshold=RouteSettings.text_threshold,
    multimask=RouteSettings.multimask, clean=Cleanup.clean, max_side=RouteSettings.max_side,
    nms_iou=RouteSettings.nms_iou, min_hole_area=Cleanup.hole_floor,
    min_sprinkle_area=Cleanup.speck_floor, clean_fraction=Cleanup.fraction, clip=None,
    mask_threshold=Fallback.mask_threshold, fallback=Fallback.steps, clipseg=None,
    mask_weights=None,
) -> ImageSettings:  # fmt: skip
    """:class:`ImageSettings` from :func:`segment_image`'s keywords (checked: fallback steps,
    mask weights, a CLIP weight without a CLIP model)."""
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
    # the fallback is for a detector that found nothing (clipseg and sam3 have none)
    if not len(dets) and settings.fallback.steps and step == "detector":
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
    dets = _clean(dets, info, settings.cleanup, timings)
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
                settings, fallback=Fallback(steps=()), choice=MaskChoice(),
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


def _clean(dets, info: dict, cleanup: Cleanup, timings: dict):
    """The cleanup scaled to each object, for every route; boxes that come from the masks
    (CLIPSeg) are redone from the cleaned masks (a mask emptied by it is dropped)."""
    if not cleanup.clean or not len(dets):
        return dets
    from helpers.textseg.routes import boxes_from_masks

    t0 = time.perf_counter()  # the floors are full-size pixels, as the masks are, on every route
    masks = clean_scaled(dets.mask, cleanup.fraction, cleanup.hole_floor, cleanup.speck_floor)
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
    threshold: float = RouteSettings.MASK_THRESHOLDS["clipseg"],
    clean: bool = Cleanup.clean,
    max_side: int = RouteSettings.max_side,
    min_hole_area: float = Cleanup.hole_floor,
    min_sprinkle_area: float = Cleanup.speck_floor,
    clean_fraction: float = Cleanup.fraction,
) -> ImageResult:
    """The CLIPSeg route: one coarse mask per prompt phrase, no detector and no SAM.

    CLIPSeg's per-pixel probability for each phrase is upsampled to the full size and kept
    where >= ``threshold``; a phrase whose mask is empty gives no instance. An instance's
    confidence is its mean probability inside the mask, its box the mask's bounding box.
    Cleanup as in :func:`segment_image`.
    """
    from helpers.textseg import routes

    settings = ImageSettings(
        route=RouteSettings(mask_threshold=threshold, max_side=max_side),
        cleanup=Cleanup(clean, clean_fraction, min_hole_area, min_sprinkle_area),
        fallback=Fallback(steps=()),
    )
    res = run_route(routes.ClipSeg(clipseg), image_or_source, prompt, settings)
    res.attempts = []
    return res
