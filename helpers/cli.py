"""Command line: ``python -m helpers <command> ...`` (or ``cvkit <command>`` once installed).

Q1 (ViT on CIFAR-10): ``train``, ``evaluate``, ``predict`` — see :mod:`helpers.cli_vit`.
Q2 (text-prompted segmentation): ``segment``, ``track``, ``eval-masks`` — see
:mod:`helpers.cli_segment`.
``repo OWNER/NAME``: point the badges, setup cells and asset URLs at a fork — see
:mod:`helpers.repo`.

Every command ends by printing one JSON line with its results. Bad input exits with status 2
and a one-line ``error: ...`` message instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from helpers.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    from helpers import cli_segment, cli_vit, repo

    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_vit.register(sub)
    cli_segment.register(sub)
    repo.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint and finished outputs are kept.", file=sys.stderr)
        return 130
    if result is not None:  # None: a secondary process of a torchrun job (rank 0 reports)
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
