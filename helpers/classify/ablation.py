"""Ablations and sweeps: the same recipe with one thing changed, every run under the same budget.

:func:`run_variants` trains a base preset and its variants (each a dict of overrides, e.g.
``{"ema_decay": None}``) one after another, each in its own resumable run folder, and returns
one row per variant: best val accuracy, the same weights with flip TTA, test accuracy when the
data has a test split, per-class F1 on val, parameters, images/s, time per epoch and peak GPU
memory, and the difference to the first row (the baseline). :func:`ablation_table` prints it.

Every variant is built and checked before the first one trains (:func:`variant_presets`), so a
grid with a setting that cannot run stops at once, not after hours of the others; a width
without heads keeps the base's head width. A folder's name carries a hash of everything that
defines the run, so a changed setting never resumes (or reuses) a run made with other settings.
A finished variant keeps what its row needs (its ``last.pt`` goes unless ``keep_last``) and its
row, read back by the next call. :func:`sections_cost` and :func:`space_report` say what a
notebook's optional sections cost in minutes before they run and in disk space after.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import stat
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
    ``{"base": {}, "depth 4": {"depth": 4}, "depth 9": {...}, "lr 0.001": {...}}``.

    A width (``dim``) without ``heads`` gets its heads when the variant is built: as many as
    keep the base's head width (see :func:`variant_presets`)."""
    variants: dict[str, dict] = {"base": {}}
    for key, values in grid.items():
        for v in values:
            variants[f"{key} {v:g}" if isinstance(v, float) else f"{key} {v}"] = {key: v}
    return variants


def heads_for(dim: int, head_width: float) -> int:
    """The number of heads that divides ``dim`` with heads closest to ``head_width`` wide."""
    divisors = [h for h in range(1, dim + 1) if dim % h == 0]
    return min(divisors, key=lambda h: (abs(dim / h - head_width), h))


def _preset(base: str, settings: dict):
    """``get_preset(base, **settings)`` where ``None`` is a setting too (``ema_decay=None``:
    no EMA), not "keep the preset's"."""
    from helpers.classify.presets import get_preset

    preset = get_preset(base, **{k: v for k, v in settings.items() if v is not None})
    for k, v in settings.items():
        if v is None:
            for part in (preset, preset.train, preset.aug, preset.model):
                if part is not None and hasattr(part, k):
                    setattr(part, k, None)
    return preset


def variant_presets(
    base: str,
    variants: dict[str, dict],
    *,
    common: dict | None = None,
    minutes: float | None = None,
    data=None,
    max_steps_per_epoch: int | None = None,
) -> dict[str, tuple[dict, dict, object]]:
    """Every variant's ``(overrides, settings, preset)``, all built and checked before any of
    them trains; a variant that cannot run -> InputError naming it and what to change.

    ``settings`` is ``common`` + the variant's overrides (+ ``minutes``). A variant that sets
    ``dim`` but not ``heads`` keeps the head width of the base (``common`` applied): the
    ``fast`` recipe's 384 wide / 6 heads becomes 256 / 4 and 512 / 8, so every width can run.
    With ``data``, each preset is also checked against it (batch size, image size, classes)."""
    from helpers.classify.train import check_settings

    if not variants:
        raise InputError("no variants to run; give at least one (the first is the baseline).")
    start = _preset(base, dict(common or {}))
    built = {}
    for name, overrides in variants.items():
        overrides = dict(overrides)
        if "dim" in overrides and "heads" not in overrides and start.model is not None:
            dim = overrides["dim"]
            if isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1:
                overrides["heads"] = heads_for(dim, start.model.dim / start.model.heads)
        settings = {**(common or {}), **overrides}
        if minutes is not None:
            settings["minutes"] = minutes
        try:
            preset = _preset(base, settings)
            if data is not None:
                check_settings(preset, data, max_steps_per_epoch)
                size = preset.model.image_size if preset.model is not None else None
                if size is not None and size != data.image_size:
                    raise InputError(
                        f"image_size {size} differs from the data's {data.image_size} px images; "
                        f"add image_size={data.image_size} to common."
                    )
        except InputError as e:
            raise InputError(
                f"variant {name!r} of {base!r} cannot run: {e} Nothing was trained."
            ) from None
        built[name] = (overrides, settings, preset)
    return built


def _folder(root: Path, name: str, fingerprint: dict) -> Path:
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode())
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "run"
    return root / f"{slug}-{key.hexdigest()[:8]}"


VARIANT_FILE = "variant.json"  # a finished variant's row: what its tables need
RESUME_FILES = ("last.pt", "last.prev.pt", "last.corrupt.pt")  # only needed to go on training


def _fingerprint_key(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()


def _finished_row(out: Path, fingerprint: dict) -> dict | None:
    """The row a finished variant left in ``out`` (:data:`VARIANT_FILE`), if it was made
    with ``fingerprint``; None when there is none (or it is unreadable, or of other settings)."""
    try:
        saved = json.loads((out / VARIANT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("fingerprint") != _fingerprint_key(fingerprint):
        return None
    row = saved.get("row")
    return row if isinstance(row, dict) else None


def _finish(out: Path, row: dict, fingerprint: dict, keep_last: bool) -> None:
    """Write the variant's row beside its weights; then, unless ``keep_last``, remove what only
    training on needs (``last.pt`` and its backups): the folder keeps ``best.pt``, the history,
    ``test.json`` and the row."""
    from helpers.files import atomic_write_json

    atomic_write_json(
        out / VARIANT_FILE, {"fingerprint": _fingerprint_key(fingerprint), "row": row}
    )
    if not keep_last:
        for name in RESUME_FILES:
            (out / name).unlink(missing_ok=True)


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
    resume: bool = True,
    keep_last: bool = False,
    log=print,
) -> list[dict]:
    """Train ``base`` with each variant's overrides (on top of ``common``), ``minutes`` each.

    Every variant is built and checked first (:func:`variant_presets`): one that cannot run
    stops the call before anything trains. ``resume=False`` starts every variant anew (an
    earlier run in its folder moves to ``previous_run/``).

    A variant that finished keeps what its row needs: ``best.pt``, its history, ``test.json``
    and the row itself (``variant.json``, read back by the next call with the same settings
    instead of training again); its ``last.pt`` (and ``last.prev.pt``), which hold the
    optimizer and EMA for training on, are removed unless ``keep_last``. An interrupted
    variant keeps them and resumes."""
    from tqdm.auto import tqdm

    from helpers.classify.checkpoint import load_checkpoint
    from helpers.classify.metrics import classification_metrics, predict_logits
    from helpers.classify.train import (
        mean_epoch_seconds,
        mean_images_per_second,
        peak_memory_mb,
        train,
    )

    built = variant_presets(
        base,
        variants,
        common=common,
        minutes=minutes,
        data=data,
        max_steps_per_epoch=max_steps_per_epoch,
    )
    rows = []
    for name, (overrides, settings, preset) in tqdm(
        built.items(), desc=f"{base} variants", unit="run"
    ):
        fingerprint = {
            "base": base,
            "settings": settings,
            "steps": max_steps_per_epoch,
            "pretrained": pretrained,
            "data": [data.source, len(data.train_y), len(data.val_y), list(data.classes)],
        }
        out = _folder(Path(out_root), name, fingerprint)
        done = _finished_row(out, fingerprint) if resume else None
        if done is not None:  # finished before with these settings: its row, no training
            rows.append(done)
            log(
                f"{name}: val {done['val_acc']:.4f} ({done['epochs']} epochs), done before -> {out}"
            )
            continue
        r = train(
            preset,
            data,
            out,
            resume=resume,
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
                "seconds_per_epoch": mean_epoch_seconds(h),
                "images_per_second": mean_images_per_second(h),
                "peak_memory_mb": peak_memory_mb(h),  # None on a CPU
                "curve": [
                    {
                        "epoch": x["epoch"],
                        "elapsed_seconds": x["elapsed_seconds"],
                        "val_acc": x["val_acc"],
                    }
                    for x in h
                    if x.get("val_acc") is not None
                ],
                "out_dir": str(out),
            }
        )
        del best
        _finish(out, rows[-1], fingerprint, keep_last)
        log(f"{name}: val {rows[-1]['val_acc']:.4f} ({len(h)} epochs) -> {out}")
    for row in rows:
        row["delta"] = row["val_acc"] - rows[0]["val_acc"]
    return rows


def sections_cost(sections: dict[str, tuple[bool, int, float | None]]) -> str:
    """What the optional sections of a notebook cost, said before they run: one line each,
    ``name: (on, runs, minutes each)`` -> ``patch sizes  on   3 runs x 2 min = 6 min``, and
    the minutes of the sections that are on. The minutes are the runs' budgets; compiling,
    measuring the step rate and scoring come on top of each (outside its budget)."""
    width = max((len(n) for n in sections), default=0)
    lines, total = [], 0.0
    for name, (on, runs, minutes) in sections.items():
        runs_text = f"{runs} run{'' if runs == 1 else 's'}"
        cost = (
            f"{runs_text} x {minutes:g} min = {runs * minutes:g} min"
            if minutes
            else f"{runs_text}, no time budget"
        )
        lines.append(f"  {name:<{width}}  {'on ' if on else 'off'}  {cost}")
        total += runs * (minutes or 0.0) if on else 0.0
    head = (
        f"optional sections: {total:g} min of training budgets in the sections that are on "
        "(each run also compiles, measures its step rate and is scored, outside its budget):"
    )
    return "\n".join([head, *lines])


def folder_bytes(path) -> int:
    """Bytes of the regular files under ``path`` (0 when it does not exist; symbolic links
    are neither followed nor counted)."""
    import os

    path = Path(path)
    if not os.path.lexists(path):
        return 0
    if path.is_file() and not path.is_symlink():
        return path.stat().st_size
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(folder, name))
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def space_report(folders: dict[str, object]) -> str:
    """The disk space each output folder takes and all of them together, one line each:
    ``outputs: 1.2 GiB in all`` then ``  main run  300.0 MiB  /content/drive/...``."""
    from helpers.runtime import format_bytes

    sizes = {name: folder_bytes(path) for name, path in folders.items()}
    width = max((len(n) for n in folders), default=0)
    lines = [f"outputs: {format_bytes(sum(sizes.values()))} in all"]
    for name, path in folders.items():
        lines.append(f"  {name:<{width}}  {format_bytes(sizes[name]):>10}  {path}")
    return "\n".join(lines)


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
            f"{fmt(r['images_per_second'], '>8.0f'):>8} {fmt(r['seconds_per_epoch'], '>8.2f'):>8} "
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


__all__ = [
    "ABLATIONS",
    "ablation_table",
    "f1_deltas",
    "folder_bytes",
    "heads_for",
    "one_at_a_time",
    "run_variants",
    "sections_cost",
    "space_report",
    "variant_presets",
]
