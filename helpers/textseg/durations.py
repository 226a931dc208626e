"""Durations a user gives in seconds or frames (``--keep-missed 2s``, ``45f``), as seconds.

No numpy here: the command line's parser reads the default and the help text."""

from __future__ import annotations

from helpers.errors import InputError

KEEP_MISSED = "2s"  # the default of ``--keep-missed`` / ``track_video(keep_missed=...)``
KEEP_MISSED_HELP = (
    "how long an object the detector misses keeps being tracked, with its unit: seconds (2s, "
    "1.5s) or frames (45f); default 2s"
)
_UNITS = {"s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
          "f": "f", "frame": "f", "frames": "f"}  # fmt: skip


def seconds(value, fps: float, name: str = "--keep-missed") -> float:
    """A duration in seconds from seconds (Python numbers ``2``, ``1.5``, or text ``"2s"``) or
    frames (``"45f"``, at ``fps``). Text needs its unit: a bare number on the command line once
    counted keyframes, so reading it as seconds would silently change old commands. Keyframes
    are not a unit: their duration would change with the detection cadence."""
    import math
    import re

    hint = f"give seconds (e.g. {name} 2s or 1.5s) or frames (e.g. {name} 45f)"
    if isinstance(value, bool):
        raise InputError(f"{name} must be a duration: {hint}; got {value!r}.")
    if isinstance(value, (int, float)):
        amount, unit = float(value), "s"
    else:
        text = str(value).strip().lower()
        m = re.fullmatch(r"([-+]?(?:\d+\.?\d*|\.\d+))\s*([a-z]*)", text)
        if m is None or m.group(2) not in _UNITS:
            if m is not None and not m.group(2):
                hint = (
                    "a number needs its unit (a bare number used to count keyframes, whose "
                    "duration depends on the cadence); " + hint
                )
            elif m is not None and m.group(2).startswith("k"):
                hint = (
                    "keyframes are no longer a unit (their duration depends on the cadence); "
                    + hint
                )
            raise InputError(f"{name} must be a duration: {hint}; got {value!r}.")
        amount, unit = float(m.group(1)), _UNITS[m.group(2)]
    if not math.isfinite(amount) or amount < 0:
        raise InputError(f"{name} must be a duration >= 0: {hint}; got {value!r}.")
    fps = float(fps) if fps and float(fps) > 0 else 30.0
    return amount if unit == "s" else amount / fps
