"""The three Q2 routes from text to masks, and which of the commands' output options each honours.

A route turns (image, phrases, settings) into one ``sv.Detections`` with masks, boxes, scores
and labels: Grounding DINO / OWLv2 boxes + SAM 2.1 masks (``detect-sam2``), CLIPSeg (one coarse
mask per phrase, ``clipseg``) and SAM 3 (text to every instance in one model, ``sam3``). What
follows the route (cleanup scaled to each object, the overlay's colour and opacity, the
overlay / mask PNG / JSON with COCO RLE / MP4 outputs, folder resume keys, the side-by-side
video) is the same code for all three. An option that only makes sense for one route (the
detector fallback, choosing among SAM 2's three masks) is refused for the others with one
``error:`` line that names the route, never silently ignored.

The one verb, ``segment(image, phrases, settings) -> sv.Detections`` (masks, boxes, scores,
``class_name``), is implemented by :class:`DetectSam2`, :class:`ClipSeg` and :class:`Sam3`; it
returns the route's raw masks (no cleanup, no fallback: those are the steps after it).
"""

from __future__ import annotations

from dataclasses import dataclass

from helpers.errors import InputError


@dataclass(frozen=True)
class Route:
    """One route: its name, how a user picks it, and why it cannot honour some options."""

    name: str
    picked_by: str  # the command-line words that choose it
    cannot: dict[str, str]  # option -> why this route cannot honour it


_SAM2_CHOICE = "it picks among SAM 2's three masks per box"
ROUTES = {
    "detect-sam2": Route("detect-sam2", "--route detect-sam2", {}),
    "clipseg": Route(
        "clipseg",
        "--route clipseg",
        {
            "fallback": "the fallback runs when the detector finds nothing, and clipseg has "
            "no detector",
            "multimask": _SAM2_CHOICE + ", and clipseg has no SAM 2",
            "mask_weights": _SAM2_CHOICE + ", and clipseg has no SAM 2",
            "rescore": _SAM2_CHOICE + ", and clipseg has no SAM 2",
        },
    ),
    "sam3": Route(
        "sam3",
        "--backend sam3",
        {
            "fallback": "the fallback runs when the detector finds nothing, and SAM 3 has no "
            "separate detector",
            "multimask": _SAM2_CHOICE + ", and SAM 3 gives one mask per instance",
            "mask_weights": _SAM2_CHOICE + ", and SAM 3 gives one mask per instance",
            "rescore": _SAM2_CHOICE + ", and SAM 3 gives one mask per instance",
            "route": "--route picks the route of the SAM 2 backend",
            "detect_every": "SAM 3 detects on every frame itself",
            "prompt_type": "SAM 3 is prompted by the text alone",
            "reid_threshold": "SAM 3 keeps its objects' ids itself",
            "keep_missed": "SAM 3 keeps its objects' ids itself",
            "backfill": "SAM 3 detects on every frame itself",
            "max_objects": "SAM 3 keeps every instance above --score-threshold",
        },
    ),
}

# the segment / track options that shape the outputs or the route's work: each route honours
# them or refuses them
OUTPUT_OPTIONS = {
    "segment": (
        "no_clean",
        "clean_fraction",
        "clean_floor",
        "fallback",
        "no_fallback",
        "multimask",
        "mask_weights",
        "rescore",
        "color",
        "opacity",
        "overwrite",
        "route",
    ),
    "track": (
        "side_by_side",
        "no_render",
        "detect_every",
        "prompt_type",
        "reid_threshold",
        "keep_missed",
        "backfill",
        "max_objects",
    ),
}


def route_of(args) -> Route:
    """The route ``args`` (parsed ``segment`` / ``track`` / ``eval-masks`` options) asks for."""
    if getattr(args, "backend", "sam2") == "sam3":
        return ROUTES["sam3"]
    return ROUTES.get(getattr(args, "route", "detect-sam2"), ROUTES["detect-sam2"])


def refuse_unhonoured(route: Route, given: dict[str, object]) -> None:
    """One ``InputError`` naming ``route`` for the first option in ``given`` (option name ->
    the value the user set, options left at their default not included) that it cannot honour."""
    for name, value in given.items():
        why = route.cannot.get(name)
        if why is not None:
            flag = "--" + name.replace("_", "-")
            shown = flag if value is True else f"{flag} {value}"
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
class RouteSettings:
    """What a route needs besides the image and the phrases; each route reads its own fields."""

    box_threshold: float = 0.35  # detect-sam2: the detector's box score
    text_threshold: float = 0.25  # detect-sam2: the detector's phrase score
    multimask: bool = False  # detect-sam2: SAM 2's three masks per box, the best kept
    mask_threshold: float | None = None  # clipseg (0.4) / sam3 (0.5) when None
    score_threshold: float = 0.5  # sam3: instance score to keep
    max_side: int = 1024  # detect-sam2 / clipseg: model input long side


class DetectSam2:
    """Grounding DINO / OWLv2 boxes, then SAM 2.1 masks (``detect.load_detector`` and
    ``segment.load_segmenter`` models)."""

    route = ROUTES["detect-sam2"]

    def __init__(self, detector, segmenter):
        self.detector, self.segmenter = detector, segmenter

    def segment(self, image, phrases: list[str], settings: RouteSettings):
        from helpers.textseg import pipeline

        return pipeline.segment_image(
            image,
            _prompt(phrases),
            self.detector,
            self.segmenter,
            box_threshold=settings.box_threshold,
            text_threshold=settings.text_threshold,
            multimask=settings.multimask,
            max_side=settings.max_side,
            clean=False,
            fallback=(),
        ).detections


class ClipSeg:
    """One coarse mask per phrase from CLIPSeg (``segment.load_clipseg``); no detector, no SAM."""

    route = ROUTES["clipseg"]

    def __init__(self, model):
        self.model = model

    def segment(self, image, phrases: list[str], settings: RouteSettings):
        from helpers.textseg import pipeline

        threshold = 0.4 if settings.mask_threshold is None else settings.mask_threshold
        return pipeline.segment_image_clipseg(
            image,
            _prompt(phrases),
            self.model,
            threshold=threshold,
            max_side=settings.max_side,
            clean=False,
        ).detections


class Sam3:
    """Every instance of every phrase from one SAM 3 model (``sam3.load_sam3``)."""

    route = ROUTES["sam3"]

    def __init__(self, seg):
        self.seg = seg

    def segment(self, image, phrases: list[str], settings: RouteSettings):
        from helpers.textseg import sam3

        threshold = 0.5 if settings.mask_threshold is None else settings.mask_threshold
        return sam3.segment_image_sam3(
            image,
            _prompt(phrases),
            self.seg,
            threshold=settings.score_threshold,
            mask_threshold=threshold,
            clean=False,
        ).detections


def _prompt(phrases: list[str]) -> str:
    if isinstance(phrases, str) or not phrases or not all(str(p).strip() for p in phrases):
        raise InputError(
            f"phrases must be a non-empty list of words, e.g. ['dog', 'red car']; got {phrases!r}."
        )
    return ". ".join(str(p).strip() for p in phrases)
