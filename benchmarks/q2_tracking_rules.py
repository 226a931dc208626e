"""What each identity rule gains: IDF1 with that one rule switched off, beside all rules on.

Every rule in ``helpers.textseg.identity_config.RULES`` (and keyframes on demand, the loop's
``--detect-on-doubt``) is switched off in turn, alone, and ours runs again on the held-out
scenes (never used to tune the rules), the eight kinds of scene of ``q2_tracking_wild.py``
(written to probe the rules once they were settled), the moving-camera scenes and the real
pedestrian trajectories (``--sets scripted`` adds the scenes the rules were written against), at the CLI's defaults (cadence 30), with distinct and near-identical looks,
seeds 0 1 2 (``q2_tracking.py`` has the stand-ins and the scenes). The gain of a rule is IDF1
with every rule on less IDF1 with that rule off (positive: the rule helps). The table it
prints (``--markdown``) is the one in docs/q2.md.

    python benchmarks/q2_tracking_rules.py --markdown          # about 30 CPU-minutes
    python benchmarks/q2_tracking_rules.py --rules take_back --sets held-out
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import q2_tracking  # noqa: E402
import q2_tracking_real  # noqa: E402
import q2_tracking_wild  # noqa: E402

from helpers.textseg.identity_config import RULES  # noqa: E402

LOOP_RULES = {"keyframes_on_demand": ("loop", "an extra detection where a tracked object's "
                                      "mask signals failing propagation (``doubt``)")}  # fmt: skip
SETS = {
    "scripted": q2_tracking.hard_scenes,  # the scenes the rules were written against
    "held-out": q2_tracking.held_out_scenes,
    "wild": q2_tracking_wild.wild_scenes,  # written to probe the rules once settled
    "camera": q2_tracking.camera_scenes,
    "real": q2_tracking_real.real_scenes,
}
LEVELS = ("distinct", "nearidentical")
CADENCE = 30  # the CLI's default


def idf1(set_name: str, level: str, off: str | None, seeds) -> tuple[float, int]:
    """Pooled IDF1 and ID switches of ours on one scene set and look level with rule ``off``
    switched off (None: every rule on)."""
    rules = frozenset() if off in (None, *LOOP_RULES) else frozenset({off})
    doubt = off != "keyframes_on_demand"
    runs = []
    for sc in SETS[set_name]():
        for seed in seeds:
            truth = (getattr(sc, "truth_class", None) or q2_tracking.Truth)(sc, seed).at(level)
            detector = (getattr(truth, "detector_class", None) or q2_tracking.ScriptedDetector)(
                truth
            )
            prop = q2_tracking.StandInPropagator(truth, [sc.seed, seed, 1])
            hyp = q2_tracking.run_ours(truth, detector, prop, CADENCE, doubt, rules)
            runs.append(q2_tracking.counts(q2_tracking.matches(truth, hyp)))
    c = {k: sum(r[k] for r in runs) for k in ("idtp", "idfp", "idfn", "num_switches")}
    return 2 * c["idtp"] / max(2 * c["idtp"] + c["idfp"] + c["idfn"], 1), int(c["num_switches"])


def _job(args):
    return args, idf1(*args)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    every = [*RULES, *LOOP_RULES]
    p.add_argument("--rules", nargs="+", choices=every, default=every, metavar="RULE")
    p.add_argument(
        "--sets",
        nargs="+",
        choices=list(SETS),
        default=list(SETS)[1:],
        help="scene sets (default: all but scripted, the rules' own scenes)",
    )
    p.add_argument("--levels", nargs="+", choices=LEVELS, default=list(LEVELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2, help="processes (2: a Colab's vCPUs)")
    p.add_argument("--markdown", action="store_true", help="print the docs' table")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    cols = [(s, lev) for s in args.sets for lev in args.levels]
    jobs = [(s, lev, off, tuple(args.seeds)) for off in (None, *args.rules) for s, lev in cols]
    with ProcessPoolExecutor(max(1, args.workers)) as pool:
        got = dict(pool.map(_job, jobs))
    base = {c: got[(*c, None, tuple(args.seeds))] for c in cols}
    gains = {
        r: {f"{s}/{lev}": round(base[(s, lev)][0] - got[(s, lev, r, tuple(args.seeds))][0], 4)
            for s, lev in cols}
        for r in args.rules
    }  # fmt: skip
    described = {**RULES, **LOOP_RULES}
    names = [f"{s}/{lev}" for s, lev in cols]
    if args.markdown:
        print("| rule | stage | what it does | " + " | ".join(names) + " |")
        print("|---|---|---|" + "---:|" * len(names))
        print("| (all rules on: IDF1) | | | "
              + " | ".join(f"{base[c][0]:.3f}" for c in cols) + " |")  # fmt: skip
        for r in args.rules:
            stage, what = described[r]
            cells = " | ".join(f"{gains[r][n]:+.3f}" for n in names)
            print(f"| `{r}` | {stage} | {what} | {cells} |")
    else:
        print(f"{'rule':22s} " + " ".join(f"{n:>22s}" for n in names))
        print(f"{'(all on: IDF1)':22s} " + " ".join(f"{base[c][0]:22.3f}" for c in cols))
        for r in args.rules:
            print(f"{r:22s} " + " ".join(f"{gains[r][n]:+22.3f}" for n in names))
    print(f"({time.perf_counter() - t0:.0f} s; gain = IDF1 with every rule on - IDF1 with "
          "that rule off, cadence 30, seeds " + " ".join(map(str, args.seeds)) + ")")  # fmt: skip
    return {"all_on": {f"{s}/{lev}": base[(s, lev)][0] for s, lev in cols}, "gains": gains}


if __name__ == "__main__":
    main()
