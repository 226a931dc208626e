"""ViT training on CIFAR-10 and text-prompted segmentation (Grounding DINO + SAM 2).

Two wings over a small shared ground: :mod:`helpers.classify` (Q1, the ViT) and
:mod:`helpers.textseg` (Q2, text-prompted segmentation); the modules at this level (errors, atomic
files, runtime, repository, distributed, URL fetching, install recipe, the command dispatcher) serve
both. Neither wing imports the other. The notebooks in ``notebooks/`` call into them.
Heavy libraries (torch, transformers, sam2, supervision) are imported inside the modules
that need them, so ``import helpers`` stays cheap.
"""

from helpers.errors import InputError

__all__ = ["InputError"]
__version__ = "0.1.0"
