"""Headless tests of the ipywidgets UIs (helpers/textseg/widgets.py).

The UI is driven like a user would: set ``ui.controls[...]`` values, ``click()`` the run button,
read what landed in the Output widget. Runs on whichever ipywidgets is installed (7.7.1 or 8.x).
"""

from __future__ import annotations

import base64
import datetime
import functools
import http.server
import io
import threading
from pathlib import Path
from types import SimpleNamespace

import ipywidgets
import numpy as np
import pytest
import supervision as sv
from PIL import Image

from helpers.textseg import widgets

IPYW_MAJOR = int(ipywidgets.__version__.split(".")[0])


def _png(h=48, w=64, color=(200, 30, 30)) -> bytes:
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = color
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _fake_result(image, prompt):
    h, w = image.shape[:2]
    mask = np.zeros((1, h, w), bool)
    mask[0, h // 4 : h // 2, w // 4 : w // 2] = True
    dets = sv.Detections(
        xyxy=np.array([[w / 4, h / 4, w / 2, h / 2]], np.float32),
        confidence=np.array([0.87], np.float32),
        class_id=np.array([0]),
        mask=mask,
        data={"class_name": np.array([prompt.strip().rstrip(".")])},
    )
    return SimpleNamespace(
        image=image, detections=dets, prompt=prompt, timings={"detect": 0.01}, candidates=None
    )


class Calls:
    """Fake model loaders + run_fn that record what the UI asked for."""

    def __init__(self):
        self.loaded: list[tuple[str, str]] = []
        self.runs: list[dict] = []

    def detector(self, name):
        self.loaded.append(("detector", name))
        return f"det:{name}"

    def segmenter(self, size):
        self.loaded.append(("segmenter", size))
        return f"seg:{size}"

    def run(self, image, prompt, detector, segmenter, **kw):
        self.runs.append(
            {"shape": image.shape, "prompt": prompt, "det": detector, "seg": segmenter, **kw}
        )
        return _fake_result(image, prompt)


def _outputs(ui):
    return list(ui.controls["output"].outputs)


def _html(ui) -> str:
    return "\n".join(o["data"].get("text/html", "") for o in _outputs(ui))


def _has_png(ui) -> bool:
    return any("image/png" in o["data"] for o in _outputs(ui))


def _set_upload(upload, name: str, data: bytes) -> None:
    """Simulate a browser upload in the value format of the installed ipywidgets."""
    if IPYW_MAJOR >= 8:
        upload.value = (
            {
                "name": name,
                "type": "image/png",
                "size": len(data),
                "content": memoryview(data),
                "last_modified": datetime.datetime.now(datetime.timezone.utc),
            },
        )
    else:  # 7.x: read-only dict trait filled from the front end
        upload.set_trait(
            "value",
            {
                name: {
                    "metadata": {"name": name, "type": "image/png", "size": len(data)},
                    "content": data,
                }
            },
        )


@pytest.fixture
def image_file(tmp_path) -> Path:
    p = tmp_path / "red.png"
    p.write_bytes(_png(60, 80))
    return p


def test_controls_and_layout():
    ui = widgets.segmentation_ui(lambda *a, **k: None, detector_loader=str, segmenter_loader=str)
    c = ui.controls
    assert isinstance(ui, ipywidgets.VBox)
    for key in ("prompt", "box_threshold", "text_threshold", "size", "detector", "url", "upload"):
        assert key in c
    assert (c["box_threshold"].min, c["box_threshold"].max) == (0.0, 1.0)
    assert (c["text_threshold"].min, c["text_threshold"].max) == (0.0, 1.0)
    assert list(c["size"].options) == ["tiny", "small", "base_plus", "large"]
    assert list(c["detector"].options) == ["grounding-dino-tiny", "grounding-dino-base", "owlv2"]
    assert c["upload"].accept == "image/*"
    assert isinstance(c["run"], ipywidgets.Button) and isinstance(c["output"], ipywidgets.Output)


def test_run_from_path_shows_overlay_table_and_caches_models(image_file):
    calls = Calls()
    ui = widgets.segmentation_ui(
        calls.run, detector_loader=calls.detector, segmenter_loader=calls.segmenter
    )
    c = ui.controls
    c["prompt"].value = "red square"
    c["box_threshold"].value = 0.2
    c["text_threshold"].value = 0.15
    c["size"].value = "small"
    c["url"].value = str(image_file)
    c["run"].click()
    assert ui.state["error"] is None, ui.state["error"]
    assert _has_png(ui)
    html = _html(ui)
    assert "<table" in html and "red square" in html and "0.870" in html
    assert calls.runs[0]["shape"] == (60, 80, 3)
    assert calls.runs[0]["box_threshold"] == pytest.approx(0.2)
    assert calls.runs[0]["text_threshold"] == pytest.approx(0.15)
    assert calls.runs[0]["seg"] == "seg:small"
    # second click: models come from the cache; a new size loads only that segmenter
    c["run"].click()
    c["size"].value = "tiny"
    c["run"].click()
    assert calls.loaded == [
        ("detector", "grounding-dino-tiny"),
        ("segmenter", "small"),
        ("segmenter", "tiny"),
    ]
    assert len(calls.runs) == 3 and ui.state["runs"] == 3
    # the output area holds only the latest run's results
    assert sum("image/png" in o["data"] for o in _outputs(ui)) == 1


@pytest.mark.parametrize(
    "prompt,url,expected",
    [
        ("   ", "IMAGE", "prompt is empty"),
        ("dog", "", "no image"),
        ("dog", "/no/such/file.jpg", "file"),
    ],
)
def test_bad_input_shows_red_message_not_traceback(image_file, prompt, url, expected):
    calls = Calls()
    ui = widgets.segmentation_ui(
        calls.run, detector_loader=calls.detector, segmenter_loader=calls.segmenter
    )
    ui.controls["prompt"].value = prompt
    ui.controls["url"].value = str(image_file) if url == "IMAGE" else url
    ui.controls["run"].click()  # must not raise
    html = _html(ui)
    assert "color:#c62828" in html and "Error" in html
    assert expected in ui.state["error"].lower()
    assert "Traceback" not in html and not _has_png(ui)
    assert calls.runs == [] and not ui.controls["run"].disabled


def test_unexpected_model_error_is_a_message():
    def broken(*a, **k):
        raise RuntimeError("CUDA exploded")

    ui = widgets.segmentation_ui(broken, detector_loader=str, segmenter_loader=str)
    ui.controls["prompt"].value = "dog"
    _set_upload(ui.controls["upload"], "a.png", _png())
    ui.controls["run"].click()
    assert "CUDA exploded" in ui.state["error"] and "CUDA exploded" in _html(ui)


def test_upload_installed_version_format():
    calls = Calls()
    ui = widgets.segmentation_ui(
        calls.run, detector_loader=calls.detector, segmenter_loader=calls.segmenter
    )
    ui.controls["prompt"].value = "ball"
    _set_upload(ui.controls["upload"], "up.png", _png(40, 30))
    ui.controls["run"].click()
    assert ui.state["error"] is None, ui.state["error"]
    assert calls.runs[0]["shape"] == (40, 30, 3)
    assert "up.png" in _html(ui)


def test_last_touched_source_wins(image_file):
    calls = Calls()
    ui = widgets.segmentation_ui(
        calls.run, detector_loader=calls.detector, segmenter_loader=calls.segmenter
    )
    ui.controls["prompt"].value = "ball"
    _set_upload(ui.controls["upload"], "up.png", _png(40, 30))
    ui.controls["url"].value = str(image_file)  # typed after the upload: the URL is used
    ui.controls["run"].click()
    assert calls.runs[-1]["shape"] == (60, 80, 3)


@pytest.mark.parametrize("version", ["7", "8"])
def test_image_from_inputs_both_upload_formats(version):
    data = _png(20, 24, color=(0, 0, 255))
    if version == "7":
        value = {"x.png": {"metadata": {"name": "x.png", "size": len(data)}, "content": data}}
    else:
        value = (
            {"name": "x.png", "type": "image/png", "size": len(data), "content": memoryview(data)},
        )
    image, name = widgets.image_from_inputs(value, "")
    assert name == "x.png" and image.shape == (20, 24, 3)
    from helpers.textseg import media

    assert media.upload_names(value) == ["x.png"] and media.upload_names(()) == []
    assert tuple(image[0, 0]) == (0, 0, 255)


def test_instances_table_html_escapes_and_handles_empty():
    assert "No instances" in widgets.instances_table_html([])
    html = widgets.instances_table_html(
        [{"id": 0, "label": "<b>dog</b>", "score": 0.5, "box": [1, 2, 3, 4], "area": 9}]
    )
    assert "&lt;b&gt;dog" in html and "<b>dog" not in html and "0.500" in html


def test_video_ui_with_fake_tracker(tmp_path):
    from helpers import files

    video = tmp_path / "clip.mp4"
    fake_mp4 = files.atomic_write_bytes(tmp_path / "out.mp4", b"\x00\x00\x00\x18ftypmp42")
    seen = {}

    def fake_track(source, prompt, detector, tracker, out_dir, **kw):
        seen.update(source=source, prompt=prompt, detector=detector, tracker=tracker, **kw)
        m = np.ones((4, 4), bool)
        return SimpleNamespace(
            masks={0: {1: m, 2: m}, 1: {1: m}},
            labels={1: "ball", 2: "box"},
            scores={1: 0.9, 2: 0.8},
            video_path=fake_mp4,
            json_path=None,
            fps=10.0,
            num_frames=2,
        )

    video.write_bytes(b"not really a video")
    ui = widgets.video_ui(
        fake_track, detector_loader=str, tracker_loader=lambda s: f"trk:{s}", out_dir=tmp_path
    )
    ui.controls["prompt"].value = ""
    ui.controls["run"].click()
    assert "prompt is empty" in ui.state["error"]
    ui.controls["prompt"].value = "ball. box"
    ui.controls["video"].value = str(video)
    ui.controls["detect_every"].value = 5
    ui.controls["prompt_type"].value = "mask"
    ui.controls["keep_missed"].value = "3 keyframes"  # not a duration: said before any model
    ui.controls["run"].click()
    assert "keyframes are no longer a unit" in ui.state["error"] and "tracker" not in seen
    ui.controls["keep_missed"].value = "45f"
    ui.controls["run"].click()
    assert ui.state["error"] is None, ui.state["error"]
    assert seen["detect_every"] == 5 and seen["prompt_type"] == "mask"
    assert seen["keep_missed"] == "45f"
    assert seen["tracker"] == "trk:tiny"
    outs = list(ui.controls["output"].outputs)
    assert any("video/mp4" in o["data"].get("text/html", "") for o in outs)
    html = "".join(o["data"].get("text/html", "") for o in outs)
    assert "2 object id(s)" in html and "ball" in html


# ------------------------------------------------------------------ with real (random) models


@pytest.fixture(scope="module")
def toy_models():
    from helpers.textseg import detect, segment

    det = detect.random_grounding_dino(words=["red", "ball"], size="toy", device="cpu")
    seg = segment.load_segmenter("tiny", random_weights=True, image_size=128, device="cpu")
    return det, seg


@pytest.fixture
def http_url(tmp_path):
    (tmp_path / "www").mkdir()
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(tmp_path / "www" / "pic.png")
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www")
    )
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pic.png"
    server.shutdown()


def test_end_to_end_with_random_weight_models(toy_models, http_url):
    det, seg = toy_models
    loaded = []
    ui = widgets.segmentation_ui(
        detector_loader=lambda n: loaded.append(n) or det,
        segmenter_loader=lambda s: loaded.append(s) or seg,
    )
    c = ui.controls
    c["prompt"].value = "red ball"
    c["box_threshold"].value = 0.0  # random weights: keep whatever comes out
    c["text_threshold"].value = 0.0
    c["url"].value = http_url
    c["run"].click()
    assert ui.state["error"] is None, ui.state["error"]
    result = ui.state["result"]
    assert result.image.shape == (96, 128, 3)
    assert _has_png(ui)
    assert f"{len(result.detections)} instance(s)" in _html(ui)
    if len(result.detections):
        assert "<table" in _html(ui)
        assert result.detections.mask.shape[1:] == (96, 128)
    assert loaded == ["grounding-dino-tiny", "tiny"]


def test_fallback_weights_and_overlay_style_controls(image_file):
    """The form passes the fallback (CLIPSeg loaded only on need), the mask weights and the
    overlay colour / opacity, and says which step produced the masks."""
    calls = Calls()
    clipseg_loads = []

    def run(image, prompt, detector, segmenter, **kw):
        res = calls.run(image, prompt, detector, segmenter, **kw)
        res.produced_by = "clipseg"
        res.attempts = [
            {"step": "detector", "box_threshold": 0.35, "text_threshold": 0.25, "instances": 0},
            {"step": "clipseg", "mask_threshold": 0.4, "instances": 1},
        ]
        assert kw["clipseg"]() == "clipseg-model"  # the lazy loader, cached by the form
        return res

    ui = widgets.segmentation_ui(
        run,
        detector_loader=calls.detector,
        segmenter_loader=calls.segmenter,
        clipseg_loader=lambda name: clipseg_loads.append(name) or "clipseg-model",
    )
    c = ui.controls
    assert c["fallback"].value is True and c["opacity"].value == 0.5
    assert isinstance(c["color"], ipywidgets.ColorPicker)
    c["prompt"].value = "red square"
    c["url"].value = str(image_file)
    c["mask_weights"].value = "sam=1,box=0.5"
    c["one_color"].value = True
    c["color"].value = "#00ff00"
    c["opacity"].value = 1.0
    c["run"].click()
    assert ui.state["error"] is None, ui.state["error"]
    kw = calls.runs[-1]
    assert kw["fallback"] == ("lower-threshold", "clipseg") and clipseg_loads == ["clipseg"]
    assert kw["mask_weights"].box == 0.5 and kw["mask_weights"].compact == 0.0
    assert "Masks: 1 instance(s) from clipseg (fallback" in _html(ui)
    png = next(o["data"]["image/png"] for o in _outputs(ui) if "image/png" in o["data"])
    raw = png if isinstance(png, bytes) else base64.b64decode(png)
    overlay = np.array(Image.open(io.BytesIO(raw)).convert("RGB"))
    assert tuple(overlay[20, 25]) == (0, 255, 0)  # inside the mask: the one colour, opaque
    # off: no fallback, no CLIPSeg; a bad weight is a message, not a traceback
    ui2 = widgets.segmentation_ui(calls.run, detector_loader=str, segmenter_loader=str)
    ui2.controls["prompt"].value = "dog"
    ui2.controls["url"].value = str(image_file)
    ui2.controls["fallback"].value = False
    ui2.controls["run"].click()
    assert calls.runs[-1]["fallback"] == () and "clipseg" not in calls.runs[-1]
    ui2.controls["mask_weights"].value = "size=2"
    ui2.controls["run"].click()
    assert "unknown mask criterion" in ui2.state["error"]


# ------------------------------------------------------------------ what a person sees in the form


def _labels(ui) -> list[str]:
    return [
        v.description
        for v in ui.controls.values()
        if getattr(v, "description", "") and not isinstance(v, ipywidgets.Button)
    ]


@pytest.mark.parametrize("which", ["image", "video"])
def test_one_clear_label_per_field(which, tmp_path):
    if which == "image":
        ui = widgets.segmentation_ui(lambda *a, **k: None, detector_loader=str)
    else:
        ui = widgets.video_ui(lambda *a, **k: None, detector_loader=str, out_dir=tmp_path)
    labels = _labels(ui)
    assert len(labels) == len(set(labels)), labels
    assert len(labels) >= 5


def test_upload_empties_the_url_field_and_names_the_file(image_file):
    calls = Calls()
    ui = widgets.segmentation_ui(
        calls.run, detector_loader=calls.detector, segmenter_loader=calls.segmenter
    )
    c = ui.controls
    c["prompt"].value, c["url"].value = "ball", "/no/such/file.jpg"
    _set_upload(c["upload"], "holiday.png", _png(40, 30))
    assert c["url"].value == "" and "holiday.png" in c["url"].placeholder
    c["run"].click()
    assert ui.state["error"] is None and calls.runs[-1]["shape"] == (40, 30, 3)
    c["url"].value = str(image_file)  # typing again: the field is the source again
    assert "holiday.png" not in c["url"].placeholder
    c["run"].click()
    assert calls.runs[-1]["shape"] == (60, 80, 3)


def test_video_upload_empties_the_path_field(tmp_path):
    ui = widgets.video_ui(lambda *a, **k: None, detector_loader=str, out_dir=tmp_path)
    ui.controls["video"].value = "/no/such/video.mp4"
    _set_upload(ui.controls["upload"], "clip.mp4", b"\x00\x00\x00\x18ftypmp42")
    assert ui.controls["video"].value == "" and "clip.mp4" in ui.controls["video"].placeholder


def test_progress_drawn_in_the_form_and_library_noise_folded(image_file, capsys):
    import sys
    import warnings

    from tqdm.auto import tqdm

    seen = {}
    calls = Calls()

    def noisy_run(image, prompt, *args, **kw):
        from tqdm.auto import tqdm as bar_cls  # looked up at call time, as helpers do

        for _ in bar_cls(range(7), desc="tracking"):
            pass
        seen["bar"] = (ui.controls["progress"].value, ui.controls["progress"].max)
        seen["shown"] = ui.controls["progress"].layout.display
        print("some library chatter")
        print("Could not open codec", file=sys.stderr)
        logger.warning("Some weights of the model checkpoint were not used")
        warnings.warn("torch.jit.script is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("frame rate looks variable", UserWarning, stacklevel=1)
        return calls.run(image, prompt, *args, **kw)

    import logging

    logger = logging.getLogger("fake_library_for_test")  # like transformers: its own handler
    handler = logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    ui = widgets.segmentation_ui(noisy_run, detector_loader=str, segmenter_loader=str)
    ui.controls["prompt"].value, ui.controls["url"].value = "ball", str(image_file)
    try:
        ui.controls["run"].click()
    finally:
        logger.removeHandler(handler)
    assert handler.stream is sys.stderr  # given back after the run
    assert ui.state["error"] is None, ui.state["error"]
    assert seen["bar"] == (7, 7) and seen["shown"] is None  # drawn in the form while running
    assert ui.controls["progress"].layout.display == "none"  # hidden after the run
    captured = capsys.readouterr()
    assert "chatter" not in captured.out + captured.err and "codec" not in captured.err
    html = _html(ui)
    assert 'class="run-log"' in html and "<details" in html
    assert "weights of the model" not in captured.err
    for text in (
        "some library chatter",
        "Could not open codec",
        "frame rate looks variable",
        "Some weights of the model checkpoint were not used",
    ):
        assert text in html
    assert "jit.script" not in html and "jit.script" in ui.state["log"]  # kept, not shown
    from tqdm import auto

    assert auto.tqdm is tqdm  # the real tqdm is back


def test_quiet_good_run_has_no_log(image_file):
    calls = Calls()
    ui = widgets.segmentation_ui(
        calls.run, detector_loader=calls.detector, segmenter_loader=calls.segmenter
    )
    ui.controls["prompt"].value, ui.controls["url"].value = "ball", str(image_file)
    ui.controls["run"].click()
    assert "run-log" not in _html(ui) and "Error" not in _html(ui)


def test_track_table_lists_only_ids_with_a_visible_mask():
    """An id detected but never given a visible mask is named under the table, not listed as
    a row "seen in 0 frames"."""
    from types import SimpleNamespace

    import numpy as np

    from helpers.textseg.widgets import track_summary_html

    on = np.zeros((4, 4), bool)
    on[1, 1] = True
    off = np.zeros((4, 4), bool)
    result = SimpleNamespace(
        masks={0: {1: on, 2: off}, 1: {1: on, 2: off}},
        labels={1: "dog", 2: "cat"},
        scores={1: 0.9, 2: 0.4},
        num_frames=2,
        fps=10.0,
        video_path=None,
        json_path=None,
    )
    page = track_summary_html(result)
    assert "<td>1</td><td>dog</td>" in page and "cat" not in page
    assert "1 object id(s) tracked" in page
    assert "never given a visible mask (not tracked): id 2." in page
