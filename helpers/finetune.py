"""Pretrained timm ViTs for fine-tuning: build with a new head, read their normalization,
and freeze everything but the last k blocks (+ final norm and head)."""

from __future__ import annotations

from torch import nn

from helpers.errors import InputError
from helpers.vit import InputSpec, count_parameters

_NO_HUB = (
    "could not download the pretrained weights for {name!r}: there is no internet access to "
    "the Hugging Face hub here ({err}). Connect to the internet (e.g. in Colab), or use "
    "pretrained=False to train the same architecture from random init."
)


def _offline_errors() -> tuple[type[BaseException], ...]:
    """Exception types a failed hub download raises (varies with huggingface_hub versions)."""
    errors: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]
    try:
        from huggingface_hub import errors as hf_errors

        errors += [
            getattr(hf_errors, n)
            for n in ("HfHubHTTPError", "LocalEntryNotFoundError", "OfflineModeIsEnabled")
            if hasattr(hf_errors, n)
        ]
    except ImportError:
        pass
    for mod, name in (("requests", "RequestException"), ("httpx", "HTTPError")):
        try:
            errors.append(getattr(__import__(mod), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _vit_names() -> str:
    import timm

    return ", ".join(timm.list_models("vit_*")[:10])


def _freeze(model: nn.Module, k: int) -> int:
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise InputError(
            f"freeze_all_but_last needs a ViT with `.blocks`; {type(model).__name__} has none."
        )
    n = len(blocks)
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= n:
        raise InputError(f"freeze_all_but_last must be an integer in 0..{n} (blocks), got {k!r}.")
    for p in model.parameters():
        p.requires_grad_(False)
    keep: list[nn.Module] = list(blocks)[n - k :] if k else []
    for name in ("norm", "fc_norm", "head_drop", "head"):
        m = getattr(model, name, None)
        if isinstance(m, nn.Module):
            keep.append(m)
    for m in keep:
        for p in m.parameters():
            p.requires_grad_(True)
    return count_parameters(model, trainable_only=True)


def freeze_all_but_last(model: nn.Module, k: int) -> int:
    """Freeze every parameter except the last ``k`` of ``model.blocks``, the final norm(s) and
    the head. Returns the number of trainable parameters left."""
    return _freeze(model, k)


def build_timm_vit(
    name: str,
    num_classes: int,
    pretrained: bool = True,
    freeze_all_but_last: int | None = None,
    drop_path: float = 0.1,
    **kwargs,
) -> tuple[nn.Module, InputSpec]:
    """A timm ViT with a fresh ``num_classes`` head and the :class:`InputSpec` it expects.

    ``mean``/``std`` come from the model's ``pretrained_cfg``; ``size`` is the side the built
    model takes (its ``patch_embed.img_size``, else ``pretrained_cfg['input_size'][-1]``).
    Extra ``kwargs`` go to ``timm.create_model`` (e.g. ``img_size=32, patch_size=4, depth=2``).
    """
    try:
        import timm
    except ImportError as e:
        raise InputError("fine-tuning needs timm: pip install 'timm>=1.0'.") from e
    if not isinstance(name, str) or not timm.is_model(name):
        raise InputError(
            f"unknown timm model {name!r}; ViT examples: {_vit_names()} "
            "(see timm.list_models('vit_*') for all)."
        )
    if num_classes < 2:
        raise InputError(f"num_classes must be >= 2, got {num_classes}.")
    if not 0.0 <= drop_path < 1.0:
        raise InputError(f"drop_path must be in [0, 1), got {drop_path}.")
    try:
        model = timm.create_model(
            name,
            pretrained=pretrained,
            num_classes=num_classes,
            drop_path_rate=drop_path,
            **kwargs,
        )
    except RuntimeError as e:
        msg = str(e)
        if "pretrained" in msg.lower():
            raise InputError(f"timm cannot load pretrained weights for {name!r}: {msg}") from e
        raise
    except TypeError as e:
        raise InputError(f"timm.create_model({name!r}) rejected the settings {kwargs}: {e}") from e
    except _offline_errors() as e:
        if not pretrained:
            raise
        raise InputError(_NO_HUB.format(name=name, err=type(e).__name__)) from e

    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = None
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if img_size is not None:
        size = int(img_size[-1]) if isinstance(img_size, tuple | list) else int(img_size)
    if size is None:
        size = int(cfg.get("input_size", (3, 224, 224))[-1])
    spec = InputSpec(
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        size=size,
    )
    if freeze_all_but_last is not None:
        _freeze(model, freeze_all_but_last)
    return model, spec


__all__ = ["build_timm_vit", "freeze_all_but_last"]
