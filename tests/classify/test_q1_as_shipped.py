"""The Q1 notebook as shipped: every model its Run all trains, read from the notebook's own cells
with its real settings (not the smoke ones), built without training.

The notebook's cells are run in order up to each call of ``train`` or ``run_variants``; that
call's arguments are evaluated as the notebook would pass them, and instead of training, every
preset it would train is checked (as ``run_variants`` checks its variants before the first one
trains) and its model is built and runs one forward pass on a tiny batch. Pretrained timm
models are built with random weights: nothing is downloaded. A new analysis cell is covered as
soon as it calls one of the two.
"""

import ast
import json
import re
from pathlib import Path

import pytest
import torch

from helpers.classify import ablation as AB
from helpers.classify.models import build_model
from helpers.classify.train import check_settings

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "q1_vit_cifar10.ipynb"
TRAINS = ("train", "run_variants")  # the calls that train: recorded, never run


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def code_cells() -> list[str]:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def cifar_like():
    """Data of CIFAR-10's shape (32 px, 10 classes) with enough images for every batch size."""
    from helpers.classify.data import synthetic_dataset

    return synthetic_dataset(n_train=1024, n_val=16, n_test=16, num_classes=10, image_size=32)


def _training_call(stmt: ast.stmt) -> ast.Call | None:
    for node in ast.walk(stmt):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in TRAINS:
                return node
    return None


def dry_run(
    monkeypatch, tmp_path, preset_choice: str | None = None, until: str | None = None, form=None
):
    """The notebook's cells run with its real settings up to each training call, which is
    recorded as ``(name, args, kwargs)``. The data cell is replaced by :func:`cifar_like`
    data; cells without a training call after the first one (evaluation, plots) are
    skipped; a section's ``if`` runs the branch its switch picks. ``preset_choice`` sets the
    ``PRESET`` form field, ``form`` any others (``{"RUN_SWEEP": False}``), as if picked in the
    form; ``until`` stops after the first cell holding that text."""
    monkeypatch.delenv("HELPERS_SMOKE", raising=False)
    monkeypatch.setenv("HELPERS_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(ROOT / "notebooks")
    ns: dict = {"__name__": "__notebook__"}
    calls = []
    picked = {**({"PRESET": preset_choice} if preset_choice is not None else {}), **(form or {})}

    def run(body: list[ast.stmt]) -> bool:
        """Run ``body`` up to its training call (recorded); True when one was met."""
        for stmt in body:
            call = _training_call(stmt)
            if call is not None and isinstance(stmt, ast.If):  # a section behind its switch
                test = eval(compile(ast.Expression(stmt.test), "<cell>", "eval"), ns)
                return run(stmt.body if test else stmt.orelse)
            if call is not None:
                args = [eval(compile(ast.Expression(a), "<cell>", "eval"), ns) for a in call.args]
                kwargs = {
                    kw.arg: eval(compile(ast.Expression(kw.value), "<cell>", "eval"), ns)
                    for kw in call.keywords
                }
                calls.append((call.func.id, args, kwargs))
                return True  # the rest of the cell works on the trained result
            exec(compile(ast.Module([stmt], []), "<cell>", "exec"), ns)
            if isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    if getattr(target, "id", None) in picked:
                        ns[target.id] = picked[target.id]
        return False

    for source in code_cells():
        if "load_dataset(" in source:  # the data cell: CIFAR-10 would be downloaded
            ns["data"] = cifar_like()
            continue
        body = ast.parse(source).body
        if calls and not any(_training_call(stmt) for stmt in body):
            continue  # after training: evaluation, plots, predictions work on its results
        run(body)
        if until is not None and until in source:
            break
    assert not ns["SMOKE"]
    return calls, ns


def built_and_run(preset, data, max_steps_per_epoch=None):
    """Check ``preset`` against ``data`` as training does before it starts, build its model
    (random weights) and run one forward pass on two images of the size it takes."""
    check_settings(preset, data, max_steps_per_epoch)
    model, spec = build_model(preset, len(data.classes), pretrained=False)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, spec.size, spec.size))
    assert out.shape == (2, len(data.classes)), preset.name
    return model, spec


def preset_choices() -> list[str]:
    settings = next(s for s in code_cells() if re.search(r"^PRESET = ", s, re.M))
    line = next(ln for ln in settings.splitlines() if ln.startswith("PRESET = "))
    return ast.literal_eval(line.split("# @param", 1)[1].strip())


def test_the_form_offers_every_preset():
    from helpers.classify.presets import preset_names

    assert sorted(preset_choices()) == sorted(preset_names())


@pytest.mark.parametrize("choice", preset_choices())
def test_the_main_run_of_every_preset_choice_builds(monkeypatch, tmp_path, choice):
    calls, ns = dry_run(monkeypatch, tmp_path, choice, until="result = train(")
    assert [c[0] for c in calls] == ["train"]
    _, (preset, data, _out), kwargs = calls[0]
    assert preset.name == choice and ns["MODE"] == ("finetune" if preset.finetune else "scratch")
    assert kwargs["resume"] is True  # START_FRESH unticked: a re-run resumes
    built_and_run(preset, data, kwargs.get("max_steps_per_epoch"))


def test_every_analysis_run_of_a_run_all_builds(monkeypatch, tmp_path):
    calls, ns = dry_run(monkeypatch, tmp_path)
    assert [c[0] for c in calls] == ["train"] + ["run_variants"] * 4
    seen = {}
    for _, args, kwargs in calls[1:]:
        base, variants, data, _root = args
        # what run_variants does before it trains anything: every variant built and checked
        built = AB.variant_presets(
            base,
            variants,
            common=kwargs.get("common"),
            minutes=kwargs.get("minutes"),
            data=data,
            max_steps_per_epoch=kwargs.get("max_steps_per_epoch"),
        )
        for name, (_, settings, preset) in built.items():
            assert settings.get("minutes") == kwargs.get("minutes") is not None
            model, _ = built_and_run(preset, data, kwargs.get("max_steps_per_epoch"))
            seen[name] = preset
            del model
    assert [n for n in seen if n.startswith("patch ")] == ["patch 2", "patch 4", "patch 8"]
    assert {seen[f"patch {p}"].model.patch_size for p in (2, 4, 8)} == {2, 4, 8}
    assert set(AB.ABLATIONS) <= set(seen)
    # the sweep: every depth, width and learning rate of its grid, widths with their heads
    for name in ("depth 4", "depth 9", "dim 256", "dim 512", "lr 0.001", "lr 0.004"):
        assert name in seen, name
    assert (seen["dim 256"].model.heads, seen["dim 512"].model.heads) == (4, 8)
    assert seen["ViT-S/16"].finetune and seen["ViT-S/32"].timm_name.startswith("vit_small_patch32")
    assert not any(tmp_path.rglob("*.pt"))  # nothing was trained


SWITCHES = ("RUN_PATCH_SIZES", "RUN_ABLATION", "RUN_SWEEP", "RUN_FINETUNE_COMPARE")


def test_each_optional_section_is_behind_its_switch_and_says_its_cost(monkeypatch, tmp_path):
    """Switched off, a section trains nothing; the form says each section's runs and minutes
    as the notebook's own settings count them, and the cell after it prints the total."""
    calls, ns = dry_run(monkeypatch, tmp_path, form=dict.fromkeys(SWITCHES, False))
    assert [c[0] for c in calls] == ["train"]
    assert "0 min of training budgets" in AB.sections_cost(ns["sections"])
    # the form's words against the settings they describe (runs x minutes each = total)
    settings = next(s for s in code_cells() if re.search(r"^PRESET = ", s, re.M))
    said = re.findall(r"# @markdown .*?: (\d+) runs × `(\w+)` \((\d+) min at ([\d.]+)\)", settings)
    runs = {name: n for name, (_, n, _) in ns["sections"].items()}
    assert [int(n) for n, *_ in said] == list(runs.values())
    total = 0.0
    for n, minutes_name, total_said, at in said:
        assert float(at) == ns[minutes_name] and int(n) * ns[minutes_name] == int(total_said)
        total += int(total_said)
    assert f"all four at these values: {total:g} min" in settings
    for switch in SWITCHES:
        assert re.search(rf"^{switch} = True  # @param {{type:\"boolean\"}}$", settings, re.M)
    assert re.search(r'^KEEP_LAST = False  # @param {type:"boolean"}$', settings, re.M)
    # with every switch on (as shipped), every section runs and keeps no last.pt
    calls, ns = dry_run(monkeypatch, tmp_path)
    assert [c[2]["keep_last"] for c in calls[1:]] == [False] * 4
    assert f"{total:g} min of training budgets" in AB.sections_cost(ns["sections"])
