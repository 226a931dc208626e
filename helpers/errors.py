"""The one exception type for problems the user can fix."""


class InputError(ValueError):
    """Bad input or settings: the message says what was wrong and what to change.

    Raised instead of letting a deep library traceback reach the user. Notebooks and the CLI
    print only the message.
    """
