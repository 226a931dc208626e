"""Every option of ``segment`` and ``track`` with every route: applied, or refused in one
``error:`` line that names the route before any model loads; never accepted and ignored (as
--backend sam3 used to ignore --color, --opacity, --fallback, --mask-weights, --side-by-side,
--max-side and the detector's thresholds, and clipseg the detector's and SAM 2's flags).

Applied means the run differs from the same route's run without the option: in what the route
works from (its models and the settings fields it reads, caught where the route is called) or
in its outputs (mask and overlay PNGs). Routes: ``detect-sam2`` (Grounding DINO + SAM 2),
``clipseg`` and ``sam3``, all random-weight models on the CPU.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from helpers.textseg import commands as cli_segment
from helpers.textseg import pipeline, routes, sam3_commands
from tests.textseg.test_cli_segment import FAST, _scene, run_cli

CPU = ["--random-weights", "--device", "cpu"]
ROUTE_ARGS = {
    "detect-sam2": [*FAST],
    "clipseg": [*CPU, "--route", "clipseg", "--mask-threshold", "0"],
    "sam3": ["--backend", "sam3", *CPU, "--score-threshold", "0", "--mask-threshold", "0"],
}
ROUTE_NAMES = list(ROUTE_ARGS)

# option -> the words that set it: the model options both commands have, then each command's own
MODEL_OPTIONS = {
    "detector": ["--detector", "owlv2", "--text-threshold", "0.25"],  # OWLv2 has no text score
    "size": ["--size", "small"],
    "image_size": ["--image-size", "256"],
    "box_threshold": ["--box-threshold", "0.9"],
    "text_threshold": ["--text-threshold", "0.9"],
    "score_threshold": ["--score-threshold", "0.9"],
}
# every route-dependent option of `segment` is here
SEGMENT_OPTIONS = {
    **MODEL_OPTIONS,
    "mask_threshold": ["--mask-threshold", "0.7"],
    "max_side": ["--max-side", "64"],
    "multimask": ["--multimask"],
    "rescore": ["--rescore", "clip"],
    "mask_weights": ["--mask-weights", "default"],
    "fallback": ["--fallback", "lower-threshold"],
    "no_fallback": ["--no-fallback"],
    "no_clean": ["--no-clean"],
    "clean_fraction": ["--clean-fraction", "0.2"],
    "clean_floor": ["--clean-floor", "500"],
    "color": ["--color", "red", "--opacity", "1"],
    "opacity": ["--opacity", "0"],
    "overwrite": ["--overwrite"],
    "route": ["--route", "clipseg"],
}
_DETECTOR_AND_SAM2 = {"detector", "size", "image_size", "box_threshold", "text_threshold"}
_SAM2_CHOICE = {"fallback", "no_fallback", "multimask", "mask_weights", "rescore"}
REFUSED = {
    "detect-sam2": {"score_threshold"},
    "clipseg": {*_DETECTOR_AND_SAM2, *_SAM2_CHOICE, "score_threshold"},
    "sam3": {*_DETECTOR_AND_SAM2, *_SAM2_CHOICE, "max_side", "route"},
}
FOLDER_ONLY = {"overwrite"}  # refused with --image on every route; see the folder test below

# what each route works from: its models and the settings fields it reads (dotted paths into
# ImageSettings; the cleanup after the route is read for every route)
MODELS = {
    "DetectSam2": lambda r: (r.detector.kind, r.segmenter.size, r.segmenter.image_size),
    "ClipSeg": lambda r: (r.model.name,),
    "Sam3": lambda r: (r.seg.name,),
}
READS = {
    "DetectSam2": ("route.box_threshold", "route.text_threshold", "route.multimask",
                   "route.max_side", "route.nms_iou", "choice.weights", "choice.clip",
                   "fallback.steps", "fallback.mask_threshold"),
    "ClipSeg": ("route.mask_threshold", "route.max_side"),
    "Sam3": ("route.score_threshold", "route.mask_threshold"),
}  # fmt: skip
CLEANUP = ("cleanup.clean", "cleanup.fraction", "cleanup.hole_floor", "cleanup.speck_floor")


def _field(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return getattr(obj, "name", obj) if hasattr(obj, "model") else obj  # a model: its name


def _worked_from(route, settings) -> dict:
    kind = type(route).__name__
    return {
        "route": kind,
        "models": MODELS[kind](route),
        **{f: _field(settings, f) for f in (*READS[kind], *CLEANUP)},
    }


def _digest(path) -> str:
    return hashlib.sha256(np.asarray(Image.open(path)).tobytes()).hexdigest()


def test_the_table_covers_every_option_of_segment_and_track():
    from helpers.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    for command, options in routes.OPTIONS.items():
        dests = {a.dest for a in sub[command]._actions if a.dest != "help"}
        assert dests == set(options) | (set(routes.EVERY_ROUTE) & dests), command
    assert set(SEGMENT_OPTIONS) == set(routes.SEGMENT_OPTIONS)
    for name, route in routes.ROUTES.items():
        assert set(SEGMENT_OPTIONS) - route.honours == REFUSED[name], name
        assert route.honours.isdisjoint(route.cannot) and all(route.cannot.values())


@pytest.fixture
def scene(tmp_path):
    p = tmp_path / "scene.png"
    Image.fromarray(_scene(h=96, w=128)).save(p)
    return p


@pytest.fixture
def cleanups(monkeypatch):
    """Every call of the shared, object-scaled cleanup: (fraction, floors, number of masks)."""
    calls = []
    real = pipeline.clean_scaled

    def spy(masks, fraction, hole_floor, speck_floor):
        calls.append((float(fraction), (float(hole_floor), float(speck_floor)), len(masks)))
        return real(masks, fraction, hole_floor, speck_floor)

    monkeypatch.setattr(pipeline, "clean_scaled", spy)
    return calls


@pytest.fixture
def seen(monkeypatch):
    """What the last run's route worked from (caught where ``run_route`` is called)."""
    found = {}
    real = pipeline.run_route

    def spy(route, image, prompt, settings):  # the first call: the clipseg fallback is another
        found.setdefault("worked_from", _worked_from(route, settings))
        return real(route, image, prompt, settings)

    monkeypatch.setattr(pipeline, "run_route", spy)
    return found


@pytest.fixture
def no_models(monkeypatch):
    """Loading a model fails the test: a refusal must come before any."""

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(cli_segment, "load_models", boom)
    monkeypatch.setattr(sam3_commands, "_segmenter", boom)
    monkeypatch.setattr(sam3_commands, "_tracker", boom)


def _segment(route, extra, scene, out, capsys, base=None):
    argv = ["segment", "--image", scene, "--prompt", "red square", "--out", out]
    return run_cli([*argv, *(ROUTE_ARGS[route] if base is None else base), *extra], capsys)


def _one_refusal(code, res, err, *needles):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and res is None, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


_BASELINES: dict[str, dict] = {}  # route -> what its run without any option worked from / wrote


def _run_and_record(route, extra, scene, out, capsys, seen, base=None) -> dict:
    seen.clear()
    code, res, err = _segment(route, extra, scene, out, capsys, base)
    assert code == 0, err
    outs = res["outputs"]
    record = json.loads(open(outs["json"], encoding="utf-8").read())
    assert len(record["instances"]) == res["instances"]
    assert all("counts" in inst["mask"] for inst in record["instances"])  # COCO RLE
    assert Image.open(outs["mask"]).size == (128, 96) == Image.open(outs["overlay"]).size
    return {
        **seen["worked_from"],
        "mask": _digest(outs["mask"]),
        "overlay": _digest(outs["overlay"]),
        "res": res,
    }


def _baseline(route, scene, tmp_path, capsys, seen) -> dict:
    if route not in _BASELINES:
        _BASELINES[route] = _run_and_record(route, [], scene, tmp_path / "base", capsys, seen)
    return _BASELINES[route]


def _without_res(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "res"}


@pytest.mark.parametrize("option", list(SEGMENT_OPTIONS))
@pytest.mark.parametrize("route", ROUTE_NAMES)
def test_every_segment_option_is_applied_or_refused_naming_the_route(
    route, option, scene, tmp_path, capsys, monkeypatch, request
):
    words = SEGMENT_OPTIONS[option]
    if option in REFUSED[route] or option in FOLDER_ONLY:
        request.getfixturevalue("no_models")
        code, res, err = _segment(route, words, scene, tmp_path / "o", capsys)
        needles = (words[0],) if option in FOLDER_ONLY else (f"the {route} route", words[0])
        _one_refusal(code, res, err, *needles)
        assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
        return
    seen = request.getfixturevalue("seen")
    cleanups = request.getfixturevalue("cleanups")
    if option == "route":  # the option that picks the route: clipseg instead of detect-sam2
        plain = _run_and_record(route, [], scene, tmp_path / "p", capsys, seen, base=CPU)
        picked = _run_and_record(route, words, scene, tmp_path / "o", capsys, seen, base=CPU)
        assert (plain["route"], picked["route"]) == ("DetectSam2", "ClipSeg")
        return
    base = _baseline(route, scene, tmp_path, capsys, seen)
    cleanups.clear()
    run = _run_and_record(route, words, scene, tmp_path / "o", capsys, seen)
    assert _without_res(run) != _without_res(base), f"{words} changed nothing on {route}"
    if option == "no_clean":
        assert cleanups == []
    elif run["res"]["instances"]:  # the same cleanup, scaled to each object, on every route
        fraction = 0.2 if option == "clean_fraction" else 0.01
        floors = (500.0, 500.0) if option == "clean_floor" else (16.0, 16.0)  # full-size px
        assert {(f, fl) for f, fl, _ in cleanups} == {(fraction, floors)}
    if option == "color":  # opacity 1: the masks are painted red
        overlay = np.asarray(Image.open(run["res"]["outputs"]["overlay"]).convert("RGB"))
        image = np.asarray(Image.open(scene).convert("RGB")).astype(int)
        changed = np.abs(overlay.astype(int) - image).sum(-1) > 30
        red = (overlay[..., 0] > 200) & (overlay[..., 1] < 60) & (overlay[..., 2] < 60)
        assert changed.any() and red[changed].mean() > 0.5


# options that another option (or the input) leaves nothing to do: refused the same way
MOOT = [
    (["--no-clean", "--clean-floor", "5"], "--clean-floor"),
    (["--no-clean", "--clean-fraction", "0.2"], "--clean-fraction"),
    (["--no-fallback", "--fallback", "clipseg"], "--fallback"),
    (["--no-fallback", "--mask-threshold", "0.3"], "--mask-threshold"),
    (["--fallback", "lower-threshold", "--mask-threshold", "0.3"], "--mask-threshold"),
    (["--detector", "owlv2", "--text-threshold", "0.3"], "--text-threshold"),
    (["--detector", "grounding-dino-base"], "--detector"),  # with --random-weights
    (["--overwrite"], "--overwrite"),  # with --image
]


@pytest.mark.parametrize(("words", "flag"), MOOT)
def test_an_option_left_nothing_to_do_is_refused(words, flag, scene, tmp_path, capsys, no_models):
    argv = ["segment", "--image", scene, "--prompt", "red square", "--out", tmp_path / "o"]
    code, res, err = run_cli([*argv, *CPU, *words], capsys)
    _one_refusal(code, res, err, flag)


def test_mask_weights_default_on_a_folder(tmp_path, capsys):
    """``--mask-weights default`` on a folder: each image's JSON records the weights as numbers
    (once "MaskWeights is not JSON serializable" failed every image), and a rerun resumes."""
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(2):
        Image.fromarray(_scene(h=64, w=80, seed=k)).save(folder / f"s{k}.png")
    argv = ["segment", "--folder", folder, "--prompt", "red square", "--out", tmp_path / "o",
            *FAST, "--mask-weights", "default"]  # fmt: skip
    code, first, err = run_cli(argv, capsys)
    assert code == 0 and first["done"] == 2 and first["failed"] == [], err
    doc = json.loads((tmp_path / "o" / "s0.json").read_text(encoding="utf-8"))
    assert doc["settings"]["mask_weights"] == {
        "sam": 1.0,
        "clip": 0.0,
        "compact": 0.25,
        "box": 0.25,
    }
    assert len(doc["mask_choice"]) == doc["num_instances"]
    code, again, err = run_cli(argv, capsys)
    assert code == 0 and again["skipped"] == 2, err


@pytest.mark.parametrize("route_class", [routes.DetectSam2, routes.ClipSeg, routes.Sam3])
def test_clean_floor_counts_full_size_pixels_on_every_route(route_class):
    """``--clean-floor`` is in pixels of the full-size image (the masks' own) whatever the
    model-input size: a 30 px speck goes with a floor of 31 and stays with 29, on every route
    (detect-sam2 once counted model-input pixels: 16 times more here)."""
    import supervision as sv

    from helpers.textseg.image_settings import Cleanup, Fallback, ImageSettings

    mask = np.zeros((1, 256, 256), bool)
    mask[0, 40:200, 40:200] = True  # the object
    mask[0, 220:226, 220:225] = True  # a 30 px speck apart from it

    class Seen(route_class):  # the route, its model having seen a 64x64 copy of the image
        def __init__(self):
            pass

        def segment(self, image, phrases, settings, info):
            info.update(timings={}, model_size=(64, 64), candidates=None)
            return sv.Detections(
                xyxy=np.array([[40, 40, 226, 226]], np.float32), mask=mask.copy(),
                confidence=np.ones(1, np.float32), class_id=np.zeros(1, int),
                data={"class_name": np.array(["x"]), "mask_score": np.ones(1, np.float32)},
            )  # fmt: skip

    image = np.zeros((256, 256, 3), np.uint8)
    for floor, speck_kept in ((31, False), (29, True)):
        cleanup = Cleanup(True, 0.0, floor, floor)  # fraction 0: the floors alone
        settings = ImageSettings(cleanup=cleanup, fallback=Fallback(steps=()))
        got = pipeline.run_route(Seen(), image, "x", settings).detections.mask[0]
        assert bool(got[220:226, 220:225].any()) == speck_kept, floor
        assert got[40:200, 40:200].all()


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


# --------------------------------------------------------------------------- track

TRACK_OPTIONS = {
    **MODEL_OPTIONS,
    "iou_threshold": ["--iou-threshold", "0.3"],
    "chunk_size": ["--chunk-size", "2"],
    "max_frames": ["--max-frames", "2"],
    "offload": ["--offload"],
    "no_offload": ["--no-offload"],
    "no_render": ["--no-render"],
    "side_by_side": ["--side-by-side"],
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
    "sam3": ["--backend", "sam3", *CPU, "--score-threshold", "0"],
}
_SAM2_TRACKER = {"detect_every", "prompt_type", "reid_threshold", "keep_missed", "backfill",
                 "no_detect_on_doubt", "max_objects"}  # fmt: skip
TRACK_REFUSED = {
    "detect-sam2": {"score_threshold"},
    "sam3": {*_DETECTOR_AND_SAM2, *_SAM2_TRACKER, "offload"},
}
_ALL_TRACK = ("box_threshold", "text_threshold", "iou_threshold", "chunk_size", "offload",
              "max_frames", "render", "detect_every", "prompt_type", "reid_threshold",
              "keep_missed", "backfill", "detect_on_doubt", "max_objects")  # fmt: skip
TRACK_READS = {  # the TrackSettings fields each route's track verb reads, as it reads them
    "DetectSam2": {f: (lambda s, f=f: getattr(s, f)) for f in _ALL_TRACK},
    "Sam3": {"score_threshold": lambda s: s.score_threshold,
             "iou_threshold": lambda s: s.iou_threshold, "chunk_size": lambda s: s.chunk_size,
             "offload": lambda s: s.offload is not False, "max_frames": lambda s: s.max_frames,
             "render": lambda s: s.render},
}  # fmt: skip
TRACK_MODELS = {
    "DetectSam2": lambda r: (r.detector.kind, r.tracker.size,
                             getattr(r.tracker.predictor, "image_size", None)),
    "Sam3": lambda r: (r.tracker.name,),
}  # fmt: skip


def test_the_track_table_matches_the_routes():
    assert set(TRACK_OPTIONS) == set(routes.TRACK_OPTIONS)
    for name in VIDEO_ROUTES:
        assert set(TRACK_OPTIONS) - routes.ROUTES[name].honours == TRACK_REFUSED[name], name


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from helpers.textseg import media

    frames = []
    for i in range(4):
        img = np.full((64, 80, 3), (90, 160, 80), np.uint8)
        img[20:40, 5 + 6 * i : 25 + 6 * i] = (220, 40, 40)
        frames.append(img)
    return media.write_video(frames, tmp_path_factory.mktemp("v") / "clip.mp4", fps=5)


class _Caught(Exception):
    """Raised where the route's track verb is called: what it was given is enough here."""


@pytest.fixture
def tracked_with(monkeypatch):
    """What the route's ``track`` verb is given (its models, the fields it reads); it is not
    run (the output options after it are run for real below)."""
    found = {}

    def catch(self, video, phrases, settings, out_dir, prompt=None):
        kind = type(self).__name__
        found["worked_from"] = {
            "route": kind,
            "models": TRACK_MODELS[kind](self),
            **{f: read(settings) for f, read in TRACK_READS[kind].items()},
        }
        raise _Caught

    monkeypatch.setattr(routes.DetectSam2, "track", catch)
    monkeypatch.setattr(routes.Sam3, "track", catch)
    return found


_TRACK_BASELINES: dict[str, dict] = {}


def _track_worked_from(route, extra, clip, out, tracked_with) -> dict:
    from helpers import cli

    tracked_with.clear()
    argv = ["track", "--video", clip, "--prompt", "red square", "--out", out]
    with pytest.raises(_Caught):
        cli.main([str(a) for a in [*argv, *VIDEO_ROUTES[route], *extra]])
    return tracked_with["worked_from"]


@pytest.mark.parametrize("option", [o for o in TRACK_OPTIONS if o != "side_by_side"])
@pytest.mark.parametrize("route", list(VIDEO_ROUTES))
def test_every_track_option_is_applied_or_refused_naming_the_route(
    route, option, clip, tmp_path, capsys, request
):
    words = TRACK_OPTIONS[option]
    if option in TRACK_REFUSED[route]:
        request.getfixturevalue("no_models")
        argv = ["track", "--video", clip, "--prompt", "red square", "--out", tmp_path / "t"]
        code, res, err = run_cli([*argv, *VIDEO_ROUTES[route], *words], capsys)
        _one_refusal(code, res, err, f"the {route} route", words[0])
        return
    tracked_with = request.getfixturevalue("tracked_with")
    if route not in _TRACK_BASELINES:
        _TRACK_BASELINES[route] = _track_worked_from(route, [], clip, tmp_path / "b", tracked_with)
    got = _track_worked_from(route, words, clip, tmp_path / "t", tracked_with)
    capsys.readouterr()
    assert got != _TRACK_BASELINES[route], f"{words} changed nothing on {route}"


def test_offload_and_no_offload_together_are_refused(clip, tmp_path, capsys, no_models):
    argv = ["track", "--video", clip, "--prompt", "red square", "--out", tmp_path / "t", *FAST]
    code, res, err = run_cli([*argv, "--offload", "--no-offload"], capsys)
    _one_refusal(code, res, err, "--offload", "--no-offload")


# the output options after the route, run for real: the annotated MP4 and the side-by-side one
TRACK_CASES = [
    (route, option) for route in VIDEO_ROUTES for option in ("side_by_side", "no_render")
]


@pytest.mark.parametrize(("route", "option"), TRACK_CASES)
def test_the_track_outputs_options_work_with_every_route(route, option, clip, tmp_path, capsys):
    argv = ["track", "--video", clip, "--prompt", "red square", "--out", tmp_path / "t"]
    code, res, err = run_cli([*argv, *VIDEO_ROUTES[route], *TRACK_OPTIONS[option]], capsys)
    assert code == 0 and res["frames"] == 4, err
    assert (res["video_path"] is None) == (option == "no_render")
    if option == "side_by_side":
        from helpers.textseg import media

        assert len(list(media.read_video_frames(res["side_by_side_path"]))) == 4
    else:
        assert "side_by_side_path" not in res
