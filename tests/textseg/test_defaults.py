"""Q2's defaults live in the settings dataclasses (``image_settings``, ``routes.TrackSettings``):
the commands, the forms, the Q2 notebook's form fields and the functions' keywords all agree
with them, and no threshold is written as a literal anywhere else in the wing."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from helpers.textseg import detect, pipeline, sam3, sam3_video, segment, track, widgets
from helpers.textseg.image_settings import (
    Cleanup,
    Fallback,
    ImageSettings,
    Overlay,
    RouteSettings,
)
from helpers.textseg.routes import TrackSettings

ROOT = Path(__file__).resolve().parents[2]
R, T = RouteSettings(), TrackSettings()


def _parse(*argv):
    from helpers.cli import build_parser

    return build_parser().parse_args(list(argv))


def test_the_command_line_defaults_are_the_dataclasses():
    s = _parse("segment", "--image", "x.png", "--prompt", "dog")
    assert (s.box_threshold, s.text_threshold, s.score_threshold, s.max_side) == (
        R.box_threshold, R.text_threshold, R.score_threshold, R.max_side,
    )  # fmt: skip
    assert s.mask_threshold is R.mask_threshold is None  # each route's own: MASK_THRESHOLDS
    assert s.multimask == R.multimask and s.mask_weights is None
    assert pipeline.check_fallback(s.fallback) == Fallback.steps and not s.no_fallback
    assert (not s.no_clean, s.clean_fraction) == (Cleanup.clean, Cleanup.fraction)
    assert s.clean_floor == Cleanup.hole_floor == Cleanup.speck_floor
    assert (s.color, s.opacity) == (Overlay.color, Overlay.opacity)
    t = _parse("track", "--video", "v.mp4", "--prompt", "dog")
    for name in ("box_threshold", "text_threshold", "score_threshold", "iou_threshold",
                 "chunk_size", "detect_every", "prompt_type", "reid_threshold", "keep_missed",
                 "backfill", "max_frames", "max_objects"):  # fmt: skip
        assert getattr(t, name) == getattr(T, name), name
    assert (not t.no_render, not t.no_detect_on_doubt) == (T.render, T.detect_on_doubt)
    assert T.offload is None and not t.offload and not t.no_offload  # offload when needed
    e = _parse("eval-masks", "--pred", "p", "--gt", "g")
    assert (e.box_threshold, e.text_threshold) == (R.box_threshold, R.text_threshold)


def test_the_help_says_the_defaults():
    from helpers.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    helps = {a.dest: a.help for a in sub["segment"]._actions}
    for name, value in (("box_threshold", R.box_threshold), ("text_threshold", R.text_threshold),
                        ("score_threshold", R.score_threshold), ("max_side", R.max_side),
                        ("clean_fraction", Cleanup.fraction), ("clean_floor", Cleanup.hole_floor),
                        ("opacity", Overlay.opacity)):  # fmt: skip
        assert f"{value:g}" in helps[name], name
    for value in RouteSettings.MASK_THRESHOLDS.values():
        assert f"{value:g}" in helps["mask_threshold"]
    assert "full-size" in helps["clean_floor"]


def test_the_forms_start_at_the_dataclasses():
    img = widgets.segmentation_ui(lambda *a, **k: None).controls
    assert img["box_threshold"].value == pytest.approx(R.box_threshold)
    assert img["text_threshold"].value == pytest.approx(R.text_threshold)
    assert img["multimask"].value == R.multimask
    assert img["fallback"].value == bool(Fallback.steps)
    assert img["opacity"].value == pytest.approx(Overlay.opacity)
    assert img["one_color"].value == (Overlay.color != "auto")
    assert img["mask_weights"].value == ""  # SAM's own score: MaskChoice().weights is None
    vid = widgets.video_ui(lambda *a, **k: None, out_dir="/tmp").controls
    assert vid["box_threshold"].value == pytest.approx(T.box_threshold)
    assert vid["detect_every"].value == T.detect_every
    assert vid["prompt_type"].value == T.prompt_type
    assert vid["keep_missed"].value == T.keep_missed
    assert vid["detect_on_doubt"].value == T.detect_on_doubt


def _notebook_params() -> dict[str, object]:
    """``NAME = value  # @param ...`` of the Q2 notebook's code cells, the values evaluated."""
    import json

    nb = json.loads((ROOT / "notebooks" / "q2_text_segmentation.ipynb").read_text("utf-8"))
    found: dict[str, object] = {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for line in "".join(cell["source"]).splitlines():
            m = re.match(r"^([A-Z0-9_]+) = (.+?)\s+# @param", line)
            if m:
                found.setdefault(m.group(1), ast.literal_eval(m.group(2)))
    return found


def test_the_notebook_forms_start_at_the_dataclasses():
    nb = _notebook_params()
    assert nb["BOX_THRESHOLD"] == R.box_threshold and nb["TEXT_THRESHOLD"] == R.text_threshold
    assert nb["FALLBACK"] == bool(Fallback.steps)
    assert nb["OVERLAY_COLOR"] == Overlay.color and nb["OVERLAY_OPACITY"] == Overlay.opacity
    assert nb["DETECT_EVERY"] == T.detect_every and nb["KEEP_MISSED"] == T.keep_missed
    assert nb["SAM3_SCORE_THRESHOLD"] == R.score_threshold
    # the notebook shows the weighted mask choice at its default weights
    assert segment.parse_weights(nb["MASK_WEIGHTS"]) == segment.MaskWeights()


def _defaults(fn) -> dict[str, object]:
    return {
        n: p.default
        for n, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_the_functions_keywords_are_the_dataclasses():
    """``ImageSettings()`` and ``segment_image`` agree (the fallback included), and every door's
    keywords are the dataclasses' defaults (SAM 3's image door cleans as the others do)."""
    assert pipeline.image_settings() == ImageSettings()
    assert ImageSettings().fallback.steps == Fallback.steps == pipeline.DEFAULT_FALLBACK
    image_kw = {
        "box_threshold": R.box_threshold, "text_threshold": R.text_threshold,
        "multimask": R.multimask, "max_side": R.max_side, "nms_iou": R.nms_iou,
        "clean": Cleanup.clean, "clean_fraction": Cleanup.fraction,
        "min_hole_area": Cleanup.hole_floor, "min_sprinkle_area": Cleanup.speck_floor,
        "mask_threshold": Fallback.mask_threshold, "fallback": Fallback.steps,
    }  # fmt: skip
    for fn in (pipeline.segment_image, pipeline.image_settings):
        got = _defaults(fn)
        assert {k: got[k] for k in image_kw} == image_kw, fn.__name__
    cleanup_kw = {k: image_kw[k] for k in ("clean", "clean_fraction", "min_hole_area",
                                           "min_sprinkle_area")}  # fmt: skip
    for fn, threshold in ((pipeline.segment_image_clipseg, "clipseg"),
                          (sam3.segment_image_sam3, "sam3")):  # fmt: skip
        got = _defaults(fn)
        assert {k: got[k] for k in cleanup_kw} == cleanup_kw, fn.__name__
        key = "threshold" if threshold == "clipseg" else "mask_threshold"
        assert got[key] == RouteSettings.MASK_THRESHOLDS[threshold], fn.__name__
    assert _defaults(sam3.segment_image_sam3)["threshold"] == R.score_threshold
    for fn in (sam3.instances, sam3.predict, sam3.Sam3Segmenter.instances):
        got = _defaults(fn)
        assert (got["threshold"], got["mask_threshold"]) == (
            R.score_threshold, RouteSettings.MASK_THRESHOLDS["sam3"],
        ), fn  # fmt: skip
    got = _defaults(detect.detect)
    assert (got["box_threshold"], got["text_threshold"], got["nms_iou"], got["max_side"]) == (
        R.box_threshold, R.text_threshold, R.nms_iou, R.max_side,
    )  # fmt: skip
    assert _defaults(sam3_video.Sam3VideoTracker.track)["score_threshold"] == T.score_threshold
    got = _defaults(track.track_video)
    for name in ("box_threshold", "text_threshold", "iou_threshold", "reid_threshold",
                 "detect_every", "prompt_type", "keep_missed", "chunk_size"):  # fmt: skip
        assert got[name] == getattr(T, name), name


# a threshold given a number as its default (a keyword or a field), e.g. ``box_threshold=0.35``
_LITERAL = re.compile(r"\b(box|text|score|mask)_threshold\s*(:[^=\n]*)?=\s*[0-9.]+\b")
# where the defaults are written; track.py's keywords are compared by value above
_WHERE_DEFAULTS_LIVE = {"image_settings.py", "track.py"}


def test_no_threshold_literal_outside_the_settings():
    wing = ROOT / "helpers" / "textseg"
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(wing.glob("*.py"))
        if path.name not in _WHERE_DEFAULTS_LIVE
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if _LITERAL.search(line)
    ]
    assert found == []
