"""The one JSON line a command prints on stdout, while everything else goes to stderr.

``helpers.cli.main`` keeps the real stdout here (:func:`kept_stdout`) and sends the rest of
stdout to stderr; a command that must report before it fails (a folder run with failures) calls
:func:`print_result`, which writes to the kept stream. Shared ground: both wings' commands use
it without importing the dispatcher.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TextIO

_stream: TextIO | None = None  # stdout as main() found it, while a command runs


def print_result(result: dict) -> None:
    """Print ``result`` as the command's JSON line (valid JSON: no NaN) on stdout, even while
    everything else a command prints is sent to stderr."""
    from helpers.files import json_text

    write_line(json_text(result, default=str), _stream or sys.stdout)


BROKEN_PIPE_EXIT = 141  # what a shell reports for a writer stopped by SIGPIPE (128 + 13)


def write_line(text: str, stream: TextIO) -> bool:
    """Write ``text`` and a newline to ``stream`` and flush it; False (and nothing printed)
    when its reader is gone (``... | head -c1``): the stream is then pointed at ``os.devnull``
    so that flushing it again at exit raises nothing either."""
    try:
        print(text, file=stream, flush=True)
        return True
    except BrokenPipeError:
        _silence(stream)
        return False


def _silence(stream: TextIO) -> None:
    import os

    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


@contextlib.contextmanager
def kept_stdout() -> Iterator[TextIO]:
    """While inside, :func:`print_result` writes to the stdout of the moment of entry (yielded),
    whatever ``sys.stdout`` is redirected to meanwhile."""
    global _stream
    _stream = sys.stdout
    try:
        yield _stream
    finally:
        _stream = None
