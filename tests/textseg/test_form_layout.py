"""The forms' small things a user notices: a stage beside the image run's bar (never an empty bar
next to "working..."), the video run's progress in words (no second, text-drawn bar), checkboxes
in line with their row, and a large result video shown as a link instead of being pushed
through the widget channel."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
from PIL import Image

from helpers.textseg import widgets


def _png(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(path)
    return path


def test_progress_in_words_has_no_text_bar():
    from tqdm.std import tqdm

    # a tqdm bar's own state (format_dict), as the form's bar sees it while a video is tracked
    bar = tqdm(total=30, desc="tracking", unit="frame", file=io.StringIO(), disable=False)
    state = {**bar.format_dict, "n": 12, "elapsed": 4.0}
    bar.close()
    words = widgets.progress_words(state)
    assert words == "tracking: 12/30 frame, 3.0/s, 6 s left"
    assert not set(words) & set("█▏▎▍▌▋▊▉|#")  # the form draws the bar; the words do not
    assert widgets.progress_words({"n": 5, "total": None, "prefix": "decoding"}) == "decoding: 5"


def test_image_run_shows_its_stage(tmp_path):
    seen = {}
    ui = None

    def run(image, prompt, *a, **k):
        seen["status"] = ui.controls["status"].value
        seen["bar"] = (ui.controls["progress"].value, ui.controls["progress"].max)
        raise widgets.InputError("stop here")

    ui = widgets.segmentation_ui(run, detector_loader=str, segmenter_loader=str)
    ui.controls["prompt"].value, ui.controls["url"].value = "ball", str(_png(tmp_path))
    ui.controls["run"].click()
    assert seen["status"] == "detecting and segmenting..." and seen["bar"] == (2, 3)


def test_checkboxes_sit_in_line_with_their_row():
    import ipywidgets as w

    ui = widgets.segmentation_ui(lambda *a, **k: None, detector_loader=str)
    for name in ("multimask", "fallback", "one_color"):
        box = ui.controls[name]
        assert box.indent is False and box.layout.width == "auto", name
    # the colour picker's own label and swatch centred on each other (measured in a browser by
    # tests/browser: the label sat 5 px low without it)
    assert ui.controls["color"].layout.align_items == "center"
    rows = [c for c in ui.children if isinstance(c, w.HBox)]
    assert rows and all(r.layout.align_items == "center" for r in rows)
    assert all(r.layout.justify_content == "flex-start" for r in rows)


def test_a_large_video_is_a_link_not_an_upload_through_the_widget(tmp_path):
    small = tmp_path / "small.mp4"
    small.write_bytes(b"\x00" * 100)
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\x00" * 5000)
    shown = widgets.video_display(small, limit=1000)
    assert "base64" in shown._repr_html_()
    shown = widgets.video_display(big, limit=1000)
    html = shown._repr_html_() if hasattr(shown, "_repr_html_") else shown.data
    assert "too large to play inside the form" in html and "base64" not in html
    assert str(big) in html


def test_video_form_sends_no_large_video_through_the_channel(tmp_path, monkeypatch):
    monkeypatch.setattr(widgets, "EMBED_LIMIT_BYTES", 1000)
    monkeypatch.setattr(widgets.video_display, "__defaults__", (640, 1000))
    video = tmp_path / "in.mp4"
    video.write_bytes(b"\x00")
    out_mp4 = tmp_path / "tracked.mp4"
    out_mp4.write_bytes(b"\x00" * 5000)
    m = np.ones((4, 4), bool)

    def fake_track(*a, **k):
        return SimpleNamespace(
            masks={0: {1: m}}, labels={1: "ball"}, scores={1: 0.9}, video_path=out_mp4,
            fps=10.0, num_frames=1, json_path=None,
        )  # fmt: skip

    ui = widgets.video_ui(
        fake_track, detector_loader=str, tracker_loader=str, out_dir=tmp_path,
        default_video=str(video), default_prompt="ball",
    )  # fmt: skip
    ui.controls["run"].click()
    assert ui.state["error"] is None, ui.state["error"]
    data = "".join(str(o.get("data", "")) for o in ui.controls["output"].outputs)
    assert "too large to play inside the form" in data and "base64" not in data
