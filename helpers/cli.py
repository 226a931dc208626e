"""Command line: ``python -m helpers <command> ...`` (or ``cvkit <command>`` once installed).

Q1 (ViT on CIFAR-10): ``train``, ``evaluate``, ``predict`` — see :mod:`helpers.classify.commands`.
Q2 (text-prompted segmentation): ``segment``, ``track``, ``eval-masks`` — see
:mod:`helpers.textseg.commands`.
``repo OWNER/NAME``: point the badges, setup cells and asset URLs at a fork — see
:mod:`helpers.repo`.

Every command ends by printing one JSON line with its results, and nothing else goes to
stdout (notes and progress go to stderr). Bad input exits with status 2 and a one-line
``error: ...`` message instead of a traceback. SIGTERM (``timeout``, schedulers) is handled like
Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from helpers.errors import InputError
from helpers.result_line import BROKEN_PIPE_EXIT, kept_stdout, print_result, write_line

__all__ = ["build_parser", "main", "print_result"]


def build_parser() -> argparse.ArgumentParser:
    from helpers import repo
    from helpers.classify import commands as classify_commands
    from helpers.textseg import commands as textseg_commands

    parser = argparse.ArgumentParser(
        prog="python -m helpers", description=__doc__.split("\n")[0].replace("``", "`")
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    classify_commands.register(sub)
    textseg_commands.register(sub)
    repo.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from helpers.files import json_text, path_error

    args = build_parser().parse_args(argv)
    with kept_stdout() as stream:
        try:  # anything a library prints goes to stderr: stdout holds the JSON line alone
            with contextlib.redirect_stdout(sys.stderr), _sigterm_as_interrupt():
                result = args.func(args)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(
                "interrupted; the last checkpoint and finished outputs are kept.", file=sys.stderr
            )
            return 130
        except OSError as e:  # a path no check looked at first (name too long, link loop)
            err = path_error(e, _flag_of(args, e.filename))
            if err is None:
                raise
            print(f"error: {err}", file=sys.stderr)
            return 2
    if result is not None:  # None: a secondary process of a torchrun job (rank 0 reports)
        if not write_line(json_text(result, default=str), stream):
            return BROKEN_PIPE_EXIT  # the reader of stdout is gone: quietly, as `yes | head`
    return 0


def _flag_of(args, filename) -> str:
    """The option whose value the path ``filename`` came from (``--data``), else ``path``."""
    import os

    name = os.path.expanduser(str(filename or ""))
    found = [
        (len(value), "--" + key.replace("_", "-"))
        for key, value in vars(args).items()
        if isinstance(value, str) and value.strip() and name
        for v in [os.path.expanduser(value).rstrip("/") or "/"]
        if name == v or name.startswith(v + "/") or v.startswith(name + "/")
    ]
    return max(found)[1] if found else "path"


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While inside, SIGTERM raises KeyboardInterrupt like Ctrl-C, so what is half done is
    cleaned up or saved the same way (code that handles SIGINT itself handles SIGTERM too)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
