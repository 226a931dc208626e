"""`python -m helpers train / evaluate / predict` end to end on tiny synthetic runs (CPU)."""

import json

import numpy as np
import pytest
from PIL import Image

from helpers.cli import main

TINY = ["--dim", "32", "--depth", "1", "--heads", "2"]


def run_cli(argv, capsys):
    """(exit code, parsed JSON result or None, stderr)."""
    rc = main(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    result = json.loads(lines[-1]) if rc == 0 else None
    if rc == 0:
        assert len(lines) == 1, f"stdout must be exactly one JSON line, got {lines!r}"
    return rc, result, err


def train_argv(out, *extra):
    return [
        "train",
        "--preset",
        "seed000",
        "--data",
        "synthetic",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--max-steps-per-epoch",
        "2",
        "--device",
        "cpu",
        "--no-compile",
        "--out",
        str(out),
        *TINY,
        *extra,
    ]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny trained run shared by the evaluate/predict tests."""
    out = tmp_path_factory.mktemp("q1run")
    assert main(train_argv(out)) == 0
    return out


def test_train_prints_metrics_and_resumes(tmp_path, capsys):
    rc, res, _ = run_cli(train_argv(tmp_path / "r"), capsys)
    assert rc == 0
    assert res["command"] == "train" and res["preset"] == "seed000" and res["data"] == "synthetic"
    assert res["epochs"] == 1
    assert 0.0 <= res["best_val_acc"] <= 1.0 and 0.0 <= res["final_val_top5"] <= 1.0
    assert res["best_val_acc"] >= res["final_val_acc"]
    assert res["images_per_second"] > 0 and res["minutes"] > 0
    assert res["stop_reason"] == "done" and res["seconds_per_epoch"] > 0
    assert 0 < res["trainable_parameters"] <= res["parameters"]
    # the hidden size flags shrank the model: far fewer than seed000's 10.4 M parameters
    assert 0 < res["parameters"] < 100_000
    assert (tmp_path / "r" / "last.pt").is_file()
    assert res["checkpoint"] == str(tmp_path / "r" / "best.pt")
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    assert len(history) == 1

    # the same command again: the run is resumed (finished: nothing more to train)
    rc, again, _ = run_cli(train_argv(tmp_path / "r"), capsys)
    assert rc == 0 and again["epochs"] == 1 and again["best_val_acc"] == res["best_val_acc"]


def test_train_messages_in_command_line_terms(tmp_path, capsys):
    # a batch larger than the training set names the flag
    rc, _, err = run_cli(train_argv(tmp_path / "big", "--batch-size", "1000"), capsys)
    last = one_line_error(rc, err, "--batch-size 1000 is larger than the training set (512")
    assert "--batch-size <= 512" in last and "batch_size" not in last
    # one step, one epoch: singular
    rc, _, err = run_cli(train_argv(tmp_path / "one", "--max-steps-per-epoch", "1"), capsys)
    assert rc == 0 and "plan: 1 step (1 epoch of 1), warm-up " in err, err


def test_a_run_folder_belongs_to_its_settings(tmp_path, capsys):
    """Other settings over an existing run: one line naming what differs (as flags) and the
    two ways on, nothing trained or moved; --no-resume keeps the old run in previous_run/."""
    out = tmp_path / "r"
    assert run_cli(train_argv(out), capsys)[0] == 0
    before = (out / "last.pt").read_bytes()
    rc, _, err = run_cli(train_argv(out, "--lr", "0.003", "--epochs", "2"), capsys)
    assert rc == 2
    line = err.strip().splitlines()[-1]
    assert "--epochs 2 (the run has 1)" in line and "--lr 0.003 (the run has 0.0003)" in line
    assert "--no-resume" in line and "previous_run" in line and "another --out" in line
    assert "resume=False" not in line and "out_dir" not in line and "notebook" not in line
    assert (out / "last.pt").read_bytes() == before and not (out / "previous_run").exists()
    rc, res, _ = run_cli(train_argv(out, "--lr", "0.003", "--epochs", "2", "--no-resume"), capsys)
    assert rc == 0 and res["epochs"] == 2
    assert (out / "previous_run" / "last.pt").read_bytes() == before
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]


def test_train_reports_the_whole_commands_time_beside_the_budget(tmp_path, capsys):
    """The JSON line says what the budget covered (training) and what the whole command took
    (data, setup with compile and calibration, training, final scoring), and the plan."""
    argv = train_argv(tmp_path / "b", "--minutes", "0.02")
    argv[argv.index("--epochs") + 1] = "50"
    rc, res, err = run_cli(argv, capsys)
    assert rc == 0 and res["budget_seconds"] == pytest.approx(1.2)
    # calibrated without torch.compile: the log does not claim a compile
    calibrated = next(ln for ln in err.splitlines() if ln.startswith("calibrated"))
    assert "(first steps " in calibrated and "compile" not in calibrated
    assert res["peak_memory_mb"] is None  # a CPU run: no GPU memory, not 0 MB
    # the time on the clock, as the history's last row has it
    history = json.loads((tmp_path / "b" / "history.json").read_text())
    assert res["training_seconds"] == history[-1]["elapsed_seconds"]
    # all images over all training seconds, each epoch weighted by its images
    images = sum(r["images_per_second"] * r["epoch_seconds"] for r in history)
    seconds = sum(r["epoch_seconds"] for r in history)
    assert res["images_per_second"] == pytest.approx(images / seconds)
    parts = [res[k] for k in ("data_seconds", "setup_seconds", "training_seconds")]
    assert all(v > 0 for v in parts) and res["scoring_seconds"] >= 0
    assert res["command_seconds"] >= sum(parts) + res["scoring_seconds"]
    assert res["training_seconds"] < res["command_seconds"]  # the budget covers only this part
    # the plan after re-planning (either way: steps that got faster than calibrated grow it
    # back), and the steps run: a busy machine may stop a 1.2 s budget a step short of its
    # last plan, never past it
    assert res["first_planned_steps"] >= 1 and res["planned_steps"] >= res["steps"] >= 1
    assert res["replans"] >= 0 and 0 <= res["validation_share"] < 1


def test_train_smoke_flag(tmp_path, capsys):
    rc, res, _ = run_cli(["train", "--smoke", "--device", "cpu", "--out", str(tmp_path)], capsys)
    assert rc == 0
    assert res["data"] == "synthetic" and res["epochs"] == 1
    assert res["parameters"] < 100_000


def test_evaluate_writes_metrics_and_plots(run_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", str(run_dir), "--data", "synthetic", "--device", "cpu"]
    rc, res, _ = run_cli([*argv, "--out", str(out)], capsys)
    assert rc == 0
    assert res["num_samples"] == 128 and res["tta_flip"] is True
    assert 0.0 <= res["top1"] <= res["top5"] <= 1.0
    for name in (
        "metrics.json",
        "classification_report.txt",
        "logits.npy",
        "predictions.npy",
        "confusion.png",
        "per_class.png",
        "samples.png",
        "history.png",
        "attention.png",
    ):
        assert (out / name).is_file(), name
        assert name in res["files"]
    logits = np.load(out / "logits.npy")
    assert logits.shape == (128, 10)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["top1"] == pytest.approx(res["top1"])
    assert saved["top1"] == pytest.approx(
        float((logits.argmax(1) == np.load(out / "targets.npy")).mean())
    )

    # without TTA, default output folder next to the checkpoint
    rc, res2, _ = run_cli([*argv, "--no-tta"], capsys)
    assert rc == 0 and res2["tta_flip"] is False
    assert (run_dir / "eval" / "synthetic-val" / "metrics.json").is_file()
    assert res2["split"] == "val"  # synthetic data has no test split


def test_predict_any_size_image(run_dir, tmp_path, capsys):
    img = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(img)
    rc, res, _ = run_cli(
        [
            "predict",
            "--checkpoint",
            str(run_dir / "best.pt"),
            "--image",
            str(img),
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert rc == 0
    top = res["top_k"]
    assert len(top) == 5
    probs = [t["probability"] for t in top]
    assert probs == sorted(probs, reverse=True)
    assert 0 < sum(probs) <= 1.0 + 1e-5
    assert all(t["label"] == f"class{t['index']}" for t in top)
    assert res["label"] == top[0]["label"]


# ------------------------------------------------------------------------------ bad input


def test_unknown_preset_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--preset", "nope"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_missing_data_dir_exits_2(tmp_path, capsys):
    missing = tmp_path / "no_such_folder"
    rc, _, err = run_cli(train_argv(tmp_path / "r", "--data", str(missing)), capsys)
    assert rc == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: --data") and "no_such_folder" in last


def test_model_flags_on_finetune_preset_exit_2(tmp_path, capsys):
    argv = ["train", "--preset", "ft_vit_small", "--patch-size", "8", "--data", "synthetic"]
    rc, _, err = run_cli([*argv, "--out", str(tmp_path)], capsys)
    assert rc == 2 and "--patch-size" in err


def test_bad_patch_size_exits_2(tmp_path, capsys):
    rc, _, err = run_cli(train_argv(tmp_path / "r", "--patch-size", "5"), capsys)
    assert rc == 2 and "--patch-size 5 does not divide --image-size 32" in err


def test_predict_on_non_image_exits_2(run_dir, tmp_path, capsys):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not an image")
    argv = ["predict", "--checkpoint", str(run_dir), "--image", str(bad), "--device", "cpu"]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and "could not be read as an image" in err
    rc, _, err = run_cli([*argv[:3], "--image", str(tmp_path / "nope.png")], capsys)
    assert rc == 2 and "does not exist" in err


def test_missing_or_corrupt_checkpoint_exits_2(run_dir, tmp_path, capsys):
    rc, _, err = run_cli(
        ["evaluate", "--checkpoint", str(tmp_path / "x.pt"), "--data", "synthetic"], capsys
    )
    assert rc == 2 and "does not exist" in err
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00garbage")
    rc, _, err = run_cli(["evaluate", "--checkpoint", str(broken), "--data", "synthetic"], capsys)
    assert rc == 2 and "broken.pt" in err


def test_evaluate_on_other_data(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HELPERS_CACHE", str(tmp_path / "cache"))
    # digits: 10 classes too, 16 px images -> resized to the model's 32 px; a note on the names
    argv = ["evaluate", "--checkpoint", str(run_dir), "--device", "cpu", "--out", str(tmp_path)]
    rc, res, err = run_cli([*argv, "--data", "digits", "--no-tta"], capsys)
    assert rc == 0 and res["num_samples"] == 360 and "class names differ" in err
    # an ImageFolder with 2 classes cannot be scored by a 10-class model
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (tmp_path / "two" / split / c).mkdir(parents=True)
            for k in range(2):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(img).save(tmp_path / "two" / split / c / f"{k}.png")
    rc, _, err = run_cli([*argv, "--data", str(tmp_path / "two")], capsys)
    assert rc == 2 and "10 classes" in err and "has 2" in err


def test_bad_device_exits_2(tmp_path, capsys):
    argv = train_argv(tmp_path / "r")
    argv[argv.index("--device") + 1] = "gpu0"
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and "--device 'gpu0'" in err


def test_evaluate_plots_the_whole_run_history(run_dir, tmp_path, capsys, monkeypatch):
    """best.pt keeps the history up to the best epoch; the plot shows the run's history.json."""
    import shutil

    from helpers.classify import plots

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    history = json.loads((run / "history.json").read_text())
    later = dict(history[-1], epoch=history[-1]["epoch"] + 1)
    (run / "history.json").write_text(json.dumps([*history, later]))
    seen = []
    real_plot = plots.plot_history
    monkeypatch.setattr(plots, "plot_history", lambda h: seen.append(h) or real_plot(h))
    argv = ["evaluate", "--checkpoint", str(run / "best.pt"), "--data", "synthetic"]
    rc, _, _ = run_cli([*argv, "--device", "cpu", "--out", str(tmp_path / "e")], capsys)
    assert rc == 0
    assert [h["epoch"] for h in seen[0]] == [h["epoch"] for h in history] + [later["epoch"]]


def _folder(root, splits, n=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    for split in splits:
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for k in range(n):
                img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / c / f"{k}.png")


def test_train_reports_test_accuracy_and_evaluate_scores_each_split_apart(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("HELPERS_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "ds"
    _folder(data, ("train",), n=16)
    _folder(data, ("val", "test"), n=3, seed=1)
    argv = train_argv(tmp_path / "run")
    argv[argv.index("--data") + 1] = str(data)
    rc, res, err = run_cli(argv, capsys)
    assert rc == 0 and 0.0 <= res["test_acc"] <= 1.0 and res["test_acc_flip_tta"] is not None
    assert "test accuracy" in err and (tmp_path / "run" / "test.json").is_file()
    assert res["test_top5"] is None  # two classes: every label is in the top 5
    ev = ["evaluate", "--checkpoint", str(tmp_path / "run"), "--data", str(data), "--device", "cpu"]
    rc, test_res, _ = run_cli(ev, capsys)  # default: the test split, as the folder has one
    assert rc == 0 and test_res["split"] == "test" and test_res["num_samples"] == 6
    assert test_res["top5"] is None
    # flip TTA is said beside the accuracy it changes; without it, evaluate scores the test
    # split as training did
    assert test_res["tta_flip"] is True
    assert test_res["top1"] == pytest.approx(res["test_acc_flip_tta"])
    assert test_res["top1_plain"] == pytest.approx(res["test_acc"])
    rc, no_tta, _ = run_cli([*ev, "--no-tta", "--out", str(tmp_path / "plain")], capsys)
    assert rc == 0 and no_tta["tta_flip"] is False
    assert no_tta["top1"] == no_tta["top1_plain"] == pytest.approx(res["test_acc"])
    rc, val_res, _ = run_cli([*ev, "--split", "val"], capsys)
    assert rc == 0 and val_res["split"] == "val"
    # each split gets its own folder: scoring one never overwrites the other
    assert test_res["out_dir"] != val_res["out_dir"]
    for r in (test_res, val_res):
        saved = json.loads((tmp_path / r["out_dir"] / "metrics.json").read_text())
        assert saved["split"] == r["split"] and saved["top1"] == pytest.approx(r["top1"])
    # a split the data does not have is a one-line error
    rc, _, err = run_cli([*ev, "--data", "synthetic", "--split", "test"], capsys)
    assert rc == 2 and "no test split" in err and "--split val" in err


def test_evaluate_test_split_does_not_decode_train(tmp_path, capsys, monkeypatch, run_dir):
    from helpers.classify import data as D

    monkeypatch.setenv("HELPERS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "ten"
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("test", 1)):
        for c in range(10):
            (folder / split / f"c{c}").mkdir(parents=True)
            for k in range(n):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(img).save(folder / split / f"c{c}" / f"{k}.png")
    decoded = []
    real = D._decode_all
    monkeypatch.setattr(
        D, "_decode_all", lambda items, size, desc: decoded.append(desc) or real(items, size, desc)
    )
    argv = ["evaluate", "--checkpoint", str(run_dir), "--data", str(folder), "--device", "cpu"]
    rc, res, _ = run_cli([*argv, "--out", str(tmp_path / "e")], capsys)
    assert rc == 0 and res["split"] == "test" and res["num_samples"] == 10
    assert decoded == ["decoding ten/test"]


# ------------------------------------------------------------------------------ faults (issue 8)


def one_line_error(rc, err, *needles):
    """Exit 2 and a last stderr line `error: ...` holding every needle; no traceback."""
    assert rc == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), last
    for n in needles:
        assert n in last, (n, last)
    return last


def _no_data_loading(monkeypatch):
    from helpers.classify import commands as cli_vit

    def boom(*a, **k):
        raise AssertionError("data was loaded before the settings were checked")

    monkeypatch.setattr(cli_vit, "load_data", boom)


@pytest.mark.parametrize("where", ["file", "below_file", "read_only"])
def test_unusable_out_folder_exits_2_before_any_work(run_dir, tmp_path, capsys, monkeypatch, where):
    import errno

    from helpers import files

    a_file = tmp_path / "taken"
    a_file.write_text("x")
    out = {"file": a_file, "below_file": a_file / "run", "read_only": tmp_path / "ro" / "run"}[
        where
    ]
    if where == "read_only":
        (tmp_path / "ro").mkdir()
        real_open = files.os.open

        def read_only(path, flags, mode=0o777, **kw):
            if str(path).startswith(str(tmp_path / "ro")):
                raise OSError(errno.EROFS, "Read-only file system")
            return real_open(path, flags, mode, **kw)

        monkeypatch.setattr(files.os, "open", read_only)
    _no_data_loading(monkeypatch)
    rc, _, err = run_cli(train_argv(out), capsys)
    one_line_error(rc, err, "--out", str(out))
    ev = ["evaluate", "--checkpoint", str(run_dir), "--data", "synthetic", "--device", "cpu"]
    rc, _, err = run_cli([*ev, "--out", str(out)], capsys)
    one_line_error(rc, err, "--out", str(out))
    assert not (tmp_path / "ro" / "run").exists()


def test_disk_full_during_training_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    import errno

    import torch

    from helpers.classify.commands import build_train_preset, load_data
    from helpers.classify.train import train
    from helpers.cli import build_parser

    out = tmp_path / "r"
    argv = train_argv(out)
    argv[argv.index("--epochs") + 1] = "2"
    # the first of its two epochs trained (as by a run that was interrupted)
    args = build_parser().parse_args(argv)
    data = load_data(args.data)
    train(
        build_train_preset(args, image_size=data.image_size), data, out, device="cpu",
        max_steps_per_epoch=2, max_epochs_this_run=1, progress=False, log=lambda m: None,
    )  # fmt: skip
    before = torch.load(out / "last.pt", weights_only=True)["epoch"]
    real_save = torch.save

    def full(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    rc, _, err = run_cli(argv, capsys)
    one_line_error(rc, err, "disk is full", "kept")
    monkeypatch.setattr(torch, "save", real_save)
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]  # no temporary left
    # the epoch-1 checkpoint is still there, and the same command resumes from it
    from helpers.classify.checkpoint import read_resume_checkpoint

    assert read_resume_checkpoint(out, log=lambda m: None)["epoch"] == before
    rc, res, _ = run_cli(argv, capsys)
    assert rc == 0 and res["epochs"] == 2


@pytest.mark.parametrize("device", ["banana", "meta", "cuda:7", "mps", "cpu:x"])
def test_bad_device_exits_2_on_every_command(run_dir, tmp_path, capsys, monkeypatch, device):
    _no_data_loading(monkeypatch)
    img = tmp_path / "a.png"
    Image.new("RGB", (40, 40)).save(img)
    argvs = [
        train_argv(tmp_path / "r"),
        ["evaluate", "--checkpoint", str(run_dir), "--data", "synthetic", "--device", "cpu"],
        ["predict", "--checkpoint", str(run_dir), "--image", str(img), "--device", "cpu"],
    ]
    for argv in argvs:
        argv[argv.index("--device") + 1] = device
        rc, _, err = run_cli(argv, capsys)
        one_line_error(rc, err, f"--device {device!r}", "cpu")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "flag,value,needle",
    [
        ("--lr", "nan", "--lr must be a finite number"),
        ("--lr", "-1", "--lr must be > 0"),
        ("--minutes", "nan", "--minutes must be a finite number"),
        ("--minutes", "inf", "--minutes must be a finite number"),
        ("--minutes", "-5", "--minutes must be > 0"),
        ("--warmup-fraction", "nan", "--warmup-fraction must be a finite number"),
        ("--checkpoint-minutes", "-1", "--checkpoint-minutes must be >= 0"),
        ("--batch-size", "-4", "--batch-size must be >= 1"),
        ("--epochs", "0", "--epochs must be >= 1"),
        ("--heads", "0", "--heads must be >= 1"),
        ("--patch-size", "0", "--patch-size must be >= 1"),
        ("--image-size", "2", "--image-size must be >= 8"),
    ],
)
def test_bad_numbers_exit_2_and_create_nothing(tmp_path, capsys, monkeypatch, flag, value, needle):
    _no_data_loading(monkeypatch)
    rc, _, err = run_cli(train_argv(tmp_path / "r", flag, value), capsys)
    one_line_error(rc, err, needle)
    assert not (tmp_path / "r").exists()


def test_trainconfig_rejects_nan_and_inf():
    from helpers.classify.presets import get_preset
    from helpers.errors import InputError

    for field in ("lr", "minutes", "min_lr", "weight_decay", "checkpoint_minutes", "gamma"):
        for bad in (float("nan"), float("inf")):
            with pytest.raises(InputError, match=f"{field} must be a finite number"):
                get_preset("fast", **{field: bad})
    with pytest.raises(InputError, match="heads must be"):
        get_preset("fast", heads=0)


def test_evaluate_and_predict_numbers_exit_2(run_dir, tmp_path, capsys, monkeypatch):
    _no_data_loading(monkeypatch)
    ev = ["evaluate", "--checkpoint", str(run_dir), "--data", "synthetic", "--device", "cpu"]
    rc, _, err = run_cli([*ev, "--batch-size", "0"], capsys)
    one_line_error(rc, err, "--batch-size must be >= 1")
    img = tmp_path / "a.png"
    Image.new("RGB", (40, 40)).save(img)
    pr = ["predict", "--checkpoint", str(run_dir), "--image", str(img), "--device", "cpu"]
    rc, _, err = run_cli([*pr, "--top-k", "0"], capsys)
    one_line_error(rc, err, "--top-k must be >= 1")


def _huge_png(path, w=20000, h=20000):
    """A PNG whose header says w x h (the pixels are never there: nothing big is allocated)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


def test_predict_bad_images_exit_2(run_dir, tmp_path, capsys):
    pr = ["predict", "--checkpoint", str(run_dir), "--device", "cpu", "--image"]
    rc, _, err = run_cli([*pr, str(_huge_png(tmp_path / "huge.png"))], capsys)
    one_line_error(rc, err, "20000x20000", "downscale")
    rc, _, err = run_cli([*pr, str(tmp_path)], capsys)
    one_line_error(rc, err, "is a folder, not an image file")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    rc, _, err = run_cli([*pr, str(empty)], capsys)
    one_line_error(rc, err, "empty (0 bytes)")
    rc, _, err = run_cli([*pr, "ftp://example.com/a.png"], capsys)
    one_line_error(rc, err, "ftp://example.com/a.png", "only http(s) URLs and local files")


def test_predict_huge_jpeg_is_decoded_small(run_dir, tmp_path, capsys, monkeypatch):
    from helpers.classify import commands as cli_vit

    monkeypatch.setattr(cli_vit, "MAX_PIXELS", 40 * 40)  # a 160 px JPEG is "huge" now
    img = tmp_path / "big.jpg"
    Image.new("RGB", (160, 160), (200, 30, 30)).save(img)
    pr = ["predict", "--checkpoint", str(run_dir), "--device", "cpu", "--image", str(img)]
    rc, res, _ = run_cli(pr, capsys)
    assert rc == 0 and len(res["top_k"]) == 5


def test_predict_takes_a_url(run_dir, tmp_path, capsys, monkeypatch):
    import io

    from helpers import fetch

    buf = io.BytesIO()
    Image.new("RGB", (50, 40), (10, 200, 10)).save(buf, format="PNG")
    asked = []
    monkeypatch.setattr(
        fetch, "fetch_bytes", lambda url, **kw: asked.append((url, kw)) or buf.getvalue()
    )
    url = "https://example.com/photos/cat.png"
    pr = ["predict", "--checkpoint", str(run_dir), "--device", "cpu", "--image", url]
    rc, res, _ = run_cli(pr, capsys)
    assert rc == 0 and res["image"] == url and asked[0][0] == url
    assert asked[0][1].get("timeout")  # the shared URL fetch's timeout is used


def test_messages_name_the_command_line_flags(run_dir, tmp_path, capsys):
    import shutil

    # resuming a run of another model: the CLI says --no-resume / --out, not resume=False
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    rc, _, err = run_cli(train_argv(out, "--dim", "64"), capsys)
    last = one_line_error(rc, err, "--no-resume", "--out")
    assert "resume=False" not in last and "out_dir" not in last
    # a folder with images of two sizes: the CLI suggests --image-size, which works
    data = tmp_path / "mixed"
    _folder(data, ("train",), n=16)
    _folder(data, ("val",), n=3, size=24, seed=1)
    argv = train_argv(tmp_path / "m")
    argv[argv.index("--data") + 1] = str(data)
    rc, _, err = run_cli(argv, capsys)
    last = one_line_error(rc, err, "--image-size N")
    assert "image_size=N" not in last
    rc, res, _ = run_cli([*argv, "--image-size", "32"], capsys)
    assert rc == 0


def test_checkpoint_weights_not_matching_config_is_one_line(run_dir, tmp_path, capsys):
    import torch

    ckpt = torch.load(run_dir / "best.pt", weights_only=True)
    ckpt["preset"]["model"]["dim"] = 48  # the config no longer matches the weights
    torch.save(ckpt, tmp_path / "edited.pt")
    img = tmp_path / "a.png"
    Image.new("RGB", (40, 40)).save(img)
    pr = ["predict", "--checkpoint", str(tmp_path / "edited.pt"), "--image", str(img)]
    rc, _, err = run_cli([*pr, "--device", "cpu"], capsys)
    last = one_line_error(rc, err, "does not match its own model config", "shape")
    assert err.strip().count("\n") == 0 and len(last) < 400
