"""The three Q2 routes from text to masks, and which of the commands' options each honours.

A route turns (image, phrases, settings) into one ``sv.Detections`` with masks, boxes, scores
and labels: Grounding DINO / OWLv2 boxes + SAM 2.1 masks (``detect-sam2``), CLIPSeg (one coarse
mask per phrase, ``clipseg``) and SAM 3 (text to every instance in one model, ``sam3``). What
follows the route (cleanup scaled to each object, the overlay's colour and opacity, the
overlay / mask PNG / JSON with COCO RLE / MP4 outputs, folder resume keys, the side-by-side
video) is the same code for all three. Every model, threshold and output option of ``segment``
and ``track`` is in one table (:data:`ROUTES`: the options each route honours); one a route
cannot honour (the detector's thresholds with clipseg or sam3, choosing among SAM 2's three
masks, ``--max-side`` with sam3, ...) is refused, when the user sets it, with one ``error:``
line that names the route, before any model loads: never silently ignored.

A video goes through a route's second verb, ``track(video, phrases, settings, out_dir) ->
track.TrackResult`` (per-frame masks and ids; ``tracks.json`` and the MP4 written): detect-sam2
and sam3 track; clipseg has no tracker.

The one verb, ``segment(image, phrases, settings) -> sv.Detections`` (masks, boxes, scores,
``class_name``), is implemented by :class:`DetectSam2`, :class:`ClipSeg` and :class:`Sam3`; it
returns the route's raw masks at the full size (no cleanup, no fallback, no mask choice: those
are the steps after it, in :mod:`helpers.textseg.pipeline`), and fills ``info`` (when given)
with what those steps need: timings, the model-input size, SAM 2's candidate masks.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from helpers.errors import InputError
from helpers.textseg.durations import KEEP_MISSED
from helpers.textseg.image_settings import RouteSettings

# every option of `segment` / `track` that a route honours or refuses (argparse dest names);
# the rest (EVERY_ROUTE) pick the input, the output, the device and the route itself
SEGMENT_OPTIONS = (
    "detector", "size", "image_size", "box_threshold", "text_threshold", "score_threshold",
    "mask_threshold", "max_side", "multimask", "rescore", "mask_weights", "fallback",
    "no_fallback", "no_clean", "clean_fraction", "clean_floor", "color", "opacity", "overwrite",
    "route",
)  # fmt: skip
TRACK_OPTIONS = (
    "detector", "size", "image_size", "box_threshold", "text_threshold", "score_threshold",
    "iou_threshold", "chunk_size", "max_frames", "offload", "no_offload", "no_render",
    "side_by_side", "detect_every", "prompt_type", "reid_threshold", "keep_missed", "backfill",
    "no_detect_on_doubt", "max_objects",
)  # fmt: skip
OPTIONS = {"segment": SEGMENT_OPTIONS, "track": TRACK_OPTIONS}
ALL_OPTIONS = tuple(dict.fromkeys(SEGMENT_OPTIONS + TRACK_OPTIONS))
EVERY_ROUTE = ("image", "folder", "video", "prompt", "out", "device", "random_weights", "backend")


@dataclass(frozen=True)
class Route:
    """One route: its name, how a user picks it, the options it honours and, for each of the
    others (:data:`ALL_OPTIONS`), why it cannot."""

    name: str
    picked_by: str  # the command-line words that choose it
    honours: frozenset[str]
    cannot: dict[str, str]  # option -> why this route cannot honour it

    def __post_init__(self):
        left = set(ALL_OPTIONS) - self.honours - set(self.cannot)
        both = self.honours & set(self.cannot)
        if left or both or not self.honours <= set(ALL_OPTIONS):
            raise ValueError(
                f"route {self.name}: every option honoured or refused, once: {left or both}"
            )


_SAM2_CHOICE = "it picks among SAM 2's three masks per box"
_SAM3_SCORE = "--score-threshold is SAM 3's instance score (--backend sam3)"
_AFTER_ROUTE = {"no_clean", "clean_fraction", "clean_floor", "color", "opacity", "overwrite"}
_SAM2_TRACKER = {"detect_every": "SAM 3 detects on every frame itself",
                 "prompt_type": "SAM 3 is prompted by the text alone",
                 "reid_threshold": "SAM 3 keeps its objects' ids itself",
                 "keep_missed": "SAM 3 keeps its objects' ids itself",
                 "backfill": "SAM 3 detects on every frame itself",
                 "no_detect_on_doubt": "SAM 3 detects on every frame itself",
                 "max_objects": "SAM 3 keeps every instance above --score-threshold"}  # fmt: skip
ROUTES = {
    "detect-sam2": Route(
        "detect-sam2",
        "--route detect-sam2",
        frozenset(ALL_OPTIONS) - {"score_threshold"},
        {
            "score_threshold": _SAM3_SCORE + "; the detector keeps boxes by --box-threshold and "
            "--text-threshold"
        },
    ),  # fmt: skip
    "clipseg": Route(
        "clipseg",
        "--route clipseg",
        frozenset({"mask_threshold", "max_side", "route", *_AFTER_ROUTE}),
        {
            "detector": "clipseg has no detector: --mask-threshold decides which pixels are kept",
            "box_threshold": "clipseg has no detector: --mask-threshold decides which pixels "
            "are kept",
            "text_threshold": "clipseg has no detector: --mask-threshold decides which pixels "
            "are kept",
            "size": "clipseg has no SAM 2 (--size chooses SAM 2's size)",
            "image_size": "clipseg has no SAM 2 (--image-size sets SAM 2's input size)",
            "score_threshold": _SAM3_SCORE + "; clipseg keeps pixels by --mask-threshold",
            "fallback": "the fallback runs when the detector finds nothing, and clipseg has "
            "no detector",
            "no_fallback": "clipseg has no detector, so no fallback to turn off",
            "multimask": _SAM2_CHOICE + ", and clipseg has no SAM 2",
            "mask_weights": _SAM2_CHOICE + ", and clipseg has no SAM 2",
            "rescore": _SAM2_CHOICE + ", and clipseg has no SAM 2",
            **dict.fromkeys(set(TRACK_OPTIONS) - set(SEGMENT_OPTIONS), "clipseg has no tracker"),
        },
    ),
    "sam3": Route(
        "sam3",
        "--backend sam3",
        frozenset(
            {
                "score_threshold",
                "mask_threshold",
                "iou_threshold",
                "chunk_size",
                "max_frames",
                "no_offload",
                "no_render",
                "side_by_side",
                *_AFTER_ROUTE,
            }
        ),
        {
            "detector": "SAM 3 has no separate detector: --score-threshold keeps its instances",
            "box_threshold": "SAM 3 has no separate detector: --score-threshold keeps its "
            "instances",
            "text_threshold": "SAM 3 has no separate detector: --score-threshold keeps its "
            "instances",
            "size": "SAM 3 is one model of one size (--size chooses SAM 2's)",
            "image_size": "SAM 3 is one model of one input size (--image-size sets SAM 2's)",
            "max_side": "SAM 3 resizes every image to its own input size",
            "fallback": "the fallback runs when the detector finds nothing, and SAM 3 has no "
            "separate detector",
            "no_fallback": "SAM 3 has no separate detector, so no fallback to turn off",
            "multimask": _SAM2_CHOICE + ", and SAM 3 gives one mask per instance",
            "mask_weights": _SAM2_CHOICE + ", and SAM 3 gives one mask per instance",
            "rescore": _SAM2_CHOICE + ", and SAM 3 gives one mask per instance",
            "route": "--route picks the route of the SAM 2 backend",
            "offload": "SAM 3 keeps the video's frames on the CPU already (--no-offload keeps "
            "them on the GPU)",
            **_SAM2_TRACKER,
        },
    ),  # fmt: skip
}


def route_of(args) -> Route:
    """The route ``args`` (parsed ``segment`` / ``track`` / ``eval-masks`` options) asks for."""
    if getattr(args, "backend", "sam2") == "sam3":
        return ROUTES["sam3"]
    return ROUTES.get(getattr(args, "route", "detect-sam2"), ROUTES["detect-sam2"])


def shown_flag(name: str, value: object) -> tuple[str, str]:
    """``("--no-backfill", "--no-backfill")`` / ``("--max-side", "--max-side 512")``: an option
    as the user typed it, without and with its value."""
    flag = ("--no-" if value is False else "--") + name.replace("_", "-")
    return flag, (flag if isinstance(value, bool) else f"{flag} {value}")


def refuse_unhonoured(route: Route, given: dict[str, object]) -> None:
    """One ``InputError`` naming ``route`` for the first option in ``given`` (option name ->
    the value the user set, options left at their default not included) that it cannot honour."""
    for name, value in given.items():
        if name in route.honours or name in EVERY_ROUTE:
            continue
        why = route.cannot.get(name, "it has no use for it")
        flag, shown = shown_flag(name, value)
        raise InputError(
            f"{shown} does not apply to the {route.name} route ({route.picked_by}): {why}. "
            f"Leave {flag} out, or choose another route."
        )


def given_options(args, parser_defaults: dict[str, object]) -> dict[str, object]:
    """The options of ``args`` set to something else than their default, in parser order."""
    return {
        name: getattr(args, name)
        for name, default in parser_defaults.items()
        if hasattr(args, name) and getattr(args, name) != default
    }


# --------------------------------------------------------------------------- the one verb


@dataclass(frozen=True)
class TrackSettings:
    """What a route's ``track`` verb needs besides the video and the phrases."""

    box_threshold: float = RouteSettings.box_threshold  # detect-sam2: keyframe box score
    text_threshold: float = RouteSettings.text_threshold  # detect-sam2: keyframe phrase score
    score_threshold: float = RouteSettings.score_threshold  # sam3: instance score to keep
    iou_threshold: float = 0.5  # ids matched across keyframes / chunks by mask IoU
    chunk_size: int = 200  # frames per tracking session (memory)
    offload: bool | None = None  # the tracker's state on the CPU (None: when needed)
    max_frames: int | None = None  # only the first N frames
    render: bool = True  # the annotated MP4 besides tracks.json
    detect_every: int = 30  # detect-sam2: keyframe period
    prompt_type: str = "box"  # detect-sam2: how new objects prompt SAM 2
    reid_threshold: float = 0.8  # detect-sam2: appearance match that restores an old id
    keep_missed: float | str = KEEP_MISSED  # detect-sam2: how long an undetected object is kept
    backfill: bool = True  # detect-sam2: new objects tracked back to the previous keyframe
    detect_on_doubt: bool = True  # detect-sam2: extra keyframes where propagation fails
    max_objects: int | None = None  # detect-sam2: the N most confident detections per keyframe


class DetectSam2:
    """Grounding DINO / OWLv2 boxes, then SAM 2.1 masks (``detect.load_detector`` and
    ``segment.load_segmenter`` models). Boxes come from the detector; with ``multimask``
    SAM 2's three candidates per box are reported (``info["candidates"]``)."""

    route = ROUTES["detect-sam2"]
    step = "detector"  # what the result's ``produced_by`` / ``attempts`` call this route

    def __init__(self, detector, segmenter=None, tracker=None):
        self.detector, self.segmenter = detector, segmenter
        self.tracker = tracker  # track.load_video_tracker: the SAM 2 video predictor

    def segment(self, image, phrases: list[str], settings: RouteSettings, info=None):
        from helpers.textseg import media
        from helpers.textseg.detect import detect
        from helpers.textseg.segment import segment_boxes

        info = _info(info, image.shape[:2])
        H, W = image.shape[:2]
        with _timed(info, "resize"):
            small, _ = media.fit_for_model(image, settings.max_side)
        h, w = info["model_size"] = small.shape[:2]
        with _timed(info, "detect"):
            dets = detect(
                self.detector, small, _prompt(phrases), box_threshold=settings.box_threshold,
                text_threshold=settings.text_threshold, nms_iou=settings.nms_iou, max_side=None,
            )  # fmt: skip
        if not len(dets):
            masks, scores = np.zeros((0, H, W), bool), np.zeros((0,), np.float32)
        else:
            with _timed(info, "segment"):  # SAM's logits upsampled to the full size
                masks, scores, info["candidates"] = segment_boxes(
                    self.segmenter, small, dets.xyxy, multimask=settings.multimask,
                    out_size=(H, W),
                )  # fmt: skip
        scale = np.array([w / W, h / H, w / W, h / H], np.float32)
        info["boxes_unclipped"] = dets.xyxy.astype(np.float32).reshape(-1, 4) / scale
        return _detections(
            info["boxes_unclipped"], masks, dets.confidence, dets.class_id,
            dets.data.get("class_name", []), scores,
        )  # fmt: skip

    def track(self, video, phrases: list[str], settings: TrackSettings, out_dir,
              prompt: str | None = None):  # fmt: skip
        """Per-frame tracks (``track.TrackResult``): keyframe detection, SAM 2 propagation.
        ``prompt``: the text as the user typed it, recorded in tracks.json (else the phrases
        joined)."""
        from helpers.textseg import track

        joined = _prompt(phrases)
        prompt = joined if prompt is None else prompt
        return track.track_video(
            video, prompt, self.detector, self.tracker, out_dir,
            detect_every=settings.detect_every, prompt_type=settings.prompt_type,
            box_threshold=settings.box_threshold, text_threshold=settings.text_threshold,
            iou_threshold=settings.iou_threshold, reid_threshold=settings.reid_threshold,
            keep_missed=settings.keep_missed, backfill=settings.backfill,
            detect_on_doubt=settings.detect_on_doubt,
            chunk_size=settings.chunk_size, offload=settings.offload,
            max_frames=settings.max_frames, render=settings.render,
            detect_fn=self._most_confident(prompt, settings),
        )  # fmt: skip

    def _most_confident(self, prompt: str, settings: TrackSettings):
        """The keyframe detector keeping the ``max_objects`` most confident boxes (or None)."""
        if settings.max_objects is None:
            return None
        from helpers.textseg import detect

        def detect_fn(image):
            found = detect.detect(
                self.detector, image, prompt, box_threshold=settings.box_threshold,
                text_threshold=settings.text_threshold,
            )  # fmt: skip
            return found[np.argsort(-np.asarray(found.confidence))[: settings.max_objects]]

        return detect_fn


class ClipSeg:
    """One coarse mask per phrase from CLIPSeg (``segment.load_clipseg``); no detector, no SAM.
    A phrase's mask is CLIPSeg's probability >= the mask threshold
    (``RouteSettings.mask_threshold_of``); its box is the mask's bounding box and its score the
    mean probability inside (``boxes_from_masks``, redone after the cleanup)."""

    route = ROUTES["clipseg"]
    step = "clipseg"

    def __init__(self, model):
        self.model = model

    def segment(self, image, phrases: list[str], settings: RouteSettings, info=None):
        from helpers.textseg import media
        from helpers.textseg.segment import clipseg_probs

        info = _info(info, image.shape[:2])
        _prompt(phrases)
        threshold = settings.mask_threshold_of(self.route.name)
        if not 0.0 <= float(threshold) <= 1.0:
            raise InputError(f"the CLIPSeg mask threshold must be in [0, 1], got {threshold}.")
        small, _ = media.fit_for_model(image, settings.max_side)
        with _timed(info, "segment"):
            probs = clipseg_probs(self.model, small, list(phrases), size=image.shape[:2])
            masks = probs >= float(threshold)
        info["probabilities"], info["phrases"] = probs, list(phrases)
        return boxes_from_masks(masks, probs, list(phrases))


class Sam3:
    """Every instance of every phrase from one SAM 3 model (``sam3.load_sam3``: its
    ``instances`` verb)."""

    route = ROUTES["sam3"]
    step = None  # one model, no steps: ``produced_by`` is "model"

    def __init__(self, seg=None, tracker=None):
        if tracker is None and not hasattr(seg, "instances"):
            raise InputError(
                "seg must come from helpers.textseg.sam3.load_sam3() or random_sam3()."
            )
        self.seg = seg
        self.tracker = tracker  # sam3_video.load_sam3_video: its ``track`` verb

    def segment(self, image, phrases: list[str], settings: RouteSettings, info=None):
        info = _info(info, image.shape[:2])
        _prompt(phrases)
        threshold = settings.mask_threshold_of(self.route.name)
        with _timed(info, "segment"):
            return self.seg.instances(
                image, list(phrases), threshold=settings.score_threshold,
                mask_threshold=threshold,
            )  # fmt: skip

    def track(self, video, phrases: list[str], settings: TrackSettings, out_dir,
              prompt: str | None = None):  # fmt: skip
        """Per-frame tracks (``track.TrackResult``): SAM 3 detects and tracks on every frame.
        ``prompt``: the text as the user typed it (else the phrases joined)."""
        joined = _prompt(phrases)
        return self.tracker.track(
            video, joined if prompt is None else prompt, out_dir, score_threshold=settings.score_threshold,
            chunk_size=settings.chunk_size, offload=settings.offload is not False,
            iou_threshold=settings.iou_threshold, max_frames=settings.max_frames,
            render=settings.render,
        )  # fmt: skip


def boxes_from_masks(masks, probs, phrases: list[str], class_ids=None):
    """``sv.Detections`` of the non-empty ``masks`` (mask k is phrase ``class_ids[k]``, by
    default k): the box is the mask's bounding box, the score its mean probability inside."""
    class_ids = list(range(len(masks))) if class_ids is None else [int(i) for i in class_ids]
    keep = [k for k in range(len(masks)) if masks[k].any()]
    xyxy = np.zeros((len(keep), 4), np.float32)
    conf = np.zeros((len(keep),), np.float32)
    for j, k in enumerate(keep):
        ys, xs = np.nonzero(masks[k])
        xyxy[j] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        conf[j] = float(probs[k][masks[k]].mean())
    H, W = masks.shape[1:]
    ids = [class_ids[k] for k in keep]
    kept = masks[keep].reshape(len(keep), H, W)
    return _detections(xyxy, kept, conf, ids, [phrases[i] for i in ids], conf)


def _detections(xyxy, masks, confidence, class_id, names, mask_scores):
    """One ``sv.Detections`` at the full size; boxes clipped to the image."""
    import supervision as sv

    H, W = masks.shape[1:]
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4).copy()
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, W)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, H)
    return sv.Detections(
        xyxy=xyxy,
        mask=np.asarray(masks).astype(bool),
        confidence=np.asarray(confidence, np.float32).reshape(-1),
        class_id=np.asarray(class_id, int).reshape(-1),
        data={
            "class_name": np.asarray(names, dtype=str),
            "mask_score": np.asarray(mask_scores, np.float32).reshape(-1).copy(),
        },
    )


def _info(info, size) -> dict:
    """What a route reports besides the detections: ``timings`` (ms per stage),
    ``model_size`` (the model-input size), ``candidates`` (SAM 2's three masks per box)."""
    info = {} if info is None else info
    info.setdefault("timings", {})
    info.setdefault("model_size", tuple(size))
    info.setdefault("candidates", None)
    return info


@contextmanager
def _timed(info: dict, stage: str):
    t0 = time.perf_counter()
    yield
    info["timings"][stage] = round((time.perf_counter() - t0) * 1000.0, 2)


def _prompt(phrases: list[str]) -> str:
    if isinstance(phrases, str) or not phrases or not all(str(p).strip() for p in phrases):
        raise InputError(
            f"phrases must be a non-empty list of words, e.g. ['dog', 'red car']; got {phrases!r}."
        )
    return ". ".join(str(p).strip() for p in phrases)
