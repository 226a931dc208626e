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
