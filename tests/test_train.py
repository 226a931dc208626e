"""helpers.train: schedules, EMA, exact resume, checkpoint fallback, bad input, OOM, time
budget, compile fallback, and a real learning check on scikit-learn's digits."""

import math
import time

import pytest
import torch

from helpers import train as T
from helpers.errors import InputError
from helpers.presets import TrainConfig, get_preset

TIMING = set(T.TIMING_KEYS)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread is as fast and does not fight other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_preset(**kw):
    """A 2-block, 32-wide ViT at 16 px with every source of randomness switched on."""
    opts = dict(
        image_size=16,
        patch_size=4,
        dim=32,
        depth=2,
        heads=2,
        mlp_ratio=2,
        dropout=0.1,
        drop_path=0.1,
        epochs=2,
        batch_size=32,
        lr=2e-3,
        warmup_epochs=0.5,
        ema_decay=0.9,
        compile=False,
        precision="fp32",
        policy="randaugment",
        erasing=0.25,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        mix_prob=0.8,
    )
    opts.update(kw)
    opts.setdefault("minutes", None)
    return make_preset(**opts)


def make_preset(**opts):
    """``get_preset('fast', ...)`` that also applies ``None`` values (get_preset skips them)."""
    import dataclasses

    p = get_preset("fast", **{k: v for k, v in opts.items() if v is not None})
    for key, value in opts.items():
        if value is None:
            for obj in (p.train, p.aug, p.model):
                if key in {f.name for f in dataclasses.fields(obj)}:
                    setattr(obj, key, value)
    return p


def tiny_data(**kw):
    from helpers.data import synthetic_dataset

    opts = dict(n_train=128, n_val=64, image_size=16, num_classes=4, seed=0)
    opts.update(kw)
    return synthetic_dataset(**opts)


def _strip(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ----------------------------------------------------------------------------- schedule / EMA


def test_cosine_schedule_with_warmup():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, lr=1.0, min_lr=0.1, schedule="cosine")
    assert T.lr_at(0.0, cfg) == 0.0  # warmup starts at 0
    assert T.lr_at(0.1, cfg) == pytest.approx(0.5)  # half-way through warmup
    assert T.lr_at(0.2, cfg) == pytest.approx(1.0)  # warmup end = peak
    assert T.lr_at(0.6, cfg) == pytest.approx(0.55)  # cosine midpoint = (lr + min_lr) / 2
    assert T.lr_at(1.0, cfg) == pytest.approx(0.1)  # ends at min_lr
    assert T.lr_at(1.5, cfg) == pytest.approx(0.1)  # clamped
    vals = [T.lr_at(p / 100, cfg) for p in range(20, 101)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))  # monotone decay after warmup


def test_multistep_and_constant_schedules():
    cfg = TrainConfig(epochs=100, lr=1.0, schedule="multistep", milestones=(50, 75), gamma=0.1)
    assert T.lr_at(0.0, cfg) == 1.0
    assert T.lr_at(0.499, cfg) == 1.0
    assert T.lr_at(0.5, cfg) == pytest.approx(0.1)
    assert T.lr_at(0.749, cfg) == pytest.approx(0.1)
    assert T.lr_at(0.75, cfg) == pytest.approx(0.01)
    # milestones computed from steps land exactly on the epoch boundary
    spe = 391
    assert T.lr_at(T.run_progress(50 * spe, 100 * spe, 0, None), cfg) == pytest.approx(0.1)
    assert T.lr_at(T.run_progress(50 * spe - 1, 100 * spe, 0, None), cfg) == 1.0
    const = TrainConfig(epochs=10, lr=0.3, schedule="constant", warmup_epochs=1)
    assert T.lr_at(0.05, const) == pytest.approx(0.15)
    assert T.lr_at(0.9, const) == pytest.approx(0.3)


def test_progress_uses_time_budget_when_further():
    assert T.run_progress(10, 100, elapsed=0.0, budget_s=None) == pytest.approx(0.1)
    assert T.run_progress(10, 100, elapsed=30.0, budget_s=60.0) == pytest.approx(0.5)
    assert T.run_progress(90, 100, elapsed=30.0, budget_s=60.0) == pytest.approx(0.9)
    assert T.run_progress(10, 100, elapsed=90.0, budget_s=60.0) == 1.0


def test_ema_update_math():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    model[1].running_mean.fill_(2.5)
    T.ema_update(ema, model, 0.9)
    for name, p in model.named_parameters():
        expect = 0.9 * before[name] + 0.1 * p.detach()
        torch.testing.assert_close(dict(ema.named_parameters())[name].detach(), expect)
    assert torch.equal(ema[1].running_mean, torch.full((4,), 2.5))  # buffers copied
    T.ema_update(ema, model, 0.0)  # decay 0 -> exact copy
    _assert_same_weights(ema, model)


def test_soft_cross_entropy_label_smoothing():
    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 3, 1, 1, 2])
    onehot = torch.nn.functional.one_hot(y, 4).float()
    for eps in (0.0, 0.1):
        expect = torch.nn.functional.cross_entropy(logits, y, label_smoothing=eps)
        torch.testing.assert_close(T.soft_cross_entropy(logits, onehot, eps), expect)


def test_param_groups_skip_decay_on_norms_biases_tokens():
    from helpers.vit import build_model

    model, _ = build_model(tiny_preset(pool="cls"), 4, pretrained=False)
    groups = T.param_groups(model, 0.05)
    ids = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        no_decay = p.ndim <= 1 or "cls_token" in name or "pos_embed" in name
        assert ids[id(p)] == (0.0 if no_decay else 0.05), name


# ----------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted 2-epoch run and one interrupted in epoch 2 then resumed."""
    data = tiny_data()
    straight_dir = tmp_path_factory.mktemp("straight")
    resumed_dir = tmp_path_factory.mktemp("resumed")
    straight = T.train(tiny_preset(), data, straight_dir, progress=False, log=lambda m: None)

    real_step = T._train_step
    calls = {"n": 0}

    def crashing_step(run, x, y):
        calls["n"] += 1
        if calls["n"] == 6:  # 4 steps per epoch: crash in the middle of epoch 2
            raise KeyboardInterrupt
        return real_step(run, x, y)

    mp = pytest.MonkeyPatch()
    mp.setattr(T, "_train_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        T.train(tiny_preset(), data, resumed_dir, progress=False, log=lambda m: None)
    mp.undo()
    assert calls["n"] == 6
    logs = []
    resumed = T.train(tiny_preset(), data, resumed_dir, progress=False, log=logs.append)
    assert any("resuming" in m and "epoch 1" in m for m in logs)
    return {"data": data, "straight": straight, "resumed": resumed, "dir": resumed_dir}


def test_interrupt_and_resume_is_bit_identical(runs):
    a, b = runs["straight"], runs["resumed"]
    assert [r["epoch"] for r in a.history] == [1, 2]
    _assert_same_weights(a.model, b.model)
    _assert_same_weights(a.ema_model, b.ema_model)
    assert _strip(a.history) == _strip(b.history)
    assert a.best_val_acc == b.best_val_acc
    keys = {"epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_top5"}
    assert keys | TIMING <= set(a.history[0])
    assert a.history[-1]["step"] == 8


def test_checkpoint_files_and_load(runs):
    d = runs["dir"]
    for name in ("last.pt", "last.prev.pt", "best.pt", "history.json", "history.csv"):
        assert (d / name).stat().st_size > 0, name
    ckpt = torch.load(d / "last.pt", weights_only=True)
    assert {"model", "optimizer", "ema", "epoch", "step", "elapsed", "history", "rng"} <= set(ckpt)
    assert {"python", "numpy", "torch", "shuffle", "augment"} <= set(ckpt["rng"])
    assert ckpt["epoch"] == 2 and torch.load(d / "last.prev.pt", weights_only=True)["epoch"] == 1
    loaded = T.load_checkpoint(d / "last.pt")
    _assert_same_weights(loaded.model, runs["resumed"].ema_model)  # EMA weights preferred
    assert loaded.classes == runs["data"].classes and loaded.epoch == 2
    assert loaded.spec.size == 16 and not loaded.model.training
    best = T.load_checkpoint(d)  # a folder -> best.pt
    assert best.history[-1]["val_acc"] == pytest.approx(runs["resumed"].best_val_acc)
    assert (d / "history.csv").read_text().splitlines()[0].startswith("epoch,step,lr")


def test_corrupt_last_falls_back_to_prev_and_resumes_identically(runs, tmp_path):
    import shutil

    d = tmp_path / "run"
    shutil.copytree(runs["dir"], d)
    (d / "last.pt").write_bytes(b"not a checkpoint, a half-written file")
    logs = []
    loaded = T.load_checkpoint(d / "last.pt", log=logs.append)
    assert loaded.epoch == 1 and any("last.prev.pt" in m for m in logs)
    # resuming from the fallback redoes epoch 2 and lands on the same weights
    logs.clear()
    res = T.train(tiny_preset(), runs["data"], d, progress=False, log=logs.append)
    assert any("unreadable" in m or "last.prev.pt" in m for m in logs)
    _assert_same_weights(res.model, runs["straight"].model)
    assert _strip(res.history) == _strip(runs["straight"].history)


def test_all_checkpoints_corrupt_raise_input_error(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"garbage")
    (tmp_path / "last.prev.pt").write_bytes(b"")
    with pytest.raises(InputError, match="last.pt"):
        T.load_checkpoint(tmp_path / "last.pt")
    with pytest.raises(InputError, match="unreadable"):
        T.train(tiny_preset(), tiny_data(), tmp_path, progress=False, log=lambda m: None)
    with pytest.raises(InputError, match="no checkpoint"):
        T.load_checkpoint(tmp_path / "missing.pt")


def test_resume_with_other_classes_is_refused(runs, tmp_path):
    import shutil

    d = tmp_path / "run"
    shutil.copytree(runs["dir"], d)
    with pytest.raises(InputError, match="classes"):
        T.train(tiny_preset(), tiny_data(num_classes=3), d, progress=False, log=lambda m: None)
    with pytest.raises(InputError, match="different model"):
        T.train(tiny_preset(dim=64), runs["data"], d, progress=False, log=lambda m: None)


def test_chunks_eval_every_and_fresh_restart(tmp_path):
    data = tiny_data()
    p = tiny_preset(epochs=3)
    kw = dict(progress=True, max_steps_per_epoch=1, eval_every=2, log=lambda m: None)
    first = T.train(p, data, tmp_path, max_epochs_this_run=2, **kw)
    assert [r["epoch"] for r in first.history] == [1, 2] and not first.stopped_early
    assert first.history[0]["val_acc"] is None and first.history[1]["val_acc"] is not None
    rest = T.train(p, data, tmp_path, **kw)
    assert [r["epoch"] for r in rest.history] == [1, 2, 3]
    assert rest.history[2]["val_acc"] is not None  # the last epoch is always evaluated
    assert "val_acc_model" in rest.history[2]  # raw (non-EMA) weights scored at the end
    logs = []
    fresh = T.train(
        p, data, tmp_path, resume=False, max_epochs_this_run=1, **dict(kw, log=logs.append)
    )
    assert [r["epoch"] for r in fresh.history] == [1]
    assert (tmp_path / "previous_run" / "last.pt").exists() and any(
        "previous_run" in m for m in logs
    )
    assert not (tmp_path / "last.prev.pt").exists()  # no stale fallback from the old run


# ----------------------------------------------------------------------------- bad input / OOM / budget


def test_batch_larger_than_dataset(tmp_path):
    with pytest.raises(InputError, match=r"batch_size 256 is larger than the training set \(128"):
        T.train(tiny_preset(batch_size=256), tiny_data(), tmp_path, progress=False)


def test_empty_validation_split(tmp_path):
    data = tiny_data()
    data.val_x, data.val_y = data.val_x[:0], data.val_y[:0]
    with pytest.raises(InputError, match="validation split is empty"):
        T.train(tiny_preset(), data, tmp_path, progress=False)


def test_labels_out_of_range(tmp_path):
    data = tiny_data()
    data.train_y = data.train_y.clone()
    data.train_y[0] = 9
    with pytest.raises(InputError, match="labels must be in"):
        T.train(tiny_preset(), data, tmp_path, progress=False)


def test_cuda_oom_becomes_input_error(tmp_path, monkeypatch):
    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(T, "_train_step", oom)
    with pytest.raises(InputError, match=r"ran out of memory.*batch_size=16 \(was 32\)"):
        T.train(tiny_preset(), tiny_data(), tmp_path, progress=False, log=lambda m: None)


class FakeClock:
    """Stands in for the ``time`` module inside helpers.train: each reading advances 20 ms."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self):
        self.now += 0.02
        return self.now


def test_time_budget_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "time", FakeClock())
    p = tiny_preset(epochs=10_000, minutes=0.02, ema_decay=None, min_lr=1e-5)  # 1.2 s
    res = T.train(p, tiny_data(), tmp_path, progress=False, log=lambda m: None)
    assert res.stopped_early
    assert 2 <= len(res.history) < 20
    assert res.history[-1]["elapsed_seconds"] >= 1.2
    # the schedule followed the clock: warm at the start, near min_lr at the end
    assert res.history[0]["lr"] > 0.8 * p.train.lr
    assert res.history[-1]["lr"] < 0.05 * p.train.lr
    lrs = [r["lr"] for r in res.history]
    assert lrs == sorted(lrs, reverse=True)
    # resuming a spent budget trains nothing more
    logs = []
    again = T.train(p, tiny_data(), tmp_path, progress=False, log=logs.append)
    assert again.stopped_early and len(again.history) == len(res.history)
    assert any("budget" in m for m in logs)


def test_compile_failure_falls_back_to_eager(tmp_path, monkeypatch):
    def broken_compile(model, *a, **k):
        def fwd(x):
            raise RuntimeError("inductor backend is unavailable")

        return fwd

    monkeypatch.setattr(torch, "compile", broken_compile)
    logs = []
    res = T.train(
        tiny_preset(compile=True, epochs=1),
        tiny_data(),
        tmp_path,
        progress=False,
        max_steps_per_epoch=2,
        log=logs.append,
    )
    assert any("torch.compile failed" in m for m in logs)
    assert res.history[0]["step"] == 2 and math.isfinite(res.history[0]["train_loss"])


# ----------------------------------------------------------------------------- it really learns


def test_learns_digits_above_90_percent(tmp_path):
    from helpers.data import load_digits

    data = load_digits(image_size=16)
    p = make_preset(
        image_size=16,
        patch_size=4,
        dim=64,
        depth=2,
        heads=4,
        mlp_ratio=2,
        dropout=0.0,
        drop_path=0.0,
        epochs=15,
        batch_size=32,
        lr=4e-3,
        min_lr=1e-5,
        warmup_epochs=1,
        weight_decay=0.05,
        ema_decay=None,
        compile=False,
        precision="fp32",
        policy=None,
        flip=False,  # a mirrored digit is another digit (or none)
        crop_padding=0,  # shifting 8x8 digits by whole pixels slows learning a lot
        erasing=0.0,
        mixup_alpha=0.0,
        cutmix_alpha=0.0,
        minutes=None,
    )
    t0 = time.perf_counter()
    res = T.train(p, data, tmp_path, progress=False, log=print)
    seconds = time.perf_counter() - t0
    print(f"digits: best val acc {res.best_val_acc:.4f} in {seconds:.1f} s")
    assert res.best_val_acc > 0.90
    assert seconds < 60


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_compile_and_resume(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    data = tiny_data(n_train=512, n_val=128)
    p = tiny_preset(epochs=2, precision=precision, compile=True, batch_size=64)
    first = T.train(p, data, tmp_path, device="cuda", max_epochs_this_run=1, log=print)
    assert first.history[0]["images_per_second"] > 0
    res = T.train(p, data, tmp_path, device="cuda", log=print)
    assert [r["epoch"] for r in res.history] == [1, 2]
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert next(res.model.parameters()).device.type == "cuda"
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert (ckpt["scaler"] is not None) == (precision == "fp16")
    loaded = T.load_checkpoint(tmp_path / "best.pt", device="cuda")
    assert loaded.epoch >= 1
