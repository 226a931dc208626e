"""The one exception type for problems the user can fix."""


class InputError(ValueError):
    """Bad input or settings: the message says what was wrong and what to change.

    Raised instead of letting a deep library traceback reach the user. Notebooks and the CLI
    print only the message.
    """


def unit_interval(name: str, value, hint: str = "") -> float:
    """``value`` as a float in [0, 1] (a threshold, an opacity), else an InputError naming
    ``name`` and ending with ``hint`` (e.g. a sensible default)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number in [0, 1], got {value!r}.") from None
    if not 0.0 <= v <= 1.0:  # NaN fails this too
        raise InputError(f"{name} must be in [0, 1], got {value}{'; ' + hint if hint else ''}.")
    return v
