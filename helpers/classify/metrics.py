"""Evaluation: batched prediction (optional flip TTA), top-k, per-class P/R/F1, confusion matrix.

All metrics are computed with numpy here (scikit-learn is only used in the tests to check them).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from helpers.errors import InputError


def _autocast(device, precision: str = "auto"):
    import torch

    from helpers.runtime import autocast_dtype

    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def predict_logits(
    model,
    x_uint8,
    spec,
    batch_size: int = 512,
    tta_flip: bool = False,
    device=None,
    precision: str = "auto",
    progress: bool = False,
):
    """Logits ``float32 [N, C]`` on the CPU for uint8 images ``[N, 3, H, W]`` (no augmentation).

    With ``tta_flip`` the softmax of each image and of its horizontal flip are averaged; the
    returned "logits" are then the log of that average (so softmax/argmax/top-k use it directly).
    The model is put in eval mode (and back in train mode afterwards if it was training).
    """
    import torch

    from helpers.classify.augment import eval_transform

    if x_uint8.ndim != 4 or x_uint8.shape[1] != 3:
        raise InputError(f"expected uint8 images [N, 3, H, W], got shape {tuple(x_uint8.shape)}.")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}.")
    if device is None:
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = []
    starts = range(0, len(x_uint8), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="predict", leave=False)
    try:
        with torch.inference_mode(), _autocast(device, precision):
            for i in starts:
                xb = x_uint8[i : i + batch_size].to(device, non_blocking=True)
                xb = eval_transform(xb, spec)
                logits = model(xb).float()
                if tta_flip:
                    p = logits.softmax(-1) + model(xb.flip(-1)).float().softmax(-1)
                    logits = (p / 2).clamp_min(1e-12).log()
                out.append(logits.cpu())
    finally:
        model.train(was_training)
    if not out:
        raise InputError("no images to predict on (the split is empty).")
    return torch.cat(out)


def split_metrics(
    model, x, y, spec, batch_size: int = 512, device=None, precision: str = "auto", prefix="val"
) -> dict:
    """``{prefix}_loss``, ``{prefix}_acc`` and ``{prefix}_top5`` of ``model`` on images ``x``
    (uint8) with labels ``y``: the per-epoch validation numbers (no TTA)."""
    logits = predict_logits(
        model, x, spec, batch_size=batch_size, device=device, precision=precision
    )
    return logit_metrics(logits, y, prefix)


def logit_metrics(logits, y, prefix: str = "val") -> dict:
    """Loss, top-1 and top-5 accuracy of float logits ``[N, C]`` against labels ``y``."""
    import torch.nn.functional as F

    y = y.cpu()
    return {
        f"{prefix}_loss": float(F.cross_entropy(logits, y)),
        f"{prefix}_acc": float((logits.argmax(1) == y).float().mean()),
        f"{prefix}_top5": top5_accuracy(y, logits),
    }


def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().float().numpy() if a.is_floating_point() else a.detach().cpu().numpy()
    return np.asarray(a)


def top_k_accuracy(y_true, logits, k: int = 5) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores."""
    y = _as_numpy(y_true).astype(np.int64)
    s = _as_numpy(logits)
    k = min(k, s.shape[1])
    topk = np.argpartition(-s, kth=k - 1, axis=1)[:, :k]
    return float((topk == y[:, None]).any(axis=1).mean())


TOP5_MIN_CLASSES = 6  # with 5 classes or fewer every label is in the top 5: 100 % says nothing


def top5_accuracy(y_true, logits) -> float | None:
    """Top-5 accuracy, or None with fewer than :data:`TOP5_MIN_CLASSES` classes."""
    if _as_numpy(logits).shape[1] < TOP5_MIN_CLASSES:
        return None
    return top_k_accuracy(y_true, logits, k=5)


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of samples of true class ``i`` predicted as ``j``."""
    y = _as_numpy(y_true).astype(np.int64)
    p = _as_numpy(y_pred).astype(np.int64)
    idx = y * num_classes + p
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_metrics(y_true, logits_or_pred, classes: list[str]) -> dict:
    """Accuracy (top-1, and top-5 when scores are given), per-class precision/recall/F1/support,
    macro and weighted averages, the confusion matrix and a text report.

    ``logits_or_pred`` is either scores ``[N, C]`` or predicted labels ``[N]``. Classes with no
    predictions get precision 0 (and no true samples: recall 0), like scikit-learn's
    ``zero_division=0``.
    """
    y = _as_numpy(y_true).astype(np.int64).reshape(-1)
    s = _as_numpy(logits_or_pred)
    c = len(classes)
    if c == 0:
        raise InputError("classes is empty.")
    if s.ndim == 2:
        if s.shape[0] != y.shape[0] or s.shape[1] != c:
            raise InputError(
                f"scores have shape {s.shape} but there are {y.shape[0]} labels and {c} classes."
            )
        pred = s.argmax(axis=1)
    elif s.ndim == 1:
        if s.shape[0] != y.shape[0]:
            raise InputError(f"{s.shape[0]} predictions for {y.shape[0]} labels.")
        pred = s.astype(np.int64)
    else:
        raise InputError(f"expected scores [N, C] or predictions [N], got shape {s.shape}.")
    if y.size == 0:
        raise InputError("no samples to score.")
    for name, arr in (("labels", y), ("predictions", pred)):
        if arr.min() < 0 or arr.max() >= c:
            raise InputError(f"{name} must be in [0, {c - 1}] for {c} classes.")

    cm = confusion_matrix(y, pred, c)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(c), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(c), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(c), where=denom > 0)
    weights = support / support.sum()
    result = {
        "num_samples": int(y.size),
        "top1": float((pred == y).mean()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "macro": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        "weighted": {
            "precision": float((precision * weights).sum()),
            "recall": float((recall * weights).sum()),
            "f1": float((f1 * weights).sum()),
        },
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }
    if s.ndim == 2 and c >= TOP5_MIN_CLASSES:
        result["top5"] = top_k_accuracy(y, s, k=5)
    result["report"] = format_report(result)
    return result


def confused_pairs(confusion, classes: list[str], k: int = 5) -> list[dict]:
    """The ``k`` most frequent mistakes: ``{true, predicted, count, rate}`` with ``rate`` the
    share of the true class sent to the predicted one, most frequent first."""
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(classes):
        raise InputError(f"confusion must be [C, C] for {len(classes)} classes, got {cm.shape}.")
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[: max(int(k), 0)]
    rows = []
    for flat in order:
        t, p = divmod(int(flat), cm.shape[1])
        if off[t, p] == 0:
            break
        total = int(cm[t].sum())
        rows.append(
            {
                "true": classes[t],
                "predicted": classes[p],
                "true_index": t,
                "predicted_index": p,
                "count": int(off[t, p]),
                "rate": off[t, p] / total if total else 0.0,
            }
        )
    return rows


def format_report(m: dict) -> str:
    """A plain-text per-class table (like scikit-learn's classification_report)."""
    names = list(m["per_class"])
    w = max([len(n) for n in names] + [len("weighted avg")])
    lines = [f"{'':>{w}}  precision     recall   f1-score    support", ""]
    if m.get("tta_flip"):
        lines.insert(0, "scored with flip TTA (each image and its mirror image averaged)")
    for n in names:
        r = m["per_class"][n]
        lines.append(
            f"{n:>{w}}  {r['precision']:9.4f}  {r['recall']:9.4f}  {r['f1']:9.4f}  {r['support']:9d}"
        )
    total = m["num_samples"]
    lines.append("")
    lines.append(f"{'accuracy':>{w}}  {'':9}  {'':9}  {m['top1']:9.4f}  {total:9d}")
    if "top5" in m:
        lines.append(f"{'top-5 acc':>{w}}  {'':9}  {'':9}  {m['top5']:9.4f}  {total:9d}")
    for key, label in (("macro", "macro avg"), ("weighted", "weighted avg")):
        r = m[key]
        lines.append(
            f"{label:>{w}}  {r['precision']:9.4f}  {r['recall']:9.4f}  {r['f1']:9.4f}  {total:9d}"
        )
    return "\n".join(lines) + "\n"


# what :func:`evaluate` writes into its ``out_dir``
EVAL_FILES = (
    "logits.npy", "predictions.npy", "targets.npy", "classification_report.txt", "metrics.json",
)  # fmt: skip


def evaluate(
    model,
    data,
    spec,
    tta_flip: bool = True,
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 512,
    device=None,
    progress: bool = False,
    split: str = "val",
    meta: dict | None = None,
) -> dict:
    """Metrics of ``model`` on ``data``'s ``split`` (see :func:`classification_metrics`).

    ``top1`` (and ``top5``, the report) are scored with flip TTA when ``tta_flip`` (the
    default; ``tta_flip`` says so in the result): ``top1_plain`` is the accuracy without it,
    the number training reports as the test accuracy.

    With ``out_dir`` it also writes ``logits.npy``, ``predictions.npy``, ``targets.npy``,
    ``metrics.json`` and ``classification_report.txt`` there, as one unit (all of them replace
    the folder's earlier ones, or none does; inside an open :func:`helpers.files.output_set`
    of that folder they join it). ``meta`` (what was
    scored: data path, checkpoint and its epoch) is recorded in the metrics too.
    """
    from helpers.files import (
        atomic_path,
        atomic_write_json,
        atomic_write_text,
        output_path,
        output_set,
    )

    x, y = data.split(split)
    if len(y) == 0:
        raise InputError(f"the {split} split is empty; nothing to evaluate.")
    logits = predict_logits(
        model,
        x,
        spec,
        batch_size=batch_size,
        tta_flip=tta_flip,
        device=device,
        progress=progress,
    )
    targets = y.detach().cpu().numpy()
    if logits.shape[1] != len(data.classes):
        raise InputError(
            f"the model predicts {logits.shape[1]} classes but the data has {len(data.classes)}; "
            "use a checkpoint trained on this dataset."
        )
    m = classification_metrics(targets, logits, data.classes)
    m["tta_flip"] = bool(tta_flip)  # top1 / top5 / the report are scored this way
    if tta_flip:  # and without it, as training scores its test split (test_acc)
        plain = predict_logits(model, x, spec, batch_size=batch_size, device=device)
        m["top1_plain"] = float((plain.argmax(1).numpy() == targets).mean())
        m["top1_flip_tta"] = m["top1"]
    else:
        m["top1_plain"] = m["top1"]
    m["report"] = format_report(m)
    m["split"] = split
    m.update(meta or {})
    if out_dir is not None:
        out = Path(out_dir)
        arrays = {
            "logits.npy": logits.numpy(),
            "predictions.npy": logits.argmax(1).numpy(),
            "targets.npy": targets,
        }
        # one unit: all five replace the folder's earlier ones, or none does (metrics.json last)
        with output_set(out, members=EVAL_FILES, last=["metrics.json"]):
            for name, arr in arrays.items():
                with atomic_path(output_path(out / name)) as tmp:
                    np.save(tmp, arr)
            atomic_write_text(output_path(out / "classification_report.txt"), m["report"])
            atomic_write_json(output_path(out / "metrics.json"), m)
    return m


__all__ = [
    "classification_metrics",
    "confused_pairs",
    "confusion_matrix",
    "evaluate",
    "format_report",
    "logit_metrics",
    "predict_logits",
    "split_metrics",
    "top5_accuracy",
    "top_k_accuracy",
]
