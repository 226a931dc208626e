"""One optimizer step of a training run, and the state a run carries from step to step.

:func:`one_step` sets the step's learning rate (a function of the step alone), augments the
batch on the device, runs forward/backward/AdamW under autocast (with a grad scaler for fp16)
and updates the EMA — without any host synchronisation.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any

from helpers.classify.schedule import StepPlan, lr_at_step
from helpers.classify.vit import param_groups
from helpers.errors import InputError


def ema_update(ema_model, model, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * param`` for every parameter; buffers are copied."""
    import torch

    with torch.no_grad():
        ema_p = [p for p in ema_model.parameters()]
        src_p = [p.detach() for p in model.parameters()]
        if len(ema_p) != len(src_p):
            raise InputError("the EMA model and the model have different parameters.")
        if ema_p:
            torch._foreach_lerp_(ema_p, src_p, 1.0 - decay)
        for eb, b in zip(ema_model.buffers(), model.buffers()):
            eb.copy_(b)


def soft_cross_entropy(logits, y_soft, label_smoothing: float = 0.0):
    """Cross entropy against soft targets, which are first smoothed: ``y (1 - eps) + eps / C``."""
    if label_smoothing:
        y_soft = y_soft * (1.0 - label_smoothing) + label_smoothing / logits.shape[-1]
    return -(y_soft * logits.float().log_softmax(-1)).sum(-1).mean()


def make_optimizer(model, cfg, device):
    import torch

    groups = param_groups(model, cfg.weight_decay)
    if not groups:
        raise InputError("the model has no trainable parameters; unfreeze some layers.")
    kw = {}
    if torch.device(device).type == "cuda":
        kw["fused"] = True
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), **kw)
    except (RuntimeError, TypeError, ValueError):  # fused not supported for these params
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


@dataclass
class RunState:
    """Everything a run carries from step to step."""

    model: Any
    fwd: Any  # model, or torch.compile(model)
    ema: Any | None
    optimizer: Any
    scaler: Any
    aug: Any
    data: Any
    spec: Any
    cfg: Any
    amp_dtype: Any
    device: Any
    shuffle_gen: Any
    aug_gen: Any
    compile_pending: bool = False
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    elapsed: float = 0.0  # training seconds on the clock (compile/calibration excluded)
    history: list = dataclasses.field(default_factory=list)
    best_acc: float = -1.0
    best_epoch: int = 0
    best_weights: dict | None = None  # on the device; flushed to best.pt with each checkpoint
    best_saved: bool = True
    epoch_shuffle: Any = None  # shuffle RNG state at the start of the current epoch
    partial: dict | None = None  # sums of an epoch interrupted mid-way (from a checkpoint)
    dist: Any = None  # helpers.distributed.Dist: this process's rank among the run's processes
    eager: Any = None  # the uncompiled forward: model, or DistributedDataParallel(model)

    def __post_init__(self):
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.eager is None:
            self.eager = self.model

    def my_part(self, idx):
        """This process's slice of a global batch of indices (all of it in one process)."""
        d = self.dist
        if d is None or not d.on:
            return idx
        per = len(idx) // d.world
        return idx[d.rank * per : (d.rank + 1) * per]

    @property
    def judged(self):
        """The weights validation judges (and best.pt keeps): EMA when it is on."""
        return self.ema if self.ema is not None else self.model

    def autocast(self):
        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def train_step(run: RunState, x, y_soft):
    """One optimizer step; returns (loss, number correct) as device tensors (no host sync)."""
    import torch

    cfg = run.cfg
    with run.autocast():
        logits = run.fwd(x)
    loss = soft_cross_entropy(logits, y_soft, cfg.label_smoothing)
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        if cfg.grad_clip:
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip)
        run.optimizer.step()
    correct = (logits.detach().argmax(-1) == y_soft.argmax(-1)).sum()
    return loss.detach(), correct


def step_with_fallback(run: RunState, x, y_soft, log):
    """``train_step``, falling back to eager mode if the compiled model fails on first use."""
    if not run.compile_pending:
        return train_step(run, x, y_soft)
    import torch

    try:
        out = train_step(run, x, y_soft)
    except (torch.cuda.OutOfMemoryError, KeyboardInterrupt):
        raise
    except Exception as e:
        log(
            f"warning: torch.compile failed ({type(e).__name__}: {str(e)[:200]}); training eagerly."
        )
        run.fwd = run.eager
        out = train_step(run, x, y_soft)
    run.compile_pending = False
    return out


def one_step(run: RunState, plan: StepPlan, idx, log):
    """Set the step's learning rate, augment this process's part of the global batch ``idx``,
    step (gradients averaged over the processes), update the EMA. No host sync."""
    idx = run.my_part(idx)
    lr = lr_at_step(run.step, plan, run.cfg)
    for g in run.optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    x, y_soft = run.aug(run.data.train_x[idx], run.data.train_y[idx], generator=run.aug_gen)
    loss, correct = step_with_fallback(run, x, y_soft, log)
    run.step += 1
    if run.ema is not None:
        ema_update(run.ema, run.model, min(run.cfg.ema_decay, (1 + run.step) / (10 + run.step)))
    return loss, correct, lr, len(idx)


def validate(run: RunState, model, batch_size: int = 512) -> dict:
    """Validation loss / top-1 / top-5 of ``model``. With several processes each scores its
    share of the validation images and the logits are gathered in order: every image counted
    once, the same numbers on every process."""
    import torch

    from helpers.classify.metrics import logit_metrics, predict_logits
    from helpers.distributed import shard

    x, y, d = run.data.val_x, run.data.val_y, run.dist
    kw = dict(batch_size=batch_size, device=run.device, precision=run.cfg.precision)
    if d is None or not d.on:
        return logit_metrics(predict_logits(model, x, run.spec, **kw), y)
    part = shard(len(y), d)
    mine = predict_logits(model, x[part.start : part.stop], run.spec, **kw) if len(part) else None
    logits = torch.cat([t for t in d.gather(mine) if t is not None])
    return logit_metrics(logits, y)


__all__ = [
    "RunState",
    "ema_update",
    "make_optimizer",
    "one_step",
    "soft_cross_entropy",
    "step_with_fallback",
    "train_step",
    "validate",
]
