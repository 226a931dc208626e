"""The Q2 forms as a person uses them: in Chromium, in JupyterLab 4 (ipywidgets 8) and classic
Notebook (ipywidgets 7.7.1). Type, click, upload through the file chooser, read the result,
play the video. Random-weight models (smoke mode): the masks mean nothing, the UI is real."""

from __future__ import annotations

import re

import pytest
from jupyter_fronts import ROOT

pytestmark = pytest.mark.browser
IMAGE_FORM, VIDEO_FORM = "q2-image-form", "q2-video-form"
RUN_TIMEOUT_MS = 240_000
SAMPLE = ROOT / "assets" / "sample.jpg"  # also beside the notebook as "sample.jpg"


def _field(form, label: str, kind: str = "input"):
    """The input (or select) of the form field labelled exactly ``label``."""
    exact = re.compile(rf"^\s*{re.escape(label)}\s*$")
    box = form.locator(".widget-inline-hbox").filter(
        has=form.page.locator(".widget-label", has_text=exact)
    )
    return box.locator(kind).first


def _labels(form) -> list[str]:
    """Every visible field label (text fields, sliders, dropdowns; checkboxes' own labels)."""
    texts = form.locator(".widget-label, .widget-label-basic").all_inner_texts()
    return [t.strip("\u200b \n") for t in texts if t.strip("\u200b \n")]


def _errors(form) -> list[str]:
    return form.locator(".form-output p", has_text="Error:").all_inner_texts()


def _click_and_wait(form, button: str, done_selector: str, artifacts) -> None:
    """Click ``button``, wait until the run ended (button enabled again) and ``done_selector``
    shows in the form's output (a screenshot of the page in ``artifacts`` if not)."""
    # what the last run showed is marked stale, so only the new run's output can match
    form.locator(".form-output").evaluate(
        "out => out.querySelectorAll('*').forEach(n => { n.dataset.stale = '1'; })"
    )
    form.get_by_role("button", name=button).click()
    try:
        form.locator(f"{done_selector}:not([data-stale])").first.wait_for(timeout=RUN_TIMEOUT_MS)
        form.get_by_role("button", name=button).and_(form.locator("button:enabled")).wait_for(
            timeout=RUN_TIMEOUT_MS
        )
    except Exception:
        form.page.screenshot(path=str(artifacts / f"failed-{button.lower()}.png"))
        raise


def test_forms_render_with_one_label_per_field(front):
    for css in (IMAGE_FORM, VIDEO_FORM):
        form = front.form(css)
        try:  # widget views render a moment after the cell that displays them has finished
            form.get_by_role("button").first.wait_for(timeout=30_000)
        except Exception:
            front.page.screenshot(path=str(front.artifacts / f"not-rendered-{css}.png"))
        assert form.count() == 1, f"{css} not rendered in {front.kind}"
        labels = _labels(form)
        assert len(labels) >= 6, labels
        assert len(labels) == len(set(labels)), f"{front.kind} {css}: repeated labels {labels}"
    assert _field(front.form(IMAGE_FORM), "Prompt").input_value()  # the notebook's prompt


def _centre_y(locator) -> float:
    box = locator.bounding_box()
    return box["y"] + box["height"] / 2


def test_colour_label_sits_level_with_its_swatch(front):
    form = front.form(IMAGE_FORM)
    exact = re.compile(r"^\s*Colour\s*$")
    label = form.locator(".widget-label", has_text=exact).first
    swatch = _field(form, "Colour", "input[type=color]")
    opacity = _field(form, "Opacity", ".widget-readout")
    assert abs(_centre_y(label) - _centre_y(swatch)) <= 2, "the Colour label sits off its swatch"
    assert abs(_centre_y(swatch) - _centre_y(opacity)) <= 4, "the colour row is not level"


def test_segment_shows_overlay_and_table(front):
    form = front.form(IMAGE_FORM)
    form.scroll_into_view_if_needed()
    _field(form, "Prompt").fill("red ball. blue box")
    _field(form, "Image URL").fill(SAMPLE.name)
    _click_and_wait(form, "Segment", ".form-output img", front.artifacts)
    out = form.locator(".form-output")
    assert out.locator("img").first.evaluate("i => i.naturalWidth") > 100
    assert out.locator("table.instances tbody tr").count() >= 1  # the smoke models find some
    assert out.get_by_text(re.compile(r"instance\(s\) in [0-9.]+s")).count() == 1
    assert _errors(form) == [] and form.locator("details.run-log").count() == 0
    form.screenshot(path=str(front.artifacts / "image_form.png"))
    cell = front.cell_of(IMAGE_FORM)
    assert front.stderr_in(cell) == [] and front.outputs_in(cell) == 1


@pytest.mark.parametrize(
    ("prompt", "path", "expected"),
    [("", SAMPLE.name, "prompt is empty"), ("red ball", "/no/such/picture.jpg", "picture.jpg")],
    ids=["empty-prompt", "missing-file"],
)
def test_bad_input_is_one_red_line(front, prompt, path, expected):
    form = front.form(IMAGE_FORM)
    _field(form, "Prompt").fill(prompt)
    _field(form, "Image URL").fill(path)
    _click_and_wait(form, "Segment", ".form-output p:has-text('Error:')", front.artifacts)
    errors = _errors(form)
    assert len(errors) == 1 and expected in errors[0], errors
    color = form.locator(".form-output p", has_text="Error:").evaluate(
        "p => getComputedStyle(p).color"
    )
    assert color == "rgb(198, 40, 40)"
    assert form.locator(".form-output img").count() == 0
    assert front.stderr_in(front.cell_of(IMAGE_FORM)) == []


def test_upload_through_the_file_chooser(front, tmp_path):
    form = front.form(IMAGE_FORM)
    _field(form, "Prompt").fill("red ball")
    url = _field(form, "Image URL")
    url.fill("/no/such/picture.jpg")  # a bad path first: the upload must win and clear it
    upload = tmp_path / "my upload.jpg"
    upload.write_bytes(SAMPLE.read_bytes())
    with front.page.expect_file_chooser() as chooser:
        form.locator(".widget-upload").click()
    chooser.value.set_files(str(upload))
    front.page.wait_for_function(
        "el => el.value === '' && el.placeholder.includes('my upload.jpg')",
        arg=url.element_handle(),
        timeout=30_000,
    )
    _click_and_wait(form, "Segment", ".form-output img", front.artifacts)
    assert _errors(form) == []
    assert form.locator(".form-output").get_by_text("my upload.jpg").count() >= 1


def test_track_plays_the_video_and_lists_ids(front):
    form = front.form(VIDEO_FORM)
    form.scroll_into_view_if_needed()
    assert _field(form, "Prompt").input_value() and _field(form, "Video").input_value()
    _field(form, "Video").fill("sample_video.mp4")  # beside the notebook
    _click_and_wait(form, "Track", ".form-output video", front.artifacts)
    assert form.locator(".form-output table.tracks").count() == 1
    video = form.locator(".form-output video").first
    video.scroll_into_view_if_needed()
    loaded = video.evaluate(
        """async v => {
            v.muted = true; v.loop = true;
            for (let i = 0; i < 100 && v.readyState < 2; i++)
                await new Promise(r => setTimeout(r, 100));
            return {ready: v.readyState, paused: v.paused, duration: v.duration,
                    controls: v.controls};
        }"""
    )
    # a clip long enough for the player's clock to read more than "0:00 / 0:00" (the notebook
    # tracks 20 frames of the 10 fps sample in smoke mode), paused until the user plays it
    assert loaded["ready"] >= 2 and loaded["duration"] >= 1.5 and loaded["controls"], loaded
    assert loaded["paused"], loaded
    # the user's way, not a script's play(): a click on the player (Chromium's own controls
    # toggle playback on it)
    video.click()
    state = video.evaluate(
        """async v => {
            for (let i = 0; i < 30 && v.paused; i++) await new Promise(r => setTimeout(r, 100));
            const t0 = v.currentTime;
            await new Promise(r => setTimeout(r, 300));
            return {ready: v.readyState, network: v.networkState, t0: t0, t1: v.currentTime,
                    paused: v.paused, width: v.videoWidth,
                    frames: v.getVideoPlaybackQuality().totalVideoFrames};
        }"""
    )
    # playing: decodable (readyState >= 2, a source that loaded), frames shown, time moving
    # (a 2 s clip at 10 fps: 0.3 s later the time is further on)
    assert not state["paused"], "clicking the player did not start the video"
    assert state["ready"] >= 2 and state["network"] != 3 and state["width"] > 0, state
    assert state["frames"] >= 2 and state["t1"] != state["t0"], state
    _pause_past_one_second(video)
    form.screenshot(path=str(front.artifacts / "video_form.png"))
    assert _errors(form) == [] and form.locator("details.run-log").count() == 0
    cell = front.cell_of(VIDEO_FORM)
    assert front.stderr_in(cell) == [], "noise under the video form"
    assert front.outputs_in(cell) == 1, "something printed under the video form"


def _pause_past_one_second(video) -> None:
    """Let the clip play past 1 s, pause it with a click on the player (as a user does), and
    show frame 12, one the random-weight models annotate, for the README's screenshot: the
    clock then reads "0:01 / 0:02" over a frame with its overlay."""
    video.evaluate(
        """async v => {
            v.loop = false;
            for (let i = 0; i < 50 && v.currentTime < 1.05 && !v.ended; i++)
                await new Promise(r => setTimeout(r, 50));
        }"""
    )
    if not video.evaluate("v => v.paused"):
        video.click()
    paused = video.evaluate(
        """async v => {
            for (let i = 0; i < 30 && !v.paused; i++) await new Promise(r => setTimeout(r, 100));
            v.currentTime = 1.25;
            await new Promise(r => v.addEventListener('seeked', r, {once: true}));
            return {paused: v.paused, time: v.currentTime};
        }"""
    )
    assert paused["paused"] and paused["time"] >= 1, paused


def _overlay_pixels(form, rgb: tuple[int, int, int]) -> int:
    """How many pixels of the form's overlay image are close to ``rgb``."""
    return form.locator(".form-output img").first.evaluate(
        """(img, rgb) => {
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
                if (Math.abs(d[i] - rgb[0]) < 40 && Math.abs(d[i + 1] - rgb[1]) < 40
                    && Math.abs(d[i + 2] - rgb[2]) < 40) n++;
            return n;
        }""",
        list(rgb),
    )


def _set_slider(form, label: str, value: str) -> None:
    """Type ``value`` into the slider's own readout (as a user edits it) and press Enter."""
    box = form.locator(".widget-inline-hbox").filter(
        has=form.page.locator(".widget-label", has_text=re.compile(rf"^\s*{label}\s*$"))
    )
    readout = box.locator(".widget-readout").first
    readout.click()
    form.page.keyboard.press("Control+A")
    form.page.keyboard.type(value)
    form.page.keyboard.press("Enter")


def test_one_colour_and_opacity_change_the_overlay(front):
    form = front.form(IMAGE_FORM)
    form.scroll_into_view_if_needed()
    _field(form, "Prompt").fill("red ball. blue box")
    _field(form, "Image URL").fill(SAMPLE.name)
    form.get_by_role("checkbox", name="One colour").check()
    _field(form, "Colour", "input[type=color]").fill("#00ff00")
    _set_slider(form, "Opacity", "1.00")
    _click_and_wait(form, "Segment", ".form-output img", front.artifacts)
    assert _errors(form) == []
    green = _overlay_pixels(form, (0, 255, 0))
    _set_slider(form, "Opacity", "0.00")
    _click_and_wait(form, "Segment", ".form-output img", front.artifacts)
    clear = _overlay_pixels(form, (0, 255, 0))
    # solid green masks at opacity 1; at 0 only the (green) boxes and labels stay
    assert green > 0 and green - clear > 50, (green, clear)
    form.get_by_role("checkbox", name="One colour").uncheck()
    _set_slider(form, "Opacity", "0.50")


def test_missing_video_is_one_red_line_before_any_model(front):
    form = front.form(VIDEO_FORM)
    form.scroll_into_view_if_needed()
    _field(form, "Video").fill("no_such_clip.mp4")
    _click_and_wait(form, "Track", ".form-output p:has-text('Error:')", front.artifacts)
    errors = _errors(form)
    assert len(errors) == 1 and "Video not found" in errors[0] and "no_such_clip" in errors[0]
    out = form.locator(".form-output")
    assert out.locator("video").count() == 0 and out.get_by_text("first use").count() == 0
    assert front.stderr_in(front.cell_of(VIDEO_FORM)) == []
    _field(form, "Video").fill("sample_video.mp4")
