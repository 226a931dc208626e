"""Q1's outputs are units and its folders have one writer (issue 30): a failure while writing any
output of ``train`` (a save: ``best.pt``, ``last.pt``, the history) or ``evaluate`` (metrics,
arrays, report, figures) leaves the folder's earlier set whole, or nothing new; a second
``train`` on a folder in use stops with one line naming the first; a lock left by a process
that died is taken over; 3,000 classes skip the per-class figures (metrics still written); a
run with tens of thousands of tokens per image says so before anything is built."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import files
from helpers.classify import checkpoint as CK
from helpers.classify import train as T
from helpers.classify.presets import get_preset
from helpers.cli import main
from helpers.errors import InputError
from tests.classify.test_q1_faults import one_line_error, run_cli, train_argv
from tests.classify.test_train import one_thread  # noqa: F401  (autouse: one thread a module)

ROOT = Path(__file__).resolve().parents[2]
QUIET = dict(device="cpu", pretrained=False, progress=False, log=lambda m: None)


def tiny_preset(**kw):
    opts = dict(
        image_size=16, patch_size=4, dim=32, depth=1, heads=2, mlp_ratio=2, epochs=2,
        batch_size=32, compile=False, precision="fp32", checkpoint_minutes=0, seed=kw.pop("seed", 0),
    )  # fmt: skip
    return get_preset("fast", **{**opts, **kw})


def tiny_data():
    from helpers.classify.data import synthetic_dataset

    return synthetic_dataset(n_train=64, n_val=32, n_test=32, num_classes=4, image_size=16)


def listing(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` (hidden ones and temporaries included) and its bytes."""
    if not folder.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def fail_at(monkeypatch, k: int, real=None) -> list[Path]:
    """The k-th atomic write (1-based) fails as a full disk does; returns the paths written.
    ``real``: the writer to wrap (default: the one in place now)."""
    real, calls = real or files.atomic_path, []

    @contextlib.contextmanager
    def atomic_path(path, suffix=None):
        calls.append(Path(path))
        with real(path, suffix) as tmp:
            yield tmp
            if len(calls) == k:
                raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "atomic_path", atomic_path)
    return calls


@pytest.fixture
def always_better(monkeypatch):
    """Every validation is better than the one before, so every save writes best.pt too and
    the number of writes is the same each time: best.pt, last.pt, history.json, history.csv."""
    real = T.validate

    def validate(run, model, batch_size=512):
        return {**real(run, model, batch_size), "val_acc": 0.1 * (run.epoch + 1)}

    monkeypatch.setattr(T, "validate", validate)


SAVE = ["best.pt", "last.pt", "history.json", "history.csv"]
LAST_SAVE = [*SAVE, "test.json"]  # the run's last save and its test score: one unit


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_a_failure_at_any_output_of_the_last_save_leaves_the_earlier_set_whole(
    tmp_path, monkeypatch, always_better, k
):
    data, out = tiny_data(), tmp_path / "run"
    T.train(tiny_preset(), data, out, max_steps_per_epoch=2, max_epochs_this_run=1, **QUIET)
    old = listing(out)
    assert sorted(old) == sorted(SAVE)  # epoch 1 of 2: no test.json yet
    calls = fail_at(monkeypatch, k)
    with pytest.raises(files.WriteError, match="disk is full"):
        T.train(tiny_preset(), data, out, max_steps_per_epoch=2, **QUIET)
    # the k-th write of the last save (or the test score) failed: the folder is the epoch-1
    # set, byte for byte, with no staged file, no temporary and no lock left
    assert [p.name.split(files.TMP_MARK)[0].lstrip(".") for p in calls] == LAST_SAVE[:k]
    assert listing(out) == old
    monkeypatch.undo()
    resumed = T.train(tiny_preset(), data, out, max_steps_per_epoch=2, **QUIET)
    assert [r["epoch"] for r in resumed.history] == [1, 2]  # resumed from the old set
    assert sorted(listing(out)) == sorted(["last.prev.pt", *LAST_SAVE])


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_a_failure_in_a_new_folder_leaves_nothing(tmp_path, monkeypatch, always_better, k):
    out = tmp_path / "run"
    fail_at(monkeypatch, k)
    with pytest.raises(files.WriteError):
        T.train(tiny_preset(epochs=1), tiny_data(), out, max_steps_per_epoch=2, **QUIET)
    assert listing(out) == {}


def test_a_save_in_the_middle_of_a_run_is_a_unit_of_its_own(tmp_path, monkeypatch, always_better):
    """Saves before the last one commit at once (a later failure keeps them): here the save
    of epoch 1 stands when the last save's history.csv fails."""
    data, out = tiny_data(), tmp_path / "run"
    calls = fail_at(monkeypatch, 8)  # epoch 1: 4 writes; epoch 2: best, last, json, csv
    with pytest.raises(files.WriteError):
        T.train(tiny_preset(), data, out, max_steps_per_epoch=2, **QUIET)
    assert calls[-1].name.startswith(".history.csv")
    assert sorted(listing(out)) == sorted(SAVE)
    assert len(json.loads((out / "history.json").read_text())) == 1


def test_an_interrupt_while_scoring_keeps_the_last_save(tmp_path, monkeypatch):
    """Ctrl-C during the test score: the trained epochs are kept (no test.json); the next call
    trains nothing and scores them."""
    data, out = tiny_data(), tmp_path / "run"

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "_score_test", interrupted)
    with pytest.raises(KeyboardInterrupt):
        T.train(tiny_preset(epochs=1), data, out, max_steps_per_epoch=2, **QUIET)
    assert sorted(listing(out)) == sorted(SAVE)
    monkeypatch.undo()
    r = T.train(tiny_preset(epochs=1), data, out, max_steps_per_epoch=2, **QUIET)
    assert r.test is not None and (out / "test.json").is_file()


def test_an_interrupt_in_the_middle_of_the_last_save_leaves_the_earlier_set(
    tmp_path, monkeypatch, always_better
):
    data, out = tiny_data(), tmp_path / "run"
    T.train(tiny_preset(), data, out, max_steps_per_epoch=2, max_epochs_this_run=1, **QUIET)
    old = listing(out)

    def interrupted(history, folder):  # best.pt and last.pt are staged by now
        raise KeyboardInterrupt

    monkeypatch.setattr(CK, "write_history", interrupted)
    with pytest.raises(KeyboardInterrupt):
        T.train(tiny_preset(), data, out, max_steps_per_epoch=2, **QUIET)
    assert listing(out) == old


# --------------------------------------------------------------------------- evaluate


@pytest.fixture
def quick_figures(monkeypatch):
    """evaluate's five figures as tiny ones (drawing the real ones costs seconds each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.classify import plots

    def tiny(*a, **k):
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.plot([0, 1])
        return fig

    for name in ("plot_confusion", "plot_per_class", "plot_samples", "plot_history",
                 "plot_attention"):  # fmt: skip
        monkeypatch.setattr(plots, name, tiny)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("q1unit")
    assert main(train_argv(out)) == 0
    return out


EVAL_SET = [
    "attention.png", "classification_report.txt", "confusion.png", "history.png",
    "logits.npy", "metrics.json", "per_class.png", "predictions.npy", "samples.png",
    "targets.npy",
]  # fmt: skip


def test_a_failure_at_any_evaluation_output_leaves_the_earlier_evaluation(
    trained, tmp_path, capsys, monkeypatch, quick_figures
):
    out = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", str(trained), "--data", "synthetic", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    rc, res, err = run_cli([*argv, "--tta"], capsys)
    assert rc == 0, err
    old = listing(out)
    assert sorted(old) == EVAL_SET and res["files"] == EVAL_SET
    assert json.loads(old["metrics.json"])["tta_flip"] is True
    real = files.atomic_path
    for k in range(1, len(EVAL_SET) + 1):
        calls = fail_at(monkeypatch, k, real)
        rc, _, err = run_cli([*argv, "--no-tta"], capsys)
        one_line_error(rc, err, "could not write", "disk is full")
        assert len(calls) == k, (k, calls)
        assert listing(out) == old, k  # the earlier evaluation, whole; nothing of the new one
    # nothing new where there was nothing
    fail_at(monkeypatch, len(EVAL_SET), real)
    rc, _, err = run_cli([*argv[:-1], str(tmp_path / "fresh")], capsys)
    assert rc == 2 and listing(tmp_path / "fresh") == {}, err


def test_a_figure_skipped_this_time_goes_with_the_earlier_evaluation(
    trained, tmp_path, capsys, monkeypatch, quick_figures
):
    from helpers.classify import plots

    out = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", str(trained), "--data", "synthetic", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert run_cli(argv, capsys)[0] == 0 and (out / "attention.png").exists()

    def unsupported(*a, **k):
        raise InputError("attention maps need plain ViT blocks")

    monkeypatch.setattr(plots, "plot_attention", unsupported)
    rc, res, err = run_cli(argv, capsys)
    assert rc == 0 and "note: skipped attention.png" in err
    assert sorted(listing(out)) == [n for n in EVAL_SET if n != "attention.png"] == res["files"]


# --------------------------------------------------------------------------- one writer a folder

_HOLDER = """
import sys
from pathlib import Path
from helpers.classify.checkpoint import folder_lock
with folder_lock(Path(sys.argv[1]), "train"):
    print("holding", flush=True)
    sys.stdin.read()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks")
def test_a_second_train_on_a_folder_in_use_is_one_line_naming_the_first(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "holding"
        rc, _, err = run_cli(train_argv(out), capsys)
        line = one_line_error(rc, err, "is in use", f"process {holder.pid}", "another --out")
        assert "train" in line
        assert sorted(listing(out)) == [CK.LOCK_NAME]  # nothing of the second run
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0 and not (out / CK.LOCK_NAME).exists()
    rc, res, err = run_cli(train_argv(out), capsys)  # free again
    assert rc == 0 and res["epochs"] == 1, err
    assert not (out / CK.LOCK_NAME).exists()


DEAD = 2**22 + 12345  # beyond the usual pid range: no such process


@pytest.mark.parametrize("flock", [True, False], ids=["flock", "no-flock"])
def test_a_lock_left_by_a_process_that_died_is_taken_over(tmp_path, monkeypatch, flock):
    """``kill -9`` leaves the lock file with its pid: the next run takes it over, with the
    kernel's locks (flock) and on file systems without them (the pid is checked)."""
    if not flock:
        monkeypatch.setattr(CK, "_try_flock", lambda fd: None)
    out = tmp_path / "run"
    out.mkdir()
    (out / CK.LOCK_NAME).write_text(f"{DEAD}\n")
    r = T.train(tiny_preset(epochs=1), tiny_data(), out, max_steps_per_epoch=2, **QUIET)
    assert r.stop_reason == "done" and not (out / CK.LOCK_NAME).exists()


def test_without_kernel_locks_a_live_pid_holds_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(CK, "_try_flock", lambda fd: None)
    out = tmp_path / "run"
    out.mkdir()
    (out / CK.LOCK_NAME).write_text(f"{os.getppid()}\n")  # a live process, not this one
    with pytest.raises(InputError, match=rf"in use: another train \(process {os.getppid()}\)"):
        T.train(tiny_preset(epochs=1), tiny_data(), out, max_steps_per_epoch=2, **QUIET)
    assert sorted(listing(out)) == [CK.LOCK_NAME]
    # this process's own pid (a notebook kernel after a crash of its cell) is no other writer
    (out / CK.LOCK_NAME).write_text(f"{os.getpid()}\n")
    T.train(tiny_preset(epochs=1), tiny_data(), out, max_steps_per_epoch=2, **QUIET)


def test_the_lock_is_let_go_when_training_fails(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(InputError, match="batch_size 1000"):  # refused before the lock
        T.train(tiny_preset(batch_size=1000), tiny_data(), out, **QUIET)
    lock_seen = []

    def boom(*a, **k):
        lock_seen.append((out / CK.LOCK_NAME).exists())
        raise RuntimeError("a bug in setup")

    mp = pytest.MonkeyPatch()
    mp.setattr(T, "_setup", boom)
    try:
        with pytest.raises(RuntimeError):
            T.train(tiny_preset(epochs=1), tiny_data(), out, **QUIET)
    finally:
        mp.undo()
    assert lock_seen == [True] and not (out / CK.LOCK_NAME).exists()
    T.train(tiny_preset(epochs=1), tiny_data(), out, max_steps_per_epoch=2, **QUIET)


# --------------------------------------------------------------------------- many classes


def test_3000_classes_skip_the_per_class_figures_and_still_write_the_metrics(tmp_path, capsys):
    """evaluate's own writing path (metrics, arrays, report, figures in one set) on a
    3,000-class model: the heatmap and the per-class bars are skipped with a note each,
    before matplotlib draws anything; the other figures and every metric are written."""
    import argparse

    import matplotlib.pyplot as plt

    from helpers.classify import commands
    from helpers.classify.checkpoint import LoadedModel
    from helpers.classify.data import synthetic_dataset
    from helpers.classify.metrics import EVAL_FILES
    from helpers.classify.models import build_model

    n = 3000
    data = synthetic_dataset(n_train=4, n_val=n, num_classes=n, image_size=8)
    preset = get_preset("fast", image_size=8, patch_size=4, dim=16, depth=1, heads=2)
    model, spec = build_model(preset, n, pretrained=False)
    loaded = LoadedModel(model.eval(), spec, list(data.classes), preset, 1, [])
    args = argparse.Namespace(tta=False, batch_size=1024, checkpoint=str(tmp_path / "none"))
    x, y = data.split("val")
    out = tmp_path / "eval"
    figures_before = plt.get_fignums()
    with files.output_set(out, members=[*EVAL_FILES, *commands.FIGURES], last=["metrics.json"]):
        m, written = commands._evaluate_into(out, args, loaded, data, "val", x, y, "cpu")
    err = capsys.readouterr().err
    assert "note: skipped confusion.png: 3,000 classes are more than the 100" in err
    assert "note: skipped per_class.png" in err and "classification_report.txt" in err
    assert sorted(written) == ["attention.png", "samples.png"]
    assert sorted(listing(out)) == sorted([*EVAL_FILES, *written])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_samples"] == n and len(metrics["per_class"]) == n
    assert len(metrics["confusion_matrix"]) == n
    assert plt.get_fignums() == figures_before  # every figure drawn was closed


# --------------------------------------------------------------------------- many tokens


def test_tens_of_thousands_of_tokens_are_warned_before_anything_is_built(tmp_path, monkeypatch):
    logs = []

    def setup(*a, **k):
        logs.append("setup")
        raise InputError("stopped before the model was built")

    monkeypatch.setattr(T, "_setup", setup)
    data = tiny_data()
    with pytest.raises(InputError, match="stopped"):
        T.train(tiny_preset(image_size=1024), data, tmp_path / "r",
                **{**QUIET, "log": logs.append})  # fmt: skip
    assert logs[-1] == "setup" and len(logs) == 2, logs
    warning = logs[0]
    assert warning.startswith("warning: 1024 px images in patches of 4 make 65,536 tokens")
    assert "image_size" in warning and "patch_size=64: 256 tokens" in warning
    assert "\n" not in warning
    assert T.token_warning(tiny_preset()) is None  # 16 px in patches of 4: 16 tokens
    assert T.token_warning(get_preset("fast")) is None  # CIFAR-10: 64 tokens
    assert T.token_warning(get_preset("ft_vit_small")) is None  # a timm model: its own size


def test_the_cli_says_it_in_flags_on_a_folder_resized_to_1024(tmp_path, capsys, monkeypatch):
    from PIL import Image

    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / "data" / split / c).mkdir(parents=True)
            Image.new("RGB", (12, 12), (40 if c == "a" else 200, 90, 30)).save(
                tmp_path / "data" / split / c / "0.png"
            )

    def setup(*a, **k):
        raise InputError("stopped before the model was built")

    monkeypatch.setattr(T, "_setup", setup)
    argv = [
        "train", "--preset", "seed000", "--data", str(tmp_path / "data"), "--image-size", "1024",
        "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--no-compile",
        "--out", str(tmp_path / "r"), "--dim", "32", "--depth", "1", "--heads", "2",
    ]  # fmt: skip
    rc, _, err = run_cli(argv, capsys)
    one_line_error(rc, err, "stopped before the model was built")
    (warning,) = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert "65,536 tokens per image" in warning
    assert "--image-size" in warning and "--patch-size 64: 256 tokens" in warning
    assert "image_size" not in warning and "patch_size" not in warning
