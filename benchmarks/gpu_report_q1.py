"""The GPU report's Q1 sections: the data, the ``fast`` preset's budgeted run
(``q1_time_to_accuracy.measure``) and the training throughput decomposition
(``q1_throughput.decomposed``); each measured by its benchmark, tabled here."""

from __future__ import annotations

import gc
import time
import traceback
from pathlib import Path

from report_doc import Report, _error, _fmt, _free_gpu, _log, _pct, _short, md_table

Q1_SECTIONS = ("data", "throughput", "fast")

# Estimates in seconds on one H100, compile included: the budget check before each section
# reads them (gpu_report.py prints each one with the time left and skips what does not fit).
# CIFAR-10 from its pickles, or a JPEG copy from its .npz cache: 60,000 32-px images in memory
DATA_S = 20
# the fast run beyond --minutes: model build, torch.compile and calibration before the clock,
# the final val / test scoring and the plot
FAST_SETUP_S = 60
# the seed row: per-image PIL transforms (AutoAugment, erasing) on 2 DataLoader workers
SEED_IMAGES_PER_S = 2_000
# each of our three rows compiles model + augmentation again (a new batch or precision)
OURS_ROW_COMPILE_S = 30
# our rows once compiled: the README's target for the training images/s
OURS_IMAGES_PER_S = 40_000


def estimate_fast(args) -> float:
    return args.minutes * 60 + FAST_SETUP_S


def estimate_throughput(args, device) -> float:
    """The seed row at its loader's rate, then our three rows (seed batch at the seed's and
    at our precision, our batch), each with its compile."""
    steps = (args.warmup if args.warmup is not None else 20) + args.steps
    compiled = device.type == "cuda" if args.compile is None else args.compile
    compile_s = OURS_ROW_COMPILE_S if compiled else 0
    seed = steps * args.seed_batch / SEED_IMAGES_PER_S
    ours = [
        compile_s + steps * b / OURS_IMAGES_PER_S for b in (args.seed_batch,) * 2 + (args.batch,)
    ]
    return seed + sum(ours)


def plan_q1(args, device) -> list[tuple[str, str, float]]:
    """(section, what, estimated seconds) of the Q1 sections this run will try, in run order."""
    sections = args.only or list(Q1_SECTIONS)
    plan = [("data", "Q1 data loading", DATA_S)]
    if "fast" in sections:
        plan.append(("fast", f"Q1 fast preset, {args.minutes:g} min + setup", estimate_fast(args)))
    if "throughput" in sections:
        plan.append(
            ("throughput", "Q1 training images/s, 4 rows", estimate_throughput(args, device))
        )
    return plan


def q1_data(sec: dict, args, state: dict) -> None:
    from helpers.classify.data import load_dataset

    t = time.perf_counter()
    if args.data:
        data = load_dataset(args.data)
    else:  # --quick without --data: synthetic uint8 images of CIFAR shape
        data = load_dataset("synthetic", n_train=256, n_val=64, num_classes=10)
    load_s = time.perf_counter() - t
    test_y = getattr(data, "test_y", None)
    res = {
        "source": data.source or str(args.data),
        "train": len(data.train_y),
        "val": len(data.val_y),
        "test": None if test_y is None else len(test_y),
        "classes": data.num_classes,
        "image_size": data.image_size,
        "load_seconds": round(load_s, 2),
    }
    sec["result"] = res
    sec["table"] = md_table(
        ["data", "train", "val", "test", "classes", "image", "load s"],
        [
            [
                res["source"],
                f"{res['train']:,}",
                f"{res['val']:,}",
                _fmt(res["test"]),
                res["classes"],
                f"{res['image_size']}px",
                f"{load_s:.1f}",
            ]
        ],
        right={1, 2, 3, 4, 6},
    )
    if test_y is None:
        sec["notes"].append("no test split: the fast run reports val accuracy only")
    state["data"], state["data_seconds"] = data, load_s


def q1_fast(sec: dict, args, device, state: dict, out: Path) -> None:
    from q1_time_to_accuracy import measure, plot_curve, time_to_target

    from helpers.classify.plots import save_figure
    from helpers.classify.presets import get_preset

    data = state["data"]
    overrides = {"minutes": args.minutes, "compile": device.type == "cuda"}
    if args.quick:
        overrides.update(dim=32, depth=1, heads=2, batch_size=16, epochs=2)
    preset = get_preset("fast", **overrides)
    if preset.model is not None and preset.model.image_size != data.image_size:
        preset.model.image_size = data.image_size
        preset.model.validate()
    run_dir = out / "fast_run"
    result, res = measure(
        preset, data, run_dir, device, args.target, progress=False,
        max_steps_per_epoch=2 if args.quick else None, log=lambda m: print(m, flush=True),
    )  # fmt: skip
    curve, hit = res["curve"], time_to_target(res["curve"], args.target)
    test_x = getattr(data, "test_x", None)
    if res["test_acc"] is None and test_x is not None and len(test_x):
        res["test_acc"] = _test_accuracy(result, data, device, preset.train.precision)
        sec["notes"].append(
            "test accuracy of the final weights (EMA when on), measured here: the trainer did "
            "not report one"
        )
    # the whole command: data loading + train() (setup, training on the clock, final scoring)
    res["data_seconds"] = state.get("data_seconds")
    res["command_seconds"] = (state.get("data_seconds") or 0.0) + res.pop("call_seconds")
    res["run_dir"] = str(run_dir)
    sec["result"] = res
    if curve:
        fig = plot_curve(curve, args.target, f"{preset.name}: val accuracy vs wall time")
        png = save_figure(fig, out / "q1_fast_curve.png")
        import matplotlib.pyplot as plt

        plt.close(fig)
        res["plot"] = png.name
    summary = md_table(
        [
            "preset",
            "params",
            "budget",
            "epochs",
            "wall time",
            "mean img/s",
            "final val acc",
            "best val acc",
            "test acc",
            f"time to {args.target * 100:g}%",
        ],
        [
            [
                preset.name,
                f"{res['parameters']:,}",
                f"{args.minutes:g} min",
                res["epochs"],
                f"{res['train_minutes']:.2f} min",
                _fmt(res["mean_images_per_second"]),
                _pct(res["final_val_acc"]),
                _pct(res["best_val_acc"]),
                _pct(res["test_acc"]),
                "not reached" if hit is None else f"{res['minutes_to_target']:.2f} min",
            ]
        ],
        right=set(range(1, 10)),
    )
    points = _spread(curve, 12)
    curve_md = md_table(
        ["wall time (min)", "epoch", "val acc", "train loss"],
        [
            [
                f"{r['elapsed_seconds'] / 60:.2f}",
                r["epoch"],
                _pct(r["val_acc"]),
                _fmt(r.get("train_loss"), ".4f"),
            ]
            for r in points
        ],
        right={0, 1, 2, 3},
    )
    whole = md_table(
        ["budget", "whole command", "data", "setup: model, compile, calibration", "training",
         "final scoring", "steps planned / run", "re-plans", "validating"],
        [
            [
                f"{args.minutes * 60:.0f} s",
                f"**{res['command_seconds']:.0f} s**",
                f"{res['data_seconds'] or 0:.1f} s",
                f"{res['setup_seconds']:.1f} s",
                f"{res['training_seconds']:.1f} s",
                f"{res['scoring_seconds']:.1f} s",
                f"{res['planned_steps']} / {res['steps']}",
                res["replans"],
                f"{res['validation_seconds']:.1f} s ({_pct(res['validation_share'])} of the budget)",
            ]
        ],
        right=set(range(0, 9)),
    )  # fmt: skip
    sec["table"] = (
        summary
        + "\n\nwhat the whole command took, beside the budget:\n\n"
        + whole
        + "\n\nval accuracy vs wall time:\n\n"
        + curve_md
    )
    if res.get("plot"):
        sec["table"] += f"\n\n![val accuracy vs wall time]({res['plot']})"
    sec["notes"] += [
        "wall time is the trainer's own clock (training, validation, checkpoints): what the "
        "budget covers; the whole command adds data loading, model setup, compile and "
        "calibration (before the clock) and the final test scoring",
        f"the budget's schedule ended at lr {_fmt(res['final_lr'], '.2e')} after "
        f"{res['replans']} re-plan(s) (a run that falls behind re-plans the steps left)",
        "val accuracy is the EMA weights' when the preset uses EMA"
        + (
            f" (raw weights at the end: {_pct(res['final_val_acc_raw_weights'])})"
            if res["final_val_acc_raw_weights"] is not None
            else ""
        ),
        f"full curve in report.json; checkpoints in {run_dir.name}/",
    ]
    del result
    _free_gpu()


def _spread(rows: list[dict], n: int) -> list[dict]:
    """At most ``n`` rows spread evenly over ``rows``, always with the first and last."""
    if len(rows) <= n:
        return list(rows)
    idx = sorted({round(i * (len(rows) - 1) / (n - 1)) for i in range(n)})
    return [rows[i] for i in idx]


def _test_accuracy(result, data, device, precision: str) -> float:
    from helpers.classify.metrics import predict_logits

    model = result.ema_model if getattr(result, "ema_model", None) is not None else result.model
    logits = predict_logits(model, data.test_x, result.spec, device=device, precision=precision)
    return float((logits.argmax(1) == data.test_y.cpu()).float().mean())


def q1_throughput(sec: dict, args, device, state: dict) -> None:
    import q1_throughput as tp

    from helpers.classify.presets import CIFAR10_MEAN, CIFAR10_STD

    targs = tp.parse_args(
        [
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
            "--seed-batch",
            str(args.seed_batch),
            "--workers",
            str(args.workers),
        ]
    )
    targs.warmup = args.warmup if args.warmup is not None else (20 if device.type == "cuda" else 1)
    targs.compile = device.type == "cuda" if args.compile is None else args.compile
    data = state["data"]
    res: dict = {
        "warmup_steps": targs.warmup,
        "timed_steps": targs.steps,
        "host_cpu": tp.host_cpu(),
    }
    errors = {}

    def failed(key, e):
        errors[key] = _error(e)
        traceback.print_exc()
        _free_gpu()

    res.update(tp.decomposed(targs, device, CIFAR10_MEAN, CIFAR10_STD, data, on_error=failed))
    gc.collect()
    for key in res["rows"]:
        r = res[key]
        _log(f"{key}: {r['images_per_second']:.0f} img/s ({r['seconds']:.1f} s timed)")
    if "seed" in res and "ours" in res:
        res["ratio"] = res["ours"]["images_per_second"] / res["seed"]["images_per_second"]
    if errors:
        sec["errors"] = errors
    sec["result"] = res
    rows = []
    for key, label, _kind in tp.ROWS:
        r = res.get(key)
        if r is None:
            why = errors.get(key)
            rows.append(
                [label, "", "", "", f"failed: {_short(why, 120)}" if why else "not run", ""]
            )
            continue
        vs = f"{r['vs_seed']:.2f}×" if "vs_seed" in r else "–"
        same = {k: lbl.split(" ")[0] for k, lbl, _ in tp.ROWS}.get(r.get("same_as"))
        again = f" (same settings as {same}: not rerun)" if same else ""
        rows.append(
            [
                label,
                r["batch_size"],
                r["precision"],
                tp.what_ran(r) + again,
                f"{r['images_per_second']:,.0f}",
                f"**{vs}**" if key == "ours" else vs,
            ]
        )
    sec["table"] = md_table(
        ["pipeline", "batch", "precision", "what ran (read from the run)",
         "train images/s (after warm-up: compile not in it)", "× (a)"],
        rows,
        right={1, 4, 5},
    )  # fmt: skip
    cpu = res["host_cpu"]
    sec["notes"] += [
        "(b1) ÷ (a): what the GPU-resident pipeline buys by itself (same batch, same "
        "precision); (b2) adds our precision; (b3) adds our batch: ratio (b3)/(a)"
        + (f" = {res['ratio']:.2f}×" if "ratio" in res else ""),
        f"host CPU: {cpu['model']}, {cpu['usable_cores']} of {cpu['cores']} cores usable "
        "(the seed's per-image transforms run there, so (a) depends on it)",
        f"{targs.warmup} warm-up + {targs.steps} timed steps each, data loading and augmentation "
        "inside the timed loop, timed between device synchronisations",
        f"data: {data.source or args.data} ({len(data.train_y):,} training images, decoded "
        "once into memory for both)",
    ]
    for key in res["rows"]:
        if res[key]["params"] != tp.SEED_PARAMS:
            sec["notes"].append(
                f"{key}: {res[key]['params']:,} parameters, not the seed's {tp.SEED_PARAMS:,} "
                "(the data has another number of classes)"
            )


def run_q1(args, device, report: Report) -> None:
    out = Path(args.out)
    state = {"report": report}
    sections = args.only or list(Q1_SECTIONS)
    report.run("data", "Q1 data", q1_data, args, state, estimate_s=DATA_S)
    if "data" not in state:
        for key in [k for k in ("fast", "throughput") if k in sections]:
            report.skip(key, f"Q1 {key}", "skipped: needs the Q1 data, which did not load")
        return
    # The fast run first: it is the longest and the most expensive to repeat, so a run that
    # overruns the window loses the throughput figures (a 2-minute rerun with --only) instead.
    if "fast" in sections:
        report.run(
            "fast",
            f"Q1 `fast` preset, {args.minutes:g}-minute run: val accuracy vs wall time",
            q1_fast,
            args,
            device,
            state,
            out,
            estimate_s=estimate_fast(args),
        )
        _reset_compile()
    if "throughput" in sections:
        report.run(
            "throughput",
            "Q1 training throughput: seed000 pipeline vs ours (seed000 network)",
            q1_throughput,
            args,
            device,
            state,
            estimate_s=estimate_throughput(args, device),
        )


def _reset_compile() -> None:
    try:
        import torch._dynamo

        torch._dynamo.reset()
    except Exception:
        pass
    _free_gpu()
