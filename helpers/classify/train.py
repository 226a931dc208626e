"""The training loop: AdamW, a step-based schedule, EMA, mixed precision, torch.compile, a
wall-time budget, light checkpoints and exact resume.

Data stay on the device as uint8; each step indexes a batch there, augments it with
:class:`helpers.classify.augment.GpuAugment` and trains on soft targets. Nothing syncs the host per
step: loss and accuracy are summed as device tensors and read once per epoch.

Before the clock starts, the run compiles and (with a time budget) measures its step rate,
then fixes its step plan (:mod:`helpers.classify.schedule`); the learning rate is a function of the
step alone, so a budgeted run is reproducible for its plan and resumes bit-for-bit. A
budgeted run that falls behind its plan re-plans the steps left, so it still ends on the last
step of its schedule (at ``min_lr``); the re-plans are part of the plan. A full
``last.pt`` is written at most every ``checkpoint_minutes``, at the end, and on Ctrl-C /
kernel interrupt (the step in flight finishes first); ``best.pt`` holds inference weights.
The test split, if the data has one, is scored once, at the end, with the best weights.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import itertools
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import distributed
from helpers.classify.calibrate import plan_run, replan_if_behind, sync
from helpers.classify.checkpoint import (
    LoadedModel,
    Saver,
    diverged_error,
    folder_lock,
    load_checkpoint,
    resume_point,
    rng_state,
    saved_best,
    set_rng_state,
)
from helpers.classify.schedule import StepPlan, validates
from helpers.classify.step import RunState, make_optimizer, one_step, validate
from helpers.classify.vit import count_parameters
from helpers.errors import InputError

STOP_CHECK_EVERY = 20  # steps between the processes' agreement on Ctrl-C / budget (DDP)
TIMING_KEYS = (
    "epoch_seconds",
    "images_per_second",
    "elapsed_seconds",
    "peak_memory_mb",
    "val_seconds",
)


@dataclass
class TrainResult:
    model: Any
    ema_model: Any | None
    history: list[dict]
    best_val_acc: float
    out_dir: Path
    spec: Any
    classes: list[str]
    stopped_early: bool  # True when the time budget ended the run before its plan was done
    plan: StepPlan | None = None
    test: dict | None = None  # the best weights scored on the test split (None: no test split)
    checkpoint_seconds: float = 0.0  # time spent writing checkpoints and history in this call
    checkpoint_bytes: int = 0
    stop_reason: str = "done"  # done | budget | patience | paused (max_epochs_this_run)
    parameters: int = 0
    trainable_parameters: int = 0
    validation_seconds: float = 0.0  # time spent validating, over the whole run
    # this call's wall time: setup (model, data to the device, compile, calibration), training
    # (on the clock), scoring the test split, and all of it
    timing: dict = field(default_factory=dict)

    @property
    def validation_share(self) -> float | None:
        """The share of the budget (else of the training time) spent validating."""
        budget = self.plan.budget_seconds if self.plan is not None else None
        if not budget:
            budget = self.history[-1]["elapsed_seconds"] if self.history else None
        return self.validation_seconds / budget if budget else None

    @property
    def test_acc(self) -> float | None:
        return self.test["acc"] if self.test else None


def _peak_memory_mb(device) -> float | None:
    """The run's peak GPU memory so far (allocator statistics: no device sync)."""
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def mean_images_per_second(history: list[dict]) -> float | None:
    """Images per second over the epochs of ``history``, each epoch weighted by its images
    (all images over all training seconds), or None when nothing was timed."""
    seconds = sum(r.get("epoch_seconds") or 0.0 for r in history)
    images = sum(
        (r.get("images_per_second") or 0.0) * (r.get("epoch_seconds") or 0.0) for r in history
    )
    return images / seconds if seconds > 0 else None


def mean_epoch_seconds(history: list[dict]) -> float | None:
    """Seconds of training per epoch of ``history`` (validation not included), or None."""
    timed = [r["epoch_seconds"] for r in history if r.get("epoch_seconds") is not None]
    return sum(timed) / len(timed) if timed else None


def peak_memory_mb(history: list[dict]) -> float | None:
    """The highest GPU memory of ``history``'s epochs; None when none was measured (a CPU)."""
    peaks = [r["peak_memory_mb"] for r in history if r.get("peak_memory_mb") is not None]
    return max(peaks) if peaks else None


def _free_cuda() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- setup


def _checked(preset, data, max_steps_per_epoch, world: int = 1):
    """A validated copy of ``preset`` for ``data``, or InputError saying what to change."""
    preset = copy.deepcopy(preset)
    cfg = preset.train.validate()
    if preset.model is not None:
        preset.model.validate()
    n_train, n_val = len(data.train_y), len(data.val_y)
    if n_train == 0:
        raise InputError("the training split is empty.")
    if n_val == 0:
        raise InputError(
            "the validation split is empty; training needs one to pick the best epoch."
        )
    if cfg.batch_size > n_train:
        raise InputError(
            f"batch_size {cfg.batch_size} is larger than the training set ({n_train} images); "
            f"use batch_size <= {n_train}."
        )
    if max_steps_per_epoch is not None and max_steps_per_epoch < 1:
        raise InputError(f"max_steps_per_epoch must be >= 1, got {max_steps_per_epoch}.")
    if cfg.batch_size % world:
        raise InputError(
            f"batch_size {cfg.batch_size} is the global batch; it must divide evenly among the "
            f"{world} processes (e.g. {cfg.batch_size // world * world or world})."
        )
    num_classes = len(data.classes)
    if num_classes < 2:
        raise InputError(f"need at least 2 classes, got {num_classes}.")
    ys = [data.train_y, data.val_y] + ([data.test_y] if data.has_test else [])
    y_max, y_min = max(int(y.max()) for y in ys), min(int(y.min()) for y in ys)
    if y_max >= num_classes or y_min < 0:
        raise InputError(
            f"labels must be in [0, {num_classes - 1}] for {num_classes} classes; found label "
            f"{y_max if y_max >= num_classes else y_min}."
        )
    if preset.model is not None:
        preset.model.num_classes = num_classes
    return preset, cfg


TOKENS_WARNED = 1024  # tokens per image above which a run is warned that it will be slow


def token_warning(preset) -> str | None:
    """One line when a from-scratch model's images make more than :data:`TOKENS_WARNED`
    tokens (attention grows with the square of that: a step can take minutes and the memory
    run out), saying how many and what to change; None otherwise."""
    m = preset.model
    if m is None or m.patch_size <= 0 or m.image_size % m.patch_size:
        return None
    tokens = (m.image_size // m.patch_size) ** 2
    if tokens <= TOKENS_WARNED:
        return None
    # the smallest patch that brings the tokens down to 256 (CIFAR-10's 32 px with patch 2)
    patch = next(
        p for p in range(m.patch_size, m.image_size + 1)
        if m.image_size % p == 0 and (m.image_size // p) ** 2 <= 256
    )  # fmt: skip
    return (
        f"warning: {m.image_size} px images in patches of {m.patch_size} make {tokens:,} tokens "
        f"per image (CIFAR-10 at 32 px makes 64); attention grows with the square of that, so "
        f"the first steps may take many minutes or run out of memory. Use a smaller image_size "
        f"or a larger patch_size (patch_size={patch}: {(m.image_size // patch) ** 2:,} tokens)."
    )


def check_settings(preset, data, max_steps_per_epoch: int | None = None, world: int = 1):
    """InputError saying what to change when ``preset`` cannot train on ``data`` (its settings,
    the batch size against the training set, the classes); nothing is built or written."""
    _checked(preset, data, max_steps_per_epoch, world)


def _setup(preset, data, device, ckpt, pretrained: bool, out_dir: Path, d, log) -> RunState:
    """Model, EMA, optimizer, scaler, augmentation and RNGs, restored from ``ckpt`` if given.

    With several processes (``d``) every one builds the same model, wraps it in
    DistributedDataParallel and draws the same batch order, but augments (and drops paths)
    with its own random streams."""
    import torch

    from helpers import runtime
    from helpers.classify.augment import GpuAugment, eval_transform
    from helpers.classify.models import build_model

    cfg, num_classes = preset.train, len(data.classes)
    if device.type == "cuda":
        runtime.enable_fast_matmul()
    runtime.seed_everything(cfg.seed)
    model, spec = build_model(preset, num_classes, pretrained=pretrained and ckpt is None)
    model.to(device)
    data = data.to(device)
    model.eval()
    with torch.no_grad():
        out = model(eval_transform(data.val_x[:1], spec))
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise InputError(
            f"the model outputs {tuple(out.shape)} but the data has {num_classes} classes."
        )
    model.train()
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema_decay else None
    optimizer = make_optimizer(model, cfg, device)
    amp_dtype = runtime.autocast_dtype(device, cfg.precision)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    shuffle_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1 + 1000 * d.rank)
    if d.rank:
        runtime.seed_everything(cfg.seed + 1000 * d.rank)  # dropout / drop-path per process
    aug = GpuAugment(preset.aug, spec, num_classes)
    eager = model
    if d.on:
        from torch.nn.parallel import DistributedDataParallel as DDP

        eager = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    run = RunState(
        model, eager, ema, optimizer, scaler, aug, data, spec, cfg, amp_dtype, device,
        shuffle_gen, aug_gen, dist=d, eager=eager,
    )  # fmt: skip
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if ema is not None:
            ema.load_state_dict(ckpt.get("ema") or ckpt["model"])
        run.epoch, run.step = int(ckpt["epoch"]), int(ckpt["step"])
        run.elapsed, run.history = float(ckpt["elapsed"]), list(ckpt["history"])
        run.best_acc, run.best_epoch = float(ckpt["best_val_acc"]), int(ckpt.get("best_epoch", 0))
        set_rng_state((ckpt.get("rng_ranks") or [ckpt["rng"]])[d.rank], shuffle_gen, aug_gen)
        run.epoch_shuffle = ckpt.get("epoch_shuffle")
        run.partial = (ckpt.get("partial_ranks") or [ckpt.get("partial")] * d.world)[d.rank]
        run.best_weights = saved_best(out_dir, run.best_epoch, device)
        log(
            f"resuming from epoch {run.epoch} (step {run.step}, {run.elapsed / 60:.1f} min "
            "of training done)."
        )
    if cfg.compile:
        try:
            run.fwd = torch.compile(eager)
            run.compile_pending = True
        except Exception as e:
            log(f"warning: torch.compile unavailable ({type(e).__name__}: {e}); training eagerly.")
        else:
            aug.compile(log)  # the augmentation as one graph (draws made up front)
    return run


@contextlib.contextmanager
def _interrupt_requests(log):
    """While inside, Ctrl-C / a kernel interrupt (SIGINT) or SIGTERM (torchrun, SLURM, a
    closing runtime) sets ``flag['set']`` instead of raising, so the loop can finish its step
    and save; a second SIGINT raises KeyboardInterrupt at once."""
    flag = {"set": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        if flag["set"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["set"] = True
        log("interrupt: finishing the step in flight and saving last.pt (Ctrl-C again: stop now).")

    for s in old:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in old.items():
            default = signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL
            signal.signal(s, h if h is not None else default)


def _stop_now(run: RunState, i: int, clock, budget, interrupted) -> str | None:
    """Why the epoch should stop after step ``i``: ``'interrupt'``, ``'budget'`` or None.
    One process decides at every step (host-side checks only); several agree every
    ``STOP_CHECK_EVERY`` steps (one small CPU all-reduce), so they all stop at the same step."""
    d = run.dist
    if d.on and (i + 1) % STOP_CHECK_EVERY:
        return None
    asks = [interrupted["set"], bool(budget and clock() >= budget)]
    if d.on:
        asks = [bool(v) for v in d.agree(asks)]
    return "interrupt" if asks[0] else "budget" if asks[1] else None


def _step_seconds(run: RunState, plan: StepPlan, sums: dict, t0: float) -> float:
    """Seconds per step as measured now: over this epoch once it has a few steps, else over
    the last epoch trained, else the calibration's (all restored on resume)."""
    if sums["done"] >= 3:
        return (sums["seconds"] + time.perf_counter() - t0) / sums["done"]
    h = run.history
    if h and h[-1].get("epoch_seconds") is not None:
        steps = h[-1]["step"] - (h[-2]["step"] if len(h) > 1 else 0)
        return h[-1]["epoch_seconds"] / max(steps, 1)
    return plan.step_seconds or 0.0


def _replan(
    run: RunState, plan: StepPlan, i: int, sums: dict, t0: float, clock, evals_left, first: int
):
    """The plan, re-planned when the run has fallen behind its budget, or is well ahead of it
    (see :func:`helpers.classify.calibrate.replan_if_behind`). It grows only at the first step
    an epoch takes here, on the rate of the last epoch (timed to the GPU's end), never on the
    few steps of an epoch timed so far by the host. Several processes check every
    ``STOP_CHECK_EVERY`` steps, on agreed figures, so they all re-plan alike (and only shrink)."""
    d = run.dist
    if not plan.budget_seconds or (d.on and (i + 1) % STOP_CHECK_EVERY):
        return plan
    now, step_s = clock(), _step_seconds(run, plan, sums, t0)
    if d.on:
        now, step_s = d.agree([now, step_s])
    may_grow = not d.on and i == first and sums["done"] < 3 and bool(run.history)
    cap = run.cfg.epochs * plan.steps_per_epoch if may_grow else None
    new = replan_if_behind(plan, run.step, now, step_s, evals_left, max_total=cap)
    if new is None:
        return plan
    sums["replans"] = sums.get("replans", 0) + 1
    return new


def _evals_left(run: RunState, plan: StepPlan, eval_every: int) -> int:
    """Validation passes the plan still has to make, from the current epoch on."""
    return sum(validates(e, plan, eval_every) for e in range(run.epoch + 1, plan.epochs + 1))


def _train_epoch(
    run: RunState, plan: StepPlan, clock, budget, interrupted, bar, log, eval_every: int = 1
) -> dict:
    """Train the current epoch (or its remainder after a mid-epoch resume). Returns its sums,
    the plan (re-planned if the run fell behind its budget) and why it ended: ``'done'``,
    ``'budget'`` or ``'interrupt'``."""
    import torch

    from helpers.classify.data import iterate_batches

    p = run.partial or {}  # set only after a mid-epoch resume
    done = int(p.get("done", 0))
    # an epoch takes steps_per_epoch steps, or what is left of the plan
    n_steps = min(plan.steps_per_epoch, plan.total_steps - (run.step - done))
    if done:  # draw this epoch's order again from the RNG state it was drawn with
        run.shuffle_gen.set_state(run.epoch_shuffle.cpu())
    else:
        run.epoch_shuffle = run.shuffle_gen.get_state()
    n_train = len(run.data.train_y)
    batches = iterate_batches(n_train, run.cfg.batch_size, True, run.shuffle_gen, run.device)
    sums = {
        "done": done,
        "loss_sum": torch.as_tensor(p.get("loss_sum", 0.0), device=run.device).float(),
        "correct": torch.as_tensor(p.get("correct", 0), device=run.device).long(),
        "seen": int(p.get("seen", 0)),
        "seconds": float(p.get("seconds", 0.0)),
        "lr": p.get("lr"),
        "end": "done",
    }
    run.model.train()
    first_step = run.step - done
    evals_left = _evals_left(run, plan, eval_every)
    t0 = time.perf_counter()
    bar.reset(total=n_steps)
    bar.update(done)
    for i, idx in enumerate(itertools.islice(batches, done, None), start=done):
        if i >= n_steps:  # the epoch's steps are taken (a re-plan may have changed them)
            break
        loss, correct, lr, n = one_step(run, plan, idx, log)
        sums["loss_sum"] += loss * n
        sums["correct"] += correct
        sums["seen"] += n
        sums["lr"] = lr
        sums["done"] = i + 1
        bar.update(1)
        if i % 20 == 0:
            bar.set_postfix(lr=f"{lr:.2e}", refresh=False)
        replanned = _replan(run, plan, i, sums, t0, clock, evals_left, done)
        if replanned is not plan:
            plan = replanned
            n_steps = min(plan.steps_per_epoch, plan.total_steps - first_step)
            bar.total = n_steps
        why = _stop_now(run, i, clock, budget, interrupted) if i + 1 < n_steps else None
        if why:
            sums["end"] = why
            break
    sync(run.device)  # the epoch's steps are queued on the GPU: wait for them before timing
    sums["seconds"] += time.perf_counter() - t0
    sums["plan"] = plan
    return sums


def _epoch_row(run: RunState, sums: dict, check: bool, final: bool, eval_bs: int, clock) -> dict:
    """The history row of the epoch just trained (validating when ``check``) — one host sync.
    With several processes the sums are over all of them."""
    run.dist.sum_(sums["loss_sum"], sums["correct"])
    sums["seen"] = int(run.dist.agree([sums["seen"]], op="sum")[0])
    seen = max(sums["seen"], 1)
    row = {
        "epoch": run.epoch,
        "step": run.step,
        "lr": sums["lr"],
        "train_loss": float(sums["loss_sum"] / seen),
        "train_acc": int(sums["correct"]) / seen,
        "val_loss": None,
        "val_acc": None,
        "val_top5": None,
    }
    t_val = time.perf_counter()
    if check:
        row.update(validate(run, run.judged, eval_bs))
        if run.ema is not None and final:  # the raw weights, for comparison
            row["val_acc_model"] = validate(run, run.model, eval_bs)["val_acc"]
    row["val_seconds"] = time.perf_counter() - t_val if check else 0.0
    row["epoch_seconds"] = sums["seconds"]
    row["peak_memory_mb"] = _peak_memory_mb(run.device)
    row["images_per_second"] = sums["seen"] / max(sums["seconds"], 1e-9)
    row["elapsed_seconds"] = clock()
    return row


def _save(run: RunState, plan: StepPlan, saver: Saver) -> None:
    """Write last.pt (and best.pt) from the first process, with every process's RNG state."""
    d = run.dist
    rngs = d.gather(rng_state(run.shuffle_gen, run.aug_gen)) if d.on else None
    partials = d.gather(run.partial) if d.on and run.partial else None
    if d.main:
        saver.save(run, plan, force=True, rng_ranks=rngs, partial_ranks=partials)
    saver.last_save = saver.clock()  # every process: the next save is due at the same time


def _patience_spent(run: RunState) -> bool:
    """Early stopping: ``patience`` epochs have passed since the best validation accuracy, as
    seen by a validation (with ``eval_every`` > 1 only validated epochs can stop the run)."""
    patience = run.cfg.patience
    validated = bool(run.history) and run.history[-1]["val_acc"] is not None
    return (
        bool(patience)
        and validated
        and run.best_epoch > 0
        and run.epoch - run.best_epoch >= patience
    )


def _count(n: int, word: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _summary(row: dict) -> str:
    val = f"val {row['val_acc']:.4f} " if row["val_acc"] is not None else ""
    return f"loss {row['train_loss']:.4f} {val}{row['images_per_second']:.0f} img/s"


def _keep_if_best(run: RunState, val_acc: float | None) -> None:
    """Remember the judged weights (on the device) when they are the best so far."""
    if val_acc is None or val_acc <= run.best_acc:
        return
    run.best_acc, run.best_epoch = val_acc, run.epoch
    run.best_weights = {k: v.detach().clone() for k, v in run.judged.state_dict().items()}
    run.best_saved = False


def _score_test(run: RunState, out_dir: Path, eval_bs: int, log) -> dict | None:
    """The best weights (best.pt) on the test split, once; written to ``test.json``."""
    from helpers.classify.metrics import predict_logits, top5_accuracy
    from helpers.files import atomic_write_json, output_path

    data = run.data
    if not data.has_test:
        return None
    model, epoch = copy.deepcopy(run.judged), run.best_epoch
    weights = run.best_weights
    if weights is None and (out_dir / "best.pt").exists():  # e.g. resumed from last.prev.pt
        from helpers.classify.checkpoint import read_checkpoint

        with contextlib.suppress(InputError):
            best = read_checkpoint(out_dir / "best.pt")
            weights, epoch = best["model"], int(best.get("epoch", 0))
    if weights is not None:
        model.load_state_dict(weights)
    else:
        epoch = run.epoch  # no best weights anywhere: the final ones, and say so
    y = data.test_y.cpu()
    kw = dict(batch_size=eval_bs, device=run.device, precision=run.cfg.precision)
    logits = predict_logits(model, data.test_x, run.spec, **kw)
    flip = predict_logits(model, data.test_x, run.spec, tta_flip=True, **kw)
    result = {
        "split": "test",
        "num_samples": len(y),
        "acc": float((logits.argmax(1) == y).float().mean()),
        "top5": top5_accuracy(y, logits),  # None with fewer than 6 classes
        "acc_flip_tta": float((flip.argmax(1) == y).float().mean()),
        "weights_epoch": epoch,
        "selected_on": "val",
        "data": data.source,
    }
    del model
    _free_cuda()
    atomic_write_json(output_path(out_dir / "test.json"), result)  # staged with the last save
    log(
        f"test accuracy (weights of epoch {epoch}, chosen on val): {result['acc']:.4f} "
        f"({result['acc_flip_tta']:.4f} with flip TTA) on {len(y)} images."
    )
    return result


# ----------------------------------------------------------------------------- training


def train(
    preset,
    data,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = True,
    device=None,
    pretrained: bool = True,
    progress: bool = True,
    max_steps_per_epoch: int | None = None,
    max_epochs_this_run: int | None = None,
    eval_every: int = 1,
    log=print,
) -> TrainResult:
    """Train ``preset`` on ``data``; checkpoints and history go to ``out_dir``.

    ``out_dir`` defaults to :func:`helpers.runtime.output_dir` (Google Drive in Colab).
    With ``resume`` (default) a run continues exactly where ``out_dir/last.pt`` stopped; a
    folder holding a run made with settings that change the result is refused (InputError
    naming them); ``resume=False`` starts over and moves the earlier run to ``previous_run/``.
    ``max_steps_per_epoch`` shortens epochs (smoke runs); ``max_epochs_this_run`` returns after
    that many epochs (call again to continue). ``preset.train.minutes`` is a wall-time budget.
    ``eval_every`` > 1 validates only every that many epochs (and always at the end); the
    best checkpoint is judged on the EMA weights when EMA is on. The test split, if any, is
    scored once when the run is complete. One process at a time trains into a folder: a
    second one is refused with a message naming the first (:func:`folder_lock`).
    """
    import torch

    from helpers import runtime
    from helpers.files import check_output_dir

    t_call = time.perf_counter()
    d = distributed.from_env(str(device) if device is not None else None)
    if not d.main:  # one voice: the first process logs, shows progress and writes files
        log, progress = (lambda m: None), False
    preset, cfg = _checked(preset, data, max_steps_per_epoch, d.world)
    device = runtime.pick_device(str(device) if device is not None else None)
    if d.backend == "nccl":
        device = torch.device("cuda", d.local_rank)
    if out_dir is None:
        out_dir = runtime.output_dir(preset.name)
    out_dir = check_output_dir(out_dir, "out_dir")  # a file, below a file, read-only: say so
    out_dir.mkdir(parents=True, exist_ok=True)
    warning = token_warning(preset)
    if warning:
        log(warning)  # before anything is built: such a run can sit silent for minutes
    # one run a folder: a second process on it stops here (the first process holds it for all)
    with folder_lock(out_dir, "train") if d.main else contextlib.nullcontext():
        held = _HeldOutputs(out_dir)
        try:
            result = _train_in(
                preset, cfg, data, out_dir, d, device, t_call, held, resume=resume,
                pretrained=pretrained, progress=progress, max_steps_per_epoch=max_steps_per_epoch,
                max_epochs_this_run=max_epochs_this_run, eval_every=eval_every, log=log,
            )  # fmt: skip
        except KeyboardInterrupt as e:  # while scoring: the last save stands, scored next time
            if held.saved:
                held.close()
            else:  # in the middle of the last save: the folder keeps its earlier set
                held.discard(e)
            raise
        except BaseException as e:  # a write failed (or a bug): the folder keeps its earlier set
            held.discard(e)
            raise
        held.close()
        return result


class _HeldOutputs:
    """The run's last save and its test score as one unit: an output set of the run folder
    opened just before the last save (which joins it) and committed once ``test.json`` is
    written too, so a failure at any of them leaves the folder's earlier set whole."""

    def __init__(self, folder: Path):
        self.folder, self.stack, self.open = folder, contextlib.ExitStack(), False
        self.saved = False  # the last save is wholly staged (what an interrupt may commit)

    def open_once(self) -> None:
        from helpers.files import output_set

        if not self.open:
            self.stack.enter_context(output_set(self.folder))
            self.open = True

    def close(self) -> None:
        self.stack.close()

    def discard(self, e: BaseException) -> None:
        self.stack.__exit__(type(e), e, e.__traceback__)


def _train_in(
    preset, cfg, data, out_dir: Path, d, device, t_call: float, held: _HeldOutputs, *, resume,
    pretrained, progress, max_steps_per_epoch, max_epochs_this_run, eval_every, log,
) -> TrainResult:  # fmt: skip
    """:func:`train` once its settings are checked and its folder is its own; the last save
    and the test score are staged in ``held`` (the caller commits or discards them)."""
    import torch
    from tqdm.auto import tqdm

    from helpers import runtime

    classes = list(data.classes)
    steps_per_epoch = len(data.train_y) // cfg.batch_size
    if max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, max_steps_per_epoch)
    resume_args = (out_dir, preset, classes, resume, log, steps_per_epoch, d.world)
    ckpt = resume_point(*resume_args) if d.main else None
    d.barrier()  # the first process has set aside an earlier run (resume=False) before others look
    if not d.main:
        ckpt = resume_point(*resume_args)
    eval_bs, eval_every = min(1024, max(2 * cfg.batch_size, 256)), max(1, int(eval_every))
    budget = cfg.minutes * 60 if cfg.minutes else None
    try:
        run = _setup(preset, data, device, ckpt, pretrained, out_dir, d, log)
        plan = plan_run(run, ckpt, steps_per_epoch, eval_bs, eval_every, log)
    except torch.cuda.OutOfMemoryError:
        run = ckpt = None
        _free_cuda()
        raise InputError(runtime.oom_message(cfg.batch_size, "model setup")) from None
    del ckpt
    t_start = time.perf_counter() - run.elapsed  # the clock starts now, after compile
    setup_seconds = time.perf_counter() - t_call

    def clock() -> float:
        return time.perf_counter() - t_start

    saver = Saver(out_dir, preset, classes, cfg.checkpoint_minutes * 60, clock)
    stopped_early = bool(budget and run.elapsed >= budget and run.step < plan.total_steps)
    if stopped_early:
        log(
            f"the {cfg.minutes} min budget is already spent: this run is over. To train longer, "
            "start over with a larger budget (resume=False, --no-resume on the command line)."
        )
    elif run.step < plan.total_steps:
        log(
            f"plan: {_count(plan.total_steps, 'step')} ({_count(plan.epochs, 'epoch')} of "
            f"{steps_per_epoch}), warm-up {_count(plan.warmup_steps, 'step')}, "
            f"{cfg.schedule} schedule."
        )
    outer = tqdm(
        total=plan.epochs, initial=run.epoch, desc=preset.name, unit="epoch", disable=not progress
    )
    bar = tqdm(total=steps_per_epoch, desc="steps", unit="step", leave=False, disable=not progress)
    epochs_run, oom = 0, False
    with _interrupt_requests(log) as interrupted:
        try:
            while run.step < plan.total_steps and not stopped_early and not _patience_spent(run):
                if max_epochs_this_run is not None and epochs_run >= max_epochs_this_run:
                    break
                bar.set_description(f"epoch {run.epoch + 1}/{plan.epochs}")
                planned = plan.total_steps
                sums = _train_epoch(run, plan, clock, budget, interrupted, bar, log, eval_every)
                plan, replans = sums.pop("plan"), sums.pop("replans", 0)
                run.elapsed = clock()
                if sums.pop("end") == "interrupt":
                    run.partial = sums
                    _save(run, plan, saver)
                    raise KeyboardInterrupt
                run.epoch, run.partial, epochs_run = run.epoch + 1, None, epochs_run + 1
                asks = [bool(budget and clock() >= budget), interrupted["set"], saver.due()]
                spent, stop_asked, due = (bool(v) for v in d.agree(asks))
                stopped_early = spent and run.step < plan.total_steps
                final = run.step >= plan.total_steps or stopped_early
                check = final or validates(run.epoch, plan, eval_every)
                row = _epoch_row(run, sums, check, final, eval_bs, clock)
                if not math.isfinite(row["train_loss"]):  # read here anyway: no extra sync
                    raise diverged_error(run, out_dir)
                row["plan_steps"], row["replans"] = plan.total_steps, len(plan.replans)
                if replans:
                    pace = "slower" if plan.total_steps < planned else "faster"
                    log(
                        f"re-planned: the steps ran {pace} than planned; the schedule now ends "
                        f"at step {plan.total_steps} (first plan {plan.first_total})."
                    )
                    outer.total = plan.epochs
                run.history.append(row)
                _keep_if_best(run, row["val_acc"])
                final = final or _patience_spent(run)
                outer.update(1)
                summary = _summary(row)
                outer.set_postfix_str(summary)
                if not progress:
                    log(f"epoch {run.epoch}/{plan.epochs}: {summary}")
                last_of_call = max_epochs_this_run is not None and epochs_run >= max_epochs_this_run
                if final or last_of_call or due or stop_asked:
                    if final and d.main:
                        held.open_once()  # the last save waits for the test score
                    _save(run, plan, saver)
                    held.saved = held.open
                if stop_asked and not final:
                    raise KeyboardInterrupt
        except torch.cuda.OutOfMemoryError:
            oom = True  # handled below, outside the except block, so its tensors are freed
        except KeyboardInterrupt:
            log(
                f"interrupted at step {run.step}; {out_dir}/last.pt is kept: train again to resume."
            )
            raise
        finally:
            bar.close()
            outer.close()
    if oom:
        run = None
        _free_cuda()
        raise InputError(runtime.oom_message(cfg.batch_size))
    if saver.writes:
        share = saver.seconds / max(run.elapsed, 1e-9)
        log(
            f"checkpoints: {saver.writes} writes, {saver.bytes / 1e6:.0f} MB, "
            f"{saver.seconds:.2f} s ({share:.1%} of {run.elapsed:.0f} s of training)."
        )
    val_seconds = sum(r.get("val_seconds") or 0.0 for r in run.history)
    if budget:
        passes = sum(r["val_acc"] is not None for r in run.history)
        log(
            f"steps: {plan.first_total} planned, re-planned {len(plan.replans)} times to "
            f"{plan.total_steps}, {run.step} run; validation: {passes} passes, "
            f"{val_seconds:.1f} s ({val_seconds / budget:.1%} of the budget)."
        )
    if stopped_early:
        log(
            f"the {cfg.minutes} min budget ran out after {run.step} of the {plan.total_steps} "
            "planned steps (the steps got slower than measured); the schedule did not finish."
        )
    reason = (
        "budget" if stopped_early else "patience" if _patience_spent(run)
        else "done" if run.step >= plan.total_steps else "paused"
    )  # fmt: skip
    if reason == "patience":
        log(
            f"early stop: no better val accuracy for {cfg.patience} epochs (best "
            f"{run.best_acc:.4f} at epoch {run.best_epoch})."
        )
    t_score = time.perf_counter()
    test = None
    if reason != "paused" and d.main:
        held.open_once()  # test.json commits with the last save (or alone, if none was made)
        held.saved = True
        test = _score_test(run, out_dir, eval_bs, log)
    run.model.eval()
    timing = {
        "setup_seconds": setup_seconds,
        # on the clock, over the whole run (a resumed run's earlier calls included)
        "training_seconds": run.history[-1]["elapsed_seconds"] if run.history else 0.0,
        "scoring_seconds": time.perf_counter() - t_score,
        "total_seconds": time.perf_counter() - t_call,
    }
    return TrainResult(
        model=run.model,
        ema_model=run.ema,
        history=run.history,
        best_val_acc=max(run.best_acc, 0.0),
        out_dir=out_dir,
        spec=run.spec,
        classes=classes,
        stopped_early=stopped_early,
        plan=plan,
        test=test,
        checkpoint_seconds=saver.seconds,
        stop_reason=reason,
        parameters=count_parameters(run.model),
        trainable_parameters=count_parameters(run.model, trainable_only=True),
        checkpoint_bytes=saver.bytes,
        validation_seconds=val_seconds,
        timing=timing,
    )


__all__ = [
    "LoadedModel",
    "TrainResult",
    "check_settings",
    "token_warning",
    "load_checkpoint",
    "mean_epoch_seconds",
    "mean_images_per_second",
    "peak_memory_mb",
    "train",
]
