"""The training loop: AdamW, LR schedules, EMA, mixed precision, torch.compile, a wall-time
budget, atomic per-epoch checkpoints and exact resume.

Data stay on the device as uint8; each step indexes a batch there, augments it with
:class:`helpers.augment.GpuAugment` and trains on soft targets. Nothing syncs the host per
step: loss and accuracy are summed as device tensors and read once per epoch.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import gc
import io
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.errors import InputError
from helpers.vit import param_groups

TIMING_KEYS = ("epoch_seconds", "images_per_second", "elapsed_seconds")


@dataclass
class TrainResult:
    model: Any
    ema_model: Any | None
    history: list[dict]
    best_val_acc: float
    out_dir: Path
    spec: Any
    classes: list[str]
    stopped_early: bool  # True when the time budget ended the run before the last epoch


@dataclass
class LoadedModel:
    model: Any  # in eval mode; EMA weights when the checkpoint has them
    spec: Any
    classes: list[str]
    preset: Any
    epoch: int
    history: list[dict]


# ----------------------------------------------------------------------------- schedule


def lr_at(progress: float, cfg) -> float:
    """Learning rate at ``progress`` in [0, 1] of the run (a pure function, easy to test).

    Linear warmup from 0 over the first ``warmup_epochs / epochs`` of the run, then
    ``cosine`` (down to ``min_lr`` at progress 1), ``multistep`` (times ``gamma`` at each
    milestone epoch) or ``constant``.
    """
    p = min(max(float(progress), 0.0), 1.0)
    warm = min(max(cfg.warmup_epochs, 0.0) / cfg.epochs, 1.0)
    if warm > 0 and p < warm:
        return cfg.lr * p / warm
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "multistep":
        epoch = p * cfg.epochs + 1e-9
        return cfg.lr * cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)
    if cfg.schedule != "cosine":
        raise InputError(f"schedule must be cosine, multistep or constant, got {cfg.schedule!r}.")
    t = (p - warm) / (1.0 - warm) if warm < 1.0 else 1.0
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def run_progress(step: int, total_steps: int, elapsed: float, budget_s: float | None) -> float:
    """Schedule progress: the step fraction, or the time fraction of the budget if further."""
    p = step / max(total_steps, 1)
    if budget_s:
        p = max(p, elapsed / budget_s)
    return min(p, 1.0)


# ----------------------------------------------------------------------------- pieces


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


# ----------------------------------------------------------------------------- checkpoints


def _rng_state(shuffle_gen, aug_gen) -> dict:
    import numpy as np
    import torch

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "shuffle": shuffle_gen.get_state(),
        "augment": aug_gen.get_state(),
    }


def _set_rng_state(state: dict, shuffle_gen, aug_gen) -> None:
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    shuffle_gen.set_state(state["shuffle"].cpu())
    aug_gen.set_state(state["augment"].cpu())


def _read_checkpoint(path: Path) -> dict:
    """torch.load a checkpoint dict; any failure -> InputError naming the file."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"checkpoint {path} does not exist.") from None
    except Exception as e:
        raise InputError(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {str(e)[:200]}); it is probably "
            "corrupt or incomplete. Delete it, or train with resume=False."
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "preset" not in ckpt:
        raise InputError(f"{path} is not a checkpoint written by helpers.train.")
    return ckpt


def _read_with_fallback(candidates: list[Path], log=print) -> tuple[dict, Path]:
    existing = [p for p in candidates if p.exists()]
    if not existing:
        raise InputError(f"no checkpoint found at {candidates[0]}.")
    errors = []
    for p in existing:
        try:
            ckpt = _read_checkpoint(p)
        except InputError as e:
            errors.append(str(e))
            continue
        if p != candidates[0]:
            log(f"{candidates[0].name} is missing or unreadable; using {p} instead.")
        return ckpt, p
    raise InputError(" ".join(errors))


def _resume_candidates(out_dir: Path) -> list[Path]:
    return [out_dir / "last.pt", out_dir / "last.prev.pt"]


def save_last_checkpoint(state: dict, out_dir: Path) -> Path:
    """Rename the current ``last.pt`` to ``last.prev.pt``, then write the new one atomically."""
    from helpers.files import atomic_torch_save

    last = out_dir / "last.pt"
    if last.exists():
        os.replace(last, out_dir / "last.prev.pt")
    return atomic_torch_save(state, last)


def load_checkpoint(path: str | os.PathLike, device="cpu", log=print) -> LoadedModel:
    """Rebuild the model from a checkpoint file (or a run folder: ``best.pt``, else ``last.pt``).

    Uses the EMA weights when the checkpoint has them. If ``last.pt`` is unreadable it falls
    back to ``last.prev.pt``; if nothing readable is left -> InputError naming the file.
    """
    import torch

    from helpers.presets import preset_from_dict
    from helpers.vit import InputSpec, build_model

    path = Path(path)
    if path.is_dir():
        candidates = [path / "best.pt", *_resume_candidates(path)]
    elif path.name == "last.pt":
        candidates = [path, path.with_name("last.prev.pt")]
    else:
        candidates = [path]
    if not any(p.exists() for p in candidates):
        raise InputError(
            f"no checkpoint at {path}; give a .pt file written by training or its folder."
        )
    ckpt, _ = _read_with_fallback(candidates, log=log)
    preset = preset_from_dict(ckpt["preset"])
    classes = list(ckpt["classes"])
    model, _ = build_model(preset, len(classes), pretrained=False)
    weights = ckpt.get("ema") or ckpt["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise InputError(f"checkpoint {path} does not match its own model config: {e}") from None
    model.to(torch.device(device)).eval()
    return LoadedModel(
        model=model,
        spec=InputSpec(**ckpt["spec"]),
        classes=classes,
        preset=preset,
        epoch=int(ckpt.get("epoch", 0)),
        history=list(ckpt.get("history", [])),
    )


def _write_history(history: list[dict], out_dir: Path) -> None:
    from helpers.files import atomic_write_json, atomic_write_text

    atomic_write_json(out_dir / "history.json", history)
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(out_dir / "history.csv", buf.getvalue())


# ----------------------------------------------------------------------------- training


@dataclass
class _Run:
    """Everything one training step needs."""

    model: Any
    fwd: Any  # model, or torch.compile(model)
    optimizer: Any
    scaler: Any
    cfg: Any
    amp_dtype: Any
    device_type: str
    compile_pending: bool = False

    def __post_init__(self):
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]

    def autocast(self):
        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.amp_dtype)


def _train_step(run: _Run, x, y_soft):
    """One optimizer step; returns (loss, number correct) as device tensors (no host sync)."""
    import torch

    cfg = run.cfg
    with run.autocast():
        logits = run.fwd(x)
    loss = soft_cross_entropy(logits, y_soft, cfg.label_smoothing)
    run.optimizer.zero_grad(set_to_none=True)
    params = run.params
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        if cfg.grad_clip:
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        run.optimizer.step()
    correct = (logits.detach().argmax(-1) == y_soft.argmax(-1)).sum()
    return loss.detach(), correct


def _step(run: _Run, x, y_soft, log):
    """``_train_step``, falling back to eager mode if the compiled model fails on first use."""
    if not run.compile_pending:
        return _train_step(run, x, y_soft)
    import torch

    try:
        out = _train_step(run, x, y_soft)
    except (torch.cuda.OutOfMemoryError, KeyboardInterrupt):
        raise
    except Exception as e:
        log(
            f"warning: torch.compile failed ({type(e).__name__}: {str(e)[:200]}); training eagerly."
        )
        run.fwd = run.model
        out = _train_step(run, x, y_soft)
    run.compile_pending = False
    return out


def _validate(model, data, spec, batch_size: int, device, precision: str) -> dict:
    import torch.nn.functional as F

    from helpers.metrics import predict_logits, top_k_accuracy

    logits = predict_logits(
        model, data.val_x, spec, batch_size=batch_size, device=device, precision=precision
    )
    y = data.val_y.cpu()
    return {
        "val_loss": float(F.cross_entropy(logits, y)),
        "val_acc": float((logits.argmax(1) == y).float().mean()),
        "val_top5": top_k_accuracy(y, logits, k=5),
    }


def _same_model(saved: dict, current: dict) -> bool:
    keys = ("model", "timm_name", "freeze_all_but_last")
    return all(saved.get(k) == current.get(k) for k in keys)


def _free_cuda() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
    With ``resume`` (default) a run continues exactly where ``out_dir/last.pt`` stopped.
    ``max_steps_per_epoch`` shortens epochs (smoke runs); ``max_epochs_this_run`` returns after
    that many epochs (call again to continue). ``preset.train.minutes`` is a wall-time budget.
    ``eval_every`` > 1 validates only every that many epochs (and always at the end); the
    best checkpoint is judged on the EMA weights when EMA is on.
    """
    import torch

    from helpers import runtime
    from helpers.augment import GpuAugment
    from helpers.data import iterate_batches
    from helpers.presets import preset_to_dict
    from helpers.vit import build_model

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
    classes = list(data.classes)
    num_classes = len(classes)
    if num_classes < 2:
        raise InputError(f"need at least 2 classes, got {num_classes}.")
    y_max = max(int(data.train_y.max()), int(data.val_y.max()))
    if y_max >= num_classes or min(int(data.train_y.min()), int(data.val_y.min())) < 0:
        raise InputError(
            f"labels must be in [0, {num_classes - 1}] for {num_classes} classes; found label {y_max}."
        )
    if preset.model is not None:
        preset.model.num_classes = num_classes

    device = runtime.pick_device(str(device) if device is not None else None)
    out_dir = Path(out_dir) if out_dir is not None else runtime.output_dir(preset.name)
    out_dir.mkdir(parents=True, exist_ok=True)

    ckpt = None
    if resume and any(p.exists() for p in _resume_candidates(out_dir)):
        ckpt, used = _read_with_fallback(_resume_candidates(out_dir), log=log)
        if list(ckpt["classes"]) != classes:
            raise InputError(
                f"{used} was trained on {len(ckpt['classes'])} classes {list(ckpt['classes'])[:10]} "
                f"but the data has {num_classes} {classes[:10]}; use another out_dir or resume=False."
            )
        if not _same_model(ckpt["preset"], preset_to_dict(preset)):
            raise InputError(
                f"{used} holds a different model than preset {preset.name!r}; "
                "use another out_dir or resume=False."
            )
        if ckpt["preset"].get("train") != preset_to_dict(preset)["train"]:
            log("note: the training settings differ from the checkpoint's; using the new ones.")

    elif not resume and any(p.exists() for p in _resume_candidates(out_dir)):
        old = out_dir / "previous_run"
        old.mkdir(exist_ok=True)
        for name in ("last.pt", "last.prev.pt", "best.pt", "history.json", "history.csv"):
            if (out_dir / name).exists():
                os.replace(out_dir / name, old / name)
        log(f"resume=False: moved the earlier run's checkpoints to {old}.")

    if device.type == "cuda":
        runtime.enable_fast_matmul()
    runtime.seed_everything(cfg.seed)
    setup_oom = False
    try:
        model, spec = build_model(preset, num_classes, pretrained=pretrained and ckpt is None)
        model.to(device)
        data = data.to(device)
        aug = GpuAugment(preset.aug, spec, num_classes)
        from helpers.augment import eval_transform

        model.eval()
        with torch.no_grad():
            out = model(eval_transform(data.val_x[:1], spec))
        if out.ndim != 2 or out.shape[1] != num_classes:
            raise InputError(
                f"the model outputs {tuple(out.shape)} but the data has {num_classes} classes."
            )
        model.train()
        ema = None
        if cfg.ema_decay:
            ema = copy.deepcopy(model).eval().requires_grad_(False)
        optimizer = make_optimizer(model, cfg, device)
        amp_dtype = runtime.autocast_dtype(device, cfg.precision)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        shuffle_gen = torch.Generator(device=device)
        shuffle_gen.manual_seed(cfg.seed)
        aug_gen = torch.Generator(device=device)
        aug_gen.manual_seed(cfg.seed + 1)

        epoch, step, elapsed, history, best_acc = 0, 0, 0.0, [], -1.0
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            if ema is not None:
                ema.load_state_dict(ckpt.get("ema") or ckpt["model"])
            epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
            elapsed, history = float(ckpt["elapsed"]), list(ckpt["history"])
            best_acc = float(ckpt["best_val_acc"])
            _set_rng_state(ckpt["rng"], shuffle_gen, aug_gen)
            log(
                f"resuming from {out_dir} at epoch {epoch} (step {step}, {elapsed / 60:.1f} min in)."
            )
        del ckpt

        fwd = model
        if cfg.compile:
            try:
                fwd = torch.compile(model)
            except Exception as e:
                log(
                    f"warning: torch.compile unavailable ({type(e).__name__}: {e}); training eagerly."
                )
        run = _Run(model, fwd, optimizer, scaler, cfg, amp_dtype, device.type, fwd is not model)
    except torch.cuda.OutOfMemoryError:
        setup_oom = True
    if setup_oom:
        model = ema = optimizer = data = None
        _free_cuda()
        raise InputError(runtime.oom_message(cfg.batch_size, "model setup"))

    steps_per_epoch = n_train // cfg.batch_size
    if max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, max_steps_per_epoch)
    total_steps = cfg.epochs * steps_per_epoch
    budget = cfg.minutes * 60 if cfg.minutes else None
    eval_bs = min(1024, max(2 * cfg.batch_size, 256))
    stopped_early = bool(budget and elapsed >= budget)
    if stopped_early:
        log(f"the {cfg.minutes} min budget is already spent; raise minutes to train further.")
    t_start = time.perf_counter() - elapsed
    epochs_run = 0
    eval_every = max(1, int(eval_every))

    from tqdm.auto import tqdm

    outer = tqdm(
        total=cfg.epochs, initial=epoch, desc=f"{preset.name}", unit="epoch", disable=not progress
    )
    oom = False
    try:
        while epoch < cfg.epochs and not stopped_early:
            if max_epochs_this_run is not None and epochs_run >= max_epochs_this_run:
                break
            if budget and time.perf_counter() - t_start >= budget:
                stopped_early = True
                break
            t0 = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            lr = lr_at(run_progress(step, total_steps, t0 - t_start, budget), cfg)
            bar = tqdm(
                total=steps_per_epoch,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                disable=not progress,
                leave=False,
                unit="step",
            )
            batches = iterate_batches(
                n_train, cfg.batch_size, True, shuffle_gen, device, drop_last=True
            )
            for i, idx in enumerate(batches):
                if i >= steps_per_epoch:
                    break
                lr = lr_at(
                    run_progress(step, total_steps, time.perf_counter() - t_start, budget), cfg
                )
                for g in optimizer.param_groups:
                    g["lr"] = lr * g.get("lr_scale", 1.0)
                x, y_soft = aug(data.train_x[idx], data.train_y[idx], generator=aug_gen)
                loss, corr = _step(run, x, y_soft, log)
                loss_sum += loss * len(idx)
                correct += corr
                seen += len(idx)
                step += 1
                if ema is not None:
                    ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
                bar.update(1)
                if i % 20 == 0:
                    bar.set_postfix(lr=f"{lr:.2e}", refresh=False)
                if budget and time.perf_counter() - t_start >= budget:
                    stopped_early = epoch + 1 < cfg.epochs
                    break
            bar.close()
            train_loss = float(loss_sum / max(seen, 1))  # the one host sync of the epoch
            train_acc = int(correct) / max(seen, 1)
            train_s = time.perf_counter() - t0
            epoch += 1
            final = epoch >= cfg.epochs or stopped_early
            row = {
                "epoch": epoch,
                "step": step,
                "lr": lr,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": None,
                "val_acc": None,
                "val_top5": None,
            }
            judged = ema if ema is not None else model
            if final or epoch % eval_every == 0:
                row.update(_validate(judged, data, spec, eval_bs, device, cfg.precision))
                if ema is not None and final:  # the raw weights, for comparison
                    raw = _validate(model, data, spec, eval_bs, device, cfg.precision)
                    row["val_acc_model"] = raw["val_acc"]
            elapsed = time.perf_counter() - t_start
            row["epoch_seconds"] = time.perf_counter() - t0
            row["images_per_second"] = seen / max(train_s, 1e-9)
            row["elapsed_seconds"] = elapsed
            history.append(row)
            val_acc = row["val_acc"]
            summary = (
                f"loss {train_loss:.4f} acc {train_acc:.4f} "
                + (f"val {val_acc:.4f} " if val_acc is not None else "")
                + f"lr {lr:.2e} {row['images_per_second']:.0f} img/s"
            )
            outer.update(1)
            outer.set_postfix_str(summary)
            if not progress:
                log(f"epoch {epoch}/{cfg.epochs}: {summary}")

            improved = val_acc is not None and val_acc > best_acc
            best_acc = max(best_acc, val_acc) if val_acc is not None else best_acc
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "ema": ema.state_dict() if ema is not None else None,
                "epoch": epoch,
                "step": step,
                "elapsed": elapsed,
                "history": history,
                "best_val_acc": best_acc,
                "preset": preset_to_dict(preset),
                "classes": classes,
                "spec": dataclasses.asdict(spec),
                "rng": _rng_state(shuffle_gen, aug_gen),
            }
            if improved:
                from helpers.files import atomic_torch_save

                best = {k: state[k] for k in ("preset", "classes", "spec", "epoch", "history")}
                best.update(model=judged.state_dict(), ema=None, best_val_acc=best_acc)
                atomic_torch_save(best, out_dir / "best.pt")
            save_last_checkpoint(state, out_dir)
            _write_history(history, out_dir)
            epochs_run += 1
    except torch.cuda.OutOfMemoryError:
        oom = True  # handled below, outside the except block, so the traceback's tensors are freed
    except KeyboardInterrupt:
        log(f"interrupted; {out_dir / 'last.pt'} (epoch {epoch}) is kept: train again to resume.")
        raise
    finally:
        outer.close()
    if oom:
        del run, optimizer, model, ema, data
        _free_cuda()
        raise InputError(runtime.oom_message(cfg.batch_size))

    if stopped_early:
        log(f"time budget of {cfg.minutes} min reached after {epoch} epochs.")
    model.eval()
    return TrainResult(
        model=model,
        ema_model=ema,
        history=history,
        best_val_acc=max(best_acc, 0.0),
        out_dir=out_dir,
        spec=spec,
        classes=classes,
        stopped_early=stopped_early,
    )


__all__ = [
    "LoadedModel",
    "TrainResult",
    "ema_update",
    "load_checkpoint",
    "lr_at",
    "make_optimizer",
    "param_groups",
    "run_progress",
    "soft_cross_entropy",
    "train",
]
