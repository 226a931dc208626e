"""helpers.classify.ablation: variants of one recipe, each in its own resumable folder, and the table."""

import pytest
import torch

from helpers.classify import ablation as AB
from helpers.classify.data import synthetic_dataset
from helpers.errors import InputError

TINY = dict(
    image_size=16, patch_size=4, dim=32, depth=1, heads=2, mlp_ratio=2, epochs=2, batch_size=32,
    compile=False, precision="fp32", warmup_fraction=None, checkpoint_minutes=0,
)  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_variants_table_and_resume(tmp_path):
    data = synthetic_dataset(128, 64, num_classes=4, image_size=16, n_test=32)
    variants = {"recipe as is": {}, "no EMA": {"ema_decay": None}}
    rows = AB.run_variants("fast", variants, data, tmp_path, common=TINY, log=lambda m: None)
    assert [r["variant"] for r in rows] == ["recipe as is", "no EMA"]
    assert rows[0]["delta"] == 0.0
    assert rows[1]["delta"] == pytest.approx(rows[1]["val_acc"] - rows[0]["val_acc"])
    for r in rows:
        assert 0.0 <= r["val_acc"] <= 1.0 and 0.0 <= r["val_acc_flip_tta"] <= 1.0
        assert r["test_acc"] is not None and r["epochs"] == 2
        assert set(r["per_class_f1"]) == set(data.classes) and r["parameters"] > 0
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 2 and folders[0].startswith("no-ema-")
    table = AB.ablation_table(rows)
    assert "no EMA" in table and "+ flip TTA (no retrain)" in table
    # the same settings again: resumed (nothing retrained); other settings: another folder
    again = AB.run_variants("fast", variants, data, tmp_path, common=TINY, log=lambda m: None)
    assert [r["val_acc"] for r in again] == [r["val_acc"] for r in rows]
    AB.run_variants("fast", {"recipe as is": {}}, data, tmp_path, common={**TINY, "epochs": 1})
    assert len(list(tmp_path.iterdir())) == 3
    deltas = AB.f1_deltas(rows)
    assert set(deltas) == set(data.classes)


def test_one_at_a_time_and_errors():
    v = AB.one_at_a_time({"depth": [4, 9], "lr": [1e-3]})
    assert v == {
        "base": {},
        "depth 4": {"depth": 4},
        "depth 9": {"depth": 9},
        "lr 0.001": {"lr": 1e-3},
    }
    with pytest.raises(InputError, match="no variants"):
        AB.run_variants("fast", {}, None, "/nonexistent")
    with pytest.raises(InputError, match="two runs"):
        AB.f1_deltas([{"per_class_f1": {}}])
    assert set(AB.ABLATIONS) >= {"no EMA", "no MixUp/CutMix", "no RandAugment", "+ SPT + LSA"}


def test_a_width_keeps_the_head_width_of_the_base():
    built = AB.variant_presets("fast", AB.one_at_a_time({"dim": [256, 512, 100], "depth": [4]}))
    heads = {name: preset.model.heads for name, (_, _, preset) in built.items()}
    # fast: 384 wide, 6 heads of 64
    assert heads == {"base": 6, "dim 256": 4, "dim 512": 8, "dim 100": 2, "depth 4": 6}
    assert built["dim 256"][0] == {"dim": 256, "heads": 4}  # the row says which heads ran
    for _, _, preset in built.values():
        assert preset.model.dim % preset.model.heads == 0
    # the base's own head width, with common applied (a 32-wide model of 2 heads: 16 each)
    small = AB.variant_presets("fast", {"w": {"dim": 48}}, common={"dim": 32, "heads": 2})
    assert small["w"][2].model.heads == 3
    # heads given by the variant are kept (and checked)
    assert AB.variant_presets("fast", {"h": {"dim": 256, "heads": 8}})["h"][2].model.heads == 8
    assert AB.heads_for(384, 64) == 6 and AB.heads_for(7, 64) == 1


def test_a_variant_that_cannot_run_stops_the_call_before_any_training(tmp_path, monkeypatch):
    from helpers.classify import train as T

    trained = []
    monkeypatch.setattr(T, "train", lambda *a, **k: trained.append(a) or 1 / 0)
    data = synthetic_dataset(128, 64, num_classes=4, image_size=16)
    common = {**TINY, "batch_size": 32}
    for variants, needle in (
        ({"ok": {}, "bad": {"dim": 32, "heads": 5}}, r"'bad'.*dim 32 is not divisible by heads 5"),
        ({"ok": {}, "big": {"batch_size": 256}}, r"'big'.*batch_size 256 is larger"),
        ({"ok": {}, "px": {"image_size": 32}}, r"'px'.*image_size 32 differs from the data's 16"),
        ({"ok": {}, "p": {"patch_size": 3}}, r"'p'.*patch_size 3 does not divide"),
    ):
        with pytest.raises(InputError, match=needle) as e:
            AB.run_variants("fast", variants, data, tmp_path, common=common, log=lambda m: None)
        assert "Nothing was trained" in str(e.value)
    assert trained == [] and not any(tmp_path.iterdir())


def test_mean_images_per_second_of_a_row_weights_epochs_by_images(tmp_path):
    data = synthetic_dataset(128, 64, num_classes=4, image_size=16)
    (row,) = AB.run_variants("fast", {"a": {}}, data, tmp_path, common=TINY, log=lambda m: None)
    import json

    history = json.loads(next(tmp_path.glob("a-*/history.json")).read_text())
    images = sum(r["images_per_second"] * r["epoch_seconds"] for r in history)
    assert row["images_per_second"] == pytest.approx(
        images / sum(r["epoch_seconds"] for r in history)
    )
    assert row["peak_memory_mb"] is None  # CPU
    assert [p["epoch"] for p in row["curve"]] == [1, 2]
