"""timm fine-tuning: building offline with random weights, InputSpec, freezing, offline errors."""

import pytest
import torch

from helpers.classify.finetune import build_timm_vit, freeze_all_but_last
from helpers.classify.models import build_model
from helpers.classify.presets import get_preset
from helpers.classify.vit import InputSpec, attention_maps, attention_rollout, param_groups
from helpers.errors import InputError

timm = pytest.importorskip("timm")

# a small, fast stand-in for the real fine-tune models (same class: timm VisionTransformer)
SMALL = dict(img_size=32, patch_size=4, depth=4)


def small(**kw):
    torch.manual_seed(0)
    return build_timm_vit(
        "vit_tiny_patch16_224", num_classes=10, pretrained=False, **{**SMALL, **kw}
    )


def test_random_init_shapes_and_input_spec():
    model, spec = small()
    assert isinstance(spec, InputSpec)
    assert spec.size == 32
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5)  # from pretrained_cfg
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_default_size_comes_from_pretrained_cfg():
    model, spec = build_timm_vit("vit_tiny_patch16_224", 3, pretrained=False, depth=1)
    assert spec.size == model.pretrained_cfg["input_size"][-1] == 224
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 3)


def test_drop_path_is_passed_to_timm():
    model, _ = small(drop_path=0.3)
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.3)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_freeze_all_but_last_k(k):
    model, _ = small()
    n_trainable = freeze_all_but_last(model, k)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {
        n
        for n, _ in model.named_parameters()
        if n.startswith(("norm.", "head.", "fc_norm."))
        or any(n.startswith(f"blocks.{i}.") for i in range(4 - k, 4))
    }
    assert trainable == expected
    assert n_trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert not model.pos_embed.requires_grad and not model.patch_embed.proj.weight.requires_grad
    # the training loop's optimizer groups only see trainable params
    grouped = sum(p.numel() for g in param_groups(model, 0.05) for p in g["params"])
    assert grouped == n_trainable


def test_freeze_via_build_and_bad_k():
    model, _ = small(freeze_all_but_last=2)
    assert model.blocks[2].attn.qkv.weight.requires_grad
    assert not model.blocks[1].attn.qkv.weight.requires_grad
    with pytest.raises(InputError, match="0..4"):
        freeze_all_but_last(model, 5)
    with pytest.raises(InputError):
        freeze_all_but_last(model, -1)
    with pytest.raises(InputError, match="blocks"):
        freeze_all_but_last(torch.nn.Linear(2, 2), 1)


def test_param_groups_for_timm():
    model, _ = small()
    groups = param_groups(model, 0.1)
    no_decay = {id(p) for p in groups[1]["params"]}
    assert id(model.pos_embed) in no_decay and id(model.cls_token) in no_decay
    assert id(model.blocks[0].norm1.weight) in no_decay
    assert id(model.blocks[0].attn.qkv.weight) not in no_decay


def test_attention_maps_for_timm_vit():
    model, _ = small()
    maps = attention_maps(model, torch.randn(1, 3, 32, 32))
    assert maps.shape == (4, 3, 65, 65)  # vit_tiny has 3 heads
    assert torch.allclose(maps.sum(-1), torch.ones(4, 3, 65), atol=1e-5)
    assert attention_rollout(maps).shape == (8, 8)


@pytest.mark.parametrize(
    "make_error",
    [
        lambda: __import__("huggingface_hub").errors.LocalEntryNotFoundError("no cache"),
        lambda: __import__("requests").exceptions.ConnectionError("Name or service not known"),
    ],
)
def test_pretrained_offline_raises_input_error(monkeypatch, make_error):
    def fail(*args, **kwargs):
        raise make_error()

    monkeypatch.setattr(timm, "create_model", fail)
    with pytest.raises(InputError, match="pretrained=False") as info:
        build_timm_vit("vit_tiny_patch16_224", 10, pretrained=True)
    assert "internet" in str(info.value) and "Hugging Face" in str(info.value)


def test_unknown_model_name_lists_vit_names():
    with pytest.raises(InputError, match="vit_base_patch16_224") as info:
        build_timm_vit("vit_does_not_exist", 10, pretrained=False)
    assert "unknown timm model" in str(info.value)


def test_build_model_dispatches_finetune_presets(monkeypatch):
    calls = {}
    real = timm.create_model

    def fake(name, **kwargs):
        calls.update(kwargs, name=name)
        kwargs["pretrained"] = False
        return real(name, depth=4, **kwargs)

    monkeypatch.setattr(timm, "create_model", fake)
    preset = get_preset("ft_vit_base_last3")
    model, spec = build_model(preset, num_classes=10, pretrained=True)
    assert calls["name"] == preset.timm_name and calls["pretrained"] is True
    assert calls["num_classes"] == 10 and calls["drop_path_rate"] == pytest.approx(0.1)
    assert spec.size == 224 and spec.mean == (0.5, 0.5, 0.5)
    assert model.blocks[3].attn.qkv.weight.requires_grad
    assert model.blocks[0].attn.qkv.weight.requires_grad is False
