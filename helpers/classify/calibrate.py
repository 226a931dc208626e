"""Planning a run before its clock starts: compile, measure the step rate, fix the step plan.

The first steps of a compiled model compile it; with a time budget the run also needs its step
rate to know how many steps fit. Both happen here, on real batches, and every weight, optimizer
moment and RNG is restored afterwards, so the run itself starts from exactly the state it had.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import time
from dataclasses import replace

from helpers.classify.checkpoint import rng_state, set_rng_state
from helpers.classify.schedule import StepPlan, budget_steps, make_plan, validation_reserve
from helpers.classify.step import RunState, one_step, validate

MARGIN = 0.03  # share of a budget a plan keeps free for checkpoints and jitter
CALIBRATION_SECONDS = 3.0  # steady steps measured for the step rate (a busy moment averages out)
CALIBRATION_MAX_STEPS = 5000  # ... or this many steps, whichever comes first
GROW_AHEAD = 0.05  # a plan grows back when this share more steps than it has left would fit


@contextlib.contextmanager
def restored_afterwards(run: RunState):
    """Run steps inside; afterwards every weight, optimizer, scaler and RNG state is as before."""
    snap = {
        "model": copy.deepcopy(run.model.state_dict()),
        "ema": copy.deepcopy(run.ema.state_dict()) if run.ema is not None else None,
        "optimizer": copy.deepcopy(run.optimizer.state_dict()),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "rng": rng_state(run.shuffle_gen, run.aug_gen),
        "step": run.step,
    }
    try:
        yield
    finally:
        run.model.load_state_dict(snap["model"])
        if run.ema is not None:
            run.ema.load_state_dict(snap["ema"])
        run.optimizer.load_state_dict(snap["optimizer"])
        if run.scaler is not None:
            run.scaler.load_state_dict(snap["scaler"])
        set_rng_state(snap["rng"], run.shuffle_gen, run.aug_gen)
        run.step = snap["step"]


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calibrate(run: RunState, n_train: int, eval_bs: int, log) -> tuple[float, float]:
    """Compile (first steps) and measure seconds per step and per validation pass, outside
    the clock; all state is restored afterwards. Returns ``(step_seconds, eval_seconds)``."""
    from helpers.classify.data import iterate_batches

    cfg = run.cfg
    probe = StepPlan(total_steps=1 << 30, steps_per_epoch=1 << 30, warmup_steps=1 << 29)

    def cycling():  # as many batches as needed, however small an epoch is
        while True:
            yield from iterate_batches(n_train, cfg.batch_size, True, run.shuffle_gen, run.device)

    batches = cycling()
    compiling = run.compile_pending  # one_step compiles on the first call and clears it
    t_compile = time.perf_counter()
    with restored_afterwards(run):
        for idx in itertools.islice(batches, 2):  # the first compiles; the second settles
            one_step(run, probe, idx, log)
        sync(run.device)
        warm_s = time.perf_counter() - t_compile
        t0, n = time.perf_counter(), 0
        fixed = run.dist is not None and run.dist.on  # every process must take as many steps
        for idx in batches:
            one_step(run, probe, idx, log)
            n += 1
            if fixed:
                if n >= 10:
                    break
                continue
            # at least ~3 s of steps (the host's clock; the sync below adds what the GPU still
            # has queued, so the rate is the GPU's), at least 3 steps, at most a cap
            elapsed = time.perf_counter() - t0
            if n >= CALIBRATION_MAX_STEPS or (
                n >= 3 and elapsed >= CALIBRATION_SECONDS * (1 - 1e-9)
            ):
                break
        sync(run.device)
        step_s = (time.perf_counter() - t0) / max(n, 1)
        t1 = time.perf_counter()
        validate(run, run.judged, eval_bs)
        eval_s = time.perf_counter() - t1
    if run.dist is not None:  # plan with the slowest process's rates
        step_s, eval_s = run.dist.agree([step_s, eval_s])
    first = "first steps incl. compile" if compiling else "first steps"
    log(
        f"calibrated outside the clock in {time.perf_counter() - t_compile:.1f} s "
        f"({first} {warm_s:.1f} s): {step_s * 1000:.1f} ms/step, "
        f"{eval_s:.2f} s per validation."
    )
    return step_s, eval_s


def plan_run(
    run: RunState, ckpt, steps_per_epoch: int, eval_bs: int, eval_every: int, log
) -> StepPlan:
    """The run's step plan: the checkpoint's when it has one (a resumed run has the settings
    it was made with, see :func:`helpers.classify.checkpoint.resume_point`; a larger budget
    that plans the same steps only replaces the plan's budget), else a new one, fitted to the
    time budget from a measured step rate. Compiles outside the clock."""
    cfg = run.cfg
    n_train = len(run.data.train_y)
    saved = StepPlan.from_dict(ckpt["plan"]) if ckpt and ckpt.get("plan") else None
    budget = cfg.minutes * 60 if cfg.minutes else None
    if saved is not None:
        if saved.budget_seconds is not None and budget is not None:
            saved = replace(saved, budget_seconds=budget)
        spent = bool(budget and run.elapsed >= budget)
        if run.compile_pending and run.step < saved.total_steps and not spent:
            calibrate(run, n_train, eval_bs, log)  # compiles outside the clock
        return saved
    timing = (None, None)
    if run.compile_pending or budget:
        timing = calibrate(run, n_train, eval_bs, log)
    total = cfg.epochs * steps_per_epoch
    if budget:
        step_s, eval_s = timing
        remaining = max(budget - run.elapsed - validation_reserve(budget, eval_s), 0.0)
        fit = run.step + budget_steps(remaining, step_s, steps_per_epoch, margin=MARGIN)
        total = min(total, fit)
        return make_plan(
            cfg,
            steps_per_epoch,
            total,
            log,
            budget_seconds=budget,
            step_seconds=step_s,
            eval_seconds=eval_s,
        )
    return make_plan(cfg, steps_per_epoch, total, log)


def replan_if_behind(
    plan: StepPlan,
    step: int,
    now: float,
    step_seconds: float,
    evals_left: int = 0,
    max_total: int | None = None,
) -> StepPlan | None:
    """A re-planned plan when a budgeted run has fallen behind its own, or (with
    ``max_total``) is well ahead of it; else None.

    At ``now`` seconds on the clock, after ``step`` steps, with steps measured at
    ``step_seconds`` and ``evals_left`` validation passes to come: when the steps left would
    eat into the last half of the margin, they are cut to what fits the time left with the
    full margin kept (at least one step: the schedule's last). With ``max_total`` (the steps
    the run's epochs allow), a plan that would leave more than ``GROW_AHEAD`` of its steps'
    time unused (steps got faster than measured, e.g. after a calibration slowed by a busy
    moment) grows back to what fits, up to ``max_total``. Either way the rest of the schedule
    is spread over the new steps (:meth:`StepPlan.replanned`), so the run still ends annealed."""
    budget = plan.budget_seconds
    if not budget or step >= plan.total_steps - 1 or step_seconds <= 0:
        return None
    left = budget - now - evals_left * (plan.eval_seconds or 0.0)
    fit = step + max(1, int((left - MARGIN * budget) / step_seconds))
    if (plan.total_steps - step) * step_seconds > left - 0.5 * MARGIN * budget:  # behind
        return plan.replanned(step, fit) if fit < plan.total_steps else None
    if max_total is None:
        return None
    grown = min(int(max_total), fit)
    if grown - step > (1 + GROW_AHEAD) * (plan.total_steps - step) and grown > plan.total_steps:
        return plan.replanned(step, grown)
    return None


__all__ = ["calibrate", "plan_run", "replan_if_behind", "restored_afterwards"]
