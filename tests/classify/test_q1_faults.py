"""Q1 and shared faults (issue 21): paths no file system takes, a real full disk / ``ulimit -f``,
16-bit and rotated images, zero counts, a diverging loss, stdout kept for the JSON line,
``--no-resume`` history, evaluation folders per data and checkpoint, SIGTERM."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers.cli import main
from helpers.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--dim", "32", "--depth", "1", "--heads", "2"]
LONG = "d" * 300  # one name longer than the 255 bytes file systems allow


def train_argv(out, *extra, epochs=1):
    return [
        "train", "--preset", "seed000", "--data", "synthetic", "--epochs", str(epochs),
        "--batch-size", "32", "--max-steps-per-epoch", "2", "--device", "cpu", "--no-compile",
        "--out", str(out), *TINY, *extra,
    ]  # fmt: skip


def run_cli(argv, capsys):
    """(exit code, parsed JSON line or None, stderr); stdout must be that one line alone."""
    rc = main(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if rc == 0:
        assert len(lines) == 1, f"stdout must be exactly one JSON line, got {lines!r}"
        return rc, json.loads(lines[0]), err
    assert not lines, f"nothing on stdout after an error, got {lines!r}"
    return rc, None, err


def one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), last
    for n in needles:
        assert n in last, (n, last)
    return last


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("q1faults")
    assert main(train_argv(out)) == 0
    return out


@pytest.fixture
def no_plots(monkeypatch):
    """evaluate without its figures (they cost seconds each and are tested elsewhere)."""
    from helpers.classify import commands as cli_vit

    monkeypatch.setattr(cli_vit, "_save_figures", lambda figures, out: [])


def _image(path, size=(40, 40)):
    from PIL import Image

    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


# ------------------------------------------------------------------ paths no file system takes


def test_overlong_paths_are_one_error_line_on_every_q1_command(run_dir, tmp_path, capsys):
    img = _image(tmp_path / "a.png")
    cases = [
        (train_argv(tmp_path / "r")[:4] + [LONG] + train_argv(tmp_path / "r")[5:], "--data"),
        (train_argv(tmp_path / LONG), "--out"),
        (train_argv(tmp_path / LONG / "run"), "--out"),
        (["predict", "--checkpoint", LONG, "--image", str(img), "--device", "cpu"], "--checkpoint"),
        (["predict", "--checkpoint", str(run_dir / LONG), "--image", str(img)], "--checkpoint"),
        (["predict", "--checkpoint", str(run_dir), "--image", str(tmp_path / LONG)], "--image"),
        (["evaluate", "--checkpoint", LONG, "--data", "synthetic", "--device", "cpu"], "--checkpoint"),
        (["evaluate", "--checkpoint", str(run_dir), "--data", str(tmp_path / LONG)], "--data"),
        (["evaluate", "--checkpoint", str(run_dir), "--data", "synthetic", "--out",
          str(tmp_path / LONG)], "--out"),
        # a whole path over 4096 bytes made of short names
        (train_argv("/".join([str(tmp_path)] + ["x" * 200] * 25)), "--out"),
    ]  # fmt: skip
    for argv, flag in cases:
        rc, _, err = run_cli(argv, capsys)
        line = one_line_error(rc, err, flag, "shorter")
        assert len(line) < 400  # the 300 characters are not repeated in full
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_path_probing_errors_become_input_errors_in_one_place(tmp_path):
    from helpers import files

    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(InputError, match=r"^--data .*loop: its symbolic links go round"):
        with files.probing("--data", loop):
            os.stat(loop / "x")
    with pytest.raises(InputError, match="a name in it is 300 bytes"):
        files.check_output_dir(tmp_path / LONG, "out_dir")
    with pytest.raises(FileNotFoundError):  # anything else passes unchanged
        with files.probing("--data"):
            os.stat(tmp_path / "missing")
    from helpers.classify.data import load_dataset

    with pytest.raises(InputError, match="^dataset .*shorter"):
        load_dataset(str(tmp_path / LONG))


def test_a_path_no_check_looked_at_is_still_one_line(tmp_path, capsys, monkeypatch):
    """The dispatcher's net: an ENAMETOOLONG from anywhere names the option it came from."""
    from helpers.classify import commands as cli_vit

    def deep(args):
        (Path(args.checkpoint) / "x").is_file()

    monkeypatch.setattr(cli_vit, "cmd_predict", deep)
    rc, _, err = run_cli(
        ["predict", "--checkpoint", str(tmp_path / LONG), "--image", "a.png"], capsys
    )
    one_line_error(rc, err, "--checkpoint", "300 bytes")


# ------------------------------------------------------------------ a real full disk / ulimit -f

_FSIZE_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as Python itself sets it
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from helpers.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def _paused_run(out, *extra, epochs=2):
    """The run ``train_argv(out, *extra, epochs=epochs)`` makes, trained for its first epoch
    only (as an interrupted one): the same command then resumes it."""
    from helpers.classify.commands import build_train_preset, load_data
    from helpers.classify.train import train
    from helpers.cli import build_parser

    args = build_parser().parse_args(train_argv(out, *extra, epochs=epochs))
    data = load_data(args.data)
    preset = build_train_preset(args, image_size=data.image_size)
    train(
        preset, data, out, device="cpu", pretrained=False, progress=False, log=lambda m: None,
        max_steps_per_epoch=args.max_steps_per_epoch, max_epochs_this_run=1,
    )  # fmt: skip


def _run_limited(limit, argv, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", **(env or {})}
    cmd = [sys.executable, "-c", _FSIZE_CHILD, str(limit), *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_ulimit_f_during_train_is_a_write_error_and_keeps_the_last_checkpoint(tmp_path):
    """torch.save past ``ulimit -f`` raises RuntimeError ("unexpected pos"), not OSError."""
    import torch

    out = tmp_path / "r"
    _paused_run(out, epochs=2)
    last = (out / "last.pt").read_bytes()
    p = _run_limited(len(last) // 2, train_argv(out, epochs=2))
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and not p.stdout.strip()
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training stopped: could not write"), line
    assert "file size limit" in line and "ulimit -f" in line and "kept" in line
    assert (out / "last.pt").read_bytes() == last  # the last good checkpoint, untouched
    assert not [q.name for q in out.iterdir() if ".tmp-" in q.name]
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1


def test_any_library_error_while_the_disk_is_full_is_a_write_error(tmp_path, monkeypatch):
    """Injected: torch.save's RuntimeError with no space left; a PIL writer wrapping ENOSPC."""
    import errno

    import torch

    from helpers import files

    target = files.atomic_torch_save({"a": 1}, tmp_path / "w.pt")
    old = target.read_bytes()

    def torch_full(obj, f, *a, **k):
        Path(f).write_bytes(b"x" * 10)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 832 vs 726")

    class Full:
        f_bavail, f_frsize, f_flag = 0, 4096, 0

    monkeypatch.setattr(torch, "save", torch_full)
    monkeypatch.setattr(files.os, "statvfs", lambda p: Full())
    with pytest.raises(files.WriteError, match="could not write .*w.pt: the disk is full") as e:
        files.atomic_torch_save({"a": 2}, target)
    assert isinstance(e.value, InputError) and e.value.reason == "the disk is full"
    assert target.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]

    def wrapped(*a, **k):  # a library that turns the OSError it met into its own error
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as err:
            raise ValueError("encoder error -2 when writing image file") from err

    monkeypatch.undo()
    with pytest.raises(files.WriteError, match="disk is full"):
        with files.atomic_path(tmp_path / "a.png"):
            wrapped()
    # a bug is not disguised as a write error
    with pytest.raises(TypeError):
        with files.atomic_path(tmp_path / "b.json"):
            raise TypeError("cannot pickle 'generator' object")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


def test_write_error_in_train_from_a_non_oserror_keeps_the_checkpoint(
    tmp_path, capsys, monkeypatch
):
    import torch

    from helpers import files

    out = tmp_path / "r"
    _paused_run(out, epochs=2)
    before = (out / "last.pt").read_bytes()
    real = torch.save

    def unexpected_pos(obj, f, *a, **k):
        real(obj, f, *a, **k)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 832 vs 726")

    monkeypatch.setattr(torch, "save", unexpected_pos)
    monkeypatch.setattr(files, "_file_size_limit", lambda: 1)  # as under `ulimit -f`
    rc, _, err = run_cli(train_argv(out, epochs=2), capsys)
    one_line_error(rc, err, "training stopped: could not write", "file size limit", "resume")
    assert (out / "last.pt").read_bytes() == before


# ------------------------------------------------------------------ counts of zero


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--max-steps-per-epoch", "0"], "--max-steps-per-epoch must be >= 1, got 0"),
        (["--max-steps-per-epoch", "-2"], "--max-steps-per-epoch must be >= 1, got -2"),
        (["--epochs", "-1"], "--epochs must be >= 1"),
        (["--dim", "0"], "--dim must be >= 1"),
        (["--depth", "0"], "--depth must be >= 1"),
        (["--minutes", "0"], "--minutes must be > 0"),
        (["--patience", "0"], "--patience must be >= 1"),
    ],
)
def test_smoke_with_zero_counts_is_refused_not_defaulted(tmp_path, capsys, extra, needle):
    out = tmp_path / "s"
    rc, _, err = run_cli(["train", "--smoke", "--device", "cpu", "--out", str(out), *extra], capsys)
    one_line_error(rc, err, needle)
    assert not out.exists()


# ------------------------------------------------------------------ 16-bit and rotated images


def _gray16(path, w=32, h=32):
    """A 16-bit grey ramp 0..65535 (mean 32767.5, i.e. 127.5 in 8 bits)."""
    import numpy as np
    from PIL import Image

    a = np.linspace(0, 65535, w * h).round().astype(np.uint16).reshape(h, w)
    Image.fromarray(a).save(path)
    assert Image.open(path).mode == "I;16"
    return path


def _rotated(path, w=32, h=16):
    """Left half red, right half blue as stored; EXIF orientation 6 (turn 90 degrees)."""
    from PIL import Image

    im = Image.new("RGB", (w, h), (220, 20, 20))
    im.paste((20, 20, 220), (w // 2, 0, w, h))
    exif = Image.Exif()
    exif[0x0112] = 6
    kw = {"quality": 95} if path.suffix == ".jpg" else {}
    im.save(path, exif=exif, **kw)
    return path


def _tree(root, make, names):
    for split in ("train", "val"):
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for n in names:
                make(d / n)
    return root


@pytest.mark.parametrize("name", ["g.png", "g.tif"])
def test_16_bit_images_are_scaled_in_training_data_and_predict(tmp_path, name):
    import numpy as np

    from helpers.classify.commands import open_image
    from helpers.classify.data import load_image_folder

    data = load_image_folder(_tree(tmp_path / "d", _gray16, [name]), cache=False)
    x = data.train_x.float()
    assert abs(x.mean().item() - 127.5) < 0.6, x.mean()  # clipped it was ~254
    assert x.min() == 0 and x.max() == 255
    seen = np.asarray(open_image(tmp_path / "d" / "train" / "a" / name))
    assert np.array_equal(seen, data.train_x[0].permute(1, 2, 0).numpy())  # the same pixels


@pytest.mark.parametrize("name", ["r.jpg", "r.png"])
@pytest.mark.parametrize("size", [None, 16])
def test_exif_orientation_is_applied_to_training_data_as_predict_does(tmp_path, name, size):
    import numpy as np

    from helpers.classify.commands import image_to_tensor, open_image
    from helpers.classify.data import load_image_folder

    data = load_image_folder(_tree(tmp_path / "d", _rotated, [name]), size, cache=False)
    img = data.train_x[0]
    if size is None:
        assert tuple(img.shape) == (3, 32, 16)  # turned: 16 wide, 32 high
        top, bottom = img[:, :8].float().mean((1, 2)), img[:, -8:].float().mean((1, 2))
        assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]  # red above, blue below
    seen = open_image(tmp_path / "d" / "train" / "a" / name)
    assert seen.size == (16, 32)
    want = image_to_tensor(seen, size or 16)[0]
    got = img if size else image_to_tensor(img.permute(1, 2, 0).numpy(), 16)[0]
    assert np.abs(got.int().numpy() - want.int().numpy()).max() <= 3  # JPEG decoders may differ


# ------------------------------------------------------------------ a diverging loss


def test_lr_1e9_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
    tmp_path, capsys, monkeypatch
):
    import torch

    from helpers.classify import step

    out = tmp_path / "r"
    with monkeypatch.context() as m:  # a first epoch at a tiny rate, as in a long warm-up
        m.setattr(step, "lr_at_step", lambda s, plan, cfg: 1e-4)
        _paused_run(out, "--lr", "1e9", epochs=3)
    last, best = (out / "last.pt").read_bytes(), (out / "best.pt").read_bytes()
    history = (out / "history.json").read_text()
    rc, _, err = run_cli(train_argv(out, "--lr", "1e9", epochs=3), capsys)
    one_line_error(rc, err, "loss is no longer a finite number", "learning rate 1e+09", "(--lr)")
    assert "kept" in err.splitlines()[-1] and "--no-resume" in err.splitlines()[-1]
    assert (out / "last.pt").read_bytes() == last and (out / "best.pt").read_bytes() == best
    assert (out / "history.json").read_text() == history
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    # a fresh run that diverges at once says nothing was saved and exits non-zero too
    rc, _, err = run_cli(train_argv(tmp_path / "n", "--lr", "1e9"), capsys)
    one_line_error(rc, err, "Nothing was saved yet", "(--lr) and train again.")
    assert not (tmp_path / "n" / "last.pt").exists()


def test_weights_that_turned_nan_are_never_saved(tmp_path, capsys, monkeypatch):
    """The loss of the epoch was finite but its last update broke the weights: the save
    refuses them (one check per save, none per step)."""
    import torch

    from helpers.classify import train as train_mod

    out = tmp_path / "r"
    _paused_run(out, epochs=2)
    last = (out / "last.pt").read_bytes()
    real = train_mod._epoch_row

    def then_nan(run, *a, **k):
        row = real(run, *a, **k)
        with torch.no_grad():
            next(run.model.parameters()).fill_(float("nan"))
        return row

    monkeypatch.setattr(train_mod, "_epoch_row", then_nan)
    rc, _, err = run_cli(train_argv(out, epochs=2), capsys)
    one_line_error(rc, err, "weights are no longer a finite number", "kept")
    assert (out / "last.pt").read_bytes() == last


def test_the_json_line_is_valid_json_whatever_the_numbers(tmp_path, capsys, monkeypatch):
    from helpers.classify import commands as cli_vit
    from helpers.files import atomic_write_json, json_text

    def odd(args):
        return {"loss": float("nan"), "top": [float("inf"), 1.5], "path": tmp_path}

    monkeypatch.setattr(cli_vit, "cmd_predict", odd)
    rc, res, _ = run_cli(["predict", "--checkpoint", "x", "--image", "y"], capsys)
    assert rc == 0 and res == {"loss": None, "top": [None, 1.5], "path": str(tmp_path)}
    atomic_write_json(tmp_path / "h.json", [{"val_loss": float("-inf")}])
    assert json.loads((tmp_path / "h.json").read_text(), parse_constant=pytest.fail) == [
        {"val_loss": None}
    ]
    import numpy as np

    assert json_text({"a": np.float32("nan"), "b": np.array([1.0, np.inf])}) == (
        '{"a": null, "b": [1.0, null]}'
    )


# ------------------------------------------------------------------ stdout holds the JSON line


def _folder(root, n=8, splits=("train", "val"), seed=0):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in splits:
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                    d / f"{i}.png"
                )
    return root


def test_unusable_home_leaves_stdout_to_the_json_line(tmp_path):
    """A real process (output at the file-descriptor level counts too) whose HOME cannot hold
    the dataset cache (a file here: like a read-only or missing home)."""
    data = _folder(tmp_path / "data")
    (tmp_path / "f").write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if k not in ("HELPERS_CACHE", "XDG_CACHE_HOME")}
    env.update(HOME=str(tmp_path / "f"), PYTHONPATH=str(ROOT), TQDM_DISABLE="1")
    argv = train_argv(tmp_path / "r")
    argv[argv.index("--data") + 1] = str(data)
    argv[argv.index("--batch-size") + 1] = "8"
    p = subprocess.run(
        [sys.executable, "-m", "helpers", *argv],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1, f"stdout must be the JSON line alone, got {lines!r}"
    assert json.loads(lines[0])["command"] == "train"
    assert "could not write the dataset cache" in p.stderr and "HELPERS_CACHE" in p.stderr


def test_no_home_at_all_trains_without_a_cache(tmp_path, capfd, monkeypatch):
    data = _folder(tmp_path / "data")
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("HELPERS_CACHE", raising=False)

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    argv = train_argv(tmp_path / "r")
    argv[argv.index("--data") + 1] = str(data)
    argv[argv.index("--batch-size") + 1] = "8"
    rc = main(argv)
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert len(out.splitlines()) == 1 and json.loads(out)["command"] == "train"
    assert "no home folder" in err


def test_whatever_a_command_prints_goes_to_stderr(capsys, monkeypatch):
    from helpers.classify import commands as cli_vit

    def chatty(args):
        print("Downloading weights... done")  # a library's own print
        return {"command": "predict"}

    monkeypatch.setattr(cli_vit, "cmd_predict", chatty)
    rc, res, err = run_cli(["predict", "--checkpoint", "x", "--image", "y"], capsys)
    assert rc == 0 and res == {"command": "predict"} and "Downloading weights" in err


# ------------------------------------------------------------------ --no-resume keeps every run


def test_no_resume_never_overwrites_an_earlier_run_and_moves_its_results(
    tmp_path, capsys, no_plots
):
    import torch

    data = _folder(tmp_path / "data", splits=("train", "val", "test"))
    out = tmp_path / "r"
    argv = train_argv(out)
    argv[argv.index("--data") + 1] = str(data)
    argv[argv.index("--batch-size") + 1] = "8"
    evaluate = ["evaluate", "--checkpoint", str(out), "--data", str(data), "--device", "cpu"]

    def weights(folder):
        return torch.load(folder / "best.pt", weights_only=True)["model"]

    runs = []
    for i, seed in enumerate(["1", "2", "3"]):
        extra = ["--seed", seed] + (["--no-resume"] if i else [])
        assert run_cli(argv + extra, capsys)[0] == 0
        assert (out / "test.json").is_file()  # this run's own test score
        assert run_cli(evaluate, capsys)[0] == 0
        runs.append(weights(out))
    first, second = out / "previous_run", out / "previous_run-2"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("previous_run")) == [
        "previous_run",
        "previous_run-2",
    ]
    for folder, w in ((first, runs[0]), (second, runs[1]), (out, runs[2])):
        assert all(torch.equal(w[k], v) for k, v in weights(folder).items())
        assert (folder / "test.json").is_file() and (folder / "eval").is_dir()
        assert (folder / "last.pt").is_file() and (folder / "history.json").is_file()
    assert not any((first / n).exists() for n in ("previous_run", "previous_run-2"))


def test_no_resume_sets_aside_results_even_without_a_checkpoint(tmp_path):
    """A folder holding only an earlier run's test.json / eval/ (checkpoints deleted)."""
    from helpers.classify.checkpoint import set_aside_previous_run

    (tmp_path / "eval" / "x").mkdir(parents=True)
    (tmp_path / "test.json").write_text("{}")
    (tmp_path / "previous_run").mkdir()  # taken by someone else
    (tmp_path / "notes.txt").write_text("mine")
    old = set_aside_previous_run(tmp_path)
    assert old == tmp_path / "previous_run-2"
    assert sorted(p.name for p in old.iterdir()) == ["eval", "test.json"]
    assert (tmp_path / "notes.txt").exists() and set_aside_previous_run(tmp_path) is None


# ------------------------------------------------------------------ evaluation folders


def test_evaluate_folders_are_keyed_by_data_path_and_checkpoint(
    run_dir, tmp_path, capsys, no_plots
):
    import numpy as np

    a = _folder(tmp_path / "a" / "data", seed=1)
    b = _folder(tmp_path / "b" / "data", seed=2)  # the same folder name, other images
    out = tmp_path / "r"
    argv = train_argv(out, epochs=2)
    argv[argv.index("--data") + 1] = str(a)
    argv[argv.index("--batch-size") + 1] = "8"
    assert run_cli(argv, capsys)[0] == 0

    def evaluate(data, checkpoint=out):
        argv = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--device", "cpu"]
        rc, res, err = run_cli(argv, capsys)
        assert rc == 0, err
        return Path(res["out_dir"]), res

    (da, _), (db, _) = evaluate(a), evaluate(b)
    assert da != db and da.parent == db.parent == out / "eval"
    assert da.name.startswith("data-") and da.name.endswith("-val")
    for folder, data in ((da, a), (db, b)):
        m = json.loads((folder / "metrics.json").read_text())
        assert m["data"] == str(data.resolve()) and m["split"] == "val"
        assert m["checkpoint"] == str(out / "best.pt")
        best_epoch = torch_load_epoch(out / "best.pt")
        assert m["checkpoint_epoch"] == best_epoch >= 1
    assert not np.array_equal(np.load(da / "logits.npy"), np.load(db / "logits.npy"))
    # the same data through a relative path lands in the same folder; last.pt in its own
    rel = os.path.relpath(a)
    assert evaluate(rel)[0] == da
    dl, rl = evaluate(a, out / "last.pt")
    assert dl == out / "eval" / f"{da.name}-last" and rl["epoch"] == 2
    assert json.loads((dl / "metrics.json").read_text())["checkpoint_epoch"] == 2
    # built-in data keep their plain name
    assert evaluate("synthetic", run_dir)[0] == run_dir / "eval" / "synthetic-val"


def torch_load_epoch(path):
    import torch

    return int(torch.load(path, weights_only=True)["epoch"])


# ------------------------------------------------------------------ SIGTERM like Ctrl-C


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_train_saves_like_ctrl_c_and_the_run_resumes(tmp_path):
    import signal
    import time

    import torch

    out = tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    argv = train_argv(out, epochs=400)
    p = subprocess.Popen(
        [sys.executable, "-m", "helpers", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    seen = []
    for line in p.stderr:  # wait until the loop runs
        seen.append(line)
        if line.startswith("plan:"):
            break
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    rest, err = p.communicate(timeout=120)
    err = "".join(seen) + err
    assert p.returncode == 130, err
    assert "Traceback" not in err and not rest.strip()
    assert "interrupt" in err and "last checkpoint" in err.strip().splitlines()[-1]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert 0 < ckpt["step"] < 800  # saved where it stopped, not at the end
    history = json.loads((out / "history.json").read_text())
    assert len(history) == ckpt["epoch"]


def test_sigterm_outside_the_training_loop_is_an_interrupt_too(tmp_path, capsys, monkeypatch):
    import signal

    from helpers.classify import commands as cli_vit

    def slow_load(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. `timeout` firing while data load
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(cli_vit, "load_data", slow_load)
    before = signal.getsignal(signal.SIGTERM)
    rc, _, err = run_cli(train_argv(tmp_path / "r"), capsys)
    assert rc == 130 and "interrupted" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) == before  # put back after the command


def test_plain_writes_past_ulimit_f_name_the_limit(tmp_path):
    code = textwrap.dedent(
        """
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        from helpers.files import atomic_write_bytes, atomic_write_json
        for write in (lambda: atomic_write_bytes(sys.argv[1], b"x" * 5000),
                      lambda: atomic_write_json(sys.argv[1], list(range(2000)))):
            try:
                write()
            except Exception as e:
                print(type(e).__name__, e)
        """
    )
    target = tmp_path / "h.json"
    target.write_text("old")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-c", code, str(target)], capture_output=True, text=True, env=env
    )
    lines = p.stdout.splitlines()
    assert len(lines) == 2, p.stdout + p.stderr
    for line in lines:
        assert line.startswith("WriteError could not write") and "ulimit -f" in line, line
    assert target.read_text() == "old" and sorted(q.name for q in tmp_path.iterdir()) == ["h.json"]


def test_the_option_named_is_the_one_the_path_came_from(tmp_path):
    import argparse

    from helpers.cli import _flag_of

    args = argparse.Namespace(
        command="train", preset="fast", device="cpu", data=str(tmp_path / "cpu"),
        out=str(tmp_path), image="~/a.png",
    )  # fmt: skip
    assert _flag_of(args, tmp_path / "cpu" / "train" / "x") == "--data"  # longest match
    assert _flag_of(args, tmp_path / "other") == "--out"
    assert _flag_of(args, os.path.expanduser("~/a.png")) == "--image"
    assert _flag_of(args, "/elsewhere/fast") == "path" and _flag_of(args, None) == "path"


def test_permission_denied_while_looking_is_one_line(tmp_path):
    import errno

    from helpers.files import path_error

    e = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "data"))
    err = path_error(e, "--data")
    assert isinstance(err, InputError) and "--data" in str(err) and "permission denied" in str(err)


def test_a_result_printed_before_an_error_still_goes_to_stdout(capsys, monkeypatch):
    """Folder runs print their summary, then exit non-zero for the failed items."""
    from helpers.classify import commands as cli_vit
    from helpers.cli import print_result

    def partial(args):
        print("a library's chatter")
        print_result({"done": 2, "failed": [{"file": "b.jpg", "score": float("nan")}]})
        raise InputError("1 of 3 images failed")

    monkeypatch.setattr(cli_vit, "cmd_predict", partial)
    rc = main(["predict", "--checkpoint", "x", "--image", "y"])
    out, err = capsys.readouterr()
    assert rc == 2 and json.loads(out) == {"done": 2, "failed": [{"file": "b.jpg", "score": None}]}
    assert "chatter" in err and err.strip().endswith("error: 1 of 3 images failed")
