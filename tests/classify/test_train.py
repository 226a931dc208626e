"""helpers.classify.train: schedules, EMA, exact resume, checkpoint fallback, bad input, OOM, time
budget, compile fallback, and a real learning check on scikit-learn's digits."""

import math
import time

import pytest
import torch

from helpers.classify import calibrate as C
from helpers.classify import checkpoint as CK
from helpers.classify import step as S
from helpers.classify import train as T
from helpers.classify.presets import TrainConfig, get_preset
from helpers.classify.schedule import StepPlan, budget_steps, lr_at_step, make_plan
from helpers.errors import InputError

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
        warmup_fraction=None,
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
    from helpers.classify.data import synthetic_dataset

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


def test_cosine_schedule_with_warmup_in_steps():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, lr=1.0, min_lr=0.1, schedule="cosine")
    plan = make_plan(cfg, steps_per_epoch=10)  # 100 steps, 20 of warm-up
    assert (plan.total_steps, plan.warmup_steps, plan.epochs) == (100, 20, 10)
    assert lr_at_step(0, plan, cfg) == pytest.approx(1 / 20)  # the first step already learns
    assert lr_at_step(9, plan, cfg) == pytest.approx(0.5)  # half-way through warm-up
    assert lr_at_step(19, plan, cfg) == pytest.approx(1.0)  # last warm-up step = peak
    assert lr_at_step(20, plan, cfg) == pytest.approx(1.0)  # cosine starts at the peak
    assert lr_at_step(99, plan, cfg) == pytest.approx(0.1)  # the last step is at min_lr
    assert lr_at_step(500, plan, cfg) == pytest.approx(0.1)  # clamped
    vals = [lr_at_step(s, plan, cfg) for s in range(19, 100)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))  # monotone decay after warm-up
    # a warm-up fraction scales with the run; it wins over warmup_epochs
    frac = TrainConfig(epochs=10, warmup_epochs=2, warmup_fraction=0.05, lr=1.0)
    assert make_plan(frac, 10).warmup_steps == 5 and make_plan(frac, 10, 400).warmup_steps == 20


def test_warmup_as_long_as_the_run_is_clamped_with_a_message():
    cfg = TrainConfig(epochs=3, warmup_epochs=5, lr=1.0, min_lr=0.0)
    logs = []
    plan = make_plan(cfg, steps_per_epoch=10, log=logs.append)
    assert plan.warmup_steps == 6 and any("warm-up" in m and "30 steps" in m for m in logs)
    assert lr_at_step(5, plan, cfg) == pytest.approx(1.0)  # the peak is reached ...
    assert lr_at_step(29, plan, cfg) == pytest.approx(0.0)  # ... and the run still anneals


def test_a_short_plan_still_warms_up_when_a_warmup_is_asked_for():
    """2 % of a 24-step plan rounds to 0 steps: the warm-up is kept at 2 steps (the first below
    the peak), never longer than the run allows; none when none is asked for."""
    cfg = TrainConfig(epochs=1, warmup_fraction=0.02, lr=1.0, min_lr=0.0)
    for total in (3, 10, 24, 49):
        plan = make_plan(cfg, 10, total)
        assert plan.warmup_steps == 2 and lr_at_step(0, plan, cfg) == pytest.approx(0.5)
        assert lr_at_step(total - 1, plan, cfg) == pytest.approx(0.0)
    assert make_plan(cfg, 10, 2).warmup_steps == 1  # the last step stays the schedule's end
    assert make_plan(cfg, 10, 1).warmup_steps == 0
    assert make_plan(cfg, 10, 1000).warmup_steps == 20
    none = TrainConfig(epochs=1, warmup_fraction=None, warmup_epochs=0, lr=1.0)
    assert make_plan(none, 10, 24).warmup_steps == 0


def test_a_replan_compresses_the_rest_of_the_schedule_onto_the_steps_left():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, lr=1.0, min_lr=0.1, schedule="cosine")
    plan = make_plan(cfg, steps_per_epoch=10)  # 100 steps, 20 of warm-up
    cut = plan.replanned(10, 40)  # half-way through the warm-up: 30 steps left, not 90
    assert (cut.total_steps, cut.first_total, cut.replans) == (40, 100, ((10, 40),))
    for s in range(10):  # the steps already taken keep their learning rates
        assert lr_at_step(s, cut, cfg) == lr_at_step(s, plan, cfg)
    assert cut.position(10) == 10 and cut.position(39) == 99
    assert lr_at_step(39, cut, cfg) == pytest.approx(0.1)  # the last step is at min_lr
    vals = [lr_at_step(s, cut, cfg) for s in range(40)]
    peak = max(range(40), key=vals.__getitem__)
    assert vals[peak] == pytest.approx(1.0, abs=0.02) and 10 < peak < 15  # warm-up compressed
    assert all(a >= b for a, b in zip(vals[peak:], vals[peak + 1 :]))
    again = cut.replanned(30, 31)  # one step left: it is the schedule's last
    assert lr_at_step(30, again, cfg) == pytest.approx(0.1)
    assert StepPlan.from_dict(again.to_dict()) == again


def test_multistep_and_constant_schedules():
    cfg = TrainConfig(epochs=100, lr=1.0, schedule="multistep", milestones=(50, 75), gamma=0.1)
    spe = 391
    plan = make_plan(cfg, spe)
    assert lr_at_step(0, plan, cfg) == 1.0
    assert lr_at_step(50 * spe - 1, plan, cfg) == 1.0  # milestones land on epoch boundaries
    assert lr_at_step(50 * spe, plan, cfg) == pytest.approx(0.1)
    assert lr_at_step(75 * spe - 1, plan, cfg) == pytest.approx(0.1)
    assert lr_at_step(75 * spe, plan, cfg) == pytest.approx(0.01)
    const = TrainConfig(epochs=10, lr=0.3, schedule="constant", warmup_epochs=1)
    cplan = make_plan(const, 10)
    assert lr_at_step(4, cplan, const) == pytest.approx(0.15)
    assert lr_at_step(90, cplan, const) == pytest.approx(0.3)


def test_budget_steps_fit_the_budget():
    # 300 s at 10 ms/step, a 1 s validation every 100-step epoch, 3 % kept free
    n = budget_steps(300, 0.01, steps_per_epoch=100, eval_seconds=1.0)
    assert n == int(300 * 0.97 / (0.01 + 0.01))
    assert budget_steps(300, 0.01, 100, eval_seconds=1.0, eval_every=10) > n
    assert budget_steps(0.001, 5.0, 100) == 1  # at least one step
    with pytest.raises(InputError, match="step_seconds"):
        budget_steps(10, 0.0, 100)


def test_ema_update_math():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    model[1].running_mean.fill_(2.5)
    S.ema_update(ema, model, 0.9)
    for name, p in model.named_parameters():
        expect = 0.9 * before[name] + 0.1 * p.detach()
        torch.testing.assert_close(dict(ema.named_parameters())[name].detach(), expect)
    assert torch.equal(ema[1].running_mean, torch.full((4,), 2.5))  # buffers copied
    S.ema_update(ema, model, 0.0)  # decay 0 -> exact copy
    _assert_same_weights(ema, model)


def test_soft_cross_entropy_label_smoothing():
    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 3, 1, 1, 2])
    onehot = torch.nn.functional.one_hot(y, 4).float()
    for eps in (0.0, 0.1):
        expect = torch.nn.functional.cross_entropy(logits, y, label_smoothing=eps)
        torch.testing.assert_close(S.soft_cross_entropy(logits, onehot, eps), expect)


def test_param_groups_skip_decay_on_norms_biases_tokens():
    from helpers.classify.models import build_model

    model, _ = build_model(tiny_preset(pool="cls"), 4, pretrained=False)
    groups = S.param_groups(model, 0.05)
    ids = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        no_decay = p.ndim <= 1 or "cls_token" in name or "pos_embed" in name
        assert ids[id(p)] == (0.0 if no_decay else 0.05), name


# ----------------------------------------------------------------------------- resume


def _interrupt_at(monkeypatch, n):
    """Send this process a real SIGINT (Ctrl-C / kernel interrupt) during training step ``n``."""
    import os
    import signal

    real_step, calls = S.train_step, {"n": 0}

    def step(run, x, y):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(run, x, y)

    monkeypatch.setattr(S, "train_step", step)
    return calls


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted 2-epoch run and one interrupted in the middle of epoch 2 (a real
    SIGINT: the step finishes, last.pt is written mid-epoch) then resumed."""
    data = tiny_data()
    straight_dir = tmp_path_factory.mktemp("straight")
    resumed_dir = tmp_path_factory.mktemp("resumed")
    quiet = dict(progress=False, log=lambda m: None)
    straight = T.train(tiny_preset(checkpoint_minutes=0), data, straight_dir, **quiet)
    mp = pytest.MonkeyPatch()
    calls = _interrupt_at(mp, 6)  # 4 steps per epoch: step 2 of epoch 2
    logs = []
    with pytest.raises(KeyboardInterrupt):
        T.train(
            tiny_preset(checkpoint_minutes=0), data, resumed_dir, progress=False, log=logs.append
        )
    mp.undo()
    assert calls["n"] == 6 and any("interrupt" in m for m in logs)
    mid = torch.load(resumed_dir / "last.pt", weights_only=True)
    assert (mid["epoch"], mid["step"], mid["partial"]["done"]) == (1, 6, 2)
    logs.clear()
    resumed = T.train(
        tiny_preset(checkpoint_minutes=0), data, resumed_dir, progress=False, log=logs.append
    )
    assert any("resuming" in m and "step 6" in m for m in logs)
    return {"data": data, "straight": straight, "resumed": resumed, "dir": resumed_dir}


def test_interrupt_mid_epoch_and_resume_is_bit_identical(runs):
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
    assert {
        "model",
        "optimizer",
        "ema",
        "epoch",
        "step",
        "elapsed",
        "history",
        "rng",
        "plan",
    } <= set(ckpt)
    assert {"python", "numpy", "torch", "shuffle", "augment"} <= set(ckpt["rng"])
    assert ckpt["epoch"] == 2 and ckpt["partial"] is None
    assert torch.load(d / "last.prev.pt", weights_only=True)["epoch"] == 1
    loaded = T.load_checkpoint(d / "last.pt")
    _assert_same_weights(loaded.model, runs["resumed"].ema_model)  # EMA weights preferred
    assert loaded.classes == runs["data"].classes and loaded.epoch == 2
    assert loaded.spec.size == 16 and not loaded.model.training
    # best.pt: inference weights only (the EMA's), no optimizer state
    best_file = torch.load(d / "best.pt", weights_only=True)
    assert best_file["ema"] is None and "optimizer" not in best_file and "rng" not in best_file
    assert best_file["best_val_acc"] == pytest.approx(runs["resumed"].best_val_acc)
    assert (d / "best.pt").stat().st_size < 0.5 * (d / "last.pt").stat().st_size
    best = T.load_checkpoint(d)  # a folder -> best.pt
    assert best.epoch == best_file["epoch"]
    assert (d / "history.csv").read_text().splitlines()[0].startswith("epoch,step,lr")


def test_corrupt_last_falls_back_and_never_overwrites_the_good_backup(runs, tmp_path):
    import shutil

    d = tmp_path / "run"
    shutil.copytree(runs["dir"], d)
    (d / "last.pt").write_bytes(b"not a checkpoint, a half-written file")
    good_prev = (d / "last.prev.pt").read_bytes()
    logs = []
    loaded = T.load_checkpoint(d / "last.pt", log=logs.append)
    assert loaded.epoch == 1 and any("last.prev.pt" in m for m in logs)
    # resuming from the fallback sets the bad file aside and redoes epoch 2 exactly
    logs.clear()
    p = tiny_preset(checkpoint_minutes=0)
    res = T.train(p, runs["data"], d, progress=False, max_epochs_this_run=0, log=logs.append)
    assert any("last.corrupt.pt" in m for m in logs) and (d / "last.corrupt.pt").exists()
    assert not (d / "last.pt").exists() and (d / "last.prev.pt").read_bytes() == good_prev
    res = T.train(p, runs["data"], d, progress=False, log=logs.append)
    assert torch.load(d / "last.prev.pt", weights_only=True)["epoch"] == 1  # still the good one
    assert torch.load(d / "last.pt", weights_only=True)["epoch"] == 2
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
    with pytest.raises(InputError, match=r"other settings: dim=64 \(the run has 32\)"):
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

    monkeypatch.setattr(S, "train_step", oom)
    with pytest.raises(InputError, match=r"ran out of memory.*batch_size=16 \(was 32\)"):
        T.train(tiny_preset(), tiny_data(), tmp_path, progress=False, log=lambda m: None)


class StepClock:
    """Stands in for the ``time`` module: time passes only inside training steps, ``first``
    seconds in the first one (a compile) and then ``per_step`` (``slow_after`` calls on:
    ``slow``; the calibration's steps: ``calibrating`` when given), so a budgeted run's plan
    and stopping point are exact. The calibration measures 20 steady steps (its seconds
    scaled to this clock), after 2 warm-up steps: the run's own steps start at call 23."""

    def __init__(
        self, monkeypatch, per_step=0.02, first=0.02, slow_after=None, slow=None, calibrating=None
    ):
        self.now, self.calls = 1000.0, 0
        real = S.train_step

        def step(run, x, y):
            self.calls += 1
            if self.calls == 1:
                self.now += first
            elif calibrating is not None and self.calls <= 22:
                self.now += calibrating
            elif slow_after is not None and self.calls > slow_after:
                self.now += slow
            else:
                self.now += per_step
            return real(run, x, y)

        for mod in (T, C, CK):
            monkeypatch.setattr(mod, "time", self)
        monkeypatch.setattr(S, "train_step", step)
        steady = calibrating if calibrating is not None else per_step
        monkeypatch.setattr(C, "CALIBRATION_SECONDS", 20 * steady)

    def perf_counter(self):
        return self.now


def budget_preset(**kw):
    return tiny_preset(
        **{"epochs": 10_000, "minutes": 0.05, "ema_decay": None, "min_lr": 1e-5, **kw}
    )


def test_budget_warmup_is_in_steps_whatever_the_first_step_costs(tmp_path, monkeypatch):
    StepClock(monkeypatch, first=600.0)  # a 10-minute compile in a 3 s budget
    logs = []
    p = budget_preset()
    res = T.train(p, tiny_data(), tmp_path, progress=False, log=logs.append)
    # the compile happened outside the clock; the plan was fitted to the measured 20 ms/step
    assert res.plan.total_steps == int(3.0 * 0.97 / 0.02) and res.plan.warmup_steps == 2
    assert res.plan.step_seconds == pytest.approx(0.02) and not res.stopped_early
    assert any("calibrated outside the clock" in m for m in logs)
    # every recorded lr is the schedule's lr of that step: warm-up done in steps, then cosine
    for row in res.history:
        assert row["lr"] == pytest.approx(lr_at_step(row["step"] - 1, res.plan, p.train))
    assert res.history[0]["lr"] > 0.95 * p.train.lr  # step 4: past the 2-step warm-up
    assert res.history[-1]["lr"] == pytest.approx(p.train.min_lr)
    assert res.history[-1]["step"] == res.plan.total_steps
    assert res.history[-1]["elapsed_seconds"] <= 3.0


def test_budgeted_run_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    """Compiled (a stand-in compile whose first step costs 10 minutes, every time the run
    starts), interrupted mid-epoch, resumed: the same plan, weights and history as one run."""
    monkeypatch.setattr(torch, "compile", lambda model, **k: lambda x: model(x))
    data = tiny_data()
    p = budget_preset(ema_decay=0.9, compile=True)
    StepClock(monkeypatch, first=600.0)
    straight = T.train(p, data, tmp_path / "a", progress=False, log=lambda m: None)
    first = StepClock(monkeypatch, first=600.0)
    _interrupt_at(monkeypatch, 22 + 50)  # 22 calibration steps, then step 50 of the run
    with pytest.raises(KeyboardInterrupt):
        T.train(p, data, tmp_path / "b", progress=False, log=lambda m: None)
    assert first.calls == 72
    StepClock(monkeypatch, first=600.0)  # the resumed process compiles again
    logs = []
    resumed = T.train(p, data, tmp_path / "b", progress=False, log=logs.append)
    # the compile is paid outside the clock again, but the saved plan is kept as it is
    assert any("calibrated outside the clock" in m for m in logs)
    assert resumed.plan == straight.plan and not resumed.stopped_early
    assert resumed.history[-1]["elapsed_seconds"] == pytest.approx(
        straight.history[-1]["elapsed_seconds"]
    )
    _assert_same_weights(straight.model, resumed.model)
    _assert_same_weights(straight.ema_model, resumed.ema_model)
    assert _strip(straight.history) == _strip(resumed.history)
    # a finished run trains (and compiles) nothing more
    logs.clear()
    done = T.train(p, data, tmp_path / "b", progress=False, log=logs.append)
    assert len(done.history) == len(resumed.history)
    assert not any("calibrated" in m for m in logs)


def _assert_on_schedule(res, p):
    """The run ended on its (re-planned) schedule's last step, at min lr, inside the budget;
    every recorded lr is that schedule's lr of its step; last.pt holds the same plan."""
    last = res.history[-1]
    assert not res.stopped_early and res.stop_reason == "done"
    assert last["step"] == res.plan.total_steps and last["plan_steps"] == res.plan.total_steps
    assert last["lr"] == pytest.approx(p.train.min_lr)
    assert last["elapsed_seconds"] <= 60 * p.train.minutes
    assert last["val_acc"] is not None  # the final epoch is always validated
    for row in res.history:
        assert row["lr"] == pytest.approx(lr_at_step(row["step"] - 1, res.plan, p.train))
    saved = torch.load(res.out_dir / "last.pt", weights_only=True)["plan"]
    assert StepPlan.from_dict(saved) == res.plan


@pytest.mark.parametrize("slower", [2, 10])
def test_budgeted_run_ends_annealed_when_steps_get_slower_than_calibrated(
    tmp_path, monkeypatch, slower
):
    """Steps 2x / 10x slower than calibrated from step 10 on: the run re-plans the steps left
    and still ends on the last step of its schedule, at min lr, within the budget."""
    StepClock(monkeypatch, slow_after=22 + 10, slow=0.02 * slower)
    logs = []
    p = budget_preset()
    res = T.train(p, tiny_data(), tmp_path, progress=False, log=logs.append)
    _assert_on_schedule(res, p)
    assert res.plan.first_total == int(3.0 * 0.97 / 0.02) and res.plan.replans
    assert res.plan.total_steps < res.plan.first_total * (0.75 if slower == 2 else 0.2)
    assert res.history[-1]["elapsed_seconds"] > 3.0 * 0.9  # the budget is used, not wasted
    assert any(m.startswith("re-planned") for m in logs)
    summary = next(m for m in logs if m.startswith("steps: "))
    assert f"{res.plan.first_total} planned, re-planned {len(res.plan.replans)} times" in summary


def test_a_plan_grows_back_when_steps_get_faster_than_calibrated(tmp_path, monkeypatch):
    """A calibration slowed by a busy moment (steps measured at twice their real time): the
    first plan is half what fits; after the first epoch the run re-plans up, uses the budget
    and still ends on the last step of its schedule, at min lr."""
    StepClock(monkeypatch, calibrating=0.04)
    logs = []
    p = budget_preset()
    res = T.train(p, tiny_data(), tmp_path, progress=False, log=logs.append)
    _assert_on_schedule(res, p)
    assert res.plan.first_total == int(3.0 * 0.97 / 0.04)
    assert res.plan.total_steps > 1.8 * res.plan.first_total and len(res.plan.replans) == 1
    assert res.plan.replans[0][0] == 5  # after the first step of the second epoch
    assert res.history[-1]["elapsed_seconds"] > 3.0 * 0.9  # the budget is used, not wasted
    assert any(m.startswith("re-planned: the steps ran faster") for m in logs)
    # never past what the epochs allow
    StepClock(monkeypatch, calibrating=0.04)
    capped = T.train(budget_preset(epochs=30), tiny_data(), tmp_path / "c", progress=False,
                     log=lambda m: None)  # fmt: skip
    assert capped.plan.total_steps == 30 * 4 and capped.stop_reason == "done"
    # the calibration measures about CALIBRATION_SECONDS of steady steps
    assert C.CALIBRATION_SECONDS == pytest.approx(20 * 0.04)
    monkeypatch.undo()
    assert C.CALIBRATION_SECONDS >= 3.0


def test_replanned_run_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    """Re-plans are part of the plan in last.pt: a run slowed down, interrupted after its
    first re-plans and resumed re-plans exactly as the uninterrupted one did."""
    data, p = tiny_data(), budget_preset(ema_decay=0.9)
    StepClock(monkeypatch, slow_after=22 + 10, slow=0.05)
    straight = T.train(p, data, tmp_path / "a", progress=False, log=lambda m: None)
    assert len(straight.plan.replans) >= 2
    StepClock(monkeypatch, slow_after=22 + 10, slow=0.05)
    _interrupt_at(monkeypatch, 22 + 30)
    with pytest.raises(KeyboardInterrupt):
        T.train(p, data, tmp_path / "b", progress=False, log=lambda m: None)
    saved = StepPlan.from_dict(torch.load(tmp_path / "b" / "last.pt", weights_only=True)["plan"])
    assert saved.replans and saved.replans == straight.plan.replans[: len(saved.replans)]
    # the resumed process (no compile, so no calibration): its steps as slow as the straight
    # run's were from step 10 on
    StepClock(monkeypatch, first=0.05, slow_after=0, slow=0.05)
    resumed = T.train(p, data, tmp_path / "b", progress=False, log=lambda m: None)
    assert resumed.plan == straight.plan
    _assert_same_weights(straight.model, resumed.model)
    _assert_same_weights(straight.ema_model, resumed.ema_model)
    assert _strip(straight.history) == _strip(resumed.history)


def test_budgeted_run_validates_sparsely_early_and_every_epoch_at_the_end(tmp_path, monkeypatch):
    """A validation pass measured at 0.05 s in a 60 s budget: the run affords 1 % of its
    budget, 12 passes: every epoch of its last tenth, evenly spaced ones before; the best
    epoch is chosen among them and the share of the budget spent validating is reported."""
    clock = StepClock(monkeypatch)
    real_validate = S.validate

    def slow_validate(*a, **k):
        clock.now += 0.05
        return real_validate(*a, **k)

    monkeypatch.setattr(S, "validate", slow_validate)
    monkeypatch.setattr(C, "validate", slow_validate)
    monkeypatch.setattr(T, "validate", slow_validate)
    p = budget_preset(minutes=1.0, epochs=100)  # 100 epochs of 4 steps: 8 s of steps
    logs = []
    res = T.train(p, tiny_data(), tmp_path, progress=False, log=logs.append)
    assert res.plan.eval_seconds == pytest.approx(0.05) and res.plan.epochs == 100
    validated = [r["epoch"] for r in res.history if r["val_acc"] is not None]
    assert validated[-10:] == list(range(91, 101))  # every epoch of the last tenth
    assert 11 <= len(validated) <= 13 and validated[0] > 1  # sparse before it
    gaps = {b - a for a, b in zip(validated[:-10], validated[1:-9])}
    assert len(gaps) <= 2  # evenly spaced
    assert res.best_val_acc == max(r["val_acc"] for r in res.history if r["val_acc"] is not None)
    assert res.validation_seconds == pytest.approx(0.05 * len(validated))
    assert res.validation_share == pytest.approx(res.validation_seconds / 60.0)
    assert res.validation_share < 0.015
    assert any("of the budget)" in m for m in logs)


def test_checkpoints_are_written_every_checkpoint_minutes_and_at_the_end(tmp_path, monkeypatch):
    StepClock(monkeypatch)  # 20 ms a step, 4 steps an epoch
    written = []
    real = CK.save_last
    monkeypatch.setattr(
        CK, "save_last", lambda state, d: written.append(state["epoch"]) or real(state, d)
    )
    logs = []
    p = tiny_preset(epochs=20, checkpoint_minutes=0.01)  # 0.6 s = every 8 epochs
    res = T.train(p, tiny_data(), tmp_path, progress=False, log=logs.append)
    assert written == [8, 16, 20]
    assert res.checkpoint_bytes > (tmp_path / "last.pt").stat().st_size  # last.pt x3 + best.pt
    assert any(m.startswith("checkpoints: 3 writes") for m in logs)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["best_val_acc"] == pytest.approx(res.best_val_acc)  # flushed with the last save


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
    from helpers.classify.data import load_digits

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
        warmup_fraction=None,
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


# ----------------------------------------------------------------------------- GPU guarantees


def test_no_host_sync_inside_a_training_step(tmp_path, monkeypatch):
    """Nothing in a step (lr, augmentation, forward/backward, clipping, AdamW, EMA) reads a
    tensor back to the host: each such call would stall the GPU queue once per step."""
    counts, inside = {}, {"on": False}

    def spy(name, real):
        def wrapper(*a, **k):
            if inside["on"]:
                counts[name] = counts.get(name, 0) + 1
            return real(*a, **k)

        return wrapper

    for name in ("item", "__bool__", "tolist", "cpu", "nonzero", "__int__", "__float__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, spy(name, getattr(torch.Tensor, name)))
    monkeypatch.setattr(torch.cuda, "synchronize", spy("synchronize", torch.cuda.synchronize))
    real_step = T.one_step

    def watched(*a, **k):
        inside["on"] = True
        try:
            return real_step(*a, **k)
        finally:
            inside["on"] = False

    monkeypatch.setattr(T, "one_step", watched)
    # fused AdamW (as on CUDA) and the full augmentation policy of `fast`
    monkeypatch.setattr(
        S,
        "make_optimizer",
        lambda m, cfg, d: torch.optim.AdamW(
            S.param_groups(m, cfg.weight_decay), lr=cfg.lr, fused=True
        ),
    )
    monkeypatch.setattr(T, "make_optimizer", S.make_optimizer)
    from helpers.classify import (
        augment as A,  # the CUDA path of the policies (CPU picks image subsets)
    )

    real_ops = A._apply_ops
    monkeypatch.setattr(A, "_apply_ops", lambda *a, **k: real_ops(*a, **{**k, "subset": False}))
    res = T.train(tiny_preset(epochs=1), tiny_data(), tmp_path, progress=False, log=lambda m: None)
    assert res.history[0]["step"] == 4
    assert counts == {}


@pytest.mark.parametrize("name", ["fast", "best", "seed000"])
def test_models_compile_without_graph_breaks(name):
    import torch._dynamo

    from helpers.classify.models import build_model

    model, _ = build_model(get_preset(name), 10, pretrained=False)
    model.train()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_seed000_has_exactly_the_seed_parameter_count():
    from helpers.classify.models import build_model
    from helpers.classify.vit import count_parameters

    model, _ = build_model(get_preset("seed000"), 10, pretrained=False)
    assert count_parameters(model) == 10_402_954


# ----------------------------------------------------------------------------- the test split


def test_test_split_is_scored_once_at_the_end_with_the_best_weights(tmp_path, monkeypatch):
    import json

    data = tiny_data(n_test=48)
    from helpers.classify import metrics

    seen, phase = [], {"validating": False}
    real_predict, real_validate = metrics.predict_logits, T.validate

    def predict_spy(model, x, *a, **k):
        if phase["validating"]:
            seen.append(x.data_ptr())
        return real_predict(model, x, *a, **k)

    def validate_spy(*a, **k):
        phase["validating"] = True
        try:
            return real_validate(*a, **k)
        finally:
            phase["validating"] = False

    monkeypatch.setattr(metrics, "predict_logits", predict_spy)
    monkeypatch.setattr(T, "validate", validate_spy)
    res = T.train(tiny_preset(epochs=3), data, tmp_path, progress=False, log=lambda m: None)
    # validation (which picks best.pt) never saw a test image
    assert seen and data.test_x.data_ptr() not in seen
    assert res.test is not None and res.test["num_samples"] == 48
    assert 0.0 <= res.test_acc <= 1.0 and res.test["selected_on"] == "val"
    saved = json.loads((tmp_path / "test.json").read_text())
    assert saved["acc"] == res.test_acc and saved["weights_epoch"] == res.test["weights_epoch"]
    # the score is that of best.pt's weights
    from helpers.classify.metrics import predict_logits

    best = T.load_checkpoint(tmp_path / "best.pt")
    logits = predict_logits(best.model, data.test_x, best.spec)
    assert float((logits.argmax(1) == data.test_y).float().mean()) == pytest.approx(res.test_acc)
    # no test split, no test score; an unfinished run is not scored either
    assert T.train(tiny_preset(epochs=1), tiny_data(), tmp_path / "n", progress=False).test is None
    part = T.train(
        tiny_preset(epochs=3), data, tmp_path / "p", max_epochs_this_run=1, progress=False
    )
    assert part.test is None and not (tmp_path / "p" / "test.json").exists()


def test_early_stop_on_patience_is_final_and_survives_resume(tmp_path, monkeypatch):
    accs = iter([0.5, 0.6, 0.55, 0.58, 0.9, 0.9])
    real = T.validate

    def scripted(*a, **k):
        out = real(*a, **k)
        out["val_acc"] = next(accs)
        return out

    monkeypatch.setattr(T, "validate", scripted)
    logs = []
    p = tiny_preset(epochs=10, patience=2, ema_decay=None)
    res = T.train(p, tiny_data(n_test=16), tmp_path, progress=False, log=logs.append)
    assert [r["epoch"] for r in res.history] == [1, 2, 3, 4]
    assert res.stop_reason == "patience" and res.best_val_acc == 0.6
    assert any("early stop" in m and "epoch 2" in m for m in logs)
    assert res.test["weights_epoch"] == 2  # the test score is that of the best epoch
    assert res.parameters >= res.trainable_parameters > 0
    assert all("peak_memory_mb" in r for r in res.history)  # None on the CPU
    again = T.train(p, tiny_data(n_test=16), tmp_path, progress=False, log=lambda m: None)
    assert len(again.history) == 4 and again.stop_reason == "patience"
    with pytest.raises(InputError, match="patience"):
        T.train(tiny_preset(patience=0), tiny_data(), tmp_path / "x", progress=False)


def test_patience_counts_validated_epochs_only(tmp_path, monkeypatch):
    accs = iter([0.6, 0.5, 0.4, 0.4, 0.4, 0.4])
    real = T.validate
    monkeypatch.setattr(T, "validate", lambda *a, **k: {**real(*a, **k), "val_acc": next(accs)})
    p = tiny_preset(epochs=20, patience=2, ema_decay=None)
    res = T.train(p, tiny_data(), tmp_path, eval_every=3, progress=False, log=lambda m: None)
    # validated at 3 (best) and 6: the run stops at a validated epoch, 3 epochs after the best
    assert [r["epoch"] for r in res.history if r["val_acc"] is not None] == [3, 6]
    assert res.stop_reason == "patience" and res.history[-1]["epoch"] == 6


def test_calibration_on_tiny_epochs_and_a_budget_stop_then_more_budget(tmp_path, monkeypatch):
    """Two batches an epoch: the rate is still measured over 20 steps (of this clock's 0.4 s,
    the real calibration's 3 s, scaled to its 0.02 s a step). A single step longer
    than the whole budget stops the run (no re-plan can help); the same budget again says it
    is spent; a larger budget would have planned other steps, so it is refused, and a fresh
    start with it runs its plan to the last step."""
    data = tiny_data(n_train=64)  # 2 steps an epoch
    StepClock(monkeypatch, slow_after=22 + 9, slow=5.0)
    p = budget_preset(ema_decay=None)
    first = T.train(p, data, tmp_path, progress=False, log=lambda m: None)
    assert first.plan.step_seconds == pytest.approx(0.02) and first.stopped_early
    assert first.history[-1]["step"] < first.plan.total_steps
    logs = []
    again = T.train(p, data, tmp_path, progress=False, log=logs.append)
    assert again.stopped_early and len(again.history) == len(first.history)
    assert any("already spent" in m and "resume=False" in m for m in logs)
    StepClock(monkeypatch)
    more = budget_preset(ema_decay=None, minutes=0.2)
    with pytest.raises(InputError, match=r"minutes=0\.2 \(the run has 0\.05\)"):
        T.train(more, data, tmp_path, progress=False, log=lambda m: None)
    res = T.train(more, data, tmp_path, resume=False, progress=False, log=lambda m: None)
    assert res.stop_reason == "done" and res.history[-1]["step"] == res.plan.total_steps
    assert res.history[-1]["lr"] == pytest.approx(more.train.min_lr)


# ----------------------------------------------------------------------------- a run folder belongs to its settings


def test_resuming_with_settings_that_change_the_result_is_refused(tmp_path):
    data, quiet = tiny_data(), dict(progress=False, log=lambda m: None)
    first = T.train(tiny_preset(epochs=1), data, tmp_path, **quiet)
    before = (tmp_path / "last.pt").read_bytes()
    for changed, needle in (
        ({"lr": 3e-3}, r"lr=0\.003 \(the run has 0\.002\)"),
        ({"epochs": 2}, r"epochs=2 \(the run has 1\)"),
        ({"seed": 1, "mixup_alpha": 0.0}, r"seed=1 \(the run has 0\), mixup_alpha=0 \(the"),
        ({"minutes": 1.0}, r"minutes=1 \(the run has None\)"),
        ({"dim": 64}, r"dim=64 \(the run has 32\)"),
    ):
        with pytest.raises(InputError, match=needle) as e:
            T.train(tiny_preset(**{"epochs": 1, **changed}), data, tmp_path, **quiet)
        message = str(e.value)
        assert "\n" not in message and "other settings" in message
        assert "resume=False" in message and "previous_run" in message and "out_dir" in message
    with pytest.raises(InputError, match=r"epochs of 2 steps \(the run has 4"):
        T.train(tiny_preset(epochs=1), data, tmp_path, max_steps_per_epoch=2, **quiet)
    # nothing was touched by the refusals
    assert (tmp_path / "last.pt").read_bytes() == before
    assert not (tmp_path / "previous_run").exists()
    # settings that do not change what a run learns resume (here: nothing left to train)
    again = T.train(tiny_preset(epochs=1, checkpoint_minutes=0.5), data, tmp_path, **quiet)
    assert _strip(again.history) == _strip(first.history)
    # the way on: start over, the earlier run kept aside
    fresh = T.train(tiny_preset(epochs=1, lr=3e-3), data, tmp_path, resume=False, **quiet)
    assert [r["epoch"] for r in fresh.history] == [1]
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["preset"]["train"]["lr"]
    assert saved == pytest.approx(3e-3)
    assert (tmp_path / "previous_run" / "last.pt").read_bytes() == before


def test_a_larger_budget_resumes_only_when_it_plans_the_same_steps(tmp_path, monkeypatch):
    """An epoch-capped plan (the budget never bound it): a larger budget plans the same steps,
    so the run continues, and ends as a run made with that budget from the start. A plan
    fitted to its budget, or a smaller budget, cannot be continued exactly: refused."""
    data, quiet = tiny_data(), dict(progress=False, log=lambda m: None)
    capped = dict(epochs=3, minutes=0.05, ema_decay=None)  # 12 steps of 20 ms in a 3 s budget
    StepClock(monkeypatch)
    straight = T.train(tiny_preset(**{**capped, "minutes": 0.1}), data, tmp_path / "a", **quiet)
    StepClock(monkeypatch)
    T.train(tiny_preset(**capped), data, tmp_path / "b", max_epochs_this_run=1, **quiet)
    with pytest.raises(InputError, match=r"minutes=0\.04 \(the run has 0\.05\)"):
        T.train(tiny_preset(**{**capped, "minutes": 0.04}), data, tmp_path / "b", **quiet)
    StepClock(monkeypatch)
    logs = []
    longer = tiny_preset(**{**capped, "minutes": 0.1})
    resumed = T.train(longer, data, tmp_path / "b", progress=False, log=logs.append)
    assert any("plans the same steps: resuming" in m for m in logs)
    assert resumed.plan == straight.plan and resumed.plan.budget_seconds == pytest.approx(6.0)
    _assert_same_weights(straight.model, resumed.model)
    assert _strip(straight.history) == _strip(resumed.history)
    # a plan fitted to its budget: a larger one would have planned other steps from the start
    StepClock(monkeypatch)
    T.train(budget_preset(), data, tmp_path / "c", max_epochs_this_run=1, **quiet)
    with pytest.raises(InputError, match=r"minutes=0\.2 \(the run has 0\.05\)"):
        T.train(budget_preset(minutes=0.2), data, tmp_path / "c", **quiet)


def test_epoch_time_includes_waiting_for_the_device(tmp_path, monkeypatch):
    """The epoch's steps are waited for (a CUDA sync) before its timer stops: here the wait
    costs 0.5 s of the stand-in clock, and each epoch's time and rate include it."""
    clock = StepClock(monkeypatch)  # 20 ms a step, 4 steps an epoch
    waits = []

    def sync(device):
        waits.append(device.type)
        clock.now += 0.5

    monkeypatch.setattr(T, "sync", sync)
    res = T.train(tiny_preset(), tiny_data(), tmp_path, progress=False, log=lambda m: None)
    assert waits == ["cpu", "cpu"]
    for row in res.history:
        assert row["epoch_seconds"] == pytest.approx(4 * 0.02 + 0.5)
        assert row["images_per_second"] == pytest.approx(128 / (4 * 0.02 + 0.5))
        assert row["peak_memory_mb"] is None  # a CPU has no GPU memory to report
    # on the clock: the whole run (the last epoch's validation included)
    assert res.timing["training_seconds"] == res.history[-1]["elapsed_seconds"]


def test_mean_rates_weight_each_epoch_by_its_images():
    history = [
        {"epoch_seconds": 1.0, "images_per_second": 1000.0, "peak_memory_mb": None},
        {"epoch_seconds": 3.0, "images_per_second": 100.0, "peak_memory_mb": None},
    ]
    # 1,000 + 300 images in 4 s, not the mean of the two rates (550)
    assert T.mean_images_per_second(history) == pytest.approx(1300 / 4)
    assert T.mean_epoch_seconds(history) == pytest.approx(2.0)
    assert T.peak_memory_mb(history) is None
    assert T.peak_memory_mb([{"peak_memory_mb": 5.0}, {"peak_memory_mb": 7.5}]) == 7.5
    assert T.mean_images_per_second([]) is None and T.mean_epoch_seconds([]) is None
