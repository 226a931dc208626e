"""Command line: ``python -m helpers <command> ...`` (or ``cvkit <command>`` once installed).

Q1 (ViT on CIFAR-10): ``train``, ``evaluate``, ``predict`` — see :mod:`helpers.cli_vit`.
Q2 (text-prompted segmentation): ``segment``, ``track``, ``eval-masks`` — see
:mod:`helpers.cli_segment`.
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


def build_parser() -> argparse.ArgumentParser:
    from helpers import cli_segment, cli_vit, repo

    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_vit.register(sub)
    cli_segment.register(sub)
    repo.register(sub)
    return parser


_result_stream = None  # stdout as main() found it, while a command runs (prints go to stderr)


def print_result(result: dict) -> None:
    """Print ``result`` as the command's JSON line (valid JSON: no NaN) on stdout, even while
    everything else a command prints is sent to stderr."""
    from helpers.files import json_text

    print(json_text(result, default=str), file=_result_stream or sys.stdout, flush=True)


def main(argv: list[str] | None = None) -> int:
    global _result_stream
    from helpers.files import json_text, path_error

    args = build_parser().parse_args(argv)
    _result_stream = sys.stdout
    try:  # anything a library prints goes to stderr: stdout holds the JSON line alone
        with contextlib.redirect_stdout(sys.stderr), _sigterm_as_interrupt():
            result = args.func(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint and finished outputs are kept.", file=sys.stderr)
        return 130
    except OSError as e:  # a path no check looked at first (name too long, link loop)
        err = path_error(e, _flag_of(args, e.filename))
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        stream, _result_stream = _result_stream, None
    if result is not None:  # None: a secondary process of a torchrun job (rank 0 reports)
        print(json_text(result, default=str), file=stream, flush=True)
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
