"""The image pipeline's settings, one small frozen dataclass per concern.

``RouteSettings`` (in :mod:`helpers.textseg.routes`) is what a route reads: thresholds and the
model-input size. The steps after the route read the others: :class:`MaskChoice` (SAM 2's three
candidates per box and how one is picked), :class:`Cleanup` (holes and specks, scaled to each
object), :class:`Fallback` (what to try when the route finds nothing) and :class:`Overlay` (the
overlay's colour and opacity). :class:`ImageSettings` holds one of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helpers.textseg.routes import RouteSettings

DEFAULT_FALLBACK = ("lower-threshold", "clipseg")


@dataclass(frozen=True)
class MaskChoice:
    """How one of SAM 2's three masks per box is kept: SAM's own score (default), CLIP's
    similarity to the phrase (``clip``), or a weighted score (``weights``, a ``MaskWeights``)."""

    weights: Any = None
    clip: Any = None  # a CLIP model (segment.load_clip) or None


@dataclass(frozen=True)
class Cleanup:
    """Fill holes and drop specks below ``fraction`` of each mask's area, at least
    ``hole_floor`` / ``speck_floor`` px (model-input px on the detect-sam2 route)."""

    clean: bool = True
    fraction: float = 0.01
    hole_floor: float = 16
    speck_floor: float = 16


@dataclass(frozen=True)
class Fallback:
    """What to try, in order, when the route finds nothing (``pipeline.FALLBACK_STEPS``), and
    the CLIPSeg step's model (or a function that loads it on first need) and mask threshold."""

    steps: tuple[str, ...] = ()
    clipseg: Any = None
    mask_threshold: float = 0.4


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
