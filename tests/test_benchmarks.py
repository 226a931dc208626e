"""The benchmark scripts run end to end in their CPU sanity modes and write complete JSON.

Only the structure is checked: the figures mean nothing on a CPU (speed targets are GPU-only
and live in the scripts themselves, never in tests)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_q1_throughput_compares_both_pipelines(tmp_path):
    out = tmp_path / "throughput.json"
    args = ["--steps", "2", "--warmup", "1", "--device", "cpu", "--batch", "16"]
    stdout = _run("q1_throughput.py", *args, "--seed-batch", "16", "--out", str(out))
    res = json.loads(out.read_text())
    assert res["seed"]["params"] == res["ours"]["params"] == 10_402_954
    assert res["seed"]["images_per_second"] > 0 and res["ours"]["images_per_second"] > 0
    ratio = res["ours"]["images_per_second"] / res["seed"]["images_per_second"]
    assert abs(res["speedup"] - ratio) < 1e-6
    assert "ratio (b)/(a)" in stdout


def _image_folder(root: Path, per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", per_class // 3)):
        for c, colour in enumerate(((220, 40, 40), (40, 40, 220))):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                img = np.clip(np.array(colour) + rng.normal(0, 25, (32, 32, 3)), 0, 255)
                Image.fromarray(img.astype(np.uint8)).save(folder / f"{i}.png")
    return root


def test_q1_time_to_accuracy_writes_curve(tmp_path):
    data = _image_folder(tmp_path / "data")
    out = tmp_path / "tta"
    args = ["--data", str(data), "--minutes", "0.1", "--epochs", "2", "--device", "cpu"]
    model = ["--dim", "32", "--depth", "1", "--heads", "2", "--batch-size", "8"]
    _run("q1_time_to_accuracy.py", *args, *model, "--target", "0.5", "--out", str(out))
    res = json.loads((out / "time_to_accuracy.json").read_text())
    assert res["train_images"] == 24 and res["val_images"] == 8
    assert 1 <= res["epochs"] <= 2 and len(res["history"]) == res["epochs"]
    assert 0.0 <= res["best_val_acc"] <= 1.0
    assert (out / "time_to_accuracy.png").stat().st_size > 1000


def test_q2_speed_quick_runs_image_and_video(tmp_path):
    out = tmp_path / "q2.json"
    _run("q2_speed.py", "--device", "cpu", "--quick", "--out", str(out))
    res = json.loads(out.read_text())
    assert res["random_weights"] is True
    (image,) = res["image"]
    assert image["size"] == "tiny" and image["seed_ms"] > 0 and image["ours_ms"] > 0
    (video,) = res["video"]
    assert video["frames"] == 6 and video["seed_fps"] > 0 and video["ours_fps"] > 0
