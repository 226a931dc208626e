"""The image pipeline's settings, one small frozen dataclass per concern, and the one place
their defaults are written (the commands, the forms and the notebook read or match them).

:class:`RouteSettings` is what a route reads: thresholds and the model-input size. The steps
after the route read the others: :class:`MaskChoice` (SAM 2's three candidates per box and how
one is picked), :class:`Cleanup` (holes and specks, scaled to each object), :class:`Fallback`
(what to try when the detector finds nothing) and :class:`Overlay` (the overlay's colour and
opacity). :class:`ImageSettings` holds one of each but the overlay. The video's settings,
``routes.TrackSettings``, take their shared thresholds from :class:`RouteSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

DEFAULT_FALLBACK = ("lower-threshold", "clipseg")


@dataclass(frozen=True)
class RouteSettings:
    """What a route needs besides the image and the phrases; each route reads its own fields."""

    box_threshold: float = 0.35  # detect-sam2: the detector's box score
    text_threshold: float = 0.25  # detect-sam2: the detector's phrase score
    multimask: bool = False  # detect-sam2: SAM 2's three masks per box, the best kept
    mask_threshold: float | None = None  # clipseg / sam3: None is the route's own default
    score_threshold: float = 0.5  # sam3: instance score to keep
    max_side: int = 1024  # detect-sam2 / clipseg: model input long side
    nms_iou: float = 0.5  # detect-sam2: overlapping boxes of one phrase merged above this IoU

    # the probability a pixel needs when ``mask_threshold`` is None, per route
    MASK_THRESHOLDS: ClassVar = MappingProxyType({"clipseg": 0.4, "sam3": 0.5})

    def mask_threshold_of(self, route: str) -> float:
        """The mask threshold ``route`` (``"clipseg"`` / ``"sam3"``) uses with these settings."""
        if self.mask_threshold is None:
            return self.MASK_THRESHOLDS[route]
        return self.mask_threshold


@dataclass(frozen=True)
class MaskChoice:
    """How one of SAM 2's three masks per box is kept: SAM's own score (default), CLIP's
    similarity to the phrase (``clip``), or a weighted score (``weights``, a ``MaskWeights``)."""

    weights: Any = None
    clip: Any = None  # a CLIP model (segment.load_clip) or None


@dataclass(frozen=True)
class Cleanup:
    """Fill holes and drop specks below ``fraction`` of each mask's area, at least
    ``hole_floor`` / ``speck_floor`` px of the full-size image (the same on every route)."""

    clean: bool = True
    fraction: float = 0.01
    hole_floor: float = 16
    speck_floor: float = 16


@dataclass(frozen=True)
class Fallback:
    """What to try, in order, when the detector finds nothing (``pipeline.FALLBACK_STEPS``; only
    the detect-sam2 route has a detector), and the CLIPSeg step's model (or a function that
    loads it on first need) and mask threshold."""

    steps: tuple[str, ...] = DEFAULT_FALLBACK
    clipseg: Any = None
    mask_threshold: float = RouteSettings.MASK_THRESHOLDS["clipseg"]


@dataclass(frozen=True)
class Overlay:
    """The overlay PNG's / MP4's paint: ``"auto"`` (a colour per id) or one colour; opacity."""

    color: Any = "auto"
    opacity: float = 0.5


@dataclass(frozen=True)
class ImageSettings:
    route: RouteSettings = field(default_factory=RouteSettings)
    choice: MaskChoice = field(default_factory=MaskChoice)
    cleanup: Cleanup = field(default_factory=Cleanup)
    fallback: Fallback = field(default_factory=Fallback)
