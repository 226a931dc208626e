"""The from-scratch ViT: parameter count, shapes, options, attention maps, weight-decay groups."""

import dataclasses

import pytest
import torch

from helpers.classify.models import build_model
from helpers.classify.presets import ViTConfig, get_preset, preset_names
from helpers.classify.vit import (
    InputSpec,
    ViT,
    attention_maps,
    attention_rollout,
    count_parameters,
    param_groups,
)
from helpers.errors import InputError

TINY = dict(dim=32, depth=2, heads=4, mlp_ratio=2)


def tiny(**kw) -> ViT:
    torch.manual_seed(0)
    return ViT(ViTConfig(**{**TINY, **kw}))


def test_seed000_counts_exactly_10_402_954_parameters():
    model = ViT(get_preset("seed000").model)
    assert count_parameters(model) == 10_402_954
    assert count_parameters(model, trainable_only=True) == 10_402_954
    # the 65-token position embedding and CLS token are part of it
    assert model.pos_embed.shape == (1, 65, 384) and model.cls_token.shape == (1, 1, 384)


@pytest.mark.parametrize("name", [n for n in preset_names() if get_preset(n).model is not None])
def test_every_scratch_preset_forward_shape(name):
    preset = get_preset(name)
    model, spec = build_model(preset, num_classes=7)
    assert isinstance(spec, InputSpec) and spec.size == preset.model.image_size
    assert spec.mean == tuple(preset.mean) and spec.std == tuple(preset.std)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, spec.size, spec.size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "kw",
    [
        dict(spt=True),
        dict(lsa=True),
        dict(spt=True, lsa=True, pool="mean"),
        dict(pool="cls"),
        dict(pool="mean"),
        dict(patch_size=2),
        dict(patch_size=4),
        dict(patch_size=8),
        dict(patch_size=8, spt=True),
        dict(image_size=16, patch_size=2, mlp_dim=40),
    ],
)
def test_option_forward_shapes(kw):
    model = tiny(num_classes=5, drop_path=0.2, dropout=0.1, attn_dropout=0.1, **kw)
    size = model.cfg.image_size
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 5)
    tokens = (size // model.cfg.patch_size) ** 2 + (model.cfg.pool == "cls")
    assert model.pos_embed.shape[1] == tokens
    assert (model.cls_token is not None) == (model.cfg.pool == "cls")


def test_spt_uses_15_channel_patches():
    model = tiny(spt=True, patch_size=4)
    assert model.patch_embed.proj.in_features == 15 * 4 * 4
    assert model.patch_embed.norm.normalized_shape == (15 * 4 * 4,)


def test_bad_patch_size_raises_input_error():
    with pytest.raises(InputError, match="does not divide"):
        ViT(ViTConfig(**TINY, patch_size=5))
    with pytest.raises(InputError):
        build_model(get_preset("seed000", patch_size=3))


def test_wrong_input_size_raises_input_error():
    model = tiny()
    with pytest.raises(InputError, match="32"):
        model(torch.randn(1, 3, 28, 28))
    with pytest.raises(InputError):
        model(torch.randn(3, 32, 32))
    with pytest.raises(InputError, match="float"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_dropout_and_drop_path_active_only_in_training():
    model = tiny(dropout=0.3, attn_dropout=0.3, emb_dropout=0.3, drop_path=0.5)
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(1)
    a = model(x)
    b = model(x)
    assert not torch.allclose(a, b)


def test_drop_path_increases_linearly():
    model = tiny(depth=5, drop_path=0.4)
    rates = [blk.drop_path1.p for blk in model.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize("kw", [dict(pool="cls"), dict(pool="mean", lsa=True, spt=True)])
def test_attention_maps_rows_sum_to_one_and_rollout_shape(kw):
    model = tiny(**kw)
    maps = attention_maps(model, torch.randn(1, 3, 32, 32))
    t = 64 + (kw["pool"] == "cls")
    assert maps.shape == (2, 4, t, t)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 4, t), atol=1e-5)
    heat = attention_rollout(maps)
    assert heat.shape == (8, 8)
    assert heat.min() >= 0 and heat.sum() == pytest.approx(1.0, abs=1e-5)
    assert model.training  # restored


def test_attention_maps_match_the_model_attention():
    """The explicit weights reproduce the block's SDPA output."""
    model = tiny(lsa=True).eval()
    x = torch.randn(1, 3, 32, 32)
    maps = attention_maps(model, x)
    blk = model.blocks[0]
    with torch.no_grad():
        h = blk.norm1(model.pos_embed + torch.cat([model.cls_token, model.patch_embed(x)], 1))
        _, _, v = blk.attn._qkv(h)
        manual = (maps[0].unsqueeze(0) @ v).transpose(1, 2).reshape(1, 65, 32)
        assert torch.allclose(blk.attn.proj(manual), blk.attn(h), atol=1e-5)


def test_lsa_masks_the_diagonal():
    model = tiny(lsa=True)
    maps = attention_maps(model, torch.randn(1, 3, 32, 32))
    diag = maps.diagonal(dim1=-2, dim2=-1)
    assert torch.all(diag == 0)
    plain = attention_maps(tiny(lsa=False), torch.randn(1, 3, 32, 32))
    assert plain.diagonal(dim1=-2, dim2=-1).min() > 0
    # the temperature is learnable
    assert model.blocks[0].attn.log_scale.requires_grad


def test_attention_maps_bad_input():
    model = tiny()
    with pytest.raises(InputError, match="one image"):
        attention_maps(model, torch.randn(2, 3, 32, 32))
    with pytest.raises(InputError, match="blocks"):
        attention_maps(torch.nn.Linear(3, 3), torch.randn(1, 3, 32, 32))
    with pytest.raises(InputError):
        attention_rollout(torch.rand(2, 2, 7, 7))


def test_rollout_follows_the_attention():
    """If every layer's CLS row attends to one patch, the heat map peaks there."""
    t = 17
    maps = torch.zeros(3, 2, t, t)
    maps[:, :, :, :] = torch.eye(t)
    maps[:, :, 0, :] = 0
    maps[:, :, 0, 6] = 1.0  # CLS -> patch index 5
    heat = attention_rollout(maps)
    assert heat.shape == (4, 4)
    assert heat.flatten().argmax().item() == 5


@pytest.mark.parametrize("kw", [dict(spt=True, lsa=True), dict(pool="mean", drop_path=0.1)])
def test_gradient_reaches_every_parameter(kw):
    model = tiny(**kw)
    x = torch.randn(2, 3, 32, 32)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([1, 2]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_param_groups_no_decay_on_norms_biases_embeddings():
    model = tiny(lsa=True)
    groups = param_groups(model, 0.05)
    decay = {id(p) for p in groups[0]["params"]}
    no_decay = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    names = dict(model.named_parameters())
    assert decay | no_decay == {id(p) for p in names.values()} and not decay & no_decay
    for n, p in names.items():
        expect_no_decay = (
            n.endswith("bias") or "norm" in n or n in ("pos_embed", "cls_token") or "log_scale" in n
        )
        assert (id(p) in no_decay) == expect_no_decay, n
    torch.optim.AdamW(groups, lr=1e-3)  # usable as is


def test_init_is_small_and_biases_zero():
    model = tiny()
    assert model.blocks[0].attn.qkv.bias.abs().sum() == 0
    assert model.blocks[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert model.pos_embed.abs().max() <= 0.04 + 1e-6


def test_build_model_does_not_mutate_preset():
    preset = get_preset("seed000", dim=48, depth=1, heads=2)
    before = dataclasses.asdict(preset.model)
    model, _ = build_model(preset, num_classes=100)
    assert model.head.out_features == 100
    assert dataclasses.asdict(preset.model) == before
    with pytest.raises(InputError):
        build_model(preset, num_classes=1)
