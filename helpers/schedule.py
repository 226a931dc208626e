"""The step plan of a training run and its learning-rate schedule, as pure functions of the step.

A run is planned once, before its clock starts: how many optimizer steps it takes in all, how
many of them warm up, where the MultiStep milestones fall. With a time budget the step count
comes from a measured step rate (see :func:`budget_steps`); the plan is stored in the
checkpoint, so a resumed run follows exactly the same schedule, whatever its compile or
start-up time was.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from helpers.errors import InputError

WARMUP_CLAMP = 0.2  # a warm-up as long as the run is cut to this fraction of it


@dataclass(frozen=True)
class StepPlan:
    """How a run spends its steps. ``warmup_steps`` < ``total_steps``; milestones in steps."""

    total_steps: int
    steps_per_epoch: int
    warmup_steps: int
    milestones: tuple[int, ...] = ()
    budget_seconds: float | None = None  # the wall-time budget this plan was fitted to
    step_seconds: float | None = None  # the measured seconds per step it was fitted with

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def steps_in_epoch(self, epoch: int) -> int:
        """Steps of 0-based ``epoch`` (the last epoch of a budgeted plan may be shorter)."""
        return max(0, min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch))

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> StepPlan:
        return StepPlan(**{**d, "milestones": tuple(d.get("milestones", ()))})


def make_plan(
    cfg,
    steps_per_epoch: int,
    total_steps: int | None = None,
    log=print,
    **timing,
) -> StepPlan:
    """The plan for ``cfg`` (a TrainConfig): ``total_steps`` defaults to ``epochs`` epochs.

    Warm-up is ``warmup_fraction`` of the run, or ``warmup_epochs`` epochs; one that would last
    the whole run is clamped to a fifth of it, with a message. ``timing`` (``budget_seconds``,
    ``step_seconds``) is recorded in the plan.
    """
    if steps_per_epoch < 1:
        raise InputError(f"an epoch needs at least one step, got {steps_per_epoch}.")
    total = int(total_steps if total_steps is not None else cfg.epochs * steps_per_epoch)
    total = max(total, 1)
    fraction = getattr(cfg, "warmup_fraction", None)
    if fraction:
        warm = round(fraction * total)
    else:
        warm = round(max(cfg.warmup_epochs, 0.0) * steps_per_epoch)
    if warm >= total:
        clamped = int(WARMUP_CLAMP * total)
        log(
            f"note: the warm-up ({warm} steps) is as long as the whole run ({total} steps); "
            f"using {clamped} steps (a fifth of the run). Lower warmup_epochs or train longer."
        )
        warm = clamped
    milestones = tuple(int(round(m * steps_per_epoch)) for m in cfg.milestones)
    return StepPlan(total, steps_per_epoch, warm, milestones, **timing)


def lr_at_step(step: int, plan: StepPlan, cfg) -> float:
    """Learning rate of (0-based) optimizer step ``step``: a pure function of the step.

    Linear warm-up to ``cfg.lr`` over ``plan.warmup_steps`` (step ``warmup_steps - 1`` is at
    the peak), then ``cosine`` down to ``min_lr`` at the last step, ``multistep`` (times
    ``gamma`` from each milestone on) or ``constant``.
    """
    s = min(max(int(step), 0), plan.total_steps - 1)
    warm = plan.warmup_steps
    if s < warm:
        return cfg.lr * (s + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "multistep":
        return cfg.lr * cfg.gamma ** sum(1 for m in plan.milestones if s >= m)
    if cfg.schedule != "cosine":
        raise InputError(f"schedule must be cosine, multistep or constant, got {cfg.schedule!r}.")
    span = plan.total_steps - 1 - warm
    t = (s - warm) / span if span > 0 else 1.0
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def budget_steps(
    budget_seconds: float,
    step_seconds: float,
    steps_per_epoch: int,
    eval_seconds: float = 0.0,
    eval_every: int = 1,
    margin: float = 0.03,
) -> int:
    """How many steps fit in ``budget_seconds`` at ``step_seconds`` a step, with a validation
    pass of ``eval_seconds`` every ``eval_every`` epochs and a ``margin`` of the budget kept
    free for checkpoints and jitter. At least one step."""
    if step_seconds <= 0:
        raise InputError(f"step_seconds must be > 0, got {step_seconds}.")
    per_step = step_seconds + eval_seconds / (steps_per_epoch * max(1, eval_every))
    return max(1, int(budget_seconds * (1.0 - margin) / per_step))


__all__ = ["StepPlan", "budget_steps", "lr_at_step", "make_plan"]
