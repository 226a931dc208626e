"""Q1 data-parallel scaling: training images/s with 1, 2, ... processes and the efficiency.

For each N in ``--procs`` this launches ``torchrun --nproc-per-node N`` on this script's
worker, which trains the seed000 network (``--preset``) with the global batch ``--batch`` for
two short epochs of ``--steps`` steps through ``helpers.train.train`` (DDP, compile and
mixed precision as the preset says) and times the second (warm) epoch's steps between two
device synchronisations (every step's finish, not its launch), images/s over all processes.
Efficiency for N = images/s(N) / (N x images/s(1)), N = 1 always measured as the base;
target >= 0.85 per added GPU.

    python benchmarks/q1_scaling.py --procs 1 2 4 8            # one node with 8 GPUs
    python benchmarks/q1_scaling.py --quick                     # CPU sanity mode: 1 and 2 procs
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synced_timer(device: str, start: int, stop: int):
    """A wrapper for ``helpers.train.one_step`` that times its calls ``start`` .. ``stop - 1``
    (0-based) between two device synchronisations; ``timer["seconds"]`` once done."""
    import time

    import torch

    from helpers import train as T

    real, timer = T.one_step, {"calls": 0, "seconds": None}

    def sync():
        if device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.synchronize()

    def timed_step(*a, **k):
        if timer["calls"] == start:
            sync()
            timer["t0"] = time.perf_counter()
        out = real(*a, **k)
        timer["calls"] += 1
        if timer["calls"] == stop:
            sync()
            timer["seconds"] = time.perf_counter() - timer["t0"]
        return out

    T.one_step = timed_step
    return timer


def worker(args) -> None:
    import torch

    from helpers.data import synthetic_dataset
    from helpers.presets import get_preset
    from helpers.train import train

    quick = args.quick
    n = args.batch * args.steps
    data = synthetic_dataset(n_train=n, n_val=args.batch, image_size=32, num_classes=10)
    kw = {"dim": 32, "depth": 1, "heads": 2} if quick else {}
    preset = get_preset(args.preset, batch_size=args.batch, epochs=2, **kw)
    preset.train.minutes = None
    if args.device == "cpu" or not torch.cuda.is_available():
        preset.train.compile, preset.train.precision = False, "fp32"
        torch.set_num_threads(1)
    timer = synced_timer(args.device, args.steps, 2 * args.steps)  # the second epoch's steps
    r = train(
        preset, data, Path(args.out) / "run", resume=False, device=args.device,
        pretrained=False, progress=False, max_steps_per_epoch=args.steps, log=lambda m: None,
    )  # fmt: skip
    if int(os.environ.get("RANK", "0")) == 0:
        rate = args.batch * args.steps / timer["seconds"]
        host = r.history[-1]["images_per_second"]  # the trainer's own (host, unsynced) figure
        result = {"images_per_second": rate, "host_clock_images_per_second": host}
        Path(args.out, "rate.json").write_text(json.dumps(result))


def launch(n: int, args, out: Path) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={n}",
        f"--master-port={port}", __file__, "--worker", "--out", str(out),
        "--preset", args.preset, "--batch", str(args.batch), "--steps", str(args.steps),
        "--device", args.device, *(["--quick"] if args.quick else []),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if args.device == "cpu" else None
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: {n} processes failed:\n{r.stderr[-2000:]}")
    return json.loads((out / "rate.json").read_text())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, nargs="+", default=None, help="process counts (1 2 4 8)")
    ap.add_argument("--preset", default="seed000")
    ap.add_argument("--batch", type=int, default=None, help="global batch (default 512, quick 16)")
    ap.add_argument("--steps", type=int, default=None, help="steps per epoch (default 40)")
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--quick", action="store_true", help="tiny model on the CPU, 1 and 2 procs")
    ap.add_argument("--out", help="JSON file for the results")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.batch is None:
        args.batch = 16 if args.quick else 512
    if args.steps is None:
        args.steps = 4 if args.quick else 40
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() and not args.quick else "cpu"
    if args.worker:
        worker(args)
        return {}
    if args.procs is None:
        import torch

        gpus = torch.cuda.device_count() if args.device == "cuda" else 2
        args.procs = [n for n in (1, 2, 4, 8, 16) if n <= max(gpus, 1)]
    procs = sorted(set(args.procs) | {1})  # N = 1 is the efficiency's base
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in procs:
            rates = launch(n, args, Path(tmp) / f"n{n}")
            rows.append({"processes": n, **rates})
    base = rows[0]["images_per_second"]  # N = 1
    for r in rows:
        r["efficiency"] = r["images_per_second"] / (r["processes"] * base)
    print(f"{args.preset}, global batch {args.batch}, {args.device}")
    print(f"{'processes':>9} {'images/s':>10} {'efficiency':>10}")
    for r in rows:
        print(f"{r['processes']:>9} {r['images_per_second']:>10.0f} {r['efficiency']:>10.2f}")
    result = {
        "preset": args.preset,
        "batch": args.batch,
        "device": args.device,
        "timing": "second epoch's steps between device synchronisations",
        "rows": rows,
    }
    if args.out:
        from helpers.files import atomic_write_json

        atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
