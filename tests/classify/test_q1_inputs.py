"""Q1 settings a user gets wrong: MODE vs preset, a wrong setting in a notebook cell, pretrained
weights offline."""

import time

import pytest

from helpers.errors import InputError


def test_mode_must_fit_the_preset():
    from helpers.classify.presets import check_mode

    assert check_mode("fast", "scratch").name == "fast"
    assert check_mode("ft_vit_small", "finetune").finetune
    with pytest.raises(InputError, match="set MODE = 'finetune'") as e:
        check_mode("ft_vit_base", "scratch")
    assert "\n" not in str(e.value) and isinstance(e.value, ValueError)
    with pytest.raises(InputError, match="set MODE = 'scratch'.*ft_vit_small"):
        check_mode("best", "finetune")
    with pytest.raises(InputError, match="MODE must be"):
        check_mode("fast", "Scratch")


def test_a_wrong_setting_in_a_notebook_cell_is_one_line(capsys):
    """In IPython (as in a notebook): an InputError shows its message on one line, no
    traceback, and the cell still fails (Run all stops there); other errors keep theirs."""
    from IPython.core.interactiveshell import InteractiveShell

    from helpers import runtime

    assert runtime.short_input_errors(shell=None) is False  # not inside IPython: nothing
    shell = InteractiveShell.instance()
    try:
        assert runtime.short_input_errors(shell) is True
        capsys.readouterr()
        res = shell.run_cell(
            "from helpers.classify.presets import get_preset\nget_preset('fast', heads=5)"
        )
        out, err = capsys.readouterr()
        assert isinstance(res.error_in_exec, InputError) and not res.success
        shown = [ln for ln in (out + err).splitlines() if ln.strip()]
        assert len(shown) == 1, shown
        assert "InputError: dim 384 is not divisible by heads 5." in shown[0]
        assert "Traceback" not in out + err
        res = shell.run_cell("1 / 0")
        out, err = capsys.readouterr()
        assert isinstance(res.error_in_exec, ZeroDivisionError) and "Traceback" in out + err
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()


def test_pretrained_weights_fail_fast_when_the_hub_is_unreachable(monkeypatch):
    """No ~50 s of hub retries: one short probe, then the clear message (no network used)."""
    import urllib.request

    import timm

    from helpers.classify import finetune

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    probes = []

    def unreachable(req, timeout=None):
        probes.append(timeout)
        raise OSError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    monkeypatch.setattr(finetune, "cached_weights", lambda name: None)

    def no_download(*a, **k):
        raise AssertionError("timm.create_model must not try the hub")

    monkeypatch.setattr(timm, "create_model", no_download)
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="no internet access to the Hugging Face hub") as e:
        finetune.build_timm_vit("vit_small_patch16_224.augreg_in21k_ft_in1k", 10)
    assert time.perf_counter() - t0 < 5 and probes and probes[0] <= 5
    assert "pretrained=False" in str(e.value) and "\n" not in str(e.value)


def test_cached_weights_are_used_offline(monkeypatch, tmp_path):
    import timm

    from helpers.classify import finetune

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(finetune, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(finetune, "cached_weights", lambda name: str(tmp_path / "w.safetensors"))
    seen = {}
    real = timm.create_model

    def spy(name, pretrained=False, **kw):
        seen.update(kw, pretrained=pretrained)
        return real(name, pretrained=False, **{k: v for k, v in kw.items() if "overlay" not in k})

    monkeypatch.setattr(timm, "create_model", spy)
    finetune.build_timm_vit("vit_tiny_patch16_224", 10, img_size=32, patch_size=8, depth=1)
    assert seen["pretrained"] is True
    assert seen["pretrained_cfg_overlay"]["file"] == str(tmp_path / "w.safetensors")
