"""benchmarks/q2_tracking.py: the quick mode runs and ours beats the Grounded-SAM-2-style
baseline; compressed-RLE memory for a long 1080p video stays within its targets."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_quick_mode_scores_both_policies(tmp_path):
    out = tmp_path / "q2_tracking.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "q2_tracking.py"), "--quick", "--memory",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    res = json.loads(out.read_text())
    scenes = ["reenter_elsewhere", "occlusion_motion", "crossing_swaps", "OVERALL"]
    for policy in ("ours", "baseline"):
        assert list(res[policy]) == scenes
        assert all(0 <= res[policy][s]["idf1"] <= 1 for s in scenes)
    ours, base = res["ours"], res["baseline"]
    assert all(ours[s]["idf1"] >= base[s]["idf1"] for s in scenes)
    assert ours["OVERALL"]["idf1"] >= 0.9 and ours["OVERALL"]["idsw"] < base["OVERALL"]["idsw"]
    assert "IDF1 ours" in proc.stdout and res["memory"]["frames"] == 20


def test_compressed_rle_memory_for_1800_frames_at_1080p():
    """40 frames x 5 objects measured, scaled to 1,800 frames (memory grows linearly)."""
    import q2_tracking

    res = q2_tracking.memory(40)
    scale = 1800 / 40
    assert res["held_mib"] * scale <= 100  # target: <= 100 MB held
    assert res["json_mib"] * scale <= 10  # target: <= 10 MB of tracks.json
    assert res["plain_lists_mib_estimate"] > 5 * res["held_mib"]
