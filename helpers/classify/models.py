"""The model a preset describes: a from-scratch :class:`helpers.classify.vit.ViT` or a pretrained timm
ViT (:mod:`helpers.classify.finetune`), with the input it expects."""

from __future__ import annotations

import dataclasses

from torch import nn

from helpers.classify.finetune import build_timm_vit
from helpers.classify.presets import Preset
from helpers.classify.vit import InputSpec, ViT
from helpers.errors import InputError


def build_model(
    preset: Preset, num_classes: int = 10, pretrained: bool = True
) -> tuple[nn.Module, InputSpec]:
    """The model a preset describes and the input it expects.

    From-scratch presets -> :class:`ViT` with ``num_classes`` outputs (normalization from the
    preset); fine-tune presets -> a timm ViT (see :func:`helpers.classify.finetune.build_timm_vit`)."""
    if num_classes < 2:
        raise InputError(f"num_classes must be >= 2, got {num_classes}.")
    if preset.finetune:
        return build_timm_vit(
            preset.timm_name,
            num_classes,
            pretrained=pretrained,
            freeze_all_but_last=preset.freeze_all_but_last,
            **(preset.timm_kwargs or {}),
        )
    if preset.model is None:
        raise InputError(f"preset {preset.name!r} has neither a ViTConfig nor a timm model name.")
    cfg = dataclasses.replace(preset.model, num_classes=num_classes)
    model = ViT(cfg)
    spec = InputSpec(
        mean=tuple(float(v) for v in preset.mean),
        std=tuple(float(v) for v in preset.std),
        size=cfg.image_size,
    )
    return model, spec


__all__ = ["InputSpec", "build_model"]
