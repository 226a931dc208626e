"""Training checkpoints: what they hold, how they are written safely and read back.

Two kinds, both written atomically (``helpers.files``):

- ``last.pt`` — everything a run needs to continue bit-for-bit: weights, optimizer, EMA, grad
  scaler, every RNG, the step plan and the position inside the current epoch. The previous one
  is kept as ``last.prev.pt``; an unreadable ``last.pt`` falls back to it, and the bad file is
  set aside (``last.corrupt.pt``) so no later save can rotate it over the good backup.
- ``best.pt`` — inference weights only (the EMA weights when EMA is on), with the preset, the
  classes and the epoch they come from.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.errors import InputError


@dataclass
class LoadedModel:
    model: Any  # in eval mode; EMA weights when the checkpoint has them
    spec: Any
    classes: list[str]
    preset: Any
    epoch: int
    history: list[dict]
    path: Path | None = None  # the file the weights came from (best.pt, or a fallback)


# ----------------------------------------------------------------------------- RNG state


def rng_state(shuffle_gen, aug_gen) -> dict:
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


def set_rng_state(state: dict, shuffle_gen, aug_gen) -> None:
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
    try:
        shuffle_gen.set_state(state["shuffle"].cpu())
        aug_gen.set_state(state["augment"].cpu())
    except RuntimeError:
        raise InputError(
            f"the checkpoint's random state is for another kind of device than "
            f"{shuffle_gen.device.type}; resume on the device it was trained on (GPU or CPU), "
            "or start over (--no-resume)."
        ) from None


# ----------------------------------------------------------------------------- reading


def read_checkpoint(path: Path) -> dict:
    """torch.load a checkpoint dict; any failure -> InputError naming the file."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"checkpoint {path} does not exist.") from None
    except Exception as e:
        raise InputError(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {str(e)[:200]}); it is probably "
            "corrupt or incomplete. Delete it, or train with resume=False (--no-resume on the "
            "command line)."
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "preset" not in ckpt:
        raise InputError(f"{path} is not a checkpoint written by helpers.classify.train.")
    return ckpt


def read_with_fallback(candidates: list[Path], log=print) -> tuple[dict, Path]:
    """The first readable checkpoint of ``candidates`` (and which one it was)."""
    existing = [p for p in candidates if p.exists()]
    if not existing:
        raise InputError(f"no checkpoint found at {candidates[0]}.")
    errors = []
    for p in existing:
        try:
            ckpt = read_checkpoint(p)
        except InputError as e:
            errors.append(str(e))
            continue
        if p != candidates[0]:
            log(f"{candidates[0].name} is missing or unreadable; using {p} instead.")
        return ckpt, p
    raise InputError(" ".join(errors))


def resume_candidates(out_dir: Path) -> list[Path]:
    return [out_dir / "last.pt", out_dir / "last.prev.pt"]


def read_resume_checkpoint(out_dir: Path, log=print) -> dict:
    """The checkpoint to resume from. When ``last.pt`` is unreadable and ``last.prev.pt`` is
    used instead, the bad file is renamed ``last.corrupt.pt``: the next save then cannot move
    it over the good backup."""
    ckpt, used = read_with_fallback(resume_candidates(out_dir), log=log)
    last = out_dir / "last.pt"
    if used != last and last.exists():
        os.replace(last, out_dir / "last.corrupt.pt")
        log(f"moved the unreadable {last.name} aside to last.corrupt.pt.")
    return ckpt


# ----------------------------------------------------------------------------- writing


def save_last(state: dict, out_dir: Path) -> tuple[Path, int]:
    """Write the new ``last.pt``; only once it is complete does the current one become
    ``last.prev.pt`` (a full disk leaves both old files as they were).

    Inside an open :func:`helpers.files.output_set` of ``out_dir`` the new file is staged
    and the rotation is left to the set's owner (:meth:`Saver.save`). Returns the path and
    the number of bytes written."""
    import torch

    from helpers.files import atomic_path, output_path

    last = out_dir / "last.pt"
    target = output_path(last)
    with atomic_path(target) as tmp:
        torch.save(state, tmp)
        if target == last and last.exists():  # no output set: rotate now
            os.replace(last, out_dir / "last.prev.pt")
    return last, target.stat().st_size


def save_best(weights: dict, meta: dict, out_dir: Path) -> tuple[Path, int]:
    """``best.pt``: inference weights plus ``meta`` (preset, classes, spec, epoch, accuracy)."""
    from helpers.files import atomic_torch_save, output_path

    target = output_path(out_dir / "best.pt")  # staged inside an output set
    atomic_torch_save({**meta, "model": weights, "ema": None}, target)
    return out_dir / "best.pt", target.stat().st_size


def write_history(history: list[dict], out_dir: Path) -> None:
    """``history.json`` and ``history.csv``: one row per epoch."""
    from helpers.files import atomic_write_json, atomic_write_text, output_path

    atomic_write_json(output_path(out_dir / "history.json"), history)
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(output_path(out_dir / "history.csv"), buf.getvalue())


# ----------------------------------------------------------------------------- loading a model


def load_checkpoint(path: str | os.PathLike, device="cpu", log=print) -> LoadedModel:
    """Rebuild the model from a checkpoint file (or a run folder: ``best.pt``, else ``last.pt``).

    Uses the EMA weights when the checkpoint has them. If ``last.pt`` is unreadable it falls
    back to ``last.prev.pt``; if nothing readable is left -> InputError naming the file.
    """
    import torch

    from helpers.classify.models import InputSpec, build_model
    from helpers.classify.presets import preset_from_dict
    from helpers.files import probing

    path = Path(path)
    with probing("checkpoint", path):
        is_dir = path.is_dir()
    if is_dir:
        candidates = [path / "best.pt", *resume_candidates(path)]
    elif path.name == "last.pt":
        candidates = [path, path.with_name("last.prev.pt")]
    else:
        candidates = [path]
    if not any(p.exists() for p in candidates):
        raise InputError(
            f"no checkpoint at {path}; give a .pt file written by training or its folder."
        )
    ckpt, used = read_with_fallback(candidates, log=log)
    preset = preset_from_dict(ckpt["preset"])
    classes = list(ckpt["classes"])
    model, _ = build_model(preset, len(classes), pretrained=False)
    weights = ckpt.get("ema") or ckpt["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise InputError(
            f"checkpoint {path} does not match its own model config ({_mismatch_summary(e)}); "
            "it was edited or written by another version: train it again."
        ) from None
    model.to(torch.device(device)).eval()
    return LoadedModel(
        model=model,
        spec=InputSpec(**ckpt["spec"]),
        classes=classes,
        preset=preset,
        epoch=int(ckpt.get("epoch", 0)),
        history=list(ckpt.get("history", [])),
        path=used,
    )


def _mismatch_summary(e: RuntimeError) -> str:
    """One line from ``load_state_dict``'s many-line error: counts and the first key of each
    kind (missing, unexpected, wrong shape)."""
    import re

    text = str(e)
    parts = []
    for kind, label in (("Missing key(s)", "missing"), ("Unexpected key(s)", "unexpected")):
        m = re.search(rf"{re.escape(kind)} in state_dict: (.*?)\.\s*(?:\n|$)", text)
        if m:
            keys = re.findall(r'"([^"]+)"', m.group(1))
            if keys:
                parts.append(f"{len(keys)} {label} weight(s), e.g. {keys[0]}")
    shapes = re.findall(
        r"size mismatch for ([^:]+): copying a param with shape (.*?) from "
        r"checkpoint, the shape in current model is (.*?)\.",
        text,
    )
    if shapes:
        name, old, new = shapes[0]
        parts.append(f"{len(shapes)} weight(s) of another shape, e.g. {name} {old} vs {new}")
    return "; ".join(parts) or " ".join(text.split())[:200]


# ----------------------------------------------------------------------------- one writer a folder

LOCK_NAME = ".lock"


def _try_flock(fd: int) -> bool | None:
    """Take an exclusive lock on ``fd`` without waiting: True, False (another process holds
    it), or None where the file system keeps no locks (then the pid in the file decides)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK, EOPNOTSUPP, ...: no locks here
        return None
    return True


def _lock_holder(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 64, 0).decode("ascii", "replace").split()
        return int(text[0]) if text else None
    return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextlib.contextmanager
def folder_lock(folder: Path, command: str = "train"):
    """While inside, this process alone writes ``folder``: a lock file (``.lock``, holding the
    pid) is taken, ``flock``-ed where the file system allows it (the kernel lets go when the
    process dies). A folder held by another live process -> InputError naming it; the lock of
    a process that died is taken over. The lock file is removed when leaving."""
    from helpers.files import _pid_alive

    path = Path(folder) / LOCK_NAME
    me = os.getpid()
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        got, holder = _try_flock(fd), _lock_holder(fd)
        busy = got is False or (got is None and holder not in (None, me) and _pid_alive(holder))
        if busy:
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise InputError(
                f"{folder} is in use: another {command} ({who}) is writing to it; wait for "
                f"it to finish or stop it, or use another out_dir (--out)."
            )
        if got and not _same_file(fd, path):  # its holder removed it meanwhile: again
            os.close(fd)
            continue
        break
    else:  # pragma: no cover - only if the file keeps disappearing
        raise InputError(f"{folder}: could not take its lock file {path}; try again.")
    with contextlib.suppress(OSError):  # without the pid the lock still holds
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{me}\n".encode("ascii"), 0)
    try:
        yield path
    finally:
        if _same_file(fd, path):
            with contextlib.suppress(OSError):
                path.unlink()
        os.close(fd)


# ----------------------------------------------------------------------------- in a run


# what a run leaves in its folder: set aside together when a new run starts there
RUN_OUTPUTS = (
    "last.pt", "last.prev.pt", "last.corrupt.pt", "best.pt", "history.json", "history.csv",
    "test.json", "variant.json", "eval",
)  # fmt: skip


# what a new checkpoint makes stale: removed when a save commits (see :meth:`Saver.save`)
SUPERSEDED_BY_A_SAVE = ("test.json", "variant.json")


def _previous_run_name(n: int) -> str:
    return "previous_run" if n == 1 else f"previous_run-{n}"


def next_previous_run(out_dir: Path) -> Path:
    """The folder :func:`set_aside_previous_run` would move an earlier run to now."""
    return next(
        out_dir / _previous_run_name(n)
        for n in itertools.count(1)
        if not os.path.lexists(out_dir / _previous_run_name(n))
    )


def set_aside_previous_run(out_dir: Path) -> Path | None:
    """Move an earlier run's outputs (:data:`RUN_OUTPUTS`) into a new folder
    ``previous_run`` (``previous_run-2``, ``-3``, ... when that exists): a restart never
    overwrites an earlier one, and nothing of the old run stays beside the new weights.
    Returns that folder, or None when there was nothing to move."""
    present = [name for name in RUN_OUTPUTS if os.path.lexists(out_dir / name)]
    if not present:
        return None
    for n in itertools.count(1):
        old = out_dir / _previous_run_name(n)
        try:
            old.mkdir()  # claims the name: two starts at once cannot pick the same one
            break
        except FileExistsError:
            continue
    for name in present:
        os.replace(out_dir / name, old / name)
    return old


# what a resumed run may change: these do not change what it learns
RESULT_NEUTRAL = ("name", "description", "source", "checkpoint_minutes", "compile")
START_OVER = (
    "start over with resume=False (--no-resume on the command line, START_FRESH in the "
    "notebook), which keeps the earlier run in {old}, or use another out_dir (--out)"
)


def _plain(v):
    """Tuples as lists (a checkpoint read back may hold either)."""
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _leaves(preset_dict: dict) -> dict:
    """A preset dict's settings by their own names (``lr``, ``dim``, ``mixup_alpha``, ...)."""
    out = {}
    for key, value in preset_dict.items():
        if key in ("train", "aug", "model") and isinstance(value, dict):
            out.update(value)
        else:
            out[key] = value
    return out


def setting_differences(saved: dict, current: dict) -> dict[str, tuple]:
    """``{setting: (the run's, now)}`` for every setting of two preset dicts
    (:func:`helpers.classify.presets.preset_to_dict`) that differs and changes what a run
    learns (:data:`RESULT_NEUTRAL` do not)."""
    a, b = _leaves(saved), _leaves(current)
    return {
        k: (a.get(k), b.get(k))
        for k in [*a, *(k for k in b if k not in a)]
        if k not in RESULT_NEUTRAL and _plain(a.get(k)) != _plain(b.get(k))
    }


def _same_plan_with_budget(ckpt: dict, cfg) -> bool:
    """Whether the run's step plan is the one a fresh run with ``cfg``'s budget would make:
    it was capped by the epochs (the budget never bound it), never re-planned, the new budget
    is larger, and the new budget validates the same epochs."""
    from dataclasses import replace

    from helpers.classify.schedule import StepPlan, validates

    saved = ckpt.get("plan")
    old = ckpt["preset"]["train"].get("minutes")
    if saved is None or old is None or cfg.minutes is None or cfg.minutes <= old:
        return False
    plan = StepPlan.from_dict(saved)
    if plan.replans or plan.first_total != cfg.epochs * plan.steps_per_epoch:
        return False
    longer = replace(plan, budget_seconds=cfg.minutes * 60)
    return all(validates(e, plan) == validates(e, longer) for e in range(1, plan.epochs + 1))


def _value(v) -> str:
    """A setting's value in a message: ``0.003``, ``cosine``, a long one cut short."""
    text = f"{v:g}" if isinstance(v, float) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def resume_point(
    out_dir: Path,
    preset,
    classes,
    resume: bool,
    log,
    steps_per_epoch: int | None = None,
    world: int = 1,
) -> dict | None:
    """The checkpoint to continue from, or None. It must have been written by as many training
    processes as ``world``. A run folder belongs to the settings that made it: resuming with settings that would give another result (another model, learning
    rate, augmentation, seed, budget, epoch length, classes ...) -> InputError naming them and
    the two ways on. A larger ``minutes`` alone resumes when the run's step plan is exactly
    what the new budget would plan (see :func:`_same_plan_with_budget`)."""
    from helpers.classify.presets import preset_to_dict

    found = any(p.exists() for p in resume_candidates(out_dir))
    if not resume:
        old = set_aside_previous_run(out_dir)
        if old is not None:
            log(f"resume=False: moved the earlier run's checkpoints and results to {old}.")
    if not (found and resume):
        return None
    ckpt = read_resume_checkpoint(out_dir, log=log)
    if int(ckpt.get("world_size", 1)) != world:
        raise InputError(
            f"{out_dir}/last.pt was written by {ckpt.get('world_size', 1)} training "
            f"process(es), this run has {world}; resume with the same number, or start "
            "over with --no-resume."
        )
    old = next_previous_run(out_dir)
    if list(ckpt["classes"]) != classes:
        raise InputError(
            f"{out_dir} was trained on {len(ckpt['classes'])} classes {list(ckpt['classes'])[:10]} "
            f"but the data has {len(classes)} {classes[:10]}; {START_OVER.format(old=old)}."
        )
    diffs = setting_differences(ckpt["preset"], preset_to_dict(preset))
    if set(diffs) == {"minutes"} and _same_plan_with_budget(ckpt, preset.train):
        log(
            f"a larger budget ({diffs['minutes'][1]:g} min, was {diffs['minutes'][0]:g}) "
            "plans the same steps: resuming."
        )
        diffs = {}
    said = [f"{k}={_value(new)} (the run has {_value(was)})" for k, (was, new) in diffs.items()]
    if len(said) > 6:
        said = [*said[:6], f"{len(said) - 6} more"]
    saved_steps = (ckpt.get("plan") or {}).get("steps_per_epoch")
    if steps_per_epoch is not None and saved_steps is not None and saved_steps != steps_per_epoch:
        said.append(
            f"epochs of {steps_per_epoch} steps (the run has {saved_steps}: "
            "max_steps_per_epoch or the training set differs)"
        )
    if said:
        raise InputError(
            f"{out_dir} holds a run made with other settings: {', '.join(said)}; resuming it "
            f"would not give what these settings give. S{START_OVER.format(old=old)[1:]}."
        )
    return ckpt


def diverged_error(run, out_dir: Path, what: str = "the training loss is") -> InputError:
    """The message when a run's loss or weights stop being finite numbers: where, the likely
    cause, what was kept and what to change."""
    saved = (out_dir / "last.pt").exists()
    kept = (
        f"The checkpoints written before are kept in {out_dir} (they hold finite weights); lower "
        "the learning rate (lr, --lr on the command line) and train again with resume=False "
        "(--no-resume on the command line)."
        if saved
        else "Nothing was saved yet; lower the learning rate (lr, --lr on the command line) and "
        "train again."
    )
    return InputError(
        f"training stopped at step {run.step}: {what} no longer a finite number (NaN or inf); "
        f"the learning rate {run.cfg.lr:g} is probably too high. {kept}"
    )


def weights_finite(model) -> bool:
    """Every parameter and buffer of ``model`` is finite (one host sync)."""
    import torch

    checks = [torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack(checks).all()) if checks else True


def saved_best(out_dir: Path, epoch: int, device) -> dict | None:
    """The weights in ``best.pt`` if they are those of ``epoch`` (else None)."""
    from helpers.classify.checkpoint import read_checkpoint

    path = out_dir / "best.pt"
    try:
        best = read_checkpoint(path) if path.exists() else None
    except InputError:
        return None
    if best is None or int(best.get("epoch", -1)) != epoch:
        return None
    return {k: v.to(device) for k, v in best["model"].items()}


class Saver:
    """Writes ``last.pt`` at most every ``checkpoint_minutes`` (or when forced), flushes the
    in-memory best weights to ``best.pt``, and keeps account of the time and bytes it costs."""

    def __init__(self, out_dir: Path, preset, classes, every_s: float, clock):
        self.out_dir, self.preset, self.classes = out_dir, preset, classes
        self.every_s, self.clock = every_s, clock
        self.last_save = clock()
        self.seconds, self.bytes, self.writes = 0.0, 0, 0

    def meta(self, run) -> dict:
        from helpers.classify.presets import preset_to_dict

        return {
            "preset": preset_to_dict(self.preset),
            "classes": self.classes,
            "spec": dataclasses.asdict(run.spec),
        }

    def due(self) -> bool:
        return self.clock() - self.last_save >= self.every_s

    def save(
        self, run, plan, force: bool = False, rng_ranks: list | None = None, partial_ranks=None
    ) -> bool:
        """Write now if forced or due; ``run`` is a :class:`helpers.classify.step.RunState`.
        ``rng_ranks`` / ``partial_ranks``: every process's RNG state and sums of an unfinished
        epoch when several train together."""
        if not force and not self.due():
            return False
        if not weights_finite(run.model):  # never write diverged weights over good ones
            raise diverged_error(run, self.out_dir, "the model's weights are")
        t0 = time.perf_counter()
        wrote_best = self._write(run, plan, rng_ranks, partial_ranks)
        run.best_saved = run.best_saved or wrote_best
        self.seconds += time.perf_counter() - t0
        self.writes += 1
        self.last_save = self.clock()
        return True

    def _write(self, run, plan, rng_ranks, partial_ranks) -> bool:
        """``best.pt`` (when it changed), ``last.pt``, ``history.json`` and ``history.csv`` as
        one unit (:func:`helpers.files.output_set`): each is staged, and only once all are
        written does the current ``last.pt`` become ``last.prev.pt`` and the new files take
        their places, ``last.pt`` last. A failure at any of them leaves the folder as it was.
        Inside a set already open for the folder (the run's last save, which waits for the
        test score) the save joins it and commits with it. A ``test.json`` or ``variant.json``
        of earlier weights is removed with the commit. Returns whether ``best.pt`` was
        written."""
        from helpers.files import output_set

        out = self.out_dir
        with output_set(out, members=SUPERSEDED_BY_A_SAVE, last=["last.pt"]) as unit:
            wrote_best = run.best_weights is not None and not run.best_saved
            if wrote_best:
                meta = {**self.meta(run), "epoch": run.best_epoch, "best_val_acc": run.best_acc}
                self.bytes += save_best(run.best_weights, meta, out)[1]
            state = {
                **self.meta(run),
                "model": run.model.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scaler": run.scaler.state_dict() if run.scaler is not None else None,
                "ema": run.ema.state_dict() if run.ema is not None else None,
                "epoch": run.epoch,
                "step": run.step,
                "elapsed": run.elapsed,
                "history": run.history,
                "best_val_acc": run.best_acc,
                "best_epoch": run.best_epoch,
                "plan": plan.to_dict(),
                "rng": rng_state(run.shuffle_gen, run.aug_gen),
                "rng_ranks": rng_ranks,
                "world_size": len(rng_ranks) if rng_ranks else 1,
                "epoch_shuffle": run.epoch_shuffle,
                "partial": run.partial,
                "partial_ranks": partial_ranks,
            }
            self.bytes += save_last(state, out)[1]
            write_history(run.history, out)
            if self._rotate not in unit.before_commit:  # at the commit: not if it is discarded
                unit.before_commit.append(self._rotate)
        return wrote_best

    def _rotate(self) -> None:
        """The current ``last.pt`` becomes ``last.prev.pt`` (just before the new one commits)."""
        if (self.out_dir / "last.pt").exists():
            os.replace(self.out_dir / "last.pt", self.out_dir / "last.prev.pt")


__all__ = [
    "LOCK_NAME",
    "LoadedModel",
    "Saver",
    "folder_lock",
    "diverged_error",
    "resume_point",
    "saved_best",
    "setting_differences",
    "set_aside_previous_run",
    "load_checkpoint",
    "read_checkpoint",
    "read_resume_checkpoint",
    "read_with_fallback",
    "resume_candidates",
    "rng_state",
    "save_best",
    "save_last",
    "set_rng_state",
    "weights_finite",
    "write_history",
]
