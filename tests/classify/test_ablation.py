"""helpers.classify.ablation: variants of one recipe, each in its own resumable folder, and the table."""

from pathlib import Path

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


def test_a_finished_variant_keeps_only_what_its_row_needs(tmp_path, monkeypatch):
    """No last.pt (nor its backup) once a variant finished, unless keep_last; its row is kept
    (variant.json) and read back by the next call instead of training again."""
    import json

    from helpers.classify import train as T

    data = synthetic_dataset(64, 32, num_classes=4, image_size=16, n_test=32)
    one = {**TINY, "epochs": 1}
    variants = {"a": {}, "b": {"ema_decay": None}}
    rows = AB.run_variants("fast", variants, data, tmp_path, common=one, log=lambda m: None)
    for row in rows:
        folder = Path(row["out_dir"])
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["best.pt", "history.csv", "history.json", "test.json", "variant.json"]
        saved = json.loads((folder / "variant.json").read_text())["row"]
        assert saved["val_acc"] == row["val_acc"] and "delta" not in saved
    monkeypatch.setattr(T, "train", lambda *a, **k: pytest.fail("trained again"))
    logs = []
    again = AB.run_variants("fast", variants, data, tmp_path, common=one, log=logs.append)
    assert [r["val_acc"] for r in again] == [r["val_acc"] for r in rows]
    assert [r["delta"] for r in again] == [r["delta"] for r in rows]
    assert all("done before" in m for m in logs) and len(logs) == 2
    monkeypatch.undo()
    # keep_last: the folder can train on later (another folder: other settings)
    (kept,) = AB.run_variants(
        "fast", {"a": {}}, data, tmp_path, common={**one, "seed": 1}, keep_last=True,
        log=lambda m: None,
    )  # fmt: skip
    assert (Path(kept["out_dir"]) / "last.pt").is_file()
    # START_FRESH (resume=False): trained anew, the earlier run set aside with its row
    fresh = AB.run_variants(
        "fast", {"a": {}}, data, tmp_path, common=one, resume=False, log=lambda m: None
    )
    moved = Path(fresh[0]["out_dir"]) / "previous_run"
    assert (moved / "variant.json").is_file() and (moved / "best.pt").is_file()


def test_the_cost_of_the_optional_sections_is_said_up_front():
    text = AB.sections_cost(
        {"patch sizes": (True, 3, 2.0), "ablation": (False, 5, 2.0), "sweep": (True, 7, 1.0),
         "one": (True, 1, 0.5), "smoke": (True, 2, None)}
    )  # fmt: skip
    lines = text.splitlines()
    assert lines[0].startswith("optional sections: 13.5 min of training budgets")
    assert "outside its budget" in lines[0]
    assert lines[1].split() == ["patch", "sizes", "on", "3", "runs", "x", "2", "min", "=", "6",
                                "min"]  # fmt: skip
    assert "off" in lines[2] and "10 min" in lines[2]  # said, but not counted
    assert "1 run x 0.5 min = 0.5 min" in lines[4] and "no time budget" in lines[5]


def test_the_space_the_outputs_take(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "sub").mkdir(parents=True)
    (a / "x.pt").write_bytes(b"x" * 1000)
    (a / "sub" / "y.json").write_bytes(b"y" * 24)
    (a / "link").symlink_to(a / "x.pt")  # not counted twice
    assert AB.folder_bytes(a) == 1024 and AB.folder_bytes(tmp_path / "missing") == 0
    assert AB.folder_bytes(a / "x.pt") == 1000
    text = AB.space_report({"main run": a, "analyses": b})
    assert text.splitlines()[0] == "outputs: 1.0 KiB in all"
    assert "main run" in text and "1.0 KiB" in text.splitlines()[1] and str(a) in text
    assert text.splitlines()[2].split()[:3] == ["analyses", "0", "B"]
