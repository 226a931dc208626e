"""Named recipes: three earlier write-ups' recipes reproduced exactly, and our own faster/more accurate ones.

A :class:`Preset` bundles a model (:class:`ViTConfig` for from-scratch training, or a timm model
name for fine-tuning), the optimisation recipe (:class:`TrainConfig`) and the GPU augmentation
policy (:class:`AugConfig`). Everything is a plain dataclass: override any field with
``dataclasses.replace`` or :func:`get_preset`'s keyword overrides.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace

from helpers.errors import InputError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class ViTConfig:
    """A ViT for small images. ``mlp_dim`` (if set) wins over ``mlp_ratio``."""

    image_size: int = 32
    patch_size: int = 4
    dim: int = 384
    depth: int = 7
    heads: int = 6
    mlp_ratio: float = 3.0
    mlp_dim: int | None = None
    num_classes: int = 10
    in_chans: int = 3
    dropout: float = 0.1  # after attention/MLP projections
    attn_dropout: float = 0.0
    emb_dropout: float = 0.0  # on patch + position embeddings
    drop_path: float = 0.0  # stochastic depth, linearly increasing with depth
    pool: str = "cls"  # "cls" token or "mean" of patch tokens
    spt: bool = False  # shifted patch tokenization (Lee et al. 2021)
    lsa: bool = False  # locality self-attention: learnable temperature + diagonal mask

    @property
    def hidden_dim(self) -> int:
        return self.mlp_dim if self.mlp_dim is not None else int(self.dim * self.mlp_ratio)

    def validate(self) -> ViTConfig:
        for name in ("image_size", "patch_size", "dim", "depth", "heads", "num_classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a whole number >= 1, got {v!r}.")
        if self.patch_size <= 0 or self.image_size % self.patch_size:
            raise InputError(
                f"patch_size {self.patch_size} does not divide image_size {self.image_size}; "
                f"pick one of {[p for p in range(1, self.image_size + 1) if self.image_size % p == 0]}."
            )
        if self.dim % self.heads:
            raise InputError(f"dim {self.dim} is not divisible by heads {self.heads}.")
        if self.pool not in ("cls", "mean"):
            raise InputError(f"pool must be 'cls' or 'mean', got {self.pool!r}.")
        if not _is_finite(self.mlp_ratio) or self.mlp_ratio <= 0:
            raise InputError(f"mlp_ratio must be a finite number > 0, got {self.mlp_ratio!r}.")
        for name in ("dropout", "attn_dropout", "emb_dropout", "drop_path"):
            v = getattr(self, name)
            if not _is_finite(v) or not 0.0 <= v < 1.0:
                raise InputError(f"{name} must be in [0, 1), got {v}.")
        if self.depth < 1 or self.dim < 1 or self.heads < 1:
            raise InputError("depth, dim and heads must be positive.")
        return self


@dataclass
class AugConfig:
    """Batched augmentation policy, applied on the GPU (or CPU tensors in tests)."""

    crop_padding: int = 4  # random crop after zero/reflect padding by this many pixels
    flip: bool = True  # random horizontal flip
    policy: str | None = None  # None | "autoaugment" (CIFAR-10 policy) | "randaugment"
    ra_ops: int = 2  # RandAugment: ops per image
    ra_magnitude: int = 9  # RandAugment: magnitude 0..30
    color_jitter: float = 0.0  # brightness = contrast = saturation strength
    rotate_degrees: float = 0.0  # random affine rotation range (±)
    translate: float = 0.0  # random affine translation, fraction of size
    erasing: float = 0.0  # random erasing probability
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0  # probability a batch is mixed at all (when an alpha > 0)
    resize: int | None = None  # upscale to this size (fine-tuning at 224)


@dataclass
class TrainConfig:
    """Optimisation recipe. ``minutes`` (if set) is a wall-time budget: before its clock starts
    the run compiles, measures its step rate and fixes how many steps fit (capped at
    ``epochs``); the schedule then runs on those steps. Warm-up is ``warmup_fraction`` of the
    run's steps if set, else ``warmup_epochs`` epochs. A full checkpoint is written at most every
    ``checkpoint_minutes`` (and always at the end, on Ctrl-C / kernel interrupt)."""

    epochs: int = 200
    minutes: float | None = None
    batch_size: int = 128
    lr: float = 3e-4
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 0.0
    warmup_fraction: float | None = None  # of the planned steps; wins over warmup_epochs
    schedule: str = "cosine"  # "cosine" | "multistep" | "constant"
    milestones: tuple[int, ...] = ()  # epochs, for "multistep"
    gamma: float = 0.1
    label_smoothing: float = 0.1
    grad_clip: float | None = 1.0
    ema_decay: float | None = None
    precision: str = "auto"  # "auto" (bf16 on Ampere+, fp16 on T4) | "bf16" | "fp16" | "fp32"
    compile: bool = False
    seed: int = 0
    checkpoint_minutes: float = 3.0
    patience: int | None = None  # early stop after this many epochs without a better val acc

    def validate(self) -> TrainConfig:
        for name in _TRAIN_FLOATS:
            v = getattr(self, name)
            if v is not None and not _is_finite(v):
                raise InputError(f"{name} must be a finite number, got {v!r}.")
        if len(self.betas) != 2 or not all(_is_finite(b) and 0.0 <= b < 1.0 for b in self.betas):
            raise InputError(f"betas must be two numbers in [0, 1), got {self.betas!r}.")
        for name in ("epochs", "batch_size", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise InputError(f"{name} must be a whole number, got {v!r}.")
        if self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}.")
        if self.minutes is not None and self.minutes <= 0:
            raise InputError(f"minutes must be > 0, got {self.minutes}.")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.lr <= 0:
            raise InputError(f"lr must be > 0, got {self.lr}.")
        if self.min_lr < 0:
            raise InputError(f"min_lr must be >= 0, got {self.min_lr}.")
        if self.weight_decay < 0:
            raise InputError(f"weight_decay must be >= 0, got {self.weight_decay}.")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise InputError(
                f"grad_clip must be > 0 (or None for no clipping), got {self.grad_clip}."
            )
        if self.gamma <= 0:
            raise InputError(f"gamma must be > 0, got {self.gamma}.")
        if self.schedule not in ("cosine", "multistep", "constant"):
            raise InputError(
                f"schedule must be cosine, multistep or constant, got {self.schedule!r}."
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise InputError(f"ema_decay must be in (0, 1), got {self.ema_decay}.")
        if self.warmup_epochs < 0:
            raise InputError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}.")
        if self.warmup_fraction is not None and not 0.0 <= self.warmup_fraction < 1.0:
            raise InputError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}.")
        if self.patience is not None and self.patience < 1:
            raise InputError(f"patience must be >= 1 epoch (or None), got {self.patience}.")
        if self.checkpoint_minutes < 0:
            raise InputError(
                f"checkpoint_minutes must be >= 0 (0 = every epoch), got {self.checkpoint_minutes}."
            )
        return self


_TRAIN_FLOATS = (
    "minutes",
    "lr",
    "min_lr",
    "weight_decay",
    "warmup_epochs",
    "warmup_fraction",
    "gamma",
    "label_smoothing",
    "grad_clip",
    "ema_decay",
    "checkpoint_minutes",
)


def _is_finite(v) -> bool:
    """A real, finite number (not NaN, not ±inf, not a bool or a string)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return math.isfinite(v)


@dataclass
class Preset:
    name: str
    description: str
    train: TrainConfig
    aug: AugConfig
    model: ViTConfig | None = None  # from scratch
    timm_name: str | None = None  # fine-tune a pretrained timm ViT instead
    freeze_all_but_last: int | None = None  # fine-tuning: train only the last k blocks + head
    timm_kwargs: dict | None = None  # fine-tuning: extra timm.create_model settings (img_size...)
    source: str = "ours"  # where the recipe comes from ("seed000", ... or "ours")
    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD

    @property
    def finetune(self) -> bool:
        return self.timm_name is not None


def _seed000() -> Preset:
    # Write-up 000: 89.39 % test after 200 epochs; exactly 10,402,954 parameters.
    return Preset(
        name="seed000",
        source="seed000",
        description="Write-up 000's recipe: ViT 384-wide, 7 deep, 6 heads, MLP x3, patch 4, CLS; 200 epochs.",
        model=ViTConfig(
            dim=384, depth=7, heads=6, mlp_ratio=3, patch_size=4, pool="cls", dropout=0.1
        ),
        train=TrainConfig(
            epochs=200,
            batch_size=128,
            lr=3e-4,
            weight_decay=0.05,
            schedule="cosine",
            label_smoothing=0.1,
            grad_clip=1.0,
        ),
        aug=AugConfig(crop_padding=4, flip=True, policy="autoaugment", erasing=0.25),
    )


def _seed001() -> Preset:
    # Write-up 001: 88 % test; SPT, 768 wide, 12 deep, 4 heads, MLP 1536, dropout 0.3.
    return Preset(
        name="seed001",
        source="seed001",
        description="Write-up 001's recipe: ViT 768-wide, 12 deep, 4 heads, MLP 1536, SPT, dropout 0.3; 200 epochs.",
        model=ViTConfig(
            dim=768,
            depth=12,
            heads=4,
            mlp_dim=1536,
            patch_size=4,
            pool="cls",
            dropout=0.3,
            emb_dropout=0.3,
            spt=True,
        ),
        train=TrainConfig(
            epochs=200,
            batch_size=128,
            lr=6e-4,
            min_lr=1e-6,
            weight_decay=0.3,
            warmup_epochs=30,
            schedule="cosine",
            label_smoothing=0.0,
            grad_clip=None,
        ),
        aug=AugConfig(crop_padding=4, flip=True),
    )


def _seed003() -> Preset:
    # Write-up 003: 79.55 % test; mean pooling, MultiStep at 50/75 of 100 epochs.
    return Preset(
        name="seed003",
        source="seed003",
        description="Write-up 003's recipe: ViT 384-wide, 8 deep, 8 heads, MLP x4, mean pool; MultiStep 50/75 of 100.",
        model=ViTConfig(
            dim=384, depth=8, heads=8, mlp_ratio=4, patch_size=4, pool="mean", dropout=0.1
        ),
        train=TrainConfig(
            epochs=100,
            batch_size=128,
            lr=3e-4,
            weight_decay=0.05,
            schedule="multistep",
            milestones=(50, 75),
            gamma=0.1,
            label_smoothing=0.1,
            grad_clip=None,
        ),
        aug=AugConfig(
            crop_padding=4, flip=True, color_jitter=0.2, rotate_degrees=15, translate=0.1
        ),
    )


def _fast() -> Preset:
    # Ours: the seed000-sized network with a modern recipe, sized for a 5-minute H100 budget.
    return Preset(
        name="fast",
        description="Ours: seed000-size ViT, mean pool, RandAugment + MixUp/CutMix, EMA, bf16 "
        "(fp16 on a T4); 5-minute budget.",
        model=ViTConfig(
            dim=384,
            depth=7,
            heads=6,
            mlp_ratio=3,
            patch_size=4,
            pool="mean",
            dropout=0.0,
            drop_path=0.1,
        ),
        train=TrainConfig(
            epochs=300,
            minutes=5,
            batch_size=512,
            lr=2e-3,
            min_lr=1e-5,
            weight_decay=0.05,
            warmup_fraction=0.02,  # of the steps that fit the budget (~5 epochs on an H100)
            schedule="cosine",
            label_smoothing=0.1,
            grad_clip=1.0,
            ema_decay=0.999,
            compile=True,
        ),
        aug=AugConfig(
            crop_padding=4,
            flip=True,
            policy="randaugment",
            ra_ops=2,
            ra_magnitude=9,
            erasing=0.25,
            mixup_alpha=0.8,
            cutmix_alpha=1.0,
            mix_prob=0.8,
        ),
    )


def _best() -> Preset:
    # Ours: the fast recipe on a wider/deeper ViT with LSA, sized for a 20-minute H100 budget.
    fast = _fast()
    return Preset(
        name="best",
        description="Ours: ViT 512-wide, 9 deep, 8 heads, LSA, RandAugment + MixUp/CutMix, EMA; "
        "20-minute budget.",
        model=replace(fast.model, dim=512, depth=9, heads=8, drop_path=0.15, lsa=True),
        train=replace(fast.train, epochs=600, minutes=20, lr=1.5e-3, ema_decay=0.9995),
        aug=replace(fast.aug, ra_magnitude=10),
    )


def _finetune(
    name: str, timm_name: str, epochs: int, lr: float, last: int | None, desc: str
) -> Preset:
    return Preset(
        name=name,
        description=desc,
        timm_name=timm_name,
        freeze_all_but_last=last,
        train=TrainConfig(
            epochs=epochs,
            batch_size=128,
            lr=lr,
            min_lr=1e-6,
            weight_decay=0.05,
            warmup_epochs=1,
            schedule="cosine",
            label_smoothing=0.1,
            grad_clip=1.0,
            ema_decay=None,
        ),
        aug=AugConfig(
            crop_padding=4,
            flip=True,
            policy="randaugment",
            ra_ops=2,
            ra_magnitude=9,
            mixup_alpha=0.8,
            cutmix_alpha=1.0,
            mix_prob=0.5,
            resize=224,
        ),
        # mean/std are replaced by the timm model's own normalization when it is built
    )


PRESET_BUILDERS = {
    "seed000": _seed000,
    "seed001": _seed001,
    "seed003": _seed003,
    "fast": _fast,
    "best": _best,
    "ft_vit_small": lambda: _finetune(
        "ft_vit_small",
        "vit_small_patch16_224.augreg_in21k_ft_in1k",
        10,
        1e-4,
        None,
        "Fine-tune timm ViT-S/16 (ImageNet-21k) at 224 px, all blocks.",
    ),
    "ft_vit_base": lambda: _finetune(
        "ft_vit_base",
        "vit_base_patch16_224.augreg2_in21k_ft_in1k",
        7,
        5e-5,
        None,
        "Fine-tune timm ViT-B/16 (ImageNet-21k) at 224 px, all blocks.",
    ),
    "ft_vit_base_last3": lambda: _finetune(
        "ft_vit_base_last3",
        "vit_base_patch16_224.augreg2_in21k_ft_in1k",
        7,
        1e-4,
        3,
        "Write-up 004's setup: ViT-B/16 at 224 px, only the last 3 blocks + head trained.",
    ),
}


def preset_names() -> list[str]:
    return list(PRESET_BUILDERS)


def get_preset(name: str, **overrides) -> Preset:
    """A fresh copy of preset ``name``. ``overrides`` may name fields of the preset, of its
    TrainConfig, AugConfig or ViTConfig (e.g. ``epochs=5, patch_size=2, mixup_alpha=0``)."""
    if name not in PRESET_BUILDERS:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(PRESET_BUILDERS)}.")
    p = PRESET_BUILDERS[name]()
    return apply_overrides(p, **overrides)


MODES = ("scratch", "finetune")


def check_mode(name: str, mode: str) -> Preset:
    """Preset ``name`` if it fits ``mode`` (``'scratch'``: from-scratch presets, ``'finetune'``:
    ``ft_*`` presets); otherwise an InputError saying which MODE (or preset) to pick."""
    if mode not in MODES:
        raise InputError(f"MODE must be 'scratch' or 'finetune', got {mode!r}.")
    preset = get_preset(name)
    if (mode == "finetune") != preset.finetune:
        fits = [n for n in PRESET_BUILDERS if get_preset(n).finetune == (mode == "finetune")]
        kind = "fine-tunes a pretrained timm ViT" if preset.finetune else "trains from scratch"
        need = "finetune" if preset.finetune else "scratch"
        raise InputError(
            f"PRESET {name!r} {kind}: set MODE = {need!r}, or keep MODE = {mode!r} and pick one "
            f"of {', '.join(fits)}."
        )
    return preset


def apply_overrides(p: Preset, **overrides) -> Preset:
    targets = [("preset", p), ("train", p.train), ("aug", p.aug)]
    if p.model is not None:
        targets.append(("model", p.model))
    for key, value in overrides.items():
        if value is None:
            continue
        for _, obj in targets:
            if key in {f.name for f in dataclasses.fields(obj)}:
                setattr(obj, key, value)
                break
        else:
            raise InputError(f"unknown setting {key!r} for preset {p.name!r}.")
    p.train.validate()
    if p.model is not None:
        p.model.validate()
    return p


def preset_to_dict(p: Preset) -> dict:
    """Plain-dict form of a preset (stored inside checkpoints)."""
    return dataclasses.asdict(p)


def preset_from_dict(d: dict) -> Preset:
    """Inverse of :func:`preset_to_dict`."""
    d = dict(d)
    train = dict(d.pop("train"))
    train["betas"] = tuple(train["betas"])
    train["milestones"] = tuple(train["milestones"])
    model = d.pop("model")
    return Preset(
        train=TrainConfig(**train),
        aug=AugConfig(**d.pop("aug")),
        model=ViTConfig(**model) if model is not None else None,
        mean=tuple(d.pop("mean")),
        std=tuple(d.pop("std")),
        **d,
    )


__all__ = [
    "AugConfig",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "Preset",
    "TrainConfig",
    "ViTConfig",
    "apply_overrides",
    "check_mode",
    "get_preset",
    "preset_from_dict",
    "preset_names",
    "preset_to_dict",
]
