"""ipywidgets front ends for text-prompted segmentation (images and videos).

Works on ipywidgets 7.7.1 (Colab's pinned version) and 8.x: only arguments and traits both
versions share are used (``description``, ``layout``, ``style``, ``Button.tooltip``), FileUpload
values of both shapes are read through :func:`helpers.textseg.media.upload_to_bytes`, and results go to
the output area with ``Output.append_display_data`` (no kernel context needed, so the UI can be
driven headless: set ``ui.controls[...]`` values and call ``ui.controls["run"].click()``).

Models are loaded lazily on the first run and cached per (detector name) and (SAM 2 size).
Foreseeable mistakes (:class:`helpers.errors.InputError`) appear as a red message in the output
area, never as a traceback.
"""

from __future__ import annotations

import contextlib
import html
import io
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from helpers.errors import InputError
from helpers.textseg.image_settings import Fallback, Overlay, RouteSettings
from helpers.textseg.routes import TrackSettings

SAM2_SIZE_CHOICES = ("tiny", "small", "base_plus", "large")
DETECTOR_CHOICES = ("grounding-dino-tiny", "grounding-dino-base", "owlv2")
PROMPT_TYPES = ("box", "point", "mask")
DETECT_EVERY = TrackSettings.detect_every  # re-detect every N frames, as `track --detect-every`

_WIDE = {"description_width": "initial"}


def _widgets():
    import ipywidgets

    return ipywidgets


# --------------------------------------------------------------------------- notebook helpers


def gpu_info() -> dict | None:
    """``{"name", "capability": (major, minor), "memory_gib"}`` of CUDA GPU 0, None without."""
    import torch

    if not torch.cuda.is_available():
        return None
    p = torch.cuda.get_device_properties(0)
    return {
        "name": p.name,
        "capability": (int(p.major), int(p.minor)),
        "memory_gib": p.total_memory / 2**30,
    }


def pick_sam2_size(gpu: dict | None) -> str:
    """The SAM 2.1 size to default to on ``gpu`` (a :func:`gpu_info` dict, None = no GPU).

    SAM 2 runs in bf16 only on compute capability >= 8.0 (Ampere and newer); older GPUs such
    as the T4 (7.5) run it in fp32, where ``large`` is slow and memory-hungry, so they get
    ``small`` (``base_plus`` with >= 24 GiB). bf16 GPUs get ``large`` with >= 20 GiB, else
    ``base_plus``. The CPU gets ``tiny``.
    """
    if not gpu:
        return "tiny"
    major, minor = (tuple(gpu.get("capability") or (0, 0)) + (0, 0))[:2]
    memory = float(gpu.get("memory_gib") or 0)
    if (major, minor) >= (8, 0):
        return "large" if memory >= 20 else "base_plus"
    return "base_plus" if memory >= 24 else "small"


def colab_upload(dest_dir) -> list:
    """Upload files of any size with Colab's own picker (``google.colab.files.upload``) and
    save them into ``dest_dir``; returns their paths.

    ipywidgets' ``FileUpload`` sends the file through the widget channel, which drops large
    files in Colab (ipywidgets#3452); Colab's picker streams them in chunks. Outside Colab
    this raises ``InputError`` (use a file path instead)."""
    from pathlib import Path

    from helpers import files

    try:
        from google.colab import files as colab_files  # importable only inside Colab
    except ImportError:
        raise InputError(
            "uploading with Colab's picker only works inside Google Colab; give a file path "
            "instead (e.g. on a mounted Google Drive)."
        ) from None
    uploaded = colab_files.upload() or {}
    if not uploaded:
        raise InputError("no file was uploaded: choose a file in the picker.")
    from helpers.textseg.naming import safe_stem

    saved = []
    for name, data in uploaded.items():
        name = Path(str(name)).name
        target = Path(dest_dir) / (safe_stem(Path(name).stem, "upload") + Path(name).suffix)
        saved.append(files.atomic_write_bytes(target, bytes(data)))
    return saved


def colab_upload_button(dest_dir, what: str = "a file", uploader: Callable | None = None):
    """A button that opens Colab's own picker (:func:`colab_upload`, any size) when clicked.

    Running the cell only shows the button, so a Run all never stops for a file picker; the
    picker opens on a click. The returned box has ``paths`` (the files saved by the latest
    upload, empty before one), ``button`` and ``output`` (a line naming the saved files, or
    a red message). ``uploader(dest_dir)`` replaces :func:`colab_upload` (e.g. in tests)."""
    w = _widgets()
    button = w.Button(
        description=f"Upload {what}",
        icon="upload",
        tooltip="pick a file with Colab's uploader (files of any size)",
        layout=w.Layout(width="auto"),
    )
    out = w.Output()
    box = w.VBox([button, out])
    box.add_class("colab-upload")
    box.paths, box.button, box.output = [], button, out
    upload = uploader or colab_upload

    def _click(_button=None):
        button.disabled = True
        _clear(out)
        failed: Exception | None = None
        try:
            with out:  # Colab's picker draws itself where the output goes
                try:  # caught here: the Output would print a traceback and swallow it
                    saved = list(upload(dest_dir))
                except Exception as e:
                    failed = e
            if failed is not None:
                raise failed
            box.paths[:] = saved
            _clear(out)
            names = ", ".join(str(p) for p in saved)
            show_note(out, f"Uploaded {names}. Run the cells below again to use it.")
        except InputError as e:
            show_error(out, str(e))
        except Exception as e:  # the picker failed: say so, keep the notebook going
            show_error(
                out, f"the upload failed ({type(e).__name__}: {e}); give a file path instead."
            )
        finally:
            button.disabled = False

    button.on_click(_click)
    box.click = _click
    return box


@contextlib.contextmanager
def _guarded(c: dict, state: dict):
    """One run of a form: the button disabled, progress drawn in the form's own bar, anything
    the libraries print or warn kept out of the notebook (shown folded under the result), and
    any error a red message in the output area, never a traceback; the UI stays usable."""
    button, out = c["run"], c["output"]
    state["error"] = None
    button.disabled = True
    log, deprecations = io.StringIO(), io.StringIO()
    try:
        with _progress_in(c["progress"], c["status"]), _captured(log, deprecations):
            yield
    except InputError as e:
        state["error"] = str(e)
        show_error(out, str(e))
    except Exception as e:  # keep the UI alive; the message, not a traceback
        state["error"] = f"{type(e).__name__}: {e}"
        show_error(out, f"unexpected {type(e).__name__}: {e}")
    finally:
        state["log"] = log.getvalue() + deprecations.getvalue()  # everything, for the curious
        _show_log(out, log.getvalue())
        button.disabled = False  # last: an enabled button means the run has shown everything


@contextlib.contextmanager
def _captured(log: io.StringIO, deprecations: io.StringIO):
    """Route what the libraries print to stdout / stderr, log (``logging`` handlers writing to
    the console, as transformers' and huggingface_hub's do) and warn into ``log``; deprecation
    warnings (which the user cannot act on) into ``deprecations``.

    A button callback's output belongs to no cell: classic Notebook shows it under the form
    as a red stderr block (a harmless FutureWarning looks like a failure), JupyterLab hides it
    in its log console. A folded note inside the form is better than either."""
    import logging
    import sys
    import warnings

    consoles = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = {
        h
        for lg in loggers
        for h in getattr(lg, "handlers", ())
        if isinstance(h, logging.StreamHandler) and id(h.stream) in consoles
    }
    streams = {h: h.setStream(log) for h in handlers}
    with (
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("default")
        try:
            yield
        finally:
            for h, stream in streams.items():
                h.setStream(stream)
            for w in caught:
                quiet = issubclass(w.category, (DeprecationWarning, FutureWarning))
                (deprecations if quiet else log).write(f"{w.category.__name__}: {w.message}\n")


@contextlib.contextmanager
def library_output_folded():
    """For a notebook cell: what the libraries print, log or warn inside the block is shown
    once it ends as one folded line ("N message(s) from the libraries", click to read), as the
    forms do, instead of red stderr blocks between the results. Keep your own ``print``
    calls outside the block (they would be folded too)."""
    from IPython.display import display

    log, deprecations = io.StringIO(), io.StringIO()
    try:
        with _captured(log, deprecations):
            yield
    finally:
        _show_log(SimpleNamespace(append_display_data=display), log.getvalue())


def _show_log(out, text: str) -> None:
    """What the libraries said during a run, folded under the result (nothing if nothing)."""
    lines = list(dict.fromkeys(line for line in text.splitlines() if line.strip()))
    if not lines:
        return
    from IPython.display import HTML

    out.append_display_data(
        HTML(
            '<details class="run-log" style="color:#666"><summary>'
            f"{len(lines)} message(s) from the libraries</summary>"
            f"<pre>{html.escape(chr(10).join(lines))}</pre></details>"
        )
    )


@contextlib.contextmanager
def _progress_in(bar, status):
    """While a run works, every ``tqdm.auto`` bar (frames decoded, frames tracked, video
    written) draws into the form's own progress bar and status line instead of printing under
    the cell; both are hidden again when the run ends."""
    import tqdm.auto
    from tqdm.std import tqdm as text_tqdm

    class FormBar(text_tqdm):
        monitor_interval = 0  # no monitor thread: widgets are set from the run's own thread

        def __init__(self, *args, **kwargs):
            kwargs["file"] = io.StringIO()  # the text bar goes nowhere; display() draws
            # the form's bar is its UI: shown unless the caller says otherwise (TQDM_DISABLE and
            # "no terminal" aside), e.g. on the ranks of a distributed job that are not first
            kwargs["disable"] = bool(kwargs.get("disable"))
            super().__init__(*args, **kwargs)

        def display(self, msg=None, pos=None):
            bar.max = max(1, int(self.total or 0))
            bar.value = min(int(self.n), bar.max)
            status.value = html.escape(progress_words(self.format_dict))
            return True

    saved = tqdm.auto.tqdm
    tqdm.auto.tqdm = FormBar
    bar.value, bar.max, status.value = 0, 1, "working..."
    bar.layout.display = status.layout.display = None
    try:
        yield
    finally:
        tqdm.auto.tqdm = saved
        bar.layout.display = status.layout.display = "none"
        status.value = ""


def progress_words(d: dict) -> str:
    """A tqdm bar's state in words, for the status line beside the form's own bar (which
    draws the bar itself): ``tracking: 12/30 frames, 3.2/s, 6 s left``."""
    n, total = int(d.get("n") or 0), d.get("total")
    unit = d.get("unit") or "it"
    unit = "" if unit == "it" else f" {unit}"
    text = f"{d.get('prefix') or 'working'}: {n}/{int(total)}{unit}" if total else f"{n}{unit}"
    if not total and d.get("prefix"):
        text = f"{d['prefix']}: {text}"
    rate, elapsed = d.get("rate"), d.get("elapsed") or 0
    if rate is None and elapsed > 0:
        rate = n / elapsed
    if rate:
        text += f", {rate:.1f}/s"
        if total and n < total:
            text += f", {max(0.0, (total - n) / rate):.0f} s left"
    return text


def set_stage(c: dict, done: int, total: int, words: str) -> None:
    """Show the stage of a run that has no bar of its own (e.g. 1/3 "segmenting...")."""
    c["progress"].max = max(1, total)
    c["progress"].value = min(done, c["progress"].max)
    c["status"].value = html.escape(words)


def _progress_widgets() -> dict:
    """The form's progress bar and status line, hidden until a run starts."""
    w = _widgets()
    return {
        "progress": w.IntProgress(value=0, min=0, max=1, layout=w.Layout(display="none")),
        "status": w.HTML(value="", layout=w.Layout(display="none")),
    }


def _row(*children) -> Any:
    """One line of fields: vertically centred on one line, left-aligned, a small gap between
    (no checkbox floating right, no field sitting lower than its neighbours)."""
    w = _widgets()
    for child in children:
        if isinstance(child, w.Checkbox):
            child.layout.width = "auto"  # as wide as its label, not a fixed column
    return w.HBox(
        list(children),
        layout=w.Layout(align_items="center", justify_content="flex-start", grid_gap="8px"),
    )


def _panel(title_html: str, rows: list, c: dict, state: dict, cache, run, css: str) -> Any:
    """The UI box: title, control rows, run button with its progress, output area; ``run``
    wired to the button; ``css`` a class name on the box (for styling and browser tests)."""
    w = _widgets()
    c["run"].on_click(run)
    ui = w.VBox(
        [w.HTML(title_html), *rows, _row(c["run"], c["progress"], c["status"]), c["output"]]
    )
    ui.add_class(css)
    c["output"].add_class("form-output")  # one name in both ipywidgets 7 and 8
    ui.controls = c
    ui.state = state
    ui.cache = cache
    ui.run = run
    return ui


class ModelCache:
    """Loads detectors / segmenters / trackers on first use and keeps them by (kind, name).

    ``preloaded`` ``{(kind, name): model}`` are models the notebook has already loaded: they
    are used as they are, without a "first use" note."""

    def __init__(
        self,
        loaders: dict[str, Callable[[str], Any]],
        preloaded: dict[tuple[str, str], Any] | None = None,
    ):
        self.loaders = loaders
        self.models: dict[tuple[str, str], Any] = dict(preloaded or {})

    def get(self, kind: str, name: str, log: Callable[[str], None] | None = None):
        key = (kind, name)
        if key not in self.models:
            if log is not None:
                log(f"Loading {kind} {name!r} (first use; cached afterwards)...")
            self.models[key] = self.loaders[kind](name)
        return self.models[key]


def _default_detector_loader(name: str):
    from helpers.textseg import detect

    return detect.load_detector(name)


def _default_segmenter_loader(size: str):
    from helpers.textseg import segment

    return segment.load_segmenter(size)


def _default_clipseg_loader(name: str):
    from helpers.textseg import segment

    return segment.load_clipseg()


def _default_tracker_loader(size: str):
    from helpers.textseg import track

    return track.load_video_tracker(size)


def _default_run_fn(image, prompt, detector, segmenter, **kw):
    """The image form's run: the detect-sam2 route and the steps after it (``kw``: the
    keywords of ``pipeline.image_settings``)."""
    from helpers.textseg import pipeline, routes

    route = routes.DetectSam2(detector, segmenter)
    return pipeline.run_route(route, image, prompt, pipeline.image_settings(**kw))


def _default_track_fn(source, prompt, detector, tracker, out_dir, **kw):
    """The video form's run: the detect-sam2 route's ``track`` verb (``kw``: the fields of
    ``routes.TrackSettings``)."""
    from helpers.textseg import routes
    from helpers.textseg.detect import prompt_phrases

    route = routes.DetectSam2(detector, tracker=tracker)
    return route.track(
        source, prompt_phrases(prompt), routes.TrackSettings(**kw), out_dir, prompt=prompt
    )


# --------------------------------------------------------------------------- output helpers


def show_error(out, message: str) -> None:
    """A red one-paragraph message in an Output widget."""
    from IPython.display import HTML

    out.append_display_data(
        HTML(f'<p style="color:#c62828;font-weight:bold">Error: {html.escape(str(message))}</p>')
    )


def show_note(out, message: str) -> None:
    from IPython.display import HTML

    out.append_display_data(HTML(f'<p style="color:#555">{html.escape(message)}</p>'))


def png_bytes(image) -> bytes:
    """PNG encoding of an RGB uint8 array."""
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def instances_table_html(records: list[dict]) -> str:
    """A small HTML table of instances (id, label, score, box, area)."""
    if not records:
        return "<p>No instances found. Try a lower box threshold or another wording.</p>"
    head = "".join(
        f"<th>{h}</th>" for h in ("id", "label", "score", "box (x0, y0, x1, y1)", "area")
    )
    rows = []
    for r in records:
        box = ", ".join(f"{float(v):.0f}" for v in r.get("box", []))
        score = r.get("score")
        rows.append(
            "<tr>"
            f"<td>{html.escape(str(r.get('id', '')))}</td>"
            f"<td>{html.escape(str(r.get('label', '')))}</td>"
            f"<td>{'' if score is None else f'{float(score):.3f}'}</td>"
            f"<td>{box}</td>"
            f"<td>{int(r.get('area', 0))}</td>"
            "</tr>"
        )
    return (
        '<table class="instances" style="border-collapse:collapse">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def image_from_inputs(upload_value, url: str):
    """The image to segment from the widgets' state: an uploaded file wins over the URL/path.

    ``upload_value`` is a FileUpload ``value`` of either ipywidgets 7.x (dict) or 8.x (tuple)."""
    from helpers.textseg import media

    files = media.upload_to_bytes(upload_value) if upload_value else []
    if files:
        name, data = files[-1]
        return media.load_image(data), name
    url = (url or "").strip()
    if url:
        return media.load_image(url), url
    raise InputError("no image: paste an image URL or file path, or upload an image file.")


def _clear(out) -> None:
    out.outputs = ()


# --------------------------------------------------------------------------- image UI


def segmentation_ui(
    run_fn: Callable | None = None,
    *,
    detector_loader: Callable[[str], Any] | None = None,
    segmenter_loader: Callable[[str], Any] | None = None,
    clipseg_loader: Callable[[str], Any] | None = None,
    default_prompt: str = "",
    default_url: str = "",
    default_size: str = "tiny",
    default_detector: str = "grounding-dino-tiny",
    size_choices: tuple[str, ...] = SAM2_SIZE_CHOICES,
    detector_choices: tuple[str, ...] = DETECTOR_CHOICES,
    preloaded: dict[tuple[str, str], Any] | None = None,
):
    """Build the image segmentation UI and return its ``VBox``.

    ``run_fn(image, prompt, detector, segmenter, box_threshold=, text_threshold=, multimask=,
    fallback=, clipseg=[, mask_weights=])`` returns a :class:`helpers.textseg.pipeline.ImageResult`
    (default: the detect-sam2 route through ``pipeline.run_route``, as ``pipeline.segment_image``). ``detector_loader(name)`` / ``segmenter_loader(size)``
    / ``clipseg_loader(name)`` build the models (defaults: the real pretrained ones); each is
    called once per name/size and cached (CLIPSeg only when the fallback needs it);
    ``preloaded`` ``{("detector" | "segmenter", name): model}`` are reused without loading.

    The returned box has ``controls`` (dict of child widgets: prompt, box_threshold,
    text_threshold, size, detector, multimask, fallback, mask_weights, color, one_color,
    opacity, url, upload, run, output), ``state`` (``result``: the last ImageResult; ``error``:
    the last error message) and ``cache`` (a ModelCache).
    """
    w = _widgets()
    if default_size not in size_choices:
        raise InputError(f"default_size must be one of {list(size_choices)}.")
    if default_detector not in detector_choices:
        raise InputError(f"default_detector must be one of {list(detector_choices)}.")
    run_fn = run_fn or _default_run_fn
    cache = ModelCache(
        {
            "detector": detector_loader or _default_detector_loader,
            "segmenter": segmenter_loader or _default_segmenter_loader,
            "clipseg": clipseg_loader or _default_clipseg_loader,
        },
        preloaded,
    )

    c = {
        "prompt": w.Text(
            value=default_prompt,
            placeholder="what to segment, e.g. 'dog. red car'",
            description="Prompt",
            layout=w.Layout(width="480px"),
        ),
        "box_threshold": w.FloatSlider(
            value=RouteSettings.box_threshold,
            min=0.0,
            max=1.0,
            step=0.01,
            description="Box threshold",
            style=_WIDE,
        ),
        "text_threshold": w.FloatSlider(
            value=RouteSettings.text_threshold,
            min=0.0,
            max=1.0,
            step=0.01,
            description="Text threshold",
            style=_WIDE,
        ),
        "size": w.Dropdown(
            options=list(size_choices), value=default_size, description="SAM 2 size", style=_WIDE
        ),
        "detector": w.Dropdown(
            options=list(detector_choices),
            value=default_detector,
            description="Detector",
            style=_WIDE,
        ),
        "multimask": w.Checkbox(
            value=RouteSettings.multimask, description="Best of 3 masks", indent=False
        ),
        "fallback": w.Checkbox(
            value=bool(Fallback.steps),
            description="Fallback when nothing is found",
            indent=False,
            style=_WIDE,
        ),
        "mask_weights": w.Text(
            value="",
            placeholder="sam=1,compact=0.25,box=0.25 (empty: SAM's score)",
            description="Mask weights",
            style=_WIDE,
            layout=w.Layout(width="420px"),
        ),
        "one_color": w.Checkbox(value=False, description="One colour", indent=False),
        "color": w.ColorPicker(  # centred: its label otherwise sits 5 px below the swatch
            value="#e6194b",
            concise=True,
            description="Colour",
            layout=w.Layout(align_items="center"),
        ),
        "opacity": w.FloatSlider(
            value=Overlay.opacity,
            min=0.0,
            max=1.0,
            step=0.05,
            description="Opacity",
            style=_WIDE,
        ),
        "url": w.Text(
            value=default_url,
            placeholder="https://... or a file path",
            description="Image URL",
            style=_WIDE,
            layout=w.Layout(width="480px"),
        ),
        "upload": w.FileUpload(accept="image/*", multiple=False, description="Upload"),
        "run": w.Button(
            description="Segment", button_style="primary", tooltip="Run text -> boxes -> masks"
        ),
        **_progress_widgets(),
        "output": w.Output(layout=w.Layout(border="1px solid #ddd", min_height="40px")),
    }
    state: dict[str, Any] = {"result": None, "error": None, "source": None, "runs": 0}
    out = c["output"]

    _last_touched_wins(c["url"], c["upload"], state, "url")

    def _current_image():
        upload_value = c["upload"].value
        if state["source"] == "url" and c["url"].value.strip():
            upload_value = None
        return image_from_inputs(upload_value, c["url"].value)

    def _run(_button=None):
        _clear(out)
        with _guarded(c, state):
            prompt = c["prompt"].value
            if not prompt.strip():
                raise InputError("the prompt is empty: type what to segment, e.g. 'dog'.")
            set_stage(c, 0, 3, "reading the image...")
            image, name = _current_image()
            log = lambda msg: show_note(out, msg)  # noqa: E731
            set_stage(c, 1, 3, "loading the models...")
            detector = cache.get("detector", c["detector"].value, log)
            segmenter = cache.get("segmenter", c["size"].value, log)
            style = _overlay_style(c)
            kw: dict[str, Any] = {}
            weights = c["mask_weights"].value.strip()
            if weights:
                from helpers.textseg import segment

                kw["mask_weights"] = segment.parse_weights(weights)  # InputError: a message
            if c["fallback"].value:
                kw["fallback"] = Fallback.steps
                kw["clipseg"] = lambda: cache.get("clipseg", "clipseg", log)  # on first need
            else:
                kw["fallback"] = ()
            set_stage(c, 2, 3, "detecting and segmenting...")
            t0 = time.perf_counter()
            result = run_fn(
                image,
                prompt,
                detector,
                segmenter,
                box_threshold=float(c["box_threshold"].value),
                text_threshold=float(c["text_threshold"].value),
                multimask=bool(c["multimask"].value),
                **kw,
            )
            elapsed = time.perf_counter() - t0
            state["result"] = result
            state["runs"] += 1
            _clear(out)
            _show_image_result(out, result, name, elapsed, **style)

    rows = [
        c["prompt"],
        _row(c["box_threshold"], c["text_threshold"]),
        _row(c["detector"], c["size"], c["multimask"]),
        _row(c["fallback"], c["mask_weights"]),
        _row(c["one_color"], c["color"], c["opacity"]),
        _row(c["url"], c["upload"]),
    ]
    title = "<b>Text-prompted segmentation</b> (Grounding DINO &rarr; SAM 2)"
    return _panel(title, rows, c, state, cache, _run, "q2-image-form")


def _last_touched_wins(text, upload, state: dict, typed: str) -> None:
    """Whichever of the path/URL field and the upload the user touched last is the input
    (``state["source"]``: ``typed`` or "upload"). An upload empties the field and names the
    file in its placeholder, so the form never shows a path it is not using."""
    placeholder = text.placeholder

    def _typed(change):
        if change["new"].strip():
            state["source"] = typed
            text.placeholder = placeholder

    def _uploaded(change):
        from helpers.textseg import media

        names = media.upload_names(change["new"])
        if names:
            state["source"] = "upload"
            text.value = ""
            text.placeholder = f"using the upload {names[-1]}"

    text.observe(_typed, names="value")
    upload.observe(_uploaded, names="value")


def _overlay_style(c: dict) -> dict:
    """``{"color", "opacity"}`` from the form: one colour when ticked, else a colour per id."""
    from helpers.textseg import render

    color = c["color"].value if c["one_color"].value else None
    render.parse_color(color)  # a colour the browser accepts but PIL does not: a message
    return {"color": color, "opacity": float(c["opacity"].value)}


def _show_image_result(
    out, result, name: str, elapsed: float, color=None, opacity: float = 0.5
) -> None:
    import numpy as np
    from IPython.display import HTML, Image

    from helpers.textseg import render

    dets = result.detections
    overlay = render.annotate(result.image, dets, color=color, opacity=opacity)
    out.append_display_data(Image(data=png_bytes(overlay), format="png"))
    records = [
        {k: v for k, v in r.items() if k != "mask"} for r in render.detections_to_records(dets)
    ]
    timings = getattr(result, "timings", None) or {}
    timing_txt = ", ".join(
        f"{k} {float(v):.0f} ms" for k, v in timings.items() if isinstance(v, (int, float))
    )
    out.append_display_data(
        HTML(
            f"<p>{html.escape(str(name))[:120]}: {len(dets)} instance(s) in {elapsed:.2f}s"
            f"{' (' + html.escape(timing_txt) + ')' if timing_txt else ''}</p>"
            + _produced_by_html(result)
            + instances_table_html(records)
        )
    )
    cands = getattr(result, "candidates", None)
    if cands is not None and len(dets):
        try:
            from helpers.textseg import media

            masks, scores = cands
            # candidates are at the model-input size: bring them to the image's size
            first = media.masks_to_size(np.asarray(masks[0]).astype(bool), result.image.shape[:2])
            choice = getattr(result, "choice", None)
            if choice:  # the multi-criteria pick: its totals, and each criterion under a panel
                totals = [-1.0 if v is None else v for v in choice[0]["total"]]
                fig = render.candidates_figure(
                    result.image, first, totals, title="SAM 2 candidates for instance 0 "
                    "(weighted score)", best=choice[0]["picked"],
                    details=render.choice_details(choice[0]),
                )  # fmt: skip
            else:
                fig = render.candidates_figure(
                    result.image, first, scores[0], title="SAM 2 candidates for instance 0"
                )
            out.append_display_data(Image(data=figure_png(fig), format="png"))
        except (TypeError, ValueError, IndexError):
            pass  # candidates in an unexpected shape: the overlay above is what matters


def _produced_by_html(result) -> str:
    """Which step produced the masks (detector / lower-threshold / clipseg / none), one line."""
    attempts = getattr(result, "attempts", None)
    if not attempts:
        return ""
    from helpers.textseg.pipeline import describe

    by = getattr(result, "produced_by", "model")
    text = describe(by, attempts, len(result.detections))
    return f'<p class="produced-by">Masks: {html.escape(text)}</p>'


# --------------------------------------------------------------------------- video UI


def video_ui(
    run_fn: Callable | None = None,
    *,
    detector_loader: Callable[[str], Any] | None = None,
    tracker_loader: Callable[[str], Any] | None = None,
    out_dir=None,
    default_prompt: str = "",
    default_video: str = "",
    default_size: str = "tiny",
    size_choices: tuple[str, ...] = SAM2_SIZE_CHOICES,
    detector_choices: tuple[str, ...] = DETECTOR_CHOICES,
    max_frames: int | None = None,
    detect_every: int = DETECT_EVERY,
    default_detector: str | None = None,
    preloaded: dict[tuple[str, str], Any] | None = None,
    keep_missed: str = TrackSettings.keep_missed,
):
    """A form for video tracking: video path (or upload), prompt, detect-every, prompt type,
    SAM 2 size, how long a missed object is kept (seconds ``2s`` or frames ``45f``); shows the
    annotated MP4 inline and a per-id summary.

    ``run_fn(source, prompt, detector, tracker, out_dir, **kw)`` returns a
    :class:`helpers.textseg.track.TrackResult` (default: the detect-sam2 route's ``track`` verb,
    i.e. ``track.track_video``). The video path is
    checked before any model is loaded. ``preloaded`` ``{("detector" | "tracker", name):
    model}`` are reused without loading.
    """
    from pathlib import Path

    w = _widgets()
    if run_fn is None:
        run_fn = _default_track_fn
    cache = ModelCache(
        {
            "detector": detector_loader or _default_detector_loader,
            "tracker": tracker_loader or _default_tracker_loader,
        },
        preloaded,
    )
    if out_dir is None:
        from helpers import runtime

        out_dir = runtime.output_dir("q2_video_ui")
    out_dir = Path(out_dir)

    c = {
        "prompt": w.Text(
            value=default_prompt, description="Prompt", layout=w.Layout(width="480px")
        ),
        "video": w.Text(
            value=default_video,
            placeholder="path to an MP4 (or a folder of frames)",
            description="Video",
            layout=w.Layout(width="480px"),
        ),
        "upload": w.FileUpload(accept="video/*", multiple=False, description="Upload"),
        "detect_every": w.IntSlider(
            value=detect_every, min=1, max=300, step=1, description="Detect every", style=_WIDE
        ),
        "prompt_type": w.Dropdown(
            options=list(PROMPT_TYPES),
            value=TrackSettings.prompt_type,
            description="Seed SAM 2 with",
            style=_WIDE,
        ),
        "box_threshold": w.FloatSlider(
            value=TrackSettings.box_threshold,
            min=0.0,
            max=1.0,
            step=0.01,
            description="Box threshold",
            style=_WIDE,
        ),
        "size": w.Dropdown(
            options=list(size_choices), value=default_size, description="SAM 2 size", style=_WIDE
        ),
        "detector": w.Dropdown(
            options=list(detector_choices),
            value=default_detector or detector_choices[0],
            description="Detector",
            style=_WIDE,
        ),
        "keep_missed": w.Text(
            value=str(keep_missed),
            placeholder="2s or 45f",
            description="Keep missed",
            tooltip="how long an object the detector misses keeps being tracked: seconds (2s) "
            "or frames (45f)",
            style=_WIDE,
            layout=w.Layout(width="200px"),
        ),
        "detect_on_doubt": w.Checkbox(
            value=TrackSettings.detect_on_doubt,
            description="Detect on doubt",
            tooltip="also detect on a frame where an object's mask is lost, reappears, halves "
            "or doubles, or leaves its expected place (at most once every 10 frames)",
            style=_WIDE,
        ),
        "run": w.Button(description="Track", button_style="primary", tooltip="Track the prompt"),
        **_progress_widgets(),
        "output": w.Output(layout=w.Layout(border="1px solid #ddd", min_height="40px")),
    }
    state: dict[str, Any] = {"result": None, "error": None, "source": None}
    out = c["output"]
    _last_touched_wins(c["video"], c["upload"], state, "path")

    def _source():
        from helpers import files
        from helpers.textseg import media

        uploads = media.upload_to_bytes(c["upload"].value) if c["upload"].value else []
        if uploads and state["source"] != "path":
            name, data = uploads[-1]
            path = out_dir / "uploads" / Path(name).name
            files.atomic_write_bytes(path, data)
            return path
        text = c["video"].value.strip()
        if not text:
            raise InputError("no video: give a path to a video file or upload one.")
        if not Path(text).expanduser().exists():  # before any model is loaded
            raise InputError(
                f"Video not found: {text}. Check the path (and the working folder), or upload "
                "the video."
            )
        return text

    def _run(_button=None):
        from IPython.display import HTML

        _clear(out)
        with _guarded(c, state):
            prompt = c["prompt"].value
            if not prompt.strip():
                raise InputError("the prompt is empty: type what to track, e.g. 'car'.")
            source = _source()
            from helpers.textseg import durations

            keep = c["keep_missed"].value.strip()
            durations.seconds(keep, 30.0, "Keep missed")  # before any model is loaded
            log = lambda msg: show_note(out, msg)  # noqa: E731
            detector = cache.get("detector", c["detector"].value, log)
            tracker = cache.get("tracker", c["size"].value, log)
            t0 = time.perf_counter()
            result = run_fn(
                source,
                prompt,
                detector,
                tracker,
                out_dir,
                detect_every=int(c["detect_every"].value),
                prompt_type=c["prompt_type"].value,
                box_threshold=float(c["box_threshold"].value),
                keep_missed=keep,
                detect_on_doubt=bool(c["detect_on_doubt"].value),
                max_frames=max_frames,
            )
            elapsed = time.perf_counter() - t0
            state["result"] = result
            _clear(out)
            if result.video_path is not None:
                out.append_display_data(video_display(result.video_path, width=640))
            out.append_display_data(HTML(track_summary_html(result, elapsed)))

    rows = [
        c["prompt"],
        _row(c["video"], c["upload"]),
        _row(c["detect_every"], c["prompt_type"], c["box_threshold"]),
        _row(c["detector"], c["size"], c["keep_missed"], c["detect_on_doubt"]),
    ]
    title = "<b>Text-prompted video tracking</b> (Grounding DINO &rarr; SAM 2 video)"
    return _panel(title, rows, c, state, cache, _run, "q2-video-form")


# larger videos are neither sent through the widget channel nor copied into the notebook
EMBED_LIMIT_BYTES = 8 * 2**20


def video_display(path, width: int = 640, limit: int = EMBED_LIMIT_BYTES, *, place: str = "form"):
    """What a form (or, with ``place="notebook"``, a cell) shows for an output video: the video
    itself when it is small; otherwise a note with its size and where it was saved, and a link
    to it. Embedding copies the whole file as base64: through the widget channel, which drops
    large messages, or into the notebook file, which it bloats."""
    from pathlib import Path

    from IPython.display import HTML, Video

    path = Path(path)
    size = path.stat().st_size if path.is_file() else 0
    if size <= limit:
        return Video(str(path), embed=True, mimetype="video/mp4", width=width)
    mib = size / 2**20
    where = html.escape(str(path))
    return HTML(
        f'<p class="video-too-large">The video is {mib:.0f} MiB, too large to play inside the '
        f"{html.escape(place)}; it is saved as <code>{where}</code>: open it from the file "
        f'browser, or <a href="{html.escape(_file_href(path))}" target="_blank">here</a>.</p>'
    )


def show_video(path, width: int = 480, limit: int | None = None):
    """Show an output video in a notebook cell, as the forms do: played inline up to ``limit``
    bytes (default :data:`EMBED_LIMIT_BYTES`); a larger one is not copied into the notebook,
    and a line says so, with its size, where it is saved and a link. Returns what was shown."""
    from pathlib import Path

    from IPython.display import Video, display

    limit = EMBED_LIMIT_BYTES if limit is None else int(limit)
    shown = video_display(path, width=width, limit=limit, place="notebook")
    if isinstance(shown, Video):
        display(shown)
    else:  # plain text too, for a front end (or a log) that shows no HTML
        mib = Path(path).stat().st_size / 2**20 if Path(path).is_file() else 0.0
        text = (
            f"The video is {mib:.0f} MiB, too large to play inside the notebook "
            f"(limit {limit / 2**20:.0f} MiB); it is saved as {path}"
        )
        display({"text/plain": text, "text/html": shown.data}, raw=True)
    return shown


def _file_href(path) -> str:
    """A link the Jupyter server serves: ``files/<path relative to the notebook folder>``."""
    import os
    from pathlib import Path

    try:
        rel = os.path.relpath(Path(path).resolve(), Path.cwd())
    except ValueError:  # another drive (Windows)
        rel = str(path)
    return "files/" + Path(rel).as_posix() if not rel.startswith("..") else Path(path).as_uri()


def track_summary_html(result, elapsed: float | None = None) -> str:
    """Frames, ids and a per-id table (label, score, frames seen) of a TrackResult; ids that
    were detected but never got a visible mask are named under the table, not listed as rows
    "seen in 0 frames"."""
    from helpers.textseg.track_summary import track_summary

    s = track_summary(result)
    seen = {i: v for i, v in s["per_id"].items() if v["frames_seen"] > 0}
    unseen = [i for i in s["per_id"] if i not in seen]
    rows = "".join(
        f"<tr><td>{i}</td><td>{html.escape(str(v['label']))}</td><td>{v['score']:.3f}</td>"
        f"<td>{v['frames_seen']}</td></tr>"
        for i, v in seen.items()
    )
    took = f" in {elapsed:.1f}s" if elapsed is not None else ""
    note = (
        f"<p>Detected but never given a visible mask (not tracked): id {', '.join(unseen)}.</p>"
        if unseen
        else ""
    )
    return (
        f"<p>{s['frames']} frames{took}; {len(seen)} object id(s) tracked.</p>"
        '<table class="tracks"><thead><tr><th>id</th><th>label</th><th>score</th>'
        f"<th>frames seen</th></tr></thead><tbody>{rows}</tbody></table>{note}"
    )
