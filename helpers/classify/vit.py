"""A Vision Transformer for small images (CIFAR-10 size), written from scratch.

Pre-norm blocks with attention through ``F.scaled_dot_product_attention``, stochastic depth,
CLS-token or mean pooling, and the two small-dataset tricks of Lee et al. 2021 ("Vision
Transformer for Small-Size Datasets"): shifted patch tokenization (SPT) and locality
self-attention (LSA). Also: the input spec every model carries, attention maps and rollout for
plotting (this ViT and timm's), weight-decay parameter groups, and parameter counting.
:func:`helpers.classify.models.build_model` builds the model of any preset.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from helpers.classify.presets import ViTConfig
from helpers.errors import InputError


@dataclass
class InputSpec:
    """What a model expects: per-channel normalization and the square input side in pixels."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: int


# ----------------------------------------------------------------------------- building blocks


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch for a random subset of samples."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/p)*(W/p), p*p*C], patches in row-major order."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def _shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate images by (dx, dy) pixels (right/down positive), filling with zeros."""
    s = max(abs(dx), abs(dy))
    h, w = x.shape[-2:]
    padded = F.pad(x, (s, s, s, s))
    return padded[..., s - dy : s - dy + h, s - dx : s - dx + w]


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens with a strided convolution (with bias)."""

    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ShiftedPatchTokenization(nn.Module):
    """SPT: the image plus its four diagonal half-patch shifts (5x channels), patchified,
    LayerNorm, then a linear projection to ``dim``."""

    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.shift = max(1, patch_size // 2)
        patch_dim = 5 * in_chans * patch_size * patch_size
        self.norm = nn.LayerNorm(patch_dim)
        self.proj = nn.Linear(patch_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shift
        shifted = [_shift(x, dx, dy) for dx, dy in ((-s, -s), (s, -s), (-s, s), (s, s))]
        x = torch.cat([x, *shifted], dim=1)
        return self.proj(self.norm(_patchify(x, self.patch_size)))


class Attention(nn.Module):
    """Multi-head self-attention (fused qkv with bias) through SDPA.

    With ``lsa=True``: a learnable temperature (stored as log of the scale, starts at
    1/sqrt(head_dim)) and an additive -inf mask on the diagonal so no token attends to itself.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        num_tokens: int,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
        lsa: bool = False,
    ):
        super().__init__()
        self.num_heads = heads
        self.head_dim = dim // heads
        self.attn_dropout = attn_dropout
        self.lsa = lsa
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_dropout)
        if lsa:
            self.log_scale = nn.Parameter(torch.tensor(math.log(self.head_dim**-0.5)))
            mask = torch.zeros(num_tokens, num_tokens)
            mask.fill_diagonal_(float("-inf"))
            self.register_buffer("diag_mask", mask, persistent=False)
        else:
            self.log_scale = None
            self.diag_mask = None

    def _qkv(self, x: torch.Tensor):
        b, t, _ = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)  # each [B, heads, T, head_dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self._qkv(x)
        drop = self.attn_dropout if self.training else 0.0
        if self.lsa:
            q = q * self.log_scale.exp()
            mask = self.diag_mask[:t, :t].to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, scale=1.0)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        out = out.transpose(1, 2).reshape(b, t, c)
        return self.proj_drop(self.proj(out))

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Explicit softmax(QK^T * scale [+ mask]) for input ``x`` [B, T, C] -> [B, heads, T, T]."""
        q, k, _ = self._qkv(x)
        scale = self.log_scale.exp() if self.lsa else self.head_dim**-0.5
        scores = (q.float() @ k.float().transpose(-2, -1)) * scale
        if self.lsa:
            t = x.shape[1]
            scores = scores + self.diag_mask[:t, :t]
        return scores.softmax(dim=-1)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, cfg: ViTConfig, num_tokens: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(
            cfg.dim, cfg.heads, num_tokens, cfg.attn_dropout, cfg.dropout, lsa=cfg.lsa
        )
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.mlp = Mlp(cfg.dim, cfg.hidden_dim, cfg.dropout)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


# ----------------------------------------------------------------------------- the model


def _trunc_normal(t: torch.Tensor, std: float = 0.02) -> None:
    """Normal(0, std) truncated at +-2 std (torch's a/b are absolute values, not in std units)."""
    nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)


class ViT(nn.Module):
    """ViT for small images, configured by :class:`helpers.classify.presets.ViTConfig`.

    ``forward(x)``: normalized float images [B, in_chans, image_size, image_size] -> logits [B, C].
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        cfg = dataclasses.replace(cfg).validate()
        self.cfg = cfg
        self.grid_size = cfg.image_size // cfg.patch_size
        num_patches = self.grid_size**2
        self.num_prefix_tokens = 1 if cfg.pool == "cls" else 0
        num_tokens = num_patches + self.num_prefix_tokens

        if cfg.spt:
            self.patch_embed = ShiftedPatchTokenization(cfg.patch_size, cfg.in_chans, cfg.dim)
        else:
            self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, cfg.dim))
        self.pos_drop = nn.Dropout(cfg.emb_dropout)
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(Block(cfg, num_tokens, r) for r in rates)
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated-normal(0.02, cut at 2 std) weights and position/CLS embeddings, zero biases, unit norms."""
        _trunc_normal(self.pos_embed)
        if self.cls_token is not None:
            _trunc_normal(self.cls_token)
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                _trunc_normal(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.cfg
        if x.ndim != 4 or x.shape[1] != c.in_chans or x.shape[-2:] != (c.image_size,) * 2:
            raise InputError(
                f"this ViT expects images shaped [B, {c.in_chans}, {c.image_size}, {c.image_size}], "
                f"got {list(x.shape)}; resize the images to {c.image_size} px (or build the model "
                f"with image_size={x.shape[-1] if x.ndim == 4 else '...'})."
            )
        if not x.is_floating_point():
            raise InputError(
                f"the ViT needs normalized float images, got dtype {x.dtype}; convert uint8 "
                "images with augment.eval_transform (or x.float() / 255 then normalize)."
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Token features after the final LayerNorm: [B, T, dim]."""
        self._check_input(x)
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.pos_drop(x + self.pos_embed.to(x.dtype))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = x[:, 0] if self.cfg.pool == "cls" else x.mean(dim=1)
        return self.head(x)


# ----------------------------------------------------------------------------- helpers


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside torch.compile / AveragedModel / DataParallel wrappers."""
    for _ in range(4):
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return model


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on weight matrices/kernels only; none on biases,
    norm weights, scalars, position/CLS/register tokens or names the model's
    ``no_weight_decay()`` lists (works for our ViT and timm models). Frozen params are left out."""
    inner = _unwrap(model)
    skip = set(inner.no_weight_decay()) if hasattr(inner, "no_weight_decay") else set()
    skip |= {"pos_embed", "cls_token", "reg_token", "dist_token"}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.split(".")[-1]
        if p.ndim <= 1 or leaf in skip or name in skip or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


# ----------------------------------------------------------------------------- attention maps


def _timm_attention_weights(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    b, t, _ = x.shape
    h = attn.num_heads
    hd = getattr(attn, "head_dim", attn.qkv.out_features // 3 // h)
    qkv = attn.qkv(x).reshape(b, t, 3, h, hd).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    q = attn.q_norm(q) if hasattr(attn, "q_norm") else q
    k = attn.k_norm(k) if hasattr(attn, "k_norm") else k
    scale = getattr(attn, "scale", hd**-0.5)
    return ((q.float() @ k.float().transpose(-2, -1)) * scale).softmax(dim=-1)


def _weights_fn(attn: nn.Module):
    if isinstance(attn, Attention):
        return attn.attention_weights
    qkv = getattr(attn, "qkv", None)
    if isinstance(qkv, nn.Linear) and hasattr(attn, "num_heads"):
        return lambda x: _timm_attention_weights(attn, x)
    return None


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax attention weights of every block for one image.

    ``x``: normalized float [1, 3, H, W] (or [3, H, W]) at the model's input size.
    Returns float [depth, heads, T, T] on the CPU (T includes the CLS token when there is one).
    Works for :class:`ViT` (SPT/LSA included) and timm ``VisionTransformer``-style models whose
    blocks have ``.attn.qkv`` and ``.attn.num_heads``."""
    inner = _unwrap(model)
    blocks = getattr(inner, "blocks", None)
    if blocks is None or len(blocks) == 0:
        raise InputError(
            f"attention maps need a ViT with `.blocks`; {type(inner).__name__} has none."
        )
    fns = [_weights_fn(getattr(b, "attn", None)) for b in blocks]
    if any(f is None for f in fns):
        raise InputError(
            f"attention maps are not supported for {type(inner).__name__}: its blocks have no "
            "fused `.attn.qkv` projection (supported: helpers.classify.vit.ViT and timm VisionTransformer)."
        )
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise InputError(f"attention_maps takes one image [1, 3, H, W], got {list(x.shape)}.")
    param = next(inner.parameters())
    x = x.to(device=param.device, dtype=param.dtype)

    maps: list[torch.Tensor] = []

    def make_hook(fn):
        def hook(_module, args):
            maps.append(fn(args[0].float()).cpu())

        return hook

    handles = [b.attn.register_forward_pre_hook(make_hook(f)) for b, f in zip(blocks, fns)]
    was_training = inner.training
    inner.eval()
    try:
        inner(x)
    finally:
        for hdl in handles:
            hdl.remove()
        inner.train(was_training)
    return torch.stack([m[0] for m in maps])


def attention_rollout(
    maps: torch.Tensor, num_prefix_tokens: int | None = None, discard_ratio: float = 0.0
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020) as a patch-grid heat map [h, w], summing to 1.

    Heads are averaged, the identity (residual path) added, rows renormalised and the layers
    multiplied. The map is the CLS token's row when there is a prefix token, else the mean over
    all tokens' rows (mean pooling). ``num_prefix_tokens`` is inferred from T when None
    (T square -> 0, T - 1 square -> 1). ``discard_ratio`` zeroes the weakest weights per layer.
    """
    if maps.ndim != 4 or maps.shape[-1] != maps.shape[-2]:
        raise InputError(f"maps must be [depth, heads, T, T], got {list(maps.shape)}.")
    t = maps.shape[-1]
    if num_prefix_tokens is None:
        if math.isqrt(t) ** 2 == t:
            num_prefix_tokens = 0
        elif math.isqrt(t - 1) ** 2 == t - 1:
            num_prefix_tokens = 1
        else:
            raise InputError(f"cannot tell the patch grid from {t} tokens; pass num_prefix_tokens.")
    n = t - num_prefix_tokens
    side = math.isqrt(n)
    if side * side != n:
        raise InputError(f"{n} patch tokens do not form a square grid.")
    eye = torch.eye(t)
    rollout = eye.clone()
    for layer in maps.float().cpu():
        a = layer.mean(dim=0)
        if discard_ratio > 0:
            k = int(a.numel() * discard_ratio)
            if k:
                thresh = a.flatten().kthvalue(k).values
                a = torch.where(a <= thresh, torch.zeros_like(a), a)
        a = a + eye
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a @ rollout
    row = rollout[0] if num_prefix_tokens else rollout.mean(dim=0)
    heat = row[num_prefix_tokens:]
    heat = heat / heat.sum().clamp_min(1e-12)
    return heat.reshape(side, side)


__all__ = [
    "Attention",
    "Block",
    "DropPath",
    "InputSpec",
    "ShiftedPatchTokenization",
    "ViT",
    "attention_maps",
    "attention_rollout",
    "count_parameters",
    "param_groups",
]
