"""Q1 commands: ``train``, ``evaluate`` and ``predict`` a ViT on CIFAR-10 (or any ImageFolder).

    python -m helpers train --preset fast --data cifar10 --minutes 5 --out runs/fast
    python -m helpers evaluate --checkpoint runs/fast --data cifar10 --split test
    python -m helpers predict --checkpoint runs/fast --image cat.jpg

Progress goes to stderr; the final result is one JSON line on stdout (see helpers/cli.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helpers.errors import InputError

# Tiny-model settings for ``--smoke`` (CI / quick checks on a CPU).
SMOKE_MODEL = {"dim": 32, "depth": 2, "heads": 2}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _quiet(msg: str) -> None:
    pass


def register(sub) -> None:
    """Add ``train``, ``evaluate`` and ``predict`` to the argparse sub-parsers ``sub``."""
    from helpers.classify.presets import preset_names

    # ------------------------------------------------------------------ train
    p = sub.add_parser(
        "train",
        help="train a ViT preset (resumes from --out/last.pt)",
        description="Train a ViT preset; checkpoints, history and metrics go to --out.",
    )
    p.add_argument("--preset", default="fast", choices=preset_names(), help="recipe (default fast)")
    p.add_argument(
        "--data",
        default="cifar10",
        help="cifar10 | synthetic | digits | an ImageFolder path (train/ + val/ and/or test/); "
        "default cifar10 (45k train, 5k val held out of train, 10k test scored at the end)",
    )
    p.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    p.add_argument(
        "--minutes",
        type=float,
        help="wall-time budget in minutes (compile and a step-rate measurement happen before "
        "the clock starts; the schedule is fitted to the steps that fit)",
    )
    p.add_argument("--warmup-fraction", type=float, help="warm-up as a fraction of the run's steps")
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        help="write the full last.pt at most this often (default 3; 0 = every epoch); always "
        "at the end and on Ctrl-C",
    )
    p.add_argument(
        "--patience",
        type=int,
        help="stop early after this many epochs without a better val accuracy",
    )
    p.add_argument(
        "--batch-size", type=int, help="global batch size (split among torchrun processes)"
    )
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--patch-size", type=int, help="ViT patch size (from-scratch presets)")
    p.add_argument(
        "--image-size",
        type=int,
        help="resize every image of a folder dataset to this square size (needed when its "
        "images differ in size)",
    )
    p.add_argument("--out", help="run folder (default runs/q1_<preset>)")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out has last.pt")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the model (default: the preset's, on CUDA only)",
    )
    p.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], help="autocast dtype")
    p.add_argument("--max-steps-per-epoch", type=int, help="cut epochs short (quick checks)")
    p.add_argument("--device", help="cuda | cpu | mps (default: best available)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fine-tune presets: start from pretrained weights (needs internet)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="quick check: synthetic data, a tiny model, 1 epoch of 2 steps",
    )
    p.add_argument(
        "--dim", type=int, help="ViT width (from-scratch presets; default: the preset's)"
    )
    p.add_argument("--depth", type=int, help="number of ViT blocks (default: the preset's)")
    p.add_argument("--heads", type=int, help="attention heads; must divide --dim")
    p.set_defaults(func=_in_cli_terms(cmd_train))

    # ------------------------------------------------------------------ evaluate
    p = sub.add_parser(
        "evaluate",
        help="metrics, report and plots of a checkpoint on the test (or val) split",
        description="Evaluate a checkpoint: top-1/top-5, per-class report, confusion matrix, plots.",
    )
    p.add_argument("--checkpoint", required=True, help="a .pt file or a run folder (uses best.pt)")
    p.add_argument("--data", default="cifar10", help="cifar10 | synthetic | digits | a path")
    p.add_argument(
        "--split",
        choices=["val", "test"],
        help="which split to score (default: test if the data has one, else val)",
    )
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="average predictions with the horizontal flip (default on)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        help="resize every image of a folder dataset to this square size (needed when its "
        "images differ in size)",
    )
    p.add_argument(
        "--out",
        help="output folder (default <checkpoint folder>/eval/<data>-<split>; a folder dataset "
        "adds a hash of its path, a checkpoint other than best.pt its name)",
    )
    p.add_argument("--batch-size", type=int, default=512, help="evaluation batch size")
    p.add_argument("--device", help="cuda | cpu | mps (default: best available)")
    p.set_defaults(func=_in_cli_terms(cmd_evaluate))

    # ------------------------------------------------------------------ predict
    p = sub.add_parser(
        "predict",
        help="top-5 classes of one image",
        description="Classify one image (any size; resized to the model's input).",
    )
    p.add_argument("--checkpoint", required=True, help="a .pt file or a run folder (uses best.pt)")
    p.add_argument(
        "--image", required=True, help="image file (jpg, png, ...) or an http(s) URL of one"
    )
    p.add_argument("--top-k", type=int, default=5, help="how many classes to list (default 5)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True, help="flip TTA")
    p.add_argument("--device", help="cuda | cpu | mps (default: best available)")
    p.set_defaults(func=_in_cli_terms(cmd_predict))


# ---------------------------------------------------------------------------- shared pieces


def _in_cli_terms(command):
    """``command`` with library wording in its InputError messages turned into flags."""
    import functools

    @functools.wraps(command)
    def run(args):
        try:
            return command(args)
        except InputError as e:
            raise InputError(cli_wording(str(e))) from None

    return run


def build_train_preset(args, image_size: int | None = None):
    """The preset ``args`` describe: named preset + command-line overrides (+ data image size)."""
    from helpers.classify.presets import get_preset

    overrides = {
        "epochs": args.epochs,
        "minutes": args.minutes,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "patch_size": args.patch_size,
        "compile": args.compile,
        "precision": args.precision,
        "seed": args.seed,
        "warmup_fraction": getattr(args, "warmup_fraction", None),
        "checkpoint_minutes": getattr(args, "checkpoint_minutes", None),
        "patience": getattr(args, "patience", None),
        "dim": args.dim,
        "depth": args.depth,
        "heads": args.heads,
    }
    preset = get_preset(args.preset)
    model_keys = ("patch_size", "dim", "depth", "heads")
    if preset.finetune:
        given = [k for k in model_keys if overrides[k] is not None]
        if given:
            raise InputError(
                f"preset {args.preset!r} fine-tunes a pretrained timm model; "
                f"--{given[0].replace('_', '-')} only applies to from-scratch presets "
                "(seed000, seed001, seed003, fast, best)."
            )
    elif image_size is not None and image_size != preset.model.image_size:
        overrides["image_size"] = image_size
    return get_preset(args.preset, **overrides)


# (flag, attribute, lowest allowed, lowest included, highest allowed (excluded) or None)
_NUMBER_RULES = {
    "train": [
        ("--epochs", "epochs", 1, True, None),
        ("--minutes", "minutes", 0, False, None),
        ("--warmup-fraction", "warmup_fraction", 0, True, 1),
        ("--checkpoint-minutes", "checkpoint_minutes", 0, True, None),
        ("--patience", "patience", 1, True, None),
        ("--batch-size", "batch_size", 1, True, None),
        ("--lr", "lr", 0, False, None),
        ("--patch-size", "patch_size", 1, True, None),
        ("--image-size", "image_size", 8, True, None),
        ("--max-steps-per-epoch", "max_steps_per_epoch", 1, True, None),
        ("--dim", "dim", 1, True, None),
        ("--depth", "depth", 1, True, None),
        ("--heads", "heads", 1, True, None),
    ],
    "evaluate": [
        ("--batch-size", "batch_size", 1, True, None),
        ("--image-size", "image_size", 8, True, None),
    ],
    "predict": [("--top-k", "top_k", 1, True, None)],
}


def check_numbers(args, command: str) -> None:
    """Every numeric option of ``command`` is finite and in range, or InputError naming the
    flag — checked before anything is loaded or created."""
    import math

    for flag, attr, low, low_ok, high in _NUMBER_RULES[command]:
        v = getattr(args, attr, None)
        if v is None:
            continue
        if not math.isfinite(v):
            raise InputError(f"{flag} must be a finite number, got {v}.")
        too_low = v < low if low_ok else v <= low
        if too_low or (high is not None and v >= high):
            want = f"{'>=' if low_ok else '>'} {low}" + (f" and < {high}" if high else "")
            raise InputError(f"{flag} must be {want}, got {v}.")


def load_data(
    spec: str,
    what: str = "--data",
    splits: tuple[str, ...] | None = None,
    image_size: int | None = None,
):
    """``helpers.classify.data.load_dataset`` with a message naming the command-line options; for a
    folder, ``splits`` limits what is decoded and ``image_size`` resizes every image."""
    from helpers.classify.data import load_dataset
    from helpers.files import PathError

    builtin = spec.strip().lower() in ("cifar10", "synthetic", "digits")
    kw = {"splits": splits} if splits and not builtin else {}
    if image_size is not None:
        if spec.strip().lower() in ("cifar10", "synthetic"):
            raise InputError(
                f"--image-size applies to folder datasets (and digits), not {spec!r}; leave it out."
            )
        kw["image_size"] = image_size
    try:
        return load_dataset(spec, **kw)
    except PathError as e:  # a path that cannot even be looked at
        raise PathError(what, e.path, e.reason) from None
    except InputError as e:
        raise InputError(f"{what} {spec!r}: {e}") from None


def default_split(spec: str) -> str:
    """``test`` when the data has a test split (cifar10, a folder with test/), else ``val``."""
    name = spec.strip().lower()
    if name == "cifar10":
        return "test"
    if name in ("synthetic", "digits"):
        return "val"
    from helpers.files import probing

    with probing("--data", spec):
        return "test" if (Path(spec).expanduser() / "test").is_dir() else "val"


def summarize_history(history: list[dict]) -> dict:
    """Best/final accuracies, epochs, minutes and mean throughput of a training history."""
    if not history:
        return {"epochs": 0}
    from helpers.classify.train import mean_images_per_second

    last = history[-1]
    return {
        # budgeted runs validate some epochs only: their other rows hold val_acc None
        "best_val_acc": max(
            (r["val_acc"] for r in history if r.get("val_acc") is not None), default=None
        ),
        "final_val_acc": last.get("val_acc"),
        "final_val_top5": last.get("val_top5"),
        "final_train_loss": last.get("train_loss"),
        "epochs": int(last.get("epoch", len(history))),
        "minutes": float(last.get("elapsed_seconds", 0.0)) / 60.0,
        # all images over all training seconds (each epoch weighted by its images)
        "images_per_second": mean_images_per_second(history),
    }


def pick_device(name: str | None):
    """``runtime.pick_device`` with a one-line message naming ``--device`` for a misspelled or
    unavailable device."""
    from helpers.runtime import available_devices
    from helpers.runtime import pick_device as pick

    try:
        return pick(name)
    except InputError as e:
        msg = str(e)
        raise InputError("--" + msg if msg.startswith("device ") else f"--device: {msg}") from None
    except RuntimeError:
        raise InputError(
            f"--device {name!r} is not a device here; use one of: {', '.join(available_devices())}."
        ) from None


# library setting names -> the train command's flags (settings without a flag keep their name)
SETTING_FLAGS = {
    "epochs": "--epochs",
    "minutes": "--minutes",
    "warmup_fraction": "--warmup-fraction",
    "checkpoint_minutes": "--checkpoint-minutes",
    "patience": "--patience",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "patch_size": "--patch-size",
    "image_size": "--image-size",
    "precision": "--precision",
    "seed": "--seed",
    "dim": "--dim",
    "depth": "--depth",
    "heads": "--heads",
    "max_steps_per_epoch": "--max-steps-per-epoch",
}


def cli_wording(message: str) -> str:
    """A library message in command-line terms (``resume=False`` -> ``--no-resume``,
    ``batch_size`` -> ``--batch-size``, ``lr=0.003`` -> ``--lr 0.003``, ...)."""
    import re

    for lib, cli in (
        (
            "resume=False (--no-resume on the command line, START_FRESH in the notebook)",
            "--no-resume",
        ),
        ("resume=False (--no-resume on the command line)", "--no-resume"),
        ("resume=False", "--no-resume"),
        ("another out_dir (--out)", "another --out"),
        ("another out_dir", "another --out"),
        ("image_size=N (--image-size N on the command line)", "--image-size N"),
        ("image_size=N", "--image-size N"),
        ("pretrained=False (--no-pretrained on the command line)", "--no-pretrained"),
        ("(lr, --lr on the command line)", "(--lr)"),
    ):
        message = message.replace(lib, cli)
    for name, flag in SETTING_FLAGS.items():
        # "lr=0.003" -> "--lr 0.003"; a name with an underscore is a setting wherever it stands
        message = re.sub(rf"(?<![\w-]){name}=", f"{flag} ", message)
        if "_" in name:
            message = re.sub(rf"(?<![\w-]){name}\b", flag, message)
    return message


def check_checkpoint_arg(path: str) -> None:
    """``--checkpoint`` names an existing file or folder (the loader says if it is unreadable)."""
    if not str(path).strip():
        raise InputError("--checkpoint is empty; give best.pt/last.pt or the run folder.")
    from helpers.files import probing

    with probing("--checkpoint", path):
        found = Path(path).exists()
    if not found:
        raise InputError(
            f"--checkpoint {path} does not exist; give best.pt/last.pt or the run folder."
        )


def checkpoint_folder(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_dir() else p.parent


def _run_history(checkpoint: str | Path) -> list[dict]:
    """The whole run's history (``history.json`` next to the checkpoint); best.pt itself only
    holds the epochs up to the best one. Empty when there is none or it is unreadable."""
    path = checkpoint_folder(checkpoint) / "history.json"
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return history if isinstance(history, list) else []


# ---------------------------------------------------------------------------- train


def cmd_train(args) -> dict | None:
    import os
    import time

    t_command = time.perf_counter()  # the whole command: data, compile, training, scoring

    from helpers.classify.train import mean_epoch_seconds, peak_memory_mb, train
    from helpers.classify.vit import count_parameters
    from helpers.files import check_output_dir, write_error_reason

    secondary = int(os.environ.get("RANK", "0") or 0) > 0  # under torchrun: rank 0 speaks
    log = _quiet if secondary else _log

    if args.smoke:
        if args.data == "cifar10":
            args.data = "synthetic"
        from helpers.classify.presets import get_preset

        if not get_preset(args.preset).finetune:
            for k, v in SMOKE_MODEL.items():
                if getattr(args, k) is None:
                    setattr(args, k, v)
        # only settings left out get the smoke values: 0 or a negative count is refused below
        for k, v in {"epochs": 1, "batch_size": 64, "max_steps_per_epoch": 2}.items():
            if getattr(args, k) is None:
                setattr(args, k, v)
        args.pretrained = False
        if args.compile is None:
            args.compile = False
    # every setting and the output folder are checked before data is loaded or anything created
    check_numbers(args, "train")
    device = pick_device(args.device)
    first = build_train_preset(args)
    if args.out:
        out_dir = check_output_dir(args.out, "--out")
    else:  # ./runs/q1_<preset>, or Google Drive inside Colab so a disconnect loses nothing
        from helpers.runtime import output_dir

        out_dir = check_output_dir(output_dir(f"q1_{first.name}", create=False), "the run folder")
    log(f"loading data: {args.data}")
    t_data = time.perf_counter()
    data = load_data(args.data, image_size=args.image_size)
    data_seconds = time.perf_counter() - t_data
    preset = build_train_preset(args, image_size=data.image_size)
    if args.compile is None and device.type != "cuda":
        preset.train.compile = False  # compiling pays off only on a GPU
    log(
        f"training preset {preset.name!r} on {data!r} -> {out_dir} "
        f"({'resume' if not args.no_resume else 'fresh start'})"
    )
    try:
        result = train(
            preset,
            data,
            out_dir,
            resume=not args.no_resume,
            device=device,
            pretrained=args.pretrained,
            progress=True,
            max_steps_per_epoch=args.max_steps_per_epoch,
            # its warnings say what to change: in flags here (image_size -> --image-size)
            log=lambda m: log(cli_wording(m) if m.startswith("warning: ") else m),
        )
    except OSError as e:  # disk full, read-only, Drive gone...: say so; what was saved stays
        reason = write_error_reason(e)
        if reason is None:
            raise
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        raise InputError(
            f"training stopped: could not write to {out_dir}{where}: {reason}. The checkpoints "
            "written before are kept; fix that and run the same command again to resume."
        ) from None
    summary = summarize_history(result.history)
    best = result.out_dir / "best.pt"
    test = result.test or {}
    if secondary:
        return None
    return {
        "command": "train",
        "preset": preset.name,
        "data": data.source,
        **summary,
        "best_val_acc": result.best_val_acc,
        "test_acc": test.get("acc"),
        "test_top5": test.get("top5"),  # None with fewer than 6 classes (top-5 would be 100 %)
        "test_acc_flip_tta": test.get("acc_flip_tta"),
        "planned_steps": result.plan.total_steps,
        "first_planned_steps": result.plan.first_total,
        "replans": len(result.plan.replans),
        "budget_seconds": result.plan.budget_seconds,
        "command_seconds": time.perf_counter() - t_command,
        "data_seconds": data_seconds,
        **{k: result.timing.get(k) for k in ("setup_seconds", "training_seconds")},
        "scoring_seconds": result.timing.get("scoring_seconds"),  # the test split, once
        "validation_seconds": result.validation_seconds,
        "validation_share": result.validation_share,
        "steps": result.history[-1]["step"] if result.history else 0,
        "checkpoint_seconds": result.checkpoint_seconds,
        "stopped_early": result.stopped_early,
        "stop_reason": result.stop_reason,
        "trainable_parameters": result.trainable_parameters,
        "peak_memory_mb": peak_memory_mb(result.history),  # None: no GPU memory (a CPU)
        "seconds_per_epoch": mean_epoch_seconds(result.history),
        "parameters": count_parameters(result.model),
        "out_dir": str(result.out_dir),
        "checkpoint": str(best if best.exists() else result.out_dir / "last.pt"),
    }


# ---------------------------------------------------------------------------- evaluate


def cmd_evaluate(args) -> dict:
    from helpers.classify.checkpoint import folder_lock
    from helpers.classify.metrics import EVAL_FILES
    from helpers.classify.train import load_checkpoint
    from helpers.files import check_output_dir, output_set

    check_numbers(args, "evaluate")
    device = pick_device(args.device)
    check_checkpoint_arg(args.checkpoint)
    if args.out:  # outputs are checked before anything is loaded or computed
        check_output_dir(args.out, "--out")
    else:
        check_output_dir(checkpoint_folder(args.checkpoint) / "eval", "the checkpoint folder")
    loaded = load_checkpoint(args.checkpoint, device=device, log=_log)
    split = args.split or default_split(args.data)
    data = load_data(args.data, splits=(split,), image_size=args.image_size)
    x, y = data.split(split)
    if len(data.classes) != len(loaded.classes):
        raise InputError(
            f"the checkpoint predicts {len(loaded.classes)} classes {loaded.classes[:10]} but "
            f"--data {args.data!r} has {len(data.classes)}; evaluate on the dataset it was "
            "trained on."
        )
    if list(data.classes) != list(loaded.classes):
        _log("note: class names differ from the checkpoint's; assuming the same order.")
    out = (
        Path(args.out)
        if args.out
        else checkpoint_folder(args.checkpoint) / "eval" / eval_folder_name(data, split, loaded)
    )
    check_output_dir(out, "--out" if args.out else "the evaluation folder")
    _log(
        f"evaluating {args.checkpoint} on the {split} split of {data.source} ({len(y)} images, "
        f"flip TTA {'on' if args.tta else 'off'})"
    )
    out.mkdir(parents=True, exist_ok=True)
    # one evaluation at a time in a folder, and its files one unit: a failure at any of them
    # leaves the folder's earlier evaluation whole (or nothing new), metrics.json last
    with (
        folder_lock(out, "evaluate"),
        output_set(out, members=[*EVAL_FILES, *FIGURES], last=["metrics.json"]),
    ):
        m, written = _evaluate_into(out, args, loaded, data, split, x, y, device)
    return {
        "command": "evaluate",
        "checkpoint": str(args.checkpoint),
        "data": data.source,
        "split": split,
        "num_samples": m["num_samples"],
        # top1 / top5 / macro_f1 with flip TTA when tta_flip; top1_plain without (as the
        # train command's test_acc)
        "tta_flip": bool(args.tta),
        "top1": m["top1"],
        "top5": m.get("top5"),  # None with fewer than 6 classes
        "top1_plain": m["top1_plain"],
        "macro_f1": m["macro"]["f1"],
        "epoch": loaded.epoch,
        "out_dir": str(out),
        "files": sorted([*EVAL_FILES, *written]),
    }


# the figures evaluate draws (a figure it skips this time is removed with the commit)
FIGURES = ("confusion.png", "per_class.png", "samples.png", "history.png", "attention.png")


def _evaluate_into(out: Path, args, loaded, data, split, x, y, device):
    """The metrics files and figures of one evaluation, written (staged) into ``out``."""
    import numpy as np
    import torch

    from helpers.classify import plots
    from helpers.classify.metrics import evaluate
    from helpers.files import output_path

    m = evaluate(
        loaded.model,
        data,
        loaded.spec,
        split=split,
        tta_flip=args.tta,
        out_dir=out,
        batch_size=args.batch_size,
        device=device,
        progress=True,
        meta={
            "data": data_path(data),
            "checkpoint": str(loaded.path or args.checkpoint),
            "checkpoint_epoch": loaded.epoch,
        },
    )
    pred = torch.from_numpy(np.load(output_path(out / "predictions.npy")))  # still staged
    figures = {
        "confusion.png": lambda: plots.plot_confusion(m["confusion_matrix"], loaded.classes),
        "per_class.png": lambda: plots.plot_per_class(m),
        "samples.png": lambda: plots.plot_samples(x, y, pred, loaded.classes),
    }
    history = _run_history(args.checkpoint) or loaded.history
    if history:
        figures["history.png"] = lambda: plots.plot_history(history)
    if not loaded.preset.finetune:
        figures["attention.png"] = lambda: plots.plot_attention(
            loaded.model, x[0], loaded.spec, device=device
        )
    return m, _save_figures(figures, out)


def data_path(data) -> str:
    """``cifar10`` / ``synthetic`` / ``digits``, or a folder dataset's absolute path."""
    if data.source in ("cifar10", "synthetic", "digits"):
        return data.source
    return str(Path(data.source).expanduser().resolve())


def eval_folder_name(data, split: str, loaded) -> str:
    """``<data>-<split>`` (``cifar10-test``); a folder dataset adds 8 hex digits of its
    absolute path (two datasets named ``data`` in different places never share a folder), a
    checkpoint other than ``best.pt`` its own name (``cifar10-test-last``)."""
    import hashlib

    key = data_path(data)
    name = Path(key).name or key
    if Path(key).is_absolute():  # a folder dataset
        name += "-" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = loaded.path.stem if getattr(loaded, "path", None) is not None else "best"
    return f"{name}-{split}" + ("" if stem == "best" else f"-{stem}")


def _save_figures(figures: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.classify.plots import save_figure
    from helpers.files import output_path

    written = []
    for name, make in figures.items():
        try:
            fig = make()
        except InputError as e:  # e.g. attention maps for an unsupported model: skip that plot
            _log(f"note: skipped {name}: {e}")
            continue
        save_figure(fig, output_path(out / name))  # staged inside the evaluation's set
        plt.close(fig)
        written.append(name)
    return written


# ---------------------------------------------------------------------------- predict


def image_to_tensor(image, size: int):
    """A PIL image or HxWx3 uint8 array -> uint8 [1, 3, size, size] (short side resized to
    ``size``, then center-cropped)."""
    import numpy as np
    import torch
    from PIL import Image

    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    im = im.convert("RGB")
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    arr = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).contiguous()


# the most pixels predict decodes (a larger JPEG is decoded at 1/2, 1/4 or 1/8 scale instead)
MAX_PIXELS = 100_000_000


def _is_url(source: str) -> bool:
    return source.strip().lower().startswith(("http://", "https://"))


def open_image(source: str | Path, what: str = "--image"):
    """A local image file or an http(s) URL -> RGB PIL image (EXIF orientation applied).

    Bad input -> InputError with one line: missing file, a folder, an empty or non-image file,
    a truncated image, an unreachable URL. Images above :data:`MAX_PIXELS` are decoded at a
    reduced scale when they are JPEGs (no full-size decode), else refused with a clear message.
    """
    import io
    import math
    import warnings

    from PIL import Image, UnidentifiedImageError

    from helpers.classify.data import rgb_image

    text = str(source)
    if _is_url(text):
        from helpers.fetch import fetch_bytes  # timeouts, a byte cap, "is it an image" checks

        try:
            fp = io.BytesIO(fetch_bytes(text.strip(), timeout=15))
        except ImportError:
            raise InputError(
                f"{what} {text}: reading a URL needs the requests package (pip install "
                "requests); or download the image and pass its file path."
            ) from None
        name = text.strip()
    elif "://" in text:
        raise InputError(
            f"{what} {text}: only http(s) URLs and local files are supported; download it and "
            "pass the file path."
        )
    else:
        from helpers.files import probing

        p = Path(text).expanduser()
        with probing(what, p):  # a name too long, a link loop: said in one line
            is_dir, exists, is_file = p.is_dir(), p.exists(), p.is_file()
        if is_dir:
            raise InputError(f"{what} {p} is a folder, not an image file; give one image file.")
        if not exists:
            raise InputError(f"{what} {p} does not exist; check the path.")
        if not is_file:
            raise InputError(f"{what} {p} is not a regular file; give an image file.")
        if p.stat().st_size == 0:
            raise InputError(f"{what} {p} is empty (0 bytes); give a JPEG/PNG/WebP/BMP file.")
        fp, name = p, str(p)
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # the size is checked below, before anything is decoded
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                w, h = im.size
                if w * h > MAX_PIXELS and im.format == "JPEG":
                    f = math.sqrt(MAX_PIXELS / (w * h)) / 2  # draft keeps >= this, <= 2x per side
                    im.draft("RGB", (max(1, int(w * f)), max(1, int(h * f))))
                if im.size[0] * im.size[1] > MAX_PIXELS:
                    raise InputError(
                        f"{what} {name} is {w}x{h} = {w * h:,} pixels, more than predict decodes "
                        f"({MAX_PIXELS:,}); downscale it first (a few hundred pixels are enough)."
                    )
                im.load()
                return rgb_image(im)  # as training data are decoded: EXIF, 16-bit scaled
    except UnidentifiedImageError:
        raise InputError(
            f"{what} {name} could not be read as an image (UnidentifiedImageError); "
            "give a JPEG/PNG/WebP/BMP file."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(
            f"{what} {name} could not be decoded ({type(e).__name__}: {str(e)[:120]}); it may be "
            "truncated or corrupt: re-export or re-download it."
        ) from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def classify(model, spec, classes: list[str], image, k: int = 5, tta: bool = True, device=None):
    """Top-``k`` ``[{"label", "index", "probability"}, ...]`` for one image (PIL, HxWx3 array
    or uint8 [1, 3, H, W] tensor of any size)."""
    from helpers.classify.metrics import predict_logits

    if k < 1:
        raise InputError(f"k must be >= 1, got {k}.")
    if hasattr(image, "ndim") and image.ndim == 4:
        x = image
        if x.shape[-1] != spec.size or x.shape[-2] != spec.size:
            import torch.nn.functional as F

            x = F.interpolate(x.float(), size=(spec.size, spec.size), mode="bilinear")
            x = x.round().clamp(0, 255).to(image.dtype)
    else:
        x = image_to_tensor(image, spec.size)
    logits = predict_logits(model, x, spec, tta_flip=tta, device=device)
    probs = logits.float().softmax(-1)[0]
    top = probs.topk(min(k, probs.numel()))
    return [
        {"label": classes[int(i)], "index": int(i), "probability": float(p)}
        for p, i in zip(top.values, top.indices)
    ]


def cmd_predict(args) -> dict:
    from helpers.classify.train import load_checkpoint

    check_numbers(args, "predict")
    device = pick_device(args.device)
    check_checkpoint_arg(args.checkpoint)
    image = open_image(args.image)  # a bad image fails fast, before the model loads
    loaded = load_checkpoint(args.checkpoint, device=device, log=_log)
    x = image_to_tensor(image, loaded.spec.size)
    preds = classify(
        loaded.model, loaded.spec, loaded.classes, x, k=args.top_k, tta=args.tta, device=device
    )
    return {
        "command": "predict",
        "image": str(args.image),
        "checkpoint": str(args.checkpoint),
        "label": preds[0]["label"],
        "probability": preds[0]["probability"],
        "top_k": preds,
    }
