"""Every GPU figure the README needs, one short run per part: OUT/report.md and OUT/report.json.

--part q1  (1) the ``fast`` preset trained for ``--minutes`` (default 5): val accuracy against
           wall time (table + PNG), final val and test accuracy (test when the data has a test
           split), and the whole command's time beside the budget (data, setup with compile and
           calibration, training, final scoring); (2) training images/s on the seed000 network,
           decomposed: the seed000 pipeline, ours at the seed's batch and precision, at the
           seed's batch with our precision, at our batch (q1_throughput.py's rows), with what
           ran read from the run. The long run goes first, so a run that overruns its window
           loses the short one (rerun it with ``--only throughput``).
--part q2  (1) warm text -> masks latency per image (Grounding DINO tiny + SAM 2.1 large, 1024 px);
           (2) video tracking FPS for SAM 2.1 tiny and large (720p, 2 and 5 objects), sam2's
           documented init_state -> add_new_points_or_box -> propagate_in_video loop and ours
           in the same run, each as propagation FPS and end-to-end FPS, with the dtype,
           compile, TF32 and offload settings read from the run; (3) peak GPU memory, peak
           host RSS (and FPS) on a long 720p video (1,800 frames);
           (4) SAM 3 image latency (one model, text -> masks, same image and prompt) and
           (5) SAM 3 video tracking FPS (its own detector + tracker, 720p, at most 2 objects).
           q2_speed.py's functions do the measuring of (1)-(3).

Q2's models have random weights built from the real configs (nothing is downloaded; speed and
memory do not depend on the weights). Each part is sized to finish within ``--budget-minutes``
(9) on one H100, compile and data decoding included: the elapsed time is printed after every
section, a warning says when the budget will be overrun, and the long video is shortened (and
the report says so) when what is left of the budget cannot hold it. A section that fails (e.g.
out of memory for one size) is recorded in the report and the others still run; both report
files are rewritten atomically after every section, so a killed run keeps what it measured.
The exit status is 1 when a section failed.

    python benchmarks/gpu_report.py --part q1 --data data/cifar10_jpeg --out runs/gpu_q1
    python benchmarks/gpu_report.py --part q1 --data cifar10 --minutes 4 --out runs/gpu_q1
    python benchmarks/gpu_report.py --part q2 --out runs/gpu_q2
    python benchmarks/gpu_report.py --part q1 --quick --out /tmp/q1   # CPU sanity run, seconds
    python benchmarks/gpu_report.py --part q2 --quick --out /tmp/q2   # CPU sanity run, seconds
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the package and the sibling benchmark scripts

Q1_SECTIONS = ("data", "throughput", "fast")
Q2_SECTIONS = ("image", "video", "long", "sam3_image", "sam3_video")


# --------------------------------------------------------------------------- small helpers


def _log(msg: str) -> None:
    print(f"[gpu_report] {msg}", flush=True)


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB)"
    return f"{device.type.upper()} ({torch.get_num_threads()} threads)"


def _torch_version() -> str:
    import torch

    cuda = getattr(torch.version, "cuda", None)
    return f"{torch.__version__}" + (f", CUDA {cuda}" if cuda else "")


def _free_gpu() -> None:
    """Release what a finished or failed section left on the GPU. Never raises: after a CUDA
    error the context may be unusable, and the next section then records its own error."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        try:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        except Exception as e:
            _log(f"warning: could not free GPU memory ({_error(e)})")


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()


def _short(text: str, n: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= n else line[: n - 1] + "…"


def _fmt(v, spec: str = ",.0f", none: str = "–") -> str:
    if v is None:
        return none
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def _pct(v) -> str:
    return "–" if v is None else f"{v * 100:.2f}%"


def md_table(headers: list[str], rows: list[list], right: set[int] | None = None) -> str:
    """A GitHub markdown table; columns in ``right`` are right-aligned."""
    right = right or set()
    sep = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    for r in rows:
        cells = [str(c).replace("|", "\\|").replace("\n", " ") for c in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the report


class Report:
    """Sections in run order; ``save()`` rewrites report.json and report.md atomically."""

    def __init__(self, args, device, command: str):
        self.t0 = time.perf_counter()
        self.out = Path(args.out)
        self.budget_s = args.budget_minutes * 60
        self.device = device
        self.doc = {
            "part": args.part,
            "quick": bool(args.quick),
            "device": _device_name(device),
            "torch": _torch_version(),
            "command": command,
            "started_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "budget_minutes": args.budget_minutes,
            "elapsed_seconds": 0.0,
            "sections": {},
        }

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def failed(self) -> list[str]:
        return [k for k, s in self.doc["sections"].items() if s.get("error") or s.get("errors")]

    def run(self, key: str, title: str, fn, *fn_args):
        """Run ``fn(section, *fn_args)``; ``section`` is the dict saved for this section: the
        function fills in ``result``/``table``/``notes`` (and may call ``self.save()`` between
        sizes). An exception is recorded as the section's error; the run goes on."""
        _log(f"{title} ... (elapsed {self.elapsed():.0f} s, {self.left():.0f} s of budget left)")
        t = time.perf_counter()
        sec = {"title": title, "notes": [], "result": None, "table": None}
        self.doc["sections"][key] = sec
        err = None
        try:
            fn(sec, *fn_args)
        except Exception as e:  # e.g. CUDA out of memory: keep what the other sections measure
            err = _error(e)
            traceback.print_exc()
        if err is not None:
            sec["error"] = err
            _free_gpu()
        sec["seconds"] = round(time.perf_counter() - t, 1)
        self.save()
        state = f"FAILED ({_short(err, 200)})" if err else "done"
        _log(
            f"{title}: {state} in {sec['seconds']:.1f} s; total {self.elapsed():.1f} s "
            f"of the {self.budget_s:.0f} s budget"
        )
        return sec

    def save(self) -> None:
        from helpers.files import atomic_write_json, atomic_write_text

        self.doc["elapsed_seconds"] = round(self.elapsed(), 1)
        self.doc["over_budget"] = self.elapsed() > self.budget_s
        atomic_write_json(self.out / "report.json", self.doc)
        atomic_write_text(self.out / "report.md", self.markdown())

    def markdown(self) -> str:
        d = self.doc
        part = {"q1": "Q1 (ViT on CIFAR-10)", "q2": "Q2 (text-prompted segmentation)"}[d["part"]]
        out = [
            f"# GPU report: {part}",
            "",
            f"- device: {d['device']}",
            f"- torch: {d['torch']}",
            f"- command: `{d['command']}`",
            f"- started {d['started_utc']} UTC; {d['elapsed_seconds'] / 60:.2f} min in all "
            f"(budget {d['budget_minutes']:g} min)",
        ]
        if d["quick"]:
            out.append("- **quick mode**: tiny sizes for a sanity check; the numbers mean nothing.")
        for sec in d["sections"].values():
            out += ["", f"## {sec['title']}", ""]
            took = "still running" if sec.get("seconds") is None else f"{sec['seconds']:.1f} s"
            out.append(
                f"device: {d['device']} · torch {d['torch']} · `{d['command']}` · "
                f"section time {took}"
            )
            if sec.get("table"):
                out += ["", sec["table"]]
            if sec.get("error"):
                out += ["", f"**error:** {_short(sec['error'])}"]
            notes = sec.get("notes") or []
            if notes:
                out.append("")
                out += [f"- {n}" for n in notes]
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- Q1


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
    expected = args.minutes * 60 + 60  # + model setup, compile, final evaluations, plot
    if expected > max(0.0, state["report"].left()):
        _log(
            f"warning: the fast run ({args.minutes:g} min + ~1 min of setup) will end past the "
            f"{args.budget_minutes:g}-minute budget ({state['report'].left():.0f} s left); "
            "lower --minutes"
        )
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
        ["pipeline", "batch", "precision", "what ran (read from the run)", "train images/s",
         "× (a)"],
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
    report.run("data", "Q1 data", q1_data, args, state)
    if "data" not in state:
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
        )


def _reset_compile() -> None:
    try:
        import torch._dynamo

        torch._dynamo.reset()
    except Exception:
        pass
    _free_gpu()


# --------------------------------------------------------------------------- Q2


def _q2_args(args):
    import q2_speed

    argv = ["--n", str(args.n), "--video-frames", str(args.video_frames)]
    argv += ["--long-frames", str(args.long_frames)]
    if args.quick:
        argv += ["--quick", "--sizes", "tiny"]
    if args.compile:
        argv.append("--compile")
    qargs = q2_speed.parse_args(argv)
    if args.quick:  # parse_args --quick caps these; keep ours when given smaller
        qargs.video_frames = min(qargs.video_frames, args.video_frames)
    return qargs


SIZE_DEFAULTS = {"image_sizes": "large", "video_sizes": "tiny,large", "long_size": "large"}


def _sizes(args, name: str) -> list[str]:
    from helpers.textseg import segment

    value = getattr(args, name) or ("tiny" if args.quick else SIZE_DEFAULTS[name])
    sizes = [s.strip() for s in value.split(",") if s.strip()]
    for s in sizes:
        segment.normalize_size(s)
    return sizes


def _per_size(sec: dict, report: Report, sizes: list[str], fn) -> list[dict]:
    """``fn(size) -> list of rows`` for each size; a failure becomes an error row."""
    rows: list[dict] = []
    sec["result"] = rows
    for size in sizes:
        err = None
        t = time.perf_counter()
        try:
            got = fn(size)
        except Exception as e:
            err = _error(e)
            traceback.print_exc()
        if err is not None:
            rows.append({"size": size, "error": err})
            sec.setdefault("errors", {})[size] = err
            _free_gpu()
        else:
            rows.extend(got)
        _log(f"  {size}: {time.perf_counter() - t:.1f} s")
        report.save()
    return rows


def _weights(qargs) -> str:
    toy = qargs.detector_size == "toy"
    return "random weights" + (" (toy detector config)" if toy else " from the real configs")


def q2_image(sec: dict, args, qargs, device, detector, report: Report) -> None:
    import q2_speed

    sizes = _sizes(args, "image_sizes")

    def one(size):
        a = copy.copy(qargs)
        a.sizes = [size]
        return q2_speed.bench_image(a, device, detector)

    rows = _per_size(sec, report, sizes, one)
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["size"], "", "", f"failed: {_short(r['error'], 120)}", "", "", ""])
            continue
        table.append(
            [
                r["size"],
                r["image"],
                r["boxes"],
                f"{r['ours_ms']:.1f}",
                f"{r['seed_ms']:.1f}",
                f"{r['speedup']:.2f}×",
                _fmt(r.get("ours_peak_mib"), ",.0f"),
            ]
        )
    sec["table"] = md_table(
        [
            "SAM 2.1",
            "image",
            "boxes",
            "ours ms",
            "seed-style ms (fp32)",
            "speedup",
            "ours peak MiB",
        ],
        table,
        right={2, 3, 4, 5, 6},
    )
    sec["notes"] += [
        f"Grounding DINO {qargs.detector_size} + SAM 2.1, {_weights(qargs)}; "
        f"median of {qargs.n} warm runs after {qargs.warmup} warm-up; prompt "
        f"'{q2_speed.PROMPT}'",
        "ours: inference_mode, bf16 autocast + TF32 (Ampere+), all boxes in one SAM 2 call"
        + ("; SAM 2 image encoder compiled" if qargs.compile else "")
        + "; seed-style: fp32 (TF32 off) under no_grad",
    ]


def _settings_note(settings: dict) -> str:
    """What ran, from ``sam2_video.run_settings`` of the run (never typed in)."""
    return (
        f"{settings.get('predictor')} ({'compiled' if settings.get('compiled') else 'not compiled'}), "
        f"{settings.get('dtype')}, TF32 {'on' if settings.get('tf32') else 'off'}, "
        f"device {settings.get('device')}"
    )


def q2_video(sec: dict, args, qargs, device, detector, report: Report, work: Path) -> None:
    import q2_speed

    sizes = _sizes(args, "video_sizes")
    h, w = q2_speed._res(qargs.video_res)

    def one(size):
        a = copy.copy(qargs)
        a.sizes = [size]
        return q2_speed.bench_video(a, device, detector, None, work)

    rows = _per_size(sec, report, sizes, one)
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["size"], "", f"failed: {_short(r['error'], 120)}"] + [""] * 6)
            continue
        table.append(
            [
                r["size"],
                r["objects"],
                f"{r['official_prop_fps']:.2f}",
                f"{r['official_e2e_fps']:.2f}",
                f"{r['ours_prop_fps']:.2f}",
                f"{r['ours_e2e_fps']:.2f}",
                f"{_fmt(r.get('official_peak_mib'))} / {_fmt(r.get('ours_peak_mib'))}",
                f"{_fmt(r.get('official_rss_mib'))} / {_fmt(r.get('ours_rss_mib'))}",
                "on" if r.get("ours_offload") else "off",
            ]
        )
    sec["table"] = md_table(
        [
            "SAM 2.1",
            "objects",
            "sam2 loop fps (propagation)",
            "sam2 loop fps (end to end)",
            "ours fps (propagation)",
            "ours fps (end to end)",
            "peak GPU MiB sam2 / ours",
            "peak RSS MiB sam2 / ours",
            "ours offload",
        ],
        table,
        right={1, 2, 3, 4, 5, 6, 7},
    )
    ok = [r for r in rows if "error" not in r]
    for r in ok[:1] + [x for x in ok[1:] if x["settings"] != ok[0]["settings"]]:
        sec["notes"].append(f"{r['size']}: ran as {_settings_note(r['settings'])}")
    for r in ok:
        sec["notes"].append(
            f"{r['size']}, {r['objects']} objects: warm-up on 8 frames (compiles a compiled "
            f"predictor for these shapes) {r['warmup_s']:.1f} s, not inside any fps"
        )
    sec["notes"] += [
        f"{qargs.video_frames} frames of {w}x{h} in an H.264 file; the same boxes on frame 0 "
        "for both loops (one shared predictor, "
        f"{_weights(qargs)})",
        "sam2 loop: its README's init_state -> add_new_points_or_box -> propagate_in_video on "
        "the video as a JPEG folder; ours: track_video on the file (frames decoded in memory)",
        "propagation fps: between the first and last frame propagation delivered (frames "
        "loaded beforehand, as Meta measures); end to end: video file -> masks on the host",
    ]


def q2_long(sec: dict, args, qargs, device, detector, report: Report, work: Path) -> None:
    import q2_speed

    size = _sizes(args, "long_size")[-1]
    a = copy.copy(qargs)
    a.sizes = [size]
    n = a.long_frames
    # Budget: project from this run's 120-frame ours speed for the same size; shorten to fit.
    video = report.doc["sections"].get("video", {}).get("result") or []
    fps = next((r.get("ours_e2e_fps") for r in video if r.get("size") == size), None)
    if fps and not args.quick:
        per_frame = 1.2 / fps + 0.005  # tracking + frame writing, with a margin
        fits = int((report.left() - 20) / per_frame)
        if fits < n:
            n_new = max(min(n, 2 * a.chunk_size), fits)
            sec["notes"].append(
                f"shortened from {n:,} to {n_new:,} frames to stay within the "
                f"{args.budget_minutes:g}-minute budget (projected {n * per_frame:.0f} s, "
                f"{report.left():.0f} s left)"
            )
            _log(f"  {sec['notes'][-1]}")
            n = n_new
    a.long_frames = n
    res = q2_speed.bench_long(a, device, detector, work)
    sec["result"] = res
    short = next((r for r in video if r.get("size") == size and "error" not in r), None)
    rows = [
        [
            size,
            res["video"],
            f"{res['frames']:,}",
            a.chunk_size,
            f"{res['fps']:.2f}",
            _fmt(res.get("peak_mib")),
            _fmt(res.get("rss_mib")),
        ]
    ]
    if short is not None:
        rows.append(
            [
                size,
                short["video"],
                f"{short['frames']:,}",
                a.chunk_size,
                f"{short['ours_e2e_fps']:.2f}",
                _fmt(short.get("ours_peak_mib")),
                _fmt(short.get("ours_rss_mib")),
            ]
        )
    sec["table"] = md_table(
        ["SAM 2.1 (ours)", "video", "frames", "chunk", "fps end to end", "peak GPU MiB",
         "peak RSS MiB"],
        rows,
        right={2, 3, 4, 5, 6},
    )  # fmt: skip
    sec["notes"] += [
        "peak GPU = torch.cuda.max_memory_allocated, peak RSS = the process's resident memory "
        "sampled every 20 ms, both over the run; the second row is the short video of the "
        "video section, for comparison (memory should stay flat)",
        f"ran as {_settings_note(res['settings'])}, offload "
        f"{'on' if res['settings'].get('offload') else 'off'}",
    ]


def _sam3_size(args) -> str:
    return "toy" if args.quick else "full"


def _config_words(row: dict, real: str) -> str:
    """How the run built SAM 3, read from the model it ran (``random-toy`` / ``random-full``)."""
    return "toy config" if str(row.get("config", "")).endswith("toy") else f"{real} (the real sizes)"


def q2_sam3_image(sec: dict, args, qargs, device, report: Report) -> None:
    """Warm SAM 3 latency per image (``q2_sam3_speed.bench_image``)."""
    import q2_sam3_speed
    import q2_speed

    warmup = 1 if args.quick else 3
    row = q2_sam3_speed.bench_image(_sam3_size(args), device, qargs.image_px, args.n, warmup)
    sec["result"] = [row]
    sec["table"] = md_table(
        ["model", "image", "phrases", "warm ms", "text encoding saved / image ms", "peak MiB"],
        [
            [
                row["model"],
                row["image"],
                row["phrases"],
                f"{row['ms']:.1f}",
                f"{row['text_encode_ms_saved']:.1f}",
                _fmt(row["peak_mib"]),
            ]
        ],
        right={2, 3, 4, 5},
    )
    sec["notes"] += [
        f"SAM 3 {_config_words(row, 'Sam3Config()')}, random weights; median of {row['runs']} "
        f"warm runs after {row['warmup']} warm-up; prompt '{q2_speed.PROMPT}'; compare with the "
        "Grounding DINO + SAM 2.1 rows of the image section (same image size and prompt)",
        "per image: 1 vision pass + 1 DETR/mask pass per phrase; each phrase's text features "
        "are computed once per process and reused (the last column is what that saves)",
        "inference_mode, bf16 autocast + TF32 on Ampere+ (fp32 elsewhere)",
    ]
    _free_gpu()


def q2_sam3_video(sec: dict, args, qargs, device, report: Report, work: Path) -> None:
    """SAM 3 video FPS through our chunked path (``q2_sam3_speed.bench_video``)."""
    import q2_sam3_speed

    row = q2_sam3_speed.bench_video(
        _sam3_size(args), device, work, qargs.video_frames, qargs.video_res, qargs.chunk_size
    )
    sec["result"] = [row]
    sec["table"] = md_table(
        ["model", "video", "frames", "fps", "fps end to end", "chunk", "ids", "peak MiB"],
        [
            [
                row["model"],
                row["video"],
                row["frames"],
                f"{row['fps']:.2f}",
                f"{row['e2e_fps']:.2f}",
                row["chunk_size"],
                row["ids"],
                _fmt(row["peak_mib"]),
            ]
        ],
        right={2, 3, 4, 5, 6, 7},
    )
    sec["notes"] += [
        "SAM 3 video (detector on every frame + memory tracker), "
        f"{_config_words(row, 'Sam3VideoConfig()')}, random weights, at most "
        f"{row['max_objects']} tracked objects; frames preprocessed and stored on the CPU "
        f"(offload), sessions of at most {row['chunk_size']} frames",
        "fps = frames / tracking time (SAM 3 detection + tracking + RLE of the masks); end to "
        "end also counts reading the frames; compare with the SAM 2.1 rows of the video section",
    ]
    _free_gpu()


def run_q2(args, device, report: Report) -> None:
    import q2_speed

    from helpers import runtime

    if device.type == "cuda":
        runtime.enable_fast_matmul()
    qargs = _q2_args(args)
    sections = args.only or list(Q2_SECTIONS)
    state: dict = {}

    def setup(sec):
        t = time.perf_counter()
        state["detector"] = q2_speed.make_detector(qargs, device)
        build_s = time.perf_counter() - t
        sec["result"] = {
            "detector": f"grounding-dino {qargs.detector_size}",
            "build_seconds": round(build_s, 1),
            "sam_image_size": qargs.sam_image_size or "model default (1024)",
        }
        sec["table"] = md_table(
            ["detector", "weights", "build s", "SAM 2.1 input"],
            [
                [
                    f"Grounding DINO {qargs.detector_size}",
                    "random, " + ("toy config" if qargs.detector_size == "toy" else "real config"),
                    f"{build_s:.1f}",
                    f"{qargs.sam_image_size or 1024} px",
                ]
            ],
            right={2},
        )

    report.run("setup", "Q2 setup (random-weight Grounding DINO)", setup)
    if "detector" not in state:
        return
    det = state["detector"]
    with tempfile.TemporaryDirectory(prefix="gpu_report_") as tmp:
        work = Path(tmp)
        if "image" in sections:
            title = "Q2 image: text -> masks latency (warm)"
            report.run("image", title, q2_image, args, qargs, device, det, report)
        if "video" in sections:
            title = "Q2 video: tracking FPS, sam2's documented loop vs ours"
            report.run("video", title, q2_video, args, qargs, device, det, report, work)
        if "long" in sections:
            title = "Q2 long video: peak GPU and host memory"
            report.run("long", title, q2_long, args, qargs, device, det, report, work)
        if "sam3_image" in sections:
            title = "Q2 SAM 3 image: text -> masks latency with one model (warm)"
            report.run("sam3_image", title, q2_sam3_image, args, qargs, device, report)
        if "sam3_video" in sections:
            title = "Q2 SAM 3 video: tracking FPS with its own detector + tracker"
            report.run("sam3_video", title, q2_sam3_video, args, qargs, device, report, work / "s3")


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--part", required=True, choices=["q1", "q2"])
    p.add_argument("--data", help="q1: ImageFolder root (train/ + val/ [+ test/]) or 'cifar10'")
    p.add_argument("--out", help="output folder (default runs/gpu_report_<part>)")
    p.add_argument("--minutes", type=float, help="q1: the fast run's budget (default 5)")
    p.add_argument("--budget-minutes", type=float, default=9.0, help="whole part (default 9)")
    p.add_argument("--device", help="cuda | cpu (default: cuda when available; --quick: cpu)")
    p.add_argument("--quick", action="store_true", help="CPU sanity run with tiny sizes")
    p.add_argument(
        "--only",
        help="comma-separated sections: q1 throughput,fast; q2 image,video,long,sam3_image,"
        "sam3_video",
    )
    g = p.add_argument_group("q1")
    g.add_argument("--steps", type=int, help="timed throughput steps (default 100; quick 1)")
    g.add_argument("--warmup", type=int, help="throughput warm-up steps (default 20, CPU 1)")
    g.add_argument("--batch", type=int, help="our batch size (default 512; quick 8)")
    g.add_argument("--seed-batch", type=int, help="the seed's batch size (default 128; quick 8)")
    g.add_argument("--workers", type=int, help="the seed's DataLoader workers (default 2; quick 0)")
    g.add_argument("--target", type=float, default=0.91, help="val accuracy to time (0.91)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="q1: torch.compile ours (default on CUDA); q2: SAM 2 image encoder "
                   "(default off)")  # fmt: skip
    g = p.add_argument_group("q2")
    g.add_argument("--image-sizes", help="SAM 2.1 sizes for the image latency (large)")
    g.add_argument("--video-sizes", help="SAM 2.1 sizes for video FPS (tiny,large)")
    g.add_argument("--long-size", help="SAM 2.1 size for the long video (large)")
    g.add_argument("--n", type=int, help="timed image runs (default 20; quick 2)")
    g.add_argument("--video-frames", type=int, help="frames of the FPS video (120; quick 4)")
    g.add_argument("--long-frames", type=int, help="frames of the long video (1800; quick 8)")
    args = p.parse_args(argv)
    q = args.quick
    defaults = {
        "minutes": 0.1 if q else 5.0,
        "steps": 1 if q else 100,
        "batch": 8 if q else 512,
        "seed_batch": 8 if q else 128,
        "workers": 0 if q else 2,
        "n": 2 if q else 20,
        "video_frames": 4 if q else 120,
        "long_frames": 8 if q else 1800,
        "device": "cpu" if q else None,
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.out is None:
        args.out = f"runs/gpu_report_{args.part}"
    if args.part == "q1" and not args.data and not q:
        p.error("--part q1 needs --data (an ImageFolder root or 'cifar10'); --quick can do without")
    if args.minutes <= 0 or args.budget_minutes <= 0:
        p.error("--minutes and --budget-minutes must be > 0")
    if not 0 < args.target <= 1:
        p.error("--target is a fraction in (0, 1], e.g. 0.91")
    if min(args.steps, args.batch, args.seed_batch, args.n, args.video_frames) < 1:
        p.error("--steps, --batch, --seed-batch, --n and --video-frames must be >= 1")
    if args.long_frames < 2:
        p.error("--long-frames must be >= 2")
    valid = Q1_SECTIONS if args.part == "q1" else Q2_SECTIONS
    if args.only:
        args.only = [s.strip() for s in args.only.split(",") if s.strip()]
        bad = [s for s in args.only if s not in valid]
        if bad:
            p.error(f"--only {','.join(bad)}: sections of --part {args.part} are {valid}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from helpers.errors import InputError
    from helpers.runtime import pick_device

    try:
        device = pick_device(args.device)
    except InputError as e:
        sys.exit(f"error: {e}")
    shown = sys.argv[1:] if argv is None else list(argv)
    command = "python benchmarks/gpu_report.py " + shlex.join(shown)
    report = Report(args, device, command)
    _log(f"{report.doc['device']} | torch {report.doc['torch']} | part {args.part}")
    report.save()
    try:
        (run_q1 if args.part == "q1" else run_q2)(args, device, report)
    finally:
        report.save()
    _log(f"wrote {Path(args.out) / 'report.md'} and report.json in {report.elapsed():.1f} s")
    failed = report.failed()
    if report.elapsed() > report.budget_s:
        _log(f"warning: over the {args.budget_minutes:g}-minute budget")
    if failed:
        _log(f"{len(failed)} section(s) failed: {', '.join(failed)}; see report.md")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
