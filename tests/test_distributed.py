"""Data-parallel training on the CPU (gloo, 2 processes): the same steps as one process with
the global batch, validation counted once, one writer, and resume after a process dies."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exact_preset(**kw):
    """Nothing random in the step (no augmentation, dropout or drop-path): two processes with
    half the batch each must then take exactly the steps one process takes."""
    from helpers.classify.presets import get_preset

    p = get_preset(
        "fast",
        **{
            "image_size": 16, "patch_size": 4, "dim": 32, "depth": 2, "heads": 2, "mlp_ratio": 2,
            "dropout": 0.0, "drop_path": 0.0, "epochs": 2, "batch_size": 32, "lr": 2e-3,
            "warmup_fraction": None, "warmup_epochs": 0.5, "compile": False, "precision": "fp32",
            "crop_padding": 0, "flip": False, "erasing": 0.0, "mixup_alpha": 0.0,
            "cutmix_alpha": 0.0, "checkpoint_minutes": 0, "ema_decay": 0.9, "minutes": None,
            **kw,
        },
    )  # fmt: skip
    p.aug.policy, p.train.minutes, p.train.warmup_fraction = None, None, None
    return p


def data():
    from helpers.classify.data import synthetic_dataset

    return synthetic_dataset(n_train=128, n_val=50, image_size=16, num_classes=4, n_test=20)


WORKER = textwrap.dedent(
    """
    import os, sys, torch
    sys.path.insert(0, {tests!r})
    from test_distributed import data, exact_preset
    from helpers.classify import step as S
    from helpers.classify import train as T

    torch.set_num_threads(1)
    out = sys.argv[1]
    crash = int(os.environ.get("CRASH_AT_STEP", "0"))
    ctrl_c = int(os.environ.get("INTERRUPT_AT_STEP", "0"))
    T.STOP_CHECK_EVERY = 2
    if ctrl_c and os.environ["RANK"] == "0":  # only one process gets the signal
        import signal

        real_i, calls_i = S.train_step, {{"n": 0}}

        def step_i(run, x, y):
            calls_i["n"] += 1
            if calls_i["n"] == ctrl_c:
                os.kill(os.getpid(), signal.SIGINT)
            return real_i(run, x, y)

        S.train_step = step_i
    if crash and os.environ["RANK"] == "1":
        real, calls = S.train_step, {{"n": 0}}

        def step(run, x, y):
            calls["n"] += 1
            if calls["n"] == crash:
                os._exit(17)  # a process dies without a word (OOM killer, lost node)
            return real(run, x, y)

        S.train_step = step
    res = T.train(exact_preset(epochs=3), data(), out, device="cpu", progress=False,
                  max_steps_per_epoch=3, log=print)
    torch.save({{"model": res.model.state_dict(), "history": res.history,
                 "test": res.test}}, f"{{out}}/final_rank{{os.environ['RANK']}}.pt")
    """
)


def torchrun(tmp_path, out, env=None, n=2):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(ROOT / "tests")))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={n}",
        f"--master-port={_free_port()}", str(script), str(out),
    ]  # fmt: skip
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True, timeout=300)


def _load(path):
    return torch.load(path, weights_only=False)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    r = torchrun(tmp, tmp / "straight")
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp, r


def test_two_processes_take_the_steps_of_one_process_with_the_global_batch(two_process_run):
    from helpers.classify import train as T

    tmp, _ = two_process_run
    torch.set_num_threads(1)
    single = T.train(
        exact_preset(epochs=3), data(), tmp / "single", device="cpu", progress=False,
        max_steps_per_epoch=3, log=lambda m: None,
    )  # fmt: skip
    ddp = _load(tmp / "straight" / "final_rank0.pt")
    other = _load(tmp / "straight" / "final_rank1.pt")
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
        assert torch.equal(ddp["model"][k], other["model"][k]), k  # the processes agree
    # validation: every image once, the same numbers as one process (same weights)
    for a, b in zip(ddp["history"], single.history):
        assert a["step"] == b["step"] and a["val_acc"] == pytest.approx(b["val_acc"], abs=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)

    def strip(h):
        return [{k: v for k, v in r.items() if k not in T.TIMING_KEYS} for r in h]

    assert strip(ddp["history"]) == strip(other["history"])


def test_one_writer_and_rank_streams(two_process_run):
    tmp, r = two_process_run
    out = tmp / "straight"
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng_ranks"]) == 2
    # each process augments with its own stream
    assert not torch.equal(ckpt["rng_ranks"][0]["augment"], ckpt["rng_ranks"][1]["augment"])
    assert (out / "test.json").is_file()  # the test split is scored once, by the first process
    assert _load(out / "final_rank1.pt")["test"] is None
    assert r.stdout.count("plan:") == 1  # one voice


def test_resume_after_one_process_dies(two_process_run, tmp_path):
    tmp, _ = two_process_run
    out = tmp_path / "crashed"
    r = torchrun(tmp_path, out, env={"CRASH_AT_STEP": "8"})  # epoch 3, after 2 saved epochs
    assert r.returncode != 0
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
    r = torchrun(tmp_path, out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from epoch 2" in r.stdout
    a = _load(tmp / "straight" / "final_rank0.pt")
    b = _load(out / "final_rank0.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # Ctrl-C reaching one process mid-epoch: all stop at the same step, save, resume exactly
    out2 = tmp_path / "ctrl_c"
    r = torchrun(tmp_path, out2, env={"INTERRUPT_AT_STEP": "4"})  # epoch 2, first step
    assert r.returncode != 0
    mid = torch.load(out2 / "last.pt", weights_only=True)
    assert (mid["epoch"], mid["step"]) == (1, 5) and len(mid["partial_ranks"]) == 2
    r = torchrun(tmp_path, out2)
    assert r.returncode == 0, r.stderr[-3000:]
    c = _load(out2 / "final_rank0.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], c["model"][k]), k
    # resuming with another number of processes is refused with a clear message
    from helpers.classify import train as T
    from helpers.errors import InputError

    with pytest.raises(InputError, match=r"written by 2 training process\(es\), this run has 1"):
        T.train(exact_preset(epochs=4), data(), out, device="cpu", progress=False)


def test_cli_under_torchrun_prints_one_result(tmp_path):
    import json

    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
        f"--master-port={_free_port()}", "-m", "helpers", "train", "--smoke", "--device", "cpu",
        "--batch-size", "32", "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0])["steps"] == 2
    assert r.stderr.count("loading data") == 1


def test_uneven_global_batch_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    from helpers import cli, distributed

    monkeypatch.setattr(distributed, "from_env", lambda device=None: distributed.Dist(0, 2))
    argv = ["train", "--smoke", "--device", "cpu", "--batch-size", "33", "--out", str(tmp_path)]
    assert cli.main(argv) == 2
    assert "divide evenly among the 2 processes" in capsys.readouterr().err


def _segment_cmd(folder, out, n=None):
    args = [
        "-m", "helpers", "segment", "--folder", str(folder), "--prompt", "red ball",
        "--out", str(out), "--random-weights", "--image-size", "128", "--device", "cpu",
        "--box-threshold", "0", "--text-threshold", "0",
    ]  # fmt: skip
    if n is None:
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={n}",
            f"--master-port={_free_port()}", *args]  # fmt: skip


def test_sharded_folder_job_writes_what_one_process_writes(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        img = np.full((72, 96, 3), (90, 160, 80), np.uint8)
        y, x = rng.integers(10, 40, 2)
        img[y : y + 20, x : x + 20] = (220, 40, 40)
        Image.fromarray(img).save(folder / f"im{i}.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(cmd):
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]

    one = run(_segment_cmd(folder, tmp_path / "one"))
    two = run(_segment_cmd(folder, tmp_path / "two", n=2))
    assert len(two) == 1 and two[0]["processes"] == 2  # one merged summary
    assert two[0]["done"] == one[0]["done"] == 5
    assert [f["file"] for f in two[0]["files"]] == [f["file"] for f in one[0]["files"]]
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(names) == 15
    for name in names:
        a, b = tmp_path / "one" / name, tmp_path / "two" / name
        if name.endswith(".png"):
            assert np.array_equal(np.array(Image.open(a)), np.array(Image.open(b))), name
        else:  # the same instances; timings differ
            da, db = json.loads(a.read_text()), json.loads(b.read_text())
            assert da["instances"] == db["instances"] and da["fingerprint"] == db["fingerprint"]
