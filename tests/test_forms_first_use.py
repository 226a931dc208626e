"""The forms as a newcomer meets them: a mistyped video path costs no model download, "(first
use)" is said only when a model is really loaded, and the video form's defaults agree with the
command line's and the notebook's."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from helpers import widgets

ROOT = Path(__file__).resolve().parents[1]


class Loads:
    """Loaders that count what they load."""

    def __init__(self):
        self.loaded: list[tuple[str, str]] = []

    def detector(self, name):
        self.loaded.append(("detector", name))
        return f"det:{name}"

    def tracker(self, size):
        self.loaded.append(("tracker", size))
        return f"trk:{size}"

    def segmenter(self, size):
        self.loaded.append(("segmenter", size))
        return f"seg:{size}"


def _notes(ui) -> str:
    return "".join(
        str(o.get("data", {}).get("text/html", "")) + str(o.get("text", ""))
        for o in ui.controls["output"].outputs
    )


def _fake_track(source, prompt, detector, tracker, out_dir, **kw):
    m = np.ones((4, 4), bool)
    return SimpleNamespace(
        masks={0: {1: m}}, labels={1: "ball"}, scores={1: 0.9}, video_path=None, fps=10.0,
        num_frames=1, json_path=None,
    )  # fmt: skip


def test_a_missing_video_is_reported_before_any_model_loads(tmp_path):
    loads = Loads()
    ui = widgets.video_ui(
        _fake_track, detector_loader=loads.detector, tracker_loader=loads.tracker, out_dir=tmp_path
    )
    ui.controls["prompt"].value = "ball"
    ui.controls["video"].value = str(tmp_path / "typo.mp4")
    ui.controls["run"].click()
    assert ui.state["error"].startswith("Video not found") and "typo.mp4" in ui.state["error"]
    assert loads.loaded == []  # nothing downloaded for a typo
    assert "first use" not in _notes(ui)


def test_first_use_is_said_only_on_first_use(tmp_path, monkeypatch):
    notes: list[str] = []
    monkeypatch.setattr(widgets, "show_note", lambda out, msg: notes.append(msg))
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00")
    loads = Loads()
    ui = widgets.video_ui(
        _fake_track,
        detector_loader=loads.detector,
        tracker_loader=loads.tracker,
        out_dir=tmp_path,
        default_video=str(video),
        default_prompt="ball",
        default_size="small",
        default_detector="owlv2",
        preloaded={("detector", "owlv2"): "det:loaded", ("tracker", "small"): "trk:loaded"},
    )
    ui.controls["run"].click()  # the models the notebook loaded: reused, no note
    assert ui.state["error"] is None, ui.state["error"]
    assert loads.loaded == [] and notes == []
    ui.controls["size"].value = "tiny"  # another size: loaded once, said once
    ui.controls["run"].click()
    ui.controls["run"].click()
    assert loads.loaded == [("tracker", "tiny")]
    assert notes == ["Loading tracker 'tiny' (first use; cached afterwards)..."]


def test_image_form_reuses_preloaded_models():
    loads = Loads()
    ui = widgets.segmentation_ui(
        lambda *a, **k: None,
        detector_loader=loads.detector,
        segmenter_loader=loads.segmenter,
        preloaded={("detector", "grounding-dino-tiny"): "d", ("segmenter", "tiny"): "s"},
    )
    assert ui.cache.get("detector", "grounding-dino-tiny", log=print) == "d"
    assert loads.loaded == []


def test_detect_every_is_the_same_default_everywhere():
    from helpers import track
    from helpers.cli import build_parser

    ui_default = widgets.video_ui(lambda *a, **k: None, out_dir="/tmp").controls["detect_every"]
    fn_default = inspect.signature(track.track_video).parameters["detect_every"].default
    args = build_parser().parse_args(["track", "--video", "v.mp4", "--prompt", "x"])
    nb = json.loads((ROOT / "notebooks" / "q2_text_segmentation.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    in_notebook = {int(v) for v in re.findall(r"^DETECT_EVERY = (\d+)", code, re.M)}
    assert ui_default.value == widgets.DETECT_EVERY == fn_default == args.detect_every
    assert in_notebook == {widgets.DETECT_EVERY}
