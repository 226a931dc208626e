"""Runs notebooks/q1_vit_cifar10.ipynb top to bottom in smoke mode (tiny synthetic run, CPU)."""

import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from helpers import repo

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "q1_vit_cifar10.ipynb"


def test_notebook_is_committed_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["accelerator"] == "GPU"
    assert nb.metadata["colab"]["gpuType"] == "T4"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs"
    # the badge points at the repository named in helpers/repo.py (a fork runs
    # `python -m helpers repo OWNER/NAME` and this still holds)
    assert repo.colab_url("q1_vit_cifar10.ipynb") in nb.cells[0].source
    assert "# @param" in "".join(c.source for c in code)


@pytest.mark.parametrize("cwd", ["notebooks"])
def test_notebook_runs_in_smoke_mode(tmp_path, monkeypatch, cwd):
    from nbclient import NotebookClient

    monkeypatch.setenv("HELPERS_SMOKE", "1")
    monkeypatch.setenv("HELPERS_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("HELPERS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / cwd)}}
    )
    client.execute()  # raises CellExecutionError with the cell's traceback on any failure

    run = tmp_path / "q1_fast_smoke"
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    # the best epoch was chosen on val; the test split was scored at the end and evaluated
    test = json.loads((run / "test.json").read_text())
    assert test["num_samples"] == 64 and test["selected_on"] == "val"
    # the folder the evaluate command would write: eval/<data>-<split>
    metrics = json.loads((run / "eval" / "synthetic-test" / "metrics.json").read_text())
    assert metrics["num_samples"] == 64 and 0.0 <= metrics["top1"] <= 1.0
    assert metrics["tta_flip"] is True and metrics["split"] == "test"
    assert metrics["top1"] == test["acc_flip_tta"] and metrics["top1_plain"] == test["acc"]
    for name in ("history", "confusion", "per_class", "samples", "attention"):
        assert (run / "eval" / "synthetic-test" / f"{name}.png").stat().st_size > 1000, name
    assert (run / "eval" / "patch_comparison.png").stat().st_size > 1000
    assert (run / "eval" / "synthetic-test" / "confused_pairs.png").stat().st_size > 1000
    analysis = tmp_path / "q1_fast_smoke_analysis"
    ablation = json.loads((analysis / "ablation.json").read_text())
    assert [r["variant"] for r in ablation][:2] == ["recipe as is", "no EMA"]
    assert all(0.0 <= r["val_acc"] <= 1.0 and "delta" in r for r in ablation)
    sweep = json.loads((analysis / "sweep.json").read_text())
    assert [r["variant"] for r in sweep] == ["base", "depth 1", "dim 48", "lr 0.001"]
    assert sweep[2]["overrides"] == {"dim": 48, "heads": 3}  # the smoke model's head width
    patches = json.loads((analysis / "finetune_patch.json").read_text())
    assert [r["variant"] for r in patches] == ["ViT-S/16", "ViT-S/32"]
    assert set(patches[0]["per_class_f1"]) == set(patches[1]["per_class_f1"])
    for name in ("ablation.png", "sweep.png", "finetune_patch_f1.png"):
        assert (analysis / name).stat().st_size > 1000, name
    rows = json.loads((run / "patch_comparison.json").read_text())
    assert [r["patch_size"] for r in rows] == [2, 4, 8]
    assert [r["tokens"] for r in rows] == [256, 64, 16]
    for p in (2, 4, 8):  # each in its own folder, named after its settings
        (folder,) = (tmp_path / "q1_fast_smoke_patch").glob(f"patch-{p}-*")
        assert (folder / "best.pt").is_file() and str(folder) in {r["out_dir"] for r in rows}

    def printed(marker: str) -> str:  # what the code cell holding ``marker`` printed
        cell = next(c for c in nb.cells if c.cell_type == "code" and marker in c.source)
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    trained, evaluated = printed("result = train("), printed("metrics = evaluate(")
    # the test accuracy is printed once (by training, when it finished), not again by Evaluate
    assert trained.count("test accuracy") == 1, trained
    assert "test accuracy" not in evaluated and not re.search(r"top-1 [0-9.]+ plain", evaluated)
    assert "top-5" in evaluated, evaluated
    assert "peak GPU memory" not in trained  # a CPU run has no GPU memory to report
    # the patch-size runs are summed up by their table, not by each run's log
    patch = printed("patch_runs = run_variants(")
    assert "test accuracy" not in patch and "calibrated" not in patch, patch
    assert "patch tokens" in " ".join(patch.split()), patch
    # the top-5 printout of "classify your own image"
    text = printed("top5 = classify(")
    assert text.count("%") == 5, text
    # the optional sections' cost, said before anything trains (smoke: no budgets)
    cost = printed("print(sections_cost(")
    assert "\noptional sections: 0 min of training budgets" in cost, cost
    assert "3 runs, no time budget" in cost and "4 runs, no time budget" in cost  # smoke grid
    # a finished analysis run keeps its weights, history and row, not last.pt (KEEP_LAST off)
    variant_folders = [p.parent for p in tmp_path.rglob("variant.json")]
    assert len(variant_folders) == 3 + 5 + 4 + 2
    assert not [f for f in variant_folders if (f / "last.pt").exists()]
    assert all((f / "best.pt").is_file() for f in variant_folders)
    # the space the outputs take, by the end
    space = printed("print(space_report(").splitlines()
    assert space[0].startswith("outputs: ") and space[0].endswith(" in all"), space
    assert [ln.split()[0] for ln in space[1:]] == ["main", "patch", "analyses"], space
    assert str(tmp_path / "q1_fast_smoke_analysis") in space[3]
    assert os.environ["HELPERS_SMOKE"] == "1"


def test_a_wrong_setting_stops_its_cell_with_one_line(tmp_path, monkeypatch):
    """The notebook's setup cell, then a cell with a setting that cannot work: that cell fails
    (Run all stops there) and shows the InputError's message alone, without a traceback."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("HELPERS_SMOKE", "1")
    monkeypatch.setenv("HELPERS_OUTPUT_DIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    bad = nbformat.v4.new_code_cell("from helpers.classify.presets import get_preset\n"
                                    "get_preset('fast', dim=256)")  # fmt: skip
    nb.cells = [setup, bad]
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    with pytest.raises(CellExecutionError):
        client.execute()
    (error,) = [o for o in bad.outputs if o.output_type == "error"]
    assert error.ename == "InputError"
    shown = [ln for ln in "\n".join(error.traceback).splitlines() if ln.strip()]
    assert len(shown) == 1 and "dim 256 is not divisible by heads 6." in shown[0], shown
    assert "Traceback" not in shown[0]
