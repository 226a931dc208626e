"""Q1 checkpoint cost: how much of the training time the checkpoints take, every-epoch vs ours.

Builds a preset's model with its optimizer (AdamW moments filled by one step), EMA and RNG
state, then times what a run writes, to a folder of your choice (local disk, or Google Drive in
Colab):

  every epoch   the old policy: full ``last.pt`` + ``best.pt`` after every epoch
  ours          full ``last.pt`` (+ ``best.pt`` inference weights) every ``--checkpoint-minutes``

and prints each as a share of the training time for a given epoch time (``--epoch-seconds``,
default 1.1 s: 45,000 images at ~40,000 img/s, the H100 target for ``fast``).

    python benchmarks/q1_checkpoint_cost.py --preset fast --dir /content/drive/MyDrive/tmp
    python benchmarks/q1_checkpoint_cost.py --quick          # tiny model, for the tests
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(preset_name: str, folder: Path, repeats: int, quick: bool) -> dict:
    import torch

    from helpers.classify import checkpoint
    from helpers.classify.models import build_model
    from helpers.classify.presets import get_preset, preset_to_dict
    from helpers.classify.step import make_optimizer

    preset = get_preset(preset_name, **({"dim": 32, "depth": 1, "heads": 2} if quick else {}))
    model, spec = build_model(preset, 10, pretrained=False)
    opt = make_optimizer(model, preset.train, "cpu")
    model(torch.randn(2, 3, spec.size, spec.size)).sum().backward()
    opt.step()  # fills the AdamW moments, as in a real run
    ema = copy.deepcopy(model)
    meta = {"preset": preset_to_dict(preset), "classes": [str(i) for i in range(10)], "spec": {}}
    gen = torch.Generator()
    last = {
        **meta,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "ema": ema.state_dict(),
        "rng": checkpoint.rng_state(gen, gen),
        "history": [],
    }
    full_s, best_s = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, full_bytes = checkpoint.save_last(last, folder)
        full_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _, best_bytes = checkpoint.save_best(ema.state_dict(), meta, folder)
        best_s.append(time.perf_counter() - t0)
    return {
        "last_pt_bytes": full_bytes,
        "best_pt_bytes": best_bytes,
        "last_pt_seconds": statistics.median(full_s),
        "best_pt_seconds": statistics.median(best_s),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--dir", help="where to write (default: a temporary folder on local disk)")
    ap.add_argument("--epoch-seconds", type=float, default=1.1, help="one training epoch, s")
    ap.add_argument("--checkpoint-minutes", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny model (tests)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        m = measure(args.preset, Path(tmp), args.repeats, args.quick)
    old_s = m["last_pt_seconds"] + m["best_pt_seconds"]  # both, after every epoch
    every = args.checkpoint_minutes * 60
    new_s = (m["last_pt_seconds"] + m["best_pt_seconds"]) * args.epoch_seconds / every
    m.update(
        preset=args.preset,
        epoch_seconds=args.epoch_seconds,
        checkpoint_minutes=args.checkpoint_minutes,
        every_epoch_share=old_s / (args.epoch_seconds + old_s),
        ours_share=new_s / args.epoch_seconds,
        write_mb_per_s=(m["last_pt_bytes"] + m["best_pt_bytes"]) / 1e6 / max(old_s, 1e-9),
    )
    print(
        f"{args.preset}: last.pt {m['last_pt_bytes'] / 1e6:.0f} MB in {m['last_pt_seconds']:.3f} s, "
        f"best.pt {m['best_pt_bytes'] / 1e6:.0f} MB in {m['best_pt_seconds']:.3f} s "
        f"({m['write_mb_per_s']:.0f} MB/s)\n"
        f"share of training time at {args.epoch_seconds} s/epoch: every epoch "
        f"{m['every_epoch_share']:.1%}, ours (every {args.checkpoint_minutes:g} min) "
        f"{m['ours_share']:.2%}"
    )
    return m


if __name__ == "__main__":
    main()
