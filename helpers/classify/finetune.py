"""Pretrained timm ViTs for fine-tuning: build with a new head, read their normalization,
and freeze everything but the last k blocks (+ final norm and head)."""

from __future__ import annotations

import os

from torch import nn

from helpers.classify.vit import InputSpec, count_parameters
from helpers.errors import InputError

_NO_HUB = (
    "could not download the pretrained weights for {name!r}: there is no internet access to "
    "the Hugging Face hub here ({err}). Connect to the internet (e.g. in Colab), or use "
    "pretrained=False (--no-pretrained on the command line) to train the same architecture "
    "from random init."
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


HUB_PROBE_SECONDS = 3.0


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """One quick probe of the Hugging Face hub (``HF_ENDPOINT``): any HTTP answer counts.

    Runs in a thread joined with a deadline, so a hanging DNS lookup cannot stall it. Used to
    fail in seconds offline instead of waiting out the hub client's retries (~50 s)."""
    import threading
    import urllib.error
    import urllib.request

    url = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    answer: dict[str, bool] = {}

    def probe() -> None:
        try:
            req = urllib.request.Request(url, method="HEAD")
            urllib.request.urlopen(req, timeout=timeout).close()
            answer["ok"] = True
        except urllib.error.HTTPError:  # it answered (even 4xx/5xx): the network is there
            answer["ok"] = True
        except Exception:
            answer["ok"] = False

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return answer.get("ok", False)


def _hub_offline_mode() -> bool:
    """``HF_HUB_OFFLINE=1``: the hub client then uses its cache only and fails at once."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cached_weights(name: str) -> str | None:
    """The local path of ``name``'s pretrained weights when the hub cache already has them."""
    try:
        import timm
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(name)
        repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if not repo:
            return None
        for filename in ("model.safetensors", "pytorch_model.bin"):
            path = try_to_load_from_cache(repo, filename)
            if isinstance(path, str) and os.path.isfile(path):
                return path
    except Exception:
        return None
    return None


def _offline_settings(name: str, pretrained: bool) -> dict:
    """Extra ``timm.create_model`` settings when the hub cannot be reached: the cached weights
    file if there is one, else an InputError at once (no ~50 s of retries)."""
    if not pretrained or _hub_offline_mode():
        return {}
    cached = cached_weights(name)
    if hub_reachable():
        return {}
    if cached is not None:
        return {"pretrained_cfg_overlay": {"file": cached, "source": ""}}
    raise InputError(_NO_HUB.format(name=name, err=f"no answer within {HUB_PROBE_SECONDS:.0f} s"))


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
    offline = _offline_settings(name, pretrained)
    try:
        model = timm.create_model(
            name,
            pretrained=pretrained,
            num_classes=num_classes,
            drop_path_rate=drop_path,
            **offline,
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
