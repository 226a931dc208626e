"""Every Q2 output option with every route: it works, or it is refused in one ``error:`` line
that names the route (never silently ignored, as --backend sam3 used to ignore --color,
--opacity, --fallback, --mask-weights and --side-by-side, and keep a fixed 64 px cleanup).

Routes: ``detect-sam2`` (Grounding DINO + SAM 2), ``clipseg`` and ``sam3``, all random-weight
models on the CPU. What follows the route is shared, so the checks are the same for all three:
the cleanup is the one scaled to each object (spied on), the overlay takes the colour, the
outputs (overlay, mask PNG, JSON with COCO RLE) are written, a folder run resumes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from helpers.textseg import pipeline, routes
from tests.textseg.test_cli_segment import FAST, _scene, run_cli

ROUTE_ARGS = {
    "detect-sam2": [*FAST],
    "clipseg": [*FAST, "--route", "clipseg", "--mask-threshold", "0"],
    "sam3": ["--backend", "sam3", "--random-weights", "--device", "cpu",
             "--score-threshold", "0", "--mask-threshold", "0"],
}  # fmt: skip
ROUTE_NAMES = list(ROUTE_ARGS)

# option -> the words that set it; every output option of `segment` is here
SEGMENT_OPTIONS = {
    "no_clean": ["--no-clean"],
    "clean_fraction": ["--clean-fraction", "0.2"],
    "clean_floor": ["--clean-floor", "5"],
    "fallback": ["--fallback", "lower-threshold"],
    "no_fallback": ["--no-fallback"],
    "multimask": ["--multimask"],
    "mask_weights": ["--mask-weights", "default"],
    "rescore": ["--rescore", "clip"],
    "color": ["--color", "red", "--opacity", "1"],
    "opacity": ["--opacity", "0"],
    "overwrite": ["--overwrite"],
    "route": ["--route", "clipseg"],
}
REFUSED = {
    "detect-sam2": set(),
    "clipseg": {"fallback", "multimask", "mask_weights", "rescore"},
    "sam3": {"fallback", "multimask", "mask_weights", "rescore", "route"},
}


def test_the_table_covers_every_output_option_of_segment():
    assert set(SEGMENT_OPTIONS) == set(routes.OUTPUT_OPTIONS["segment"])
    for name, route in routes.ROUTES.items():
        assert set(route.cannot) & set(SEGMENT_OPTIONS) == REFUSED[name]


@pytest.fixture
def scene(tmp_path):
    p = tmp_path / "scene.png"
    Image.fromarray(_scene(h=96, w=128)).save(p)
    return p


@pytest.fixture
def cleanups(monkeypatch):
    """Every call of the shared, object-scaled cleanup: (fraction, number of masks)."""
    calls = []
    real = pipeline.clean_scaled

    def spy(masks, fraction, hole_floor, speck_floor):
        calls.append((float(fraction), len(masks)))
        return real(masks, fraction, hole_floor, speck_floor)

    monkeypatch.setattr(pipeline, "clean_scaled", spy)
    return calls


def _segment(route, extra, scene, out, capsys):
    argv = ["segment", "--image", scene, "--prompt", "red square", "--out", out]
    return run_cli([*argv, *ROUTE_ARGS[route], *extra], capsys)


@pytest.mark.parametrize("option", list(SEGMENT_OPTIONS))
@pytest.mark.parametrize("route", ROUTE_NAMES)
def test_every_segment_option_works_or_is_refused_naming_the_route(
    route, option, scene, tmp_path, capsys, cleanups
):
    code, res, err = _segment(route, SEGMENT_OPTIONS[option], scene, tmp_path / "o", capsys)
    if option in REFUSED[route]:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert code == 2 and res is None, err
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert f"the {route} route" in lines[0] and SEGMENT_OPTIONS[option][0] in lines[0]
        assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
        return
    assert code == 0, err
    assert res["instances"] >= 1, res  # random weights and zero thresholds: something is found
    outs = res["outputs"]
    record = json.loads(open(outs["json"], encoding="utf-8").read())
    assert len(record["instances"]) == res["instances"]
    assert all("counts" in inst["mask"] for inst in record["instances"])  # COCO RLE
    assert Image.open(outs["mask"]).size == (128, 96) == Image.open(outs["overlay"]).size
    if option == "no_clean":
        assert cleanups == []
    else:  # the same cleanup, scaled to each object, for every route
        assert cleanups and all(n >= 1 for _, n in cleanups)
        fraction = 0.2 if option == "clean_fraction" else 0.01
        assert {f for f, _ in cleanups} == {fraction}
    overlay = np.asarray(Image.open(outs["overlay"]).convert("RGB")).astype(int)
    image = np.asarray(Image.open(scene).convert("RGB")).astype(int)
    if option == "color":  # opacity 1: the masks are painted red
        changed = np.abs(overlay - image).sum(-1) > 30
        red = (overlay[..., 0] > 200) & (overlay[..., 1] < 60) & (overlay[..., 2] < 60)
        assert changed.any() and red[changed].mean() > 0.5
    if option == "opacity":  # opacity 0 and 1 give different overlays (the masks' paint)
        code, opaque, err = _segment(route, ["--opacity", "1"], scene, tmp_path / "o1", capsys)
        assert code == 0, err
        painted = np.asarray(Image.open(opaque["outputs"]["overlay"]).convert("RGB")).astype(int)
        assert (np.abs(painted - overlay).sum(-1) > 30).mean() > 0.01


@pytest.mark.parametrize("route", ROUTE_NAMES)
def test_a_folder_run_resumes_and_overwrite_redoes_with_every_route(route, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(2):
        Image.fromarray(_scene(h=64, w=80, seed=k)).save(folder / f"s{k}.png")
    argv = ["segment", "--folder", folder, "--prompt", "red square", "--out", tmp_path / "o",
            *ROUTE_ARGS[route]]  # fmt: skip
    code, first, err = run_cli(argv, capsys)
    assert code == 0 and first["done"] == 2, err
    code, again, err = run_cli(argv, capsys)
    assert code == 0 and again["skipped"] == 2 and again["done"] == 0, err
    code, redo, err = run_cli([*argv, "--overwrite"], capsys)
    assert code == 0 and redo["skipped"] == 0 and redo["redone"] == 2, err
    code, other, err = run_cli([*argv, "--clean-fraction", "0.3"], capsys)
    assert code == 0 and other["skipped"] == 0, err  # a setting is part of the resume key


TRACK_OPTIONS = {
    "side_by_side": ["--side-by-side"],
    "no_render": ["--no-render"],
    "detect_every": ["--detect-every", "2"],
    "prompt_type": ["--prompt-type", "point"],
    "reid_threshold": ["--reid-threshold", "0.5"],
    "keep_missed": ["--keep-missed", "0s"],
    "backfill": ["--no-backfill"],
    "no_detect_on_doubt": ["--no-detect-on-doubt"],
    "max_objects": ["--max-objects", "1"],
}
VIDEO_ROUTES = {
    "detect-sam2": [*FAST],
    "sam3": ["--backend", "sam3", "--random-weights", "--device", "cpu", "--score-threshold", "0"],
}
TRACK_REFUSED = {
    "detect-sam2": set(),
    "sam3": {"detect_every", "prompt_type", "reid_threshold", "keep_missed", "backfill",
             "no_detect_on_doubt", "max_objects"},
}  # fmt: skip


def test_the_track_table_covers_every_option_a_route_may_refuse():
    assert set(TRACK_OPTIONS) == set(routes.OUTPUT_OPTIONS["track"])
    assert set(routes.ROUTES["sam3"].cannot) & set(TRACK_OPTIONS) == TRACK_REFUSED["sam3"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from helpers.textseg import media

    frames = []
    for i in range(4):
        img = np.full((64, 80, 3), (90, 160, 80), np.uint8)
        img[20:40, 5 + 6 * i : 25 + 6 * i] = (220, 40, 40)
        frames.append(img)
    return media.write_video(frames, tmp_path_factory.mktemp("v") / "clip.mp4", fps=5)


# the SAM 2 tracker's own options (detect-every, prompt type, re-id, ...) are tested with it in
# tests/textseg/test_track.py; here the options after the route, and what SAM 3 refuses
TRACK_CASES = [
    (route, option)
    for route in VIDEO_ROUTES
    for option in TRACK_OPTIONS
    if route != "detect-sam2" or option in ("side_by_side", "no_render")
]


@pytest.mark.parametrize(("route", "option"), TRACK_CASES)
def test_every_track_option_works_or_is_refused_naming_the_route(
    route, option, clip, tmp_path, capsys
):
    argv = ["track", "--video", clip, "--prompt", "red square", "--out", tmp_path / "t"]
    code, res, err = run_cli([*argv, *VIDEO_ROUTES[route], *TRACK_OPTIONS[option]], capsys)
    if option in TRACK_REFUSED[route]:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert f"the {route} route" in lines[0] and TRACK_OPTIONS[option][0] in lines[0]
        return
    assert code == 0 and res["frames"] == 4, err
    assert (res["video_path"] is None) == (option == "no_render")
    if option == "side_by_side":
        from helpers.textseg import media

        assert len(list(media.read_video_frames(res["side_by_side_path"]))) == 4
