"""How to install SAM 2: the one recipe that the notebook, the README and the error messages use.

SAM 2 (Meta's ``sam2`` package) is a source package that the project cannot list as an
ordinary dependency: built in pip's default isolated environment it fetches a second torch and
tries to compile its CUDA extension. The recipe below builds it against the torch already
installed (``--no-build-isolation``) and skips the optional CUDA extension
(``SAM2_BUILD_CUDA=0``), pinned to one release.
"""

from __future__ import annotations

SAM2_VERSION = "1.1.0"
# the pieces, for code that runs pip itself (the Q2 notebook's setup cell)
SAM2_ENV = {"SAM2_BUILD_CUDA": "0"}
SAM2_PIP_ARGS = ("--no-build-isolation", f"sam2=={SAM2_VERSION}")
# the same as one shell line, for people (README, error messages)
SAM2_INSTALL = f'SAM2_BUILD_CUDA=0 pip install --no-build-isolation "sam2=={SAM2_VERSION}"'


def sam2_missing_message(alternative: str = "") -> str:
    """The one line shown when ``import sam2`` fails."""
    tail = f", or {alternative}" if alternative else ""
    return f"the sam2 package is not installed: install it with `{SAM2_INSTALL}`{tail}."


__all__ = ["SAM2_ENV", "SAM2_INSTALL", "SAM2_PIP_ARGS", "SAM2_VERSION", "sam2_missing_message"]
