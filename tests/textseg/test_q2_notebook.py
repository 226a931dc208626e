"""Execute notebooks/q2_text_segmentation.ipynb headless in smoke mode (random weights, offline)
and check that every section ran and wrote its outputs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from helpers import repo

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "q2_text_segmentation.ipynb"


def test_notebook_is_committed_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["accelerator"] == "GPU" and nb.metadata["colab"]["gpuType"] == "T4"
    assert repo.colab_url("q2_text_segmentation.ipynb") in nb.cells[0].source  # helpers/repo.py
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_runs_in_smoke_mode(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("HELPERS_SMOKE", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws PNGs
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    try:
        client.execute()
    except Exception as e:  # show the failing cell's error, not nbclient's wrapper only
        pytest.fail(f"notebook failed: {str(e)[-3000:]}")

    out = tmp_path / "runs" / "q2_text_segmentation"
    # section 3: one image
    for name in ("example_overlay.png", "example_mask.png", "example.json"):
        assert (out / "image" / name).is_file(), name
    doc = json.loads((out / "image" / "example.json").read_text())
    assert doc["prompt"] == "cat"  # the sample photo and its prompt
    # which step produced the masks, and the weighted mask choice, are in the JSON
    assert doc["produced_by"] in ("detector", "lower-threshold", "clipseg", "none")
    assert doc["attempts"][0]["step"] == "detector"
    assert len(doc.get("mask_choice", [])) == doc["num_instances"]
    folder_doc = json.loads((out / "folder" / "scene0.json").read_text())
    assert "produced_by" in folder_doc and folder_doc["settings"]["overlay"]["opacity"] == 0.5
    # section 5: folder (three sample scenes), resumable
    assert sorted(p.name for p in (out / "folder").glob("*.json")) == [
        "scene0.json",
        "scene1.json",
        "scene2.json",
    ]
    # section 6: video
    tracks = list((out / "video").glob("*.mp4"))
    assert tracks and tracks[0].stat().st_size > 0
    assert (out / "side_by_side.mp4").stat().st_size > 0  # input | output with the FPS
    # section 7: evaluation
    scores = json.loads((out / "eval.json").read_text())
    assert 0.0 <= scores["mean_iou"] <= 1.0 and scores["num_images"] == 3

    texts = []
    kinds = set()
    pngs = 0
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            assert o.get("output_type") != "error", o
            texts.append(o.get("text", "") or json.dumps(o.get("data", {}).get("text/plain", "")))
            kinds.update(o.get("data", {}).keys())
            pngs += "image/png" in o.get("data", {})
    joined = "\n".join(texts)
    # library chatter stays out of the cells: torch's torch.jit.script deprecation (inside
    # sam2), SAM 3 video's skipped post-processing and its per-frame notes
    stderr = "\n".join(
        o.get("text", "")
        for cell in nb.cells
        for o in cell.get("outputs", [])
        if o.get("name") == "stderr"
    )
    for noise in ("torch.jit.script", "kernels library", "max_num_objects", "FutureWarning"):
        assert noise not in stderr, (noise, stderr[-2000:])
    assert "second run:" in joined and "'skipped': 3" in joined
    assert "frames, ids" in joined and "mean IoU" in joined
    assert "video form: 20 frames tracked" in joined  # widgets.video_ui shown and driven
    assert "routes: clipseg" in joined  # CLIPSeg and CLIP re-scoring reached
    # fallback: the box threshold nothing passes is rescued, and the printout says by what
    assert "masks from: " in joined and "form masks from: " in joined
    assert "with fallback: " in joined and "(fallback; tried: detector (box 1 " in joined
    assert "without fallback: nothing found" in joined
    assert "weighted choice: sam " in joined  # the multi-criteria pick, per criterion
    assert "model cache: " in joined  # space per cached model
    assert "weights cache: smoke mode" in joined  # Drive only inside Colab, never in CI
    assert "processing " in joined and " FPS" in joined
    assert list((out / "video_form").glob("*.mp4"))
    # section 8: SAM 3 beside the Grounding DINO + SAM 2.1 route, image and video
    assert (out / "sam3_image" / "example.json").is_file()
    assert list((out / "sam3_video").glob("*.mp4"))
    assert "SAM 3: 6 frames" in joined and "Grounding DINO + SAM 2.1:" in joined
    assert pngs >= 2  # overlay + masks figure, SAM 2 candidates figure
    assert "text/html" in kinds  # the embedded video
    assert "SAM 3 is off" not in joined  # the offline check runs the SAM 3 cells too
    assert "hub token: " in joined  # outside Colab: nothing read from Colab's secrets


def test_notebook_has_colab_forms():
    """Settings are Colab form fields; outputs go to Drive; any-size uploads and per-GPU sizes."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for name in (
        "DETECTOR",
        "SAM2_SIZE",
        "ROUTE",
        "RESCORE_WITH_CLIP",
        "IMAGE",
        "PROMPT",
        "BOX_THRESHOLD",
        "TEXT_THRESHOLD",
        "VIDEO",
        "VIDEO_PROMPT",
        "DETECT_EVERY",
        "USE_DRIVE",
        "RUN_SAM3",
        "FALLBACK",
        "MASK_WEIGHTS",
        "OVERLAY_COLOR",
        "OVERLAY_OPACITY",
        "SIDE_BY_SIDE",
    ):
        assert any(
            line.startswith(f"{name} = ") and "# @param" in line for line in code.splitlines()
        ), name
    assert "use_drive=False" not in code  # Colab: Google Drive
    assert "widgets.pick_sam2_size(widgets.gpu_info())" in code
    assert "widgets.colab_upload_button(" in code and "widgets.video_ui(" in code
    assert "runtime.cache_models_on_drive(" in code and "runtime.model_cache_sizes()" in code
    # the Drive cache is set before any model library is imported
    assert code.index("runtime.cache_models_on_drive(") < code.index(
        "from helpers.textseg import sam3"
    )


def _code_cells() -> list[str]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _param(code: str, name: str) -> str:
    """The value a ``NAME = value  # @param`` line gives (its Python text)."""
    for line in code.splitlines():
        if line.startswith(f"{name} = ") and "# @param" in line:
            return line.split(" = ", 1)[1].split("  # @param")[0]
    raise AssertionError(f"no form field {name}")


def test_every_video_is_shown_through_the_shared_helper():
    """No cell embeds a video itself (a long one would be base64 inside the notebook): every
    output video goes through widgets.show_video, which embeds only below the forms' cap."""
    import inspect

    from helpers.textseg import widgets

    code = "\n".join(_code_cells())
    assert "embed=True" not in code and "Video(" not in code
    assert code.count("widgets.show_video(") == 3  # tracked / side by side, and SAM 3's
    source = inspect.getsource(widgets)
    assert source.count("embed=True") == 1 and "embed=True" in inspect.getsource(
        widgets.video_display
    )
    assert "limit" in inspect.signature(widgets.show_video).parameters


def test_run_all_never_stops_for_a_file_picker():
    """Colab's picker opens only from a button; no cell calls it while it runs."""
    code = "\n".join(_code_cells())
    assert not re.search(r"colab_upload\(", code)
    assert code.count("widgets.colab_upload_button(") == 2  # one for an image, one for a video
    assert "UPLOAD_WITH_COLAB" not in code and "UPLOAD_VIDEO_WITH_COLAB" not in code
    assert "image_upload.paths" in code and "video_upload.paths" in code


def test_sample_media_are_real_photos_and_the_prompts_name_them():
    import numpy as np

    from helpers.textseg import media

    cells = _code_cells()
    code = "\n".join(cells)
    photo, video = ROOT / "assets" / "cat.jpg", ROOT / "assets" / "coffee_video.mp4"
    for path in (photo, video):
        assert path.is_file() and path.stat().st_size <= 300 * 1024, path
    image_cell = next(c for c in cells if "PROMPT = " in c and "IMAGE = " in c)
    assert _param(image_cell, "IMAGE") == '""' and 'asset("cat.jpg")' in image_cell
    assert _param(image_cell, "PROMPT") == '"cat"'  # Chelsea the cat
    video_cell = next(c for c in cells if "VIDEO_PROMPT = " in c)
    assert _param(video_cell, "VIDEO") == '""' and 'asset("coffee_video.mp4")' in video_cell
    assert _param(video_cell, "VIDEO_PROMPT") == '"cup. spoon"'  # a cup of coffee, a spoon
    # the offline check's random detector knows the words of these prompts
    words = re.search(r"PROMPT_WORDS = (\[.*?\])", code).group(1)
    assert all(w in words for w in ('"cat"', '"cup"', '"spoon"'))
    assert media.load_image(photo).shape == (300, 451, 3)
    frames = list(media._decoded_rgb(video))
    # 10 fps and long enough for the smoke form's 20 frames (2 s); the camera moves
    assert len(frames) >= 30 and frames[0].shape == (240, 320, 3)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 5


def _run_setup_cell(monkeypatch, tmp_path, use_drive: bool, run_sam3: bool) -> dict:
    """Run the notebook's setup cell as Colab would, with Colab's modules faked: what it asked
    of Drive, of the secrets and where the outputs go."""
    import importlib.machinery
    import sys
    import types

    from huggingface_hub.utils import _auth

    from helpers import runtime
    from helpers.textseg import sam3

    seen = {"secrets": [], "drive": [], "roots": [], "installs": 0}
    userdata = types.ModuleType("google.colab.userdata")

    class SecretNotFoundError(Exception):
        pass

    class NotebookAccessError(Exception):
        pass

    userdata.SecretNotFoundError, userdata.NotebookAccessError = (
        SecretNotFoundError,
        NotebookAccessError,
    )
    userdata.get = lambda key: seen["secrets"].append(key) or "hf_secret"
    colab = types.ModuleType("google.colab")
    colab.__spec__ = importlib.machinery.ModuleSpec("google.colab", None)
    colab.userdata = userdata
    google = types.ModuleType("google")
    google.colab = colab
    for name, module in (("google", google), ("google.colab", colab)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    monkeypatch.delenv("HELPERS_SMOKE", raising=False)
    monkeypatch.delenv("HELPERS_OUTPUT_DIR", raising=False)
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(_auth, "_IS_GOOGLE_COLAB_CHECKED", False)
    monkeypatch.setattr(_auth, "_GOOGLE_COLAB_SECRET", None)
    monkeypatch.setattr(
        runtime,
        "cache_models_on_drive",
        lambda **kw: seen["drive"].append(kw) or {"enabled": False, "reason": "faked"},
    )

    def output_dir(name, root=None, **kw):
        seen["roots"].append(root)
        return tmp_path / "out"

    monkeypatch.setattr(runtime, "output_dir", output_dir)

    def ensure():
        seen["installs"] += 1
        return {"message": "transformers ok"}

    monkeypatch.setattr(sam3, "ensure_sam3_transformers", ensure)
    setup = _code_cells()[0]
    for name, value in (("USE_DRIVE", use_drive), ("RUN_SAM3", run_sam3)):
        assert _param(setup, name) in ("True", "False")
        setup = setup.replace(f"{name} = {_param(setup, name)}", f"{name} = {value}", 1)
    monkeypatch.chdir(tmp_path)
    exec(compile(setup, "setup cell", "exec"), {"__name__": "__main__"})
    seen["token"] = os.environ.get("HF_TOKEN")
    seen["hub_checked"] = _auth._IS_GOOGLE_COLAB_CHECKED
    return seen


def test_one_switch_keeps_everything_off_drive(monkeypatch, tmp_path):
    code = "\n".join(_code_cells())
    assert "CACHE_MODELS_ON_DRIVE" not in code and "OUTPUT_ROOT" not in code
    off = _run_setup_cell(monkeypatch, tmp_path, use_drive=False, run_sam3=False)
    assert off["drive"] == [] and off["roots"] == ["runs"]  # no Drive dialog, outputs local
    on = _run_setup_cell(monkeypatch, tmp_path, use_drive=True, run_sam3=False)
    assert on["drive"] == [{"mount": True}] and on["roots"] == [None]  # Drive: weights, outputs


def test_the_hub_token_is_read_once_at_the_start_only_for_sam3(monkeypatch, tmp_path):
    off = _run_setup_cell(monkeypatch, tmp_path, use_drive=False, run_sam3=False)
    assert off["secrets"] == [] and off["token"] is None and off["installs"] == 0
    assert off["hub_checked"]  # the hub libraries will not ask for the secret later either
    on = _run_setup_cell(monkeypatch, tmp_path, use_drive=False, run_sam3=True)
    assert on["secrets"] == ["HF_TOKEN"] and on["token"] == "hf_secret" and on["installs"] == 1
    assert on["hub_checked"]
    cells = _code_cells()
    later = "\n".join(cells[1:])
    assert "userdata" not in later and "HF_TOKEN" not in later  # no cell after asks again
    assert "import google" not in "\n".join(cells)  # google.colab: only via helpers, in Colab
    sam3_cell = next(c for c in cells if "SAM3_SCORE_THRESHOLD = " in c)
    assert "if not RUN_SAM3:" in sam3_cell  # the SAM 3 cells honour the switch
