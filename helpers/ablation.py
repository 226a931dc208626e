"""Ablations and sweeps: the same recipe with one thing changed, every run under the same budget.

:func:`run_variants` trains a base preset and its variants (each a dict of overrides, e.g.
``{"ema_decay": None}``) one after another, each in its own resumable run folder, and returns
one row per variant: best val accuracy, the same weights with flip TTA, test accuracy when the
data has a test split, per-class F1 on val, parameters, images/s, time per epoch and peak GPU
memory, and the difference to the first row (the baseline). :func:`ablation_table` prints it.

A folder's name carries a hash of everything that defines the run, so a changed setting never
resumes (or reuses) a run made with other settings.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from helpers.errors import InputError

# What each of our recipe's pieces is worth: the `fast` recipe with one piece taken out (or added).
ABLATIONS = {
    "recipe as is": {},
    "no EMA": {"ema_decay": None},
    "no MixUp/CutMix": {"mixup_alpha": 0.0, "cutmix_alpha": 0.0},
    "no RandAugment": {"policy": None},
    "+ SPT + LSA": {"spt": True, "lsa": True},
}


def one_at_a_time(grid: dict[str, list]) -> dict[str, dict]:
    """A sweep that changes one setting at a time: ``{"depth": [4, 9], "lr": [1e-3]}`` ->
    ``{"base": {}, "depth 4": {"depth": 4}, "depth 9": {...}, "lr 0.001": {...}}``."""
    variants: dict[str, dict] = {"base": {}}
    for key, values in grid.items():
        for v in values:
            variants[f"{key} {v:g}" if isinstance(v, float) else f"{key} {v}"] = {key: v}
    return variants


def _folder(root: Path, name: str, fingerprint: dict) -> Path:
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode())
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "run"
    return root / f"{slug}-{key.hexdigest()[:8]}"


def run_variants(
    base: str,
    variants: dict[str, dict],
    data,
    out_root,
    *,
    common: dict | None = None,
    minutes: float | None = None,
    device=None,
    pretrained: bool = False,
    max_steps_per_epoch: int | None = None,
    log=print,
) -> list[dict]:
    """Train ``base`` with each variant's overrides (on top of ``common``), ``minutes`` each."""
    from tqdm.auto import tqdm

    from helpers.checkpoint import load_checkpoint
    from helpers.metrics import classification_metrics, predict_logits
    from helpers.presets import get_preset
    from helpers.train import train

    if not variants:
        raise InputError("no variants to run; give at least one (the first is the baseline).")
    rows = []
    for name, overrides in tqdm(variants.items(), desc=f"{base} variants", unit="run"):
        settings = {**(common or {}), **overrides}
        if minutes is not None:
            settings["minutes"] = minutes
        preset = get_preset(base, **{k: v for k, v in settings.items() if v is not None})
        for k, v in settings.items():  # None is a setting too (e.g. ema_decay=None: no EMA)
            if v is None:
                for part in (preset, preset.train, preset.aug, preset.model):
                    if part is not None and hasattr(part, k):
                        setattr(part, k, None)
        fingerprint = {
            "base": base,
            "settings": settings,
            "steps": max_steps_per_epoch,
            "pretrained": pretrained,
            "data": [data.source, len(data.train_y), len(data.val_y), list(data.classes)],
        }
        out = _folder(Path(out_root), name, fingerprint)
        r = train(
            preset,
            data,
            out,
            device=device,
            pretrained=pretrained,
            max_steps_per_epoch=max_steps_per_epoch,
            progress=False,
            log=lambda m: None,
        )
        best = load_checkpoint(out / "best.pt", device=next(r.model.parameters()).device).model
        kw = {"device": device, "precision": preset.train.precision}
        plain = predict_logits(best, data.val_x, r.spec, **kw)
        flip = predict_logits(best, data.val_x, r.spec, tta_flip=True, **kw)
        y = data.val_y.cpu()
        m = classification_metrics(y.numpy(), plain, list(data.classes))
        h = r.history
        peaks = [x["peak_memory_mb"] for x in h if x.get("peak_memory_mb") is not None]
        rows.append(
            {
                "variant": name,
                "overrides": overrides,
                "val_acc": float((plain.argmax(1) == y).float().mean()),
                "val_acc_flip_tta": float((flip.argmax(1) == y).float().mean()),
                "test_acc": r.test_acc,
                "per_class_f1": {c: m["per_class"][c]["f1"] for c in data.classes},
                "parameters": r.parameters,
                "trainable_parameters": r.trainable_parameters,
                "epochs": len(h),
                "minutes": h[-1]["elapsed_seconds"] / 60 if h else 0.0,
                "seconds_per_epoch": sum(x["epoch_seconds"] for x in h) / max(len(h), 1),
                "images_per_second": sum(x["images_per_second"] for x in h) / max(len(h), 1),
                "peak_memory_mb": max(peaks) if peaks else None,
                "out_dir": str(out),
            }
        )
        log(f"{name}: val {rows[-1]['val_acc']:.4f} ({len(h)} epochs) -> {out}")
    for row in rows:
        row["delta"] = row["val_acc"] - rows[0]["val_acc"]
    return rows


def ablation_table(rows: list[dict], flip_tta: bool = True) -> str:
    """A plain-text table of :func:`run_variants` rows, with (``flip_tta``) the flip-TTA line
    of the baseline (an ablation's; a sweep or a model comparison has no baseline to flip)."""
    head = f"{'variant':<22} {'val acc':>8} {'delta':>7} {'test acc':>8} {'params':>11} {'img/s':>8} {'s/epoch':>8} {'peak MB':>8}"
    lines = [head, "-" * len(head)]

    def fmt(v, spec):
        return format(v, spec) if v is not None else "-"

    base = rows[0]
    for r in rows:
        lines.append(
            f"{r['variant'][:22]:<22} {r['val_acc'] * 100:>7.2f}% {r['delta'] * 100:>+6.2f} "
            f"{fmt(r['test_acc'] and r['test_acc'] * 100, '>7.2f'):>8} {r['parameters']:>11,} "
            f"{r['images_per_second']:>8.0f} {r['seconds_per_epoch']:>8.2f} "
            f"{fmt(r['peak_memory_mb'], '>8.0f'):>8}"
        )
    tta = base.get("val_acc_flip_tta")
    if flip_tta and tta is not None:
        lines.append(
            f"{'+ flip TTA (no retrain)':<22} {tta * 100:>7.2f}% "
            f"{(tta - base['val_acc']) * 100:>+6.2f}"
        )
    return "\n".join(lines)


def f1_deltas(rows: list[dict]) -> dict[str, float]:
    """Per-class F1 of the second row minus the first (e.g. patch 32 vs patch 16)."""
    if len(rows) < 2:
        raise InputError("need two runs to compare per-class F1.")
    a, b = rows[0]["per_class_f1"], rows[1]["per_class_f1"]
    return {c: b[c] - a[c] for c in a}


__all__ = ["ABLATIONS", "ablation_table", "f1_deltas", "one_at_a_time", "run_variants"]
