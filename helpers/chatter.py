"""Library chatter that the user cannot act on, kept out of cells and terminals.

Only messages named here are silenced, and only around the calls that cause them; everything
else a library says still reaches the user (the forms fold it under their result)."""

from __future__ import annotations

import functools
import warnings

# sam2's image predictor scripts its transforms with torch.jit.script, which torch >= 2.9
# deprecates with a FutureWarning on every model build: nothing the user can change.
JIT_SCRIPT = r"`torch\.jit\.script` is deprecated"


def without_jit_script_warning(fn):
    """Decorate ``fn`` so the torch.jit.script deprecation raised inside it is not shown."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=JIT_SCRIPT, category=FutureWarning)
            return fn(*args, **kwargs)

    return wrapper


__all__ = ["JIT_SCRIPT", "without_jit_script_warning"]
