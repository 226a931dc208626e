"""Time to accuracy: train a preset for a wall-time budget and report val accuracy vs time.

Trains ``--preset`` (default ``fast``) with ``helpers.classify.train.train`` on an ImageFolder
(``--data``, e.g. the JPEG CIFAR-10 with 45,000 train / 5,000 val images) for ``--minutes``,
then prints a table of val accuracy against wall time (one row per epoch), the first time the
val accuracy reached ``--target`` (default 0.91), and writes ``time_to_accuracy.json`` and
``time_to_accuracy.png`` to ``--out``. Wall time is the trainer's own ``elapsed_seconds``
(training + per-epoch validation + checkpointing, compile time included) -- data loading before
the first step is reported separately.

    python benchmarks/q1_time_to_accuracy.py --data data/cifar10_jpeg --minutes 5
    python benchmarks/q1_time_to_accuracy.py --data DIR --minutes 0.2 --max-steps-per-epoch 2 \\
        --device cpu --dim 32 --depth 1 --heads 2 --batch-size 32   # CPU sanity run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def parse_args(argv=None):
    from helpers.classify.presets import preset_names

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="ImageFolder root with train/ and val/")
    ap.add_argument("--preset", default="fast", choices=preset_names())
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-time budget (default 5)")
    ap.add_argument("--target", type=float, default=0.91, help="val accuracy to time (0-1)")
    ap.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    ap.add_argument("--batch-size", type=int, help="batch size (default: the preset's)")
    ap.add_argument("--lr", type=float, help="peak learning rate (default: the preset's)")
    ap.add_argument("--max-steps-per-epoch", type=int, help="cut epochs short (sanity runs)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.compile (default: the preset's, CUDA only)")  # fmt: skip
    ap.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"])
    ap.add_argument("--device", help="cuda | cpu (default: best available)")
    ap.add_argument("--seed", type=int, help="random seed")
    ap.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--depth", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--heads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="runs/q1_time_to_accuracy", help="output folder")
    args = ap.parse_args(argv)
    if args.minutes <= 0:
        ap.error("--minutes must be > 0")
    if not 0 < args.target <= 1:
        ap.error("--target is a fraction in (0, 1], e.g. 0.91")
    return args


def time_to_target(history: list[dict], target: float) -> dict | None:
    """The first history row whose val accuracy reaches ``target`` (None if none does)."""
    for row in history:
        if (row.get("val_acc") or 0.0) >= target:  # None: an epoch not validated
            return row
    return None


def measure(preset, data, run_dir: Path, device, target: float, **train_kw) -> tuple:
    """Train ``preset`` on ``data`` for its budget; ``(result, figures)``: the trainer's result
    and what the run measured (accuracies, time to ``target``, where the time went, the curve
    of the validated epochs), every figure read from the run. ``train_kw`` go to ``train``."""
    from helpers.classify.train import train
    from helpers.classify.vit import count_parameters

    t_call = time.perf_counter()
    result = train(preset, data, run_dir, resume=False, device=device, **train_kw)
    call_seconds = time.perf_counter() - t_call
    history = list(result.history)
    curve = [r for r in history if r.get("val_acc") is not None]
    hit = time_to_target(curve, target)
    last = history[-1] if history else {}
    keys = ("epoch", "step", "elapsed_seconds", "val_acc", "val_top5", "train_loss", "lr",
            "images_per_second")  # fmt: skip
    return result, {
        "preset": preset.name,
        "parameters": count_parameters(result.model),
        "budget_minutes": preset.train.minutes,
        "epochs": len(history),
        "steps": last.get("step"),
        "train_minutes": (last.get("elapsed_seconds") or 0.0) / 60,
        "mean_images_per_second": (
            sum(r.get("images_per_second") or 0.0 for r in history) / len(history)
            if history
            else None
        ),
        "final_val_acc": curve[-1]["val_acc"] if curve else None,
        "final_val_acc_raw_weights": last.get("val_acc_model"),
        "best_val_acc": result.best_val_acc,
        "test_acc": getattr(result, "test_acc", None),  # best (val-selected) weights on test
        "target": target,
        "minutes_to_target": hit["elapsed_seconds"] / 60 if hit else None,
        "epoch_at_target": hit["epoch"] if hit else None,
        "stopped_by_budget": bool(getattr(result, "stopped_early", False)),
        "planned_steps": result.plan.first_total,
        "replans": len(result.plan.replans),
        "final_lr": last.get("lr"),
        "validation_seconds": result.validation_seconds,
        "validation_share": result.validation_share,
        # train(): setup with compile and calibration, training on the clock, final scoring
        "setup_seconds": result.timing.get("setup_seconds"),
        "training_seconds": result.timing.get("training_seconds"),
        "scoring_seconds": result.timing.get("scoring_seconds"),
        "call_seconds": call_seconds,
        "checkpoint_seconds": getattr(result, "checkpoint_seconds", None),
        "curve": [{k: r.get(k) for k in keys} for r in curve],
    }


def plot_curve(history: list[dict], target: float, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in history if r.get("val_acc") is not None]  # the validated epochs
    t = [r["elapsed_seconds"] / 60 for r in scored]
    acc = [r["val_acc"] * 100 for r in scored]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(t, acc, marker="o", markersize=3, label="val top-1")
    ax.axhline(target * 100, color="gray", linestyle="--", label=f"target {target * 100:.1f}%")
    hit = time_to_target(history, target)
    if hit is not None:
        ax.scatter([hit["elapsed_seconds"] / 60], [hit["val_acc"] * 100], color="red", zorder=3)
        ax.annotate(
            f"{hit['elapsed_seconds'] / 60:.2f} min",
            (hit["elapsed_seconds"] / 60, hit["val_acc"] * 100),
            textcoords="offset points",
            xytext=(5, -15),
        )
    ax.set(xlabel="wall time (minutes)", ylabel="val accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    args = parse_args(argv)
    from helpers.classify.data import load_image_folder
    from helpers.classify.plots import save_figure
    from helpers.classify.presets import get_preset
    from helpers.errors import InputError
    from helpers.files import atomic_write_json
    from helpers.runtime import gpu_summary, pick_device

    try:
        device = pick_device(args.device)
        preset = get_preset(
            args.preset,
            minutes=args.minutes,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            precision=args.precision,
            seed=args.seed,
            dim=args.dim,
            depth=args.depth,
            heads=args.heads,
        )
        if args.compile is not None:
            preset.train.compile = args.compile
        elif device.type != "cuda":
            preset.train.compile = False
        t0 = time.perf_counter()
        data = load_image_folder(args.data)
        load_s = time.perf_counter() - t0
        if preset.model is not None and data.image_size != preset.model.image_size:
            preset.model.image_size = data.image_size
            preset.model.validate()
        print(f"{gpu_summary()}; data {data!r} loaded in {load_s:.1f} s", file=sys.stderr)
        out = Path(args.out)
        result, res = measure(
            preset, data, out / "run", device, args.target, pretrained=True,
            max_steps_per_epoch=args.max_steps_per_epoch,
            log=lambda m: print(m, file=sys.stderr),
        )  # fmt: skip
    except InputError as e:
        sys.exit(f"error: {e}")

    history = result.history
    hit = time_to_target(history, args.target)
    summary = {
        "device": gpu_summary(),
        "data": str(args.data),
        "train_images": len(data.train_y),
        "val_images": len(data.val_y),
        "data_load_seconds": load_s,
        **{k: res[k] for k in ("preset", "parameters", "budget_minutes", "epochs")},
        "minutes": res["train_minutes"],
        **{k: res[k] for k in ("best_val_acc", "final_val_acc", "test_acc", "target",
                               "minutes_to_target", "epoch_at_target", "mean_images_per_second")},
        "history": [
            {
                k: r.get(k)
                for k in ("epoch", "elapsed_seconds", "val_acc", "val_top5", "train_loss", "lr")
            }
            for r in history
        ],
    }  # fmt: skip
    atomic_write_json(out / "time_to_accuracy.json", summary)
    if history:
        fig = plot_curve(history, args.target, f"{preset.name}: val accuracy vs wall time")
        save_figure(fig, out / "time_to_accuracy.png")

    print(f"\n{summary['device']} | preset {preset.name} | {summary['parameters']:,} params")
    print(f"{'epoch':>5} {'minutes':>8} {'val acc':>8} {'top-5':>7}")
    for r in history:
        if r.get("val_acc") is None:  # a budgeted run leaves some epochs unvalidated
            continue
        print(
            f"{r['epoch']:>5} {r['elapsed_seconds'] / 60:>8.2f} {r['val_acc'] * 100:>7.2f}% "
            f"{(r.get('val_top5') or 0) * 100:>6.2f}%"
        )
    reached = (
        f"{summary['minutes_to_target']:.2f} min (epoch {summary['epoch_at_target']})"
        if hit
        else "not reached"
    )
    print(
        f"best val acc {summary['best_val_acc'] * 100:.2f}% in {summary['minutes']:.2f} min; "
        f"time to {args.target * 100:.1f}%: {reached}"
    )
    print(f"wrote {out / 'time_to_accuracy.json'} and {out / 'time_to_accuracy.png'}")
    return summary


if __name__ == "__main__":
    main()
