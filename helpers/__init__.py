"""ViT training on CIFAR-10 and text-prompted segmentation (Grounding DINO + SAM 2).

Flat modules, each named by what it does; the notebooks in ``notebooks/`` call into them.
Heavy libraries (torch, transformers, sam2, supervision) are imported inside the modules
that need them, so ``import helpers`` stays cheap.
"""

from helpers.errors import InputError

__all__ = ["InputError"]
__version__ = "0.1.0"
