"""benchmarks/q2_tracking.py: on the harder scenes (re-acquiring stand-in propagation, distinct,
look-alike and noisy appearance, detection every 30 frames, two seeds) ours keeps the issue's
targets against the Grounded-SAM-2-style baseline; the first, kinder scenes still pass; masks of a long
1080p video stay within their memory and disk bounds."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _bench(tmp_path, *flags):
    out = tmp_path / "q2_tracking.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "q2_tracking.py"), *flags, "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout


def test_quick_variant_holds_the_identity_targets(tmp_path):
    res, stdout = _bench(tmp_path, "--quick")
    conds = res["conditions"]
    assert list(conds) == ["distinct@30", "lookalike@30", "noisy@30"] and res["seeds"] == [0, 1]
    scenes = ["swap_behind_wall", "away_60_opposite_edge", "three_lookalikes_crossing",
              "false_boxes_beside", "crowd_of_eight", "long_occlusion_newcomer", "OVERALL"]  # fmt: skip
    for r in conds.values():
        assert list(r["ours"]) == scenes and list(r["baseline"]) == scenes
        # MOTA never below the baseline's on any scene
        assert all(r["ours"][s]["mota"] >= r["baseline"][s]["mota"] for s in scenes), r
    ours = {c: r["ours"]["OVERALL"] for c, r in conds.items()}
    base = {c: r["baseline"]["OVERALL"] for c, r in conds.items()}
    assert ours["distinct@30"]["idf1"] >= 0.95 and ours["lookalike@30"]["idf1"] >= 0.90, ours
    for c in conds:  # ID switches <= 1/3 of the baseline's at every appearance level
        assert ours[c]["idsw"] <= base[c]["idsw"] / 3, (c, ours[c], base[c])
    assert ours["noisy@30"]["idf1"] >= 0.92 and base["noisy@30"]["idf1"] < 0.7
    # the oracle row (keyframe identity from the ground truth) bounds what any policy reaches
    # with these stand-ins; ours stays close to it at every appearance level
    for c, r in conds.items():
        oracle = r["oracle"]["OVERALL"]
        assert list(r["oracle"]) == scenes and oracle["idf1"] >= 0.95, oracle
        assert ours[c]["idf1"] >= oracle["idf1"] - 0.04, (c, ours[c], oracle)
    assert all(res["targets_met"].values()), res["targets_met"]
    assert "IDF1 ours" in stdout and "oracle" in stdout and "targets: 8/8 met" in stdout


def test_blank_keyframes_and_sliding_masks_cost_no_more_than_the_baseline(tmp_path):
    """30 % empty keyframes, masks that slide off between prompts: keeping a missed object
    is decided on how well its propagation holds, so ours is never below the baseline's MOTA
    there, at any appearance level, and makes far fewer ID switches."""
    res, _ = _bench(tmp_path, "--scenes", "blank_keyframes", "drift", "--seeds", "0", "1",
                    "--detect-every", "30")  # fmt: skip
    for cond, r in res["conditions"].items():
        for scene in ("blank_keyframes", "drift"):
            o, b = r["ours"][scene], r["baseline"][scene]
            assert o["mota"] >= b["mota"] and o["idsw"] <= b["idsw"] / 3, (cond, scene, o, b)


def test_first_easy_scenes_still_pass(tmp_path):
    res, _ = _bench(tmp_path, "--easy")
    assert all(res["targets_met"].values()), res["targets_met"]
    assert res["conditions"]["distinct@10"]["ours"]["OVERALL"]["idf1"] >= 0.95


def test_scenes_never_used_for_tuning_meet_the_targets_too(tmp_path):
    """``--held-out``: six scenes written after the rules were settled (a newcomer entering
    where someone left, quick passers, many false boxes, hidden after one look, drift with
    losses and blank keyframes, a standing row with false boxes beside it)."""
    import q2_tracking

    res, _ = _bench(tmp_path, "--held-out", "--detect-every", "30", "--seeds", "0")
    names = [s.name for s in q2_tracking.held_out_scenes()]
    table = {s.name for s in q2_tracking.scene_set(quick=False, easy=False)}
    assert len(names) == 6 and not set(names) & table
    for r in res["conditions"].values():
        assert list(r["ours"]) == [*names, "OVERALL"]
    assert all(res["targets_met"].values()), res["targets_met"]


def test_masks_of_1800_wavy_frames_at_1080p_fit_memory_and_disk():
    """40 frames x 5 wavy objects with holes measured, scaled to 1,800 frames (both grow
    linearly): <= 50 MiB held, <= 10 MB on disk (tracks.json + masks.json.xz)."""
    import q2_track_memory

    res = q2_track_memory.memory(40)
    scale = 1800 / 40
    assert res["held_mib"] * scale <= 50, res
    assert res["compact_disk_mib"] * 2**20 * scale <= 10e6, res
    # the compact file is what makes it fit: masks inside tracks.json would not
    assert res["json_with_masks_mib"] * 2**20 * scale > 10e6, res


def test_keyframes_on_demand_recover_what_propagation_loses_at_the_default_cadence(tmp_path):
    """Masks that slide and shrink between keyframes (drift, shrink_slide) at the CLI's
    default cadence: with keyframes on demand ours gains IDF1 and MOTA over the fixed cadence
    alone, for a bounded number of extra detector calls (at most one per 10 frames)."""
    flags = ["--scenes", "drift", "shrink_slide", "--seeds", "0", "--detect-every", "30"]
    on, _ = _bench(tmp_path, *flags)
    off, stdout = _bench(tmp_path, *flags, "--no-doubt")
    assert "calls ours" in stdout
    frames = 300 + 360  # the two scenes' lengths
    for cond in on["conditions"]:
        a, b = on["conditions"][cond]["ours"], off["conditions"][cond]["ours"]
        assert a["OVERALL"]["idf1"] >= b["OVERALL"]["idf1"] + 0.2, (cond, a, b)
        assert a["OVERALL"]["mota"] >= b["OVERALL"]["mota"] + 0.2, (cond, a, b)
        extra = a["OVERALL"]["calls"] - b["OVERALL"]["calls"]
        assert 0 < extra <= frames / 10, (cond, extra)


def test_eight_more_kinds_of_scene_run_and_small_fast_objects_keep_their_ids(tmp_path):
    """``q2_tracking_wild.py``: scenes of kinds the table lacks (a camera pan, small fast birds,
    two classes growing as they approach, edge traffic, ...). Birds of 8 px turning at 3 px a
    frame are re-identified where they could have flown (IDF1 0.45 before that rule)."""
    import q2_tracking
    import q2_tracking_wild

    names = [s.name for s in q2_tracking_wild.wild_scenes()]
    table = {s.name for s in q2_tracking.all_scenes()}
    assert len(names) == 8 and not set(names) & table
    out = tmp_path / "wild.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "q2_tracking_wild.py"), "--detect-every", "30",
         "--seeds", "0", "--scenes", "fast_small_birds", "side_by_side_then_split", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    res = json.loads(out.read_text())
    assert all(res["targets_met"].values()), res["targets_met"]
    for r in res["conditions"].values():
        assert r["ours"]["fast_small_birds"]["idf1"] >= 0.9, r["ours"]["fast_small_birds"]


def test_looks_ignored_row_and_real_trajectories(tmp_path):
    """``--real``: two MOT sequences' ground-truth trajectories drive the stand-ins (occlusion
    between people, misses rising with it); every condition has a looks-ignored row, ours is
    never below it (three seeds pooled), and HOTA comes beside IDF1 when trackeval is
    installed."""
    import importlib.util

    res, stdout = _bench(tmp_path, "--real", "--detect-every", "30")  # seeds 0 1 2 pooled
    assert list(res["conditions"]) == [f"{lev}@30" for lev in
                                       ("distinct", "lookalike", "noisy", "nearidentical")]  # fmt: skip
    for r in res["conditions"].values():
        assert list(r["ours"]) == ["tud-campus", "tud-stadtmitte", "OVERALL"]
        assert set(r) == {"ours", "blind", "baseline", "oracle"}
        has_hota = r["ours"]["OVERALL"]["hota"] is not None
        assert has_hota == (importlib.util.find_spec("trackeval") is not None)
    assert all(res["looks_never_hurt"].values()), res["looks_never_hurt"]
    assert "nolook" in stdout and "looks never hurt: 4/4" in stdout
