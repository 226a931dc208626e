"""The step plan of a training run and its learning-rate schedule, as pure functions of the step.

A run is planned once, before its clock starts: how many optimizer steps it takes in all, how
many of them warm up, where the MultiStep milestones fall. With a time budget the step count
comes from a measured step rate (see :func:`budget_steps`); the plan is stored in the
checkpoint, so a resumed run follows exactly the same schedule, whatever its compile or
start-up time was.

A budgeted run that falls behind its plan is re-planned (:meth:`StepPlan.replanned`): the steps
still to take are cut to what fits the time left, and the rest of the schedule (warm-up,
cosine, milestones) is compressed onto them, so the last step of the run is always the last
step of its schedule. A step's schedule *position* is where it falls on the first plan's
steps; every re-plan is part of the plan, so a resumed run repeats it exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from helpers.errors import InputError

WARMUP_CLAMP = 0.2  # a warm-up as long as the run is cut to this fraction of it
MIN_WARMUP = 2  # a warm-up, when asked for, takes one step below the peak at least
VAL_SHARE = 0.01  # a budgeted run spends about this share of its budget validating
VAL_TAIL = 0.1  # ... validating every epoch over this last share of its epochs


@dataclass(frozen=True)
class StepPlan:
    """How a run spends its steps. ``warmup_steps`` < ``total_steps``; milestones in steps
    (of the first plan); ``replans`` holds ``(at_step, new_total)`` for every re-plan."""

    total_steps: int
    steps_per_epoch: int
    warmup_steps: int
    milestones: tuple[int, ...] = ()
    budget_seconds: float | None = None  # the wall-time budget this plan was fitted to
    step_seconds: float | None = None  # the measured seconds per step it was fitted with
    eval_seconds: float | None = None  # the measured seconds per validation pass
    planned_steps: int | None = None  # the first plan's total (None: never re-planned)
    replans: tuple[tuple[int, int], ...] = ()

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    @property
    def first_total(self) -> int:
        """The total of the plan before any re-plan."""
        return self.planned_steps if self.planned_steps is not None else self.total_steps

    def steps_in_epoch(self, epoch: int) -> int:
        """Steps of 0-based ``epoch`` (the last epoch of a budgeted plan may be shorter)."""
        return max(0, min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch))

    def position(self, step: int) -> float:
        """Where ``step`` falls on the first plan's schedule: ``step`` itself until a re-plan;
        after one, the steps left are spread evenly over the schedule left."""
        end = self.first_total - 1
        start_step, start_pos, scale = 0, 0.0, 1.0
        for at, total in self.replans:
            if step < at:
                break
            pos = start_pos + (at - start_step) * scale
            if total - 1 > at:
                scale = (end - pos) / (total - 1 - at)
            else:  # one step left: it is the schedule's last
                pos, scale = float(end), 0.0
            start_step, start_pos = at, pos
        return min(start_pos + (step - start_step) * scale, float(end))

    def replanned(self, at_step: int, new_total: int) -> StepPlan:
        """This plan with the steps from ``at_step`` on cut to end at ``new_total``."""
        new_total = max(int(new_total), int(at_step) + 1)
        return replace(
            self,
            total_steps=new_total,
            planned_steps=self.first_total,
            replans=(*self.replans, (int(at_step), new_total)),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> StepPlan:
        return StepPlan(
            **{
                **d,
                "milestones": tuple(d.get("milestones", ())),
                "replans": tuple(tuple(int(v) for v in r) for r in d.get("replans", ())),
            }
        )


def make_plan(
    cfg,
    steps_per_epoch: int,
    total_steps: int | None = None,
    log=print,
    **timing,
) -> StepPlan:
    """The plan for ``cfg`` (a TrainConfig): ``total_steps`` defaults to ``epochs`` epochs.

    Warm-up is ``warmup_fraction`` of the run, or ``warmup_epochs`` epochs, and at least one
    step when either is > 0; one that would last the whole run is clamped to a fifth of it,
    with a message. ``timing`` (``budget_seconds``, ``step_seconds``, ``eval_seconds``) is
    recorded in the plan.
    """
    if steps_per_epoch < 1:
        raise InputError(f"an epoch needs at least one step, got {steps_per_epoch}.")
    total = int(total_steps if total_steps is not None else cfg.epochs * steps_per_epoch)
    total = max(total, 1)
    fraction = getattr(cfg, "warmup_fraction", None)
    if fraction:
        warm = round(fraction * total) if fraction > 0 else 0
    else:
        warm = round(max(cfg.warmup_epochs, 0.0) * steps_per_epoch)
    wanted = bool(fraction and fraction > 0) or (not fraction and cfg.warmup_epochs > 0)
    if wanted:  # at least one step below the peak (the last warm-up step is at the peak)
        warm = max(warm, MIN_WARMUP)
    if warm >= total:
        clamped = int(WARMUP_CLAMP * total)
        if wanted:
            clamped = min(total - 1, max(clamped, MIN_WARMUP))
        if warm > MIN_WARMUP:
            log(
                f"note: the warm-up ({warm} steps) is as long as the whole run ({total} steps); "
                f"using {clamped} steps (a fifth of the run). Lower warmup_epochs or train longer."
            )
        warm = max(clamped, 0)
    milestones = tuple(int(round(m * steps_per_epoch)) for m in cfg.milestones)
    return StepPlan(total, steps_per_epoch, warm, milestones, **timing)


def lr_at_step(step: int, plan: StepPlan, cfg) -> float:
    """Learning rate of (0-based) optimizer step ``step``: a pure function of the step.

    Linear warm-up to ``cfg.lr`` over ``plan.warmup_steps`` (step ``warmup_steps - 1`` is at
    the peak), then ``cosine`` down to ``min_lr`` at the last step, ``multistep`` (times
    ``gamma`` from each milestone on) or ``constant``. After a re-plan the step's schedule
    position (:meth:`StepPlan.position`) takes its place, so the last step is still at
    ``min_lr``.
    """
    s = min(max(int(step), 0), plan.total_steps - 1)
    if plan.replans:
        s = plan.position(s)
    warm = plan.warmup_steps
    if s < warm:
        return cfg.lr * (s + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "multistep":
        return cfg.lr * cfg.gamma ** sum(1 for m in plan.milestones if s >= m)
    if cfg.schedule != "cosine":
        raise InputError(f"schedule must be cosine, multistep or constant, got {cfg.schedule!r}.")
    span = plan.first_total - 1 - warm
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


def validation_passes(plan: StepPlan) -> int | None:
    """How many validation passes a budgeted plan affords (``VAL_SHARE`` of its budget at its
    measured seconds per pass), or None when the plan has no budget or no measured pass."""
    if not plan.budget_seconds or not plan.eval_seconds or plan.eval_seconds <= 0:
        return None
    return max(1, int(VAL_SHARE * plan.budget_seconds / plan.eval_seconds))


def validates(epoch: int, plan: StepPlan, eval_every: int = 1) -> bool:
    """Whether the end of (1-based) ``epoch`` is validated. The final epoch always is. A
    budgeted plan validates every epoch over its last ``VAL_TAIL`` of epochs and sparsely,
    evenly spaced, before them, within the passes its budget affords; any other plan every
    ``eval_every`` epochs. A pure function of the plan, so a resumed run validates the same
    epochs."""
    last = plan.epochs
    if epoch >= last:
        return True
    passes = validation_passes(plan)
    if passes is None:
        return epoch % max(1, eval_every) == 0
    tail = min(passes, max(1, math.ceil(VAL_TAIL * last)))
    if epoch > last - tail:
        return True
    early = passes - tail
    if early <= 0:
        return False
    return epoch % max(eval_every, math.ceil((last - tail) / early)) == 0


def validation_reserve(budget_seconds: float, eval_seconds: float | None) -> float:
    """Seconds a budgeted plan keeps for its validation passes (see :func:`validates`)."""
    if not eval_seconds or eval_seconds <= 0:
        return 0.0
    passes = max(1, int(VAL_SHARE * budget_seconds / eval_seconds))
    return min((passes + 1) * eval_seconds, 0.5 * budget_seconds)


__all__ = [
    "StepPlan",
    "budget_steps",
    "lr_at_step",
    "make_plan",
    "validates",
    "validation_passes",
    "validation_reserve",
]
