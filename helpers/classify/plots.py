"""Figures for the ViT notebook: training curves, confusion heatmap, per-class bars, sample
grid, attention overlay, patch-size comparison. Every function returns a matplotlib Figure;
:func:`save_figure` writes one atomically."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.errors import InputError


def _plt():
    import matplotlib

    if not os.environ.get("MPLBACKEND") and not _in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except Exception:
        return False


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save ``fig`` to ``path`` (format from the suffix: .png, .pdf, .svg) atomically."""
    from helpers.files import atomic_path

    path = Path(path)
    if not path.suffix:
        raise InputError(f"figure path {path} has no suffix; use e.g. '{path}.png'.")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix[1:].lower())
    return path


def plot_history(history: list[dict]):
    """Loss, accuracy and learning-rate curves per epoch from ``train``'s history rows."""
    if not history:
        raise InputError("the training history is empty; train for at least one epoch first.")
    plt = _plt()
    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))

    def curve(ax, key, label, scale=1.0, **kw):
        vals = [r.get(key) for r in history]
        if sum(v is not None for v in vals) == 1:  # one point (e.g. raw weights, last epoch)
            kw.setdefault("marker", "o")
        if any(v is not None for v in vals):
            ax.plot(
                ep, [v * scale if v is not None else float("nan") for v in vals], label=label, **kw
            )

    curve(axes[0], "train_loss", "train")
    curve(axes[0], "val_loss", "val")
    axes[0].set(title="Loss", xlabel="epoch", ylabel="cross entropy")
    curve(axes[1], "train_acc", "train top-1", 100)
    curve(axes[1], "val_acc", "val top-1", 100)
    curve(axes[1], "val_top5", "val top-5", 100, linestyle="--")
    curve(axes[1], "val_acc_model", "val top-1 (raw, no EMA)", 100, linestyle=":")
    scored = [r for r in history if r.get("val_acc") is not None]
    if scored:
        best = max(scored, key=lambda r: r["val_acc"])
        axes[1].scatter([best["epoch"]], [best["val_acc"] * 100], color="red", zorder=3)
        # the label goes on the side of the point with more room, never over the y ticks,
        # and above the point when it sits low (so never down over the epoch tick labels)
        lo, hi = min(ep), max(ep)
        right = hi == lo or (best["epoch"] - lo) / (hi - lo) < 0.5
        accs = [v * 100 for r in history for v in (r.get("train_acc"), r.get("val_acc")) if v]
        low = best["val_acc"] * 100 < (min(accs) + max(accs)) / 2 if accs else True
        axes[1].annotate(
            f"best {best['val_acc'] * 100:.2f}%",
            (best["epoch"], best["val_acc"] * 100),
            textcoords="offset points",
            xytext=(8 if right else -8, 8 if low else -12),
            ha="left" if right else "right",
            va="bottom" if low else "top",
        )
    axes[1].set(title="Accuracy", xlabel="epoch", ylabel="%")
    curve(axes[2], "lr", "lr")
    axes[2].set(title="Learning rate (end of epoch)", xlabel="epoch", ylabel="lr")
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    from matplotlib.ticker import MaxNLocator

    lo, hi = min(ep), max(ep)
    for ax in axes:
        ax.grid(alpha=0.3)
        # epochs are whole numbers, also when there are only one or two of them
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if hi - lo < 2:
            ax.set_xlim(lo - 0.5, hi + 0.5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    return fig


# the most classes a per-class figure draws (a confusion heatmap of 3,000 classes is 9 million
# cells and a figure hundreds of metres wide: matplotlib runs out of memory); above it the
# figure is skipped with a note, and the numbers stay in metrics.json and the report
MAX_PLOT_CLASSES = 100
MAX_FIGURE_INCHES = 30  # a side of a per-class figure (at 120 dpi: 3,600 px)


def _check_plot_classes(n: int, what: str, where: str) -> None:
    if n > MAX_PLOT_CLASSES:
        raise InputError(
            f"{n:,} classes are more than the {MAX_PLOT_CLASSES} a {what} shows; {where}."
        )


def plot_confusion(cm, classes: list[str], normalize: bool = True):
    """Confusion-matrix heatmap (rows: true class, columns: predicted); rows normalised to 1.
    More than :data:`MAX_PLOT_CLASSES` classes -> InputError (nothing is drawn)."""
    import numpy as np

    _check_plot_classes(
        len(classes), "confusion heatmap", "the matrix is in metrics.json (confusion_matrix)"
    )
    import seaborn as sns

    plt = _plt()
    cm = np.asarray(cm, dtype=np.float64)
    if cm.shape != (len(classes), len(classes)):
        raise InputError(f"confusion matrix is {cm.shape} but there are {len(classes)} classes.")
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(classes)
    side = min(MAX_FIGURE_INCHES, max(5, 0.6 * n + 2))
    fig, ax = plt.subplots(figsize=(side, min(MAX_FIGURE_INCHES, max(4, 0.6 * n + 1))))
    sns.heatmap(
        cm,
        annot=n <= 20,
        fmt=".2f" if normalize else ".0f",
        cmap="Blues",
        xticklabels=classes,
        yticklabels=classes,
        vmin=0,
        vmax=1 if normalize else None,
        square=True,
        cbar=True,
        ax=ax,
    )
    ax.set(
        xlabel="predicted",
        ylabel="true",
        title="Confusion matrix" + (" (row-normalised)" if normalize else ""),
    )
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    return fig


def plot_per_class(metrics: dict):
    """Grouped bars of precision / recall / F1 per class (from ``classification_metrics``)."""
    import numpy as np

    plt = _plt()
    per = metrics.get("per_class")
    if not per:
        raise InputError(
            "metrics has no 'per_class' entry; pass the dict from classification_metrics."
        )
    _check_plot_classes(
        len(per), "per-class bar chart", "the per-class numbers are in classification_report.txt"
    )
    names = list(per)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(min(MAX_FIGURE_INCHES * 3, max(6, 0.8 * len(names) + 2)), 4))
    for i, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (i - 1) * 0.27, [per[n][key] * 100 for n in names], width=0.27, label=key)
    ax.set_xticks(x, names, rotation=45, ha="right")
    low = min(min(per[n][k] for k in ("precision", "recall", "f1")) for n in names) * 100
    ax.set_ylim(max(0, low - 10), 100)
    ax.set(ylabel="%", title=f"Per-class metrics (top-1 {metrics.get('top1', 0) * 100:.2f}%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never on them
    fig.tight_layout()
    return fig


def spread_indices(y, n: int) -> list[int]:
    """``n`` indices taking each class in turn (its 1st image, then its 2nd, ...), so a grid
    drawn from a class-sorted split shows every class, not only the first one."""
    import numpy as np

    y = np.asarray(y.cpu() if hasattr(y, "cpu") else y).reshape(-1)
    per_class = [np.flatnonzero(y == c).tolist() for c in np.unique(y)]
    out: list[int] = []
    for rank in range(max((len(ix) for ix in per_class), default=0)):
        out += [ix[rank] for ix in per_class if rank < len(ix)]
        if len(out) >= n:
            break
    return out[:n]


def plot_samples(x_uint8, y_true, y_pred, classes: list[str], n: int = 16, spread: bool = True):
    """Grid of ``n`` images titled ``true → pred``: green when right, red when wrong.

    ``spread`` picks the images class by class (:func:`spread_indices`); ``False`` takes the first
    ``n`` in order."""
    import math

    import numpy as np

    plt = _plt()
    x = x_uint8.detach().cpu().numpy() if hasattr(x_uint8, "detach") else np.asarray(x_uint8)
    yt = np.asarray(y_true.cpu() if hasattr(y_true, "cpu") else y_true).reshape(-1)
    yp = np.asarray(y_pred.cpu() if hasattr(y_pred, "cpu") else y_pred).reshape(-1)
    total = min(len(x), len(yt), len(yp))
    n = min(n, total)
    if n <= 0:
        raise InputError("no images to show.")
    idx = spread_indices(yt[:total], n) if spread else list(range(n))
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 2.1 * rows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(idx):
            continue
        i = idx[k]
        ax.imshow(x[i].transpose(1, 2, 0), interpolation="nearest")
        ok = int(yt[i]) == int(yp[i])
        ax.set_title(
            f"{classes[int(yt[i])]}\n→ {classes[int(yp[i])]}",
            color="green" if ok else "red",
            fontsize=8,
        )
    right = int((yt[idx] == yp[idx]).sum())
    fig.suptitle(f"{right}/{len(idx)} right (true → predicted)")
    fig.tight_layout()
    return fig


ATTENTION_CMAP = "inferno"  # the rollout, its overlay and the colour bar share one scale


def plot_attention(model, image_uint8, spec, device=None):
    """The image, its attention rollout, and the rollout overlaid on it."""
    import torch.nn.functional as F

    from helpers.classify.augment import eval_transform
    from helpers.classify.vit import attention_maps, attention_rollout

    plt = _plt()
    if image_uint8.ndim != 3 or image_uint8.shape[0] != 3:
        raise InputError(f"expected one uint8 image [3, H, W], got {tuple(image_uint8.shape)}.")
    if device is None:
        device = next(model.parameters()).device
    x = eval_transform(image_uint8[None].to(device), spec)
    maps = attention_maps(model, x)
    roll = attention_rollout(maps).float().cpu()
    roll = (roll - roll.min()) / (roll.max() - roll.min() + 1e-12)
    h, w = image_uint8.shape[1:]
    heat = F.interpolate(roll[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    img = image_uint8.detach().cpu().permute(1, 2, 0).numpy()
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    axes[0].imshow(img, interpolation="nearest")
    axes[0].set_title("image")
    shown = axes[1].imshow(roll.numpy(), cmap=ATTENTION_CMAP, vmin=0.0, vmax=1.0)
    axes[1].set_title(f"rollout ({roll.shape[0]}×{roll.shape[1]} patches)")
    axes[2].imshow(img, interpolation="nearest")
    axes[2].imshow(
        heat.numpy(), cmap=ATTENTION_CMAP, vmin=0.0, vmax=1.0, alpha=0.5, interpolation="bilinear"
    )
    axes[2].set_title("overlay")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    bar = fig.colorbar(shown, ax=list(axes), fraction=0.025, pad=0.02)
    bar.set_label("attention (normalised)")
    return fig


def _pick(row: dict, keys: tuple[str, ...], what: str):
    for k in keys:
        if row.get(k) is not None:
            return row[k]
    raise InputError(f"each row needs {what} (one of {', '.join(keys)}); got keys {sorted(row)}.")


def plot_patch_comparison(rows: list[dict]):
    """Accuracy vs wall time, one labelled series per patch size.

    Each row needs a patch size (``patch_size``), a time (``minutes`` or ``elapsed_seconds``)
    and an accuracy in [0, 1] (``val_acc``, ``accuracy`` or ``top1``). Several rows with the same
    patch size (e.g. one per epoch) draw a line; the last point is labelled.
    """
    plt = _plt()
    if not rows:
        raise InputError("no rows to plot; pass one dict per run (or per epoch of each run).")
    series: dict = {}
    for r in rows:
        p = _pick(r, ("patch_size", "patch"), "a patch size")
        t = r.get("minutes")
        if t is None:
            t = (
                _pick(r, ("elapsed_seconds", "seconds"), "a time ('minutes' or 'elapsed_seconds')")
                / 60
            )
        acc = _pick(r, ("val_acc", "accuracy", "top1"), "an accuracy")
        series.setdefault(p, []).append((float(t), float(acc) * 100, r.get("label")))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p in sorted(series):
        pts = sorted(series[p])
        ts, accs = [a for a, _, _ in pts], [b for _, b, _ in pts]
        # the final accuracy goes in the legend: labels beside close end points would collide
        label = f"patch {p}: {accs[-1]:.1f}%" + (f" ({pts[-1][2]})" if pts[-1][2] else "")
        ax.plot(ts, accs, marker="o", label=label, markersize=4 if len(pts) > 1 else 7)
    ax.set(
        xlabel="wall time (minutes)",
        ylabel="val top-1 (%)",
        title="Accuracy vs time per patch size",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_confused_pairs(x_uint8, y_true, y_pred, classes: list[str], pairs: list[dict], per_pair=6):
    """One row per confused pair (from :func:`helpers.classify.metrics.confused_pairs`): the pair, how
    often, and up to ``per_pair`` of the images that were mistaken that way."""
    import numpy as np

    plt = _plt()
    if not pairs:
        raise InputError("no confused pairs to show (no mistakes).")
    x = x_uint8.detach().cpu().numpy() if hasattr(x_uint8, "detach") else np.asarray(x_uint8)
    yt = np.asarray(y_true.cpu() if hasattr(y_true, "cpu") else y_true).reshape(-1)
    yp = np.asarray(y_pred.cpu() if hasattr(y_pred, "cpu") else y_pred).reshape(-1)
    fig, axes = plt.subplots(
        len(pairs), per_pair + 1, figsize=(1.5 * (per_pair + 1), 1.6 * len(pairs)), squeeze=False
    )
    for row, p in zip(axes, pairs):
        for ax in row:
            ax.axis("off")
        row[0].text(
            0.0, 0.5,
            f"{p['true']}\n→ {p['predicted']}\n{p['count']} ({p['rate']:.1%})",
            fontsize=9, va="center",
        )  # fmt: skip
        idx = np.flatnonzero((yt == p["true_index"]) & (yp == p["predicted_index"]))[:per_pair]
        for ax, i in zip(row[1:], idx):
            ax.imshow(x[i].transpose(1, 2, 0), interpolation="nearest")
    fig.suptitle("most confused classes: true → predicted, with examples")
    fig.tight_layout()
    return fig


def _gain_colour(delta: float) -> str:
    """Green for a gain, red for a loss, grey for none: ``delta`` in the points the figure
    writes with two decimals (+0.00 is no change)."""
    if round(delta, 2) == 0:
        return "0.6"
    return "tab:green" if delta > 0 else "tab:red"


def plot_ablation(rows: list[dict], title: str = "what each piece is worth", flip_tta: bool = True):
    """Bars of each variant's val accuracy (from :func:`helpers.classify.ablation.run_variants`), the
    difference to the first row written on each, and (``flip_tta``) the first row with flip
    TTA. The axis starts at 0, so the bars' lengths compare honestly."""
    plt = _plt()
    if not rows:
        raise InputError("no runs to plot.")
    names = [r["variant"] for r in rows]
    accs = [r["val_acc"] * 100 for r in rows]
    if flip_tta and rows[0].get("val_acc_flip_tta") is not None:
        names.append("+ flip TTA (no retrain)")
        accs.append(rows[0]["val_acc_flip_tta"] * 100)
    base = accs[0]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    colors = ["0.5"] + [_gain_colour(a - base) for a in accs[1:]]
    ax.barh(names[::-1], accs[::-1], color=colors[::-1])
    ax.set_xlim(0.0, max(max(accs), 1.0) * 1.35)  # from 0; room for the numbers on the right
    for y, a in enumerate(accs[::-1]):
        ax.text(a, y, f" {a:.2f}%  ({a - base:+.2f})", va="center", fontsize=8)
    ax.set_xlabel("val accuracy (%)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_f1_deltas(deltas: dict[str, float], title: str):
    """Per-class F1 differences (e.g. patch 32 minus patch 16), sorted."""
    plt = _plt()
    if not deltas:
        raise InputError("no classes to plot.")
    items = sorted(deltas.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items],
            color=[_gain_colour(v * 100) for _, v in items])  # fmt: skip
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xlabel("F1 difference")
    ax.set_title(title)
    fig.tight_layout()
    return fig


__all__ = [
    "MAX_PLOT_CLASSES",
    "plot_ablation",
    "plot_attention",
    "plot_confused_pairs",
    "plot_confusion",
    "plot_f1_deltas",
    "plot_history",
    "plot_patch_comparison",
    "plot_per_class",
    "plot_samples",
    "save_figure",
    "spread_indices",
]
