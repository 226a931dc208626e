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


def test_q1_throughput_decomposes_the_ratio_and_reads_what_ran(tmp_path):
    """Seed pipeline; ours at the seed's batch and precision, at the seed's batch with ours,
    at our batch. On a CPU all of ours are fp32 at batch 16 here: measured once, reused."""
    out = tmp_path / "throughput.json"
    args = ["--steps", "2", "--warmup", "1", "--device", "cpu", "--batch", "16"]
    stdout = _run("q1_throughput.py", *args, "--seed-batch", "16", "--out", str(out))
    res = json.loads(out.read_text())
    assert res["rows"] == ["seed", "ours_seed_batch_seed_precision", "ours_seed_batch", "ours"]
    assert res["seed"]["params"] == res["ours"]["params"] == 10_402_954
    assert res["seed"]["images_per_second"] > 0 and res["ours"]["images_per_second"] > 0
    ratio = res["ours"]["images_per_second"] / res["seed"]["images_per_second"]
    assert abs(res["speedup"] - ratio) < 1e-6 and abs(res["ours"]["vs_seed"] - ratio) < 1e-6
    assert res["ours_seed_batch"]["same_as"] == "ours_seed_batch_seed_precision"
    # what ran is read from the run: the seed's loader workers, no compile, no fused AdamW
    # and no TF32 on a CPU, float32 everywhere; the host CPU and its cores
    assert res["seed"]["workers"] == 2 and res["ours"]["workers"] == 0
    for key in res["rows"]:
        r = res[key]
        assert (r["compiled"], r["aug_compiled"], r["fused_adamw"], r["tf32"]) == (False,) * 4
        assert r["dtype"] == "float32"
    assert res["host_cpu"]["cores"] >= 1 and res["host_cpu"]["model"]
    assert "ratio (b3)/(a)" in stdout and "DataLoader with 2 workers" in stdout


def _image_folder(root: Path, per_class: int = 12, test: int = 0) -> Path:
    rng = np.random.default_rng(0)
    splits = (("train", per_class), ("val", per_class // 3)) + ((("test", test),) if test else ())
    for split, n in splits:
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
    assert image["documented_ms"] > 0 and image["documented_autocast"] is None  # CPU: no autocast
    (video,) = res["video"]
    assert video["frames"] == 6 and video["objects"] == 2
    for loop in ("official", "ours"):  # sam2's documented loop and ours, two figures each
        assert video[f"{loop}_prop_fps"] > 0 and video[f"{loop}_e2e_fps"] > 0
        assert video[f"{loop}_rss_mib"] > 100 and video[f"{loop}_peak_mib"] is None  # CPU
    settings = video["settings"]  # read from the run, not written as text
    assert settings["dtype"] == "float32" and settings["compiled"] is False
    assert settings["tf32"] is False and video["ours_offload"] is False


# --------------------------------------------------------------------------- gpu_report.py


def _gpu_report(out: Path, *args: str) -> tuple[dict, str, str]:
    stdout = _run("gpu_report.py", *args, "--quick", "--out", str(out))
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert report["quick"] is True and report["device"] and report["torch"]
    assert not [k for k, s in report["sections"].items() if s.get("error") or s.get("errors")]
    for sec in report["sections"].values():  # each section: device, torch, command, a table
        assert f"## {sec['title']}" in md
        assert (sec["table"] or "").startswith("| ") or f"**{sec['skipped']}**" in md
    assert md.count(f"device: {report['device']} · torch {report['torch']}") == len(
        report["sections"]
    )
    assert md.count(f"`{report['command']}`") >= len(report["sections"])
    assert "--quick" in report["command"]
    _estimates_come_first(stdout, report)
    return report, md, stdout


def _estimates_come_first(stdout: str, report: dict) -> None:
    """The plan (every section's estimate and their total) is printed first, then before each
    section one line with its estimate and the time left, ahead of anything it prints."""
    lines = stdout.splitlines()
    plan = [p["section"].split(":")[0] for p in report["plan"]]
    assert lines.index("[gpu_report] plan (estimates on one H100, compile included):") < 3
    assert any(line.startswith("[gpu_report]   total ") for line in lines)
    for key, sec in report["sections"].items():
        assert key in plan
        if sec.get("estimate_s") is None:  # skipped because an earlier section did not run
            assert "did not" in sec["skipped"] and key in report["skipped"]
            continue
        estimate = f"[gpu_report] estimate {sec['estimate_s']} s (one H100, compile"
        at = next(i for i, line in enumerate(lines) if line.startswith(estimate)
                  and f"for {sec['title']};" in line)  # fmt: skip
        assert lines[at].endswith("budget left") or lines[at].endswith("no budget set")
        after = lines[at + 1]
        if sec.get("skipped"):
            assert after == f"[gpu_report] {sec['title']}: {sec['skipped']}"
        else:  # the section's own output follows, then its end
            done = f"[gpu_report] {sec['title']}: done in "
            assert not after.startswith(done.split(": done")[0] + ": skipped")
            assert any(line.startswith(done) for line in lines[at + 1 :])


def test_gpu_report_q1_quick_measures_throughput_and_fast_run(tmp_path):
    data = _image_folder(tmp_path / "data", per_class=12, test=3)
    out = tmp_path / "q1"
    report, md, _ = _gpu_report(out, "--part", "q1", "--data", str(data))
    sections = report["sections"]
    assert list(sections) == ["data", "fast", "throughput"] and not report["skipped"]
    assert [p["section"] for p in report["plan"]] == ["data", "fast", "throughput"]
    assert sections["data"]["result"]["train"] == 24

    tp = sections["throughput"]["result"]
    assert tp["rows"] == ["seed", "ours_seed_batch_seed_precision", "ours_seed_batch", "ours"]
    assert tp["seed"]["images_per_second"] > 0 and tp["ours"]["images_per_second"] > 0
    assert tp["seed"]["params"] == 10_402_954  # the seed000 network
    ratio = tp["ours"]["images_per_second"] / tp["seed"]["images_per_second"]
    assert abs(tp["ratio"] - ratio) < 1e-9
    table = sections["throughput"]["table"]
    for label in ("(a) seed000 way", "(b1) ours, seed batch + precision", "(b3) ours, our batch"):
        assert label in table
    assert "what ran (read from the run)" in table and "model eager" in table

    fast = sections["fast"]["result"]
    assert fast["preset"] == "fast" and 1 <= fast["epochs"] <= 2
    for key in ("final_val_acc", "best_val_acc"):
        assert 0.0 <= fast[key] <= 1.0
    if sections["data"]["result"]["test"]:  # the data split has a test/ folder
        assert 0.0 <= fast["test_acc"] <= 1.0
    curve = fast["curve"]
    # a budgeted run validates sparsely early, and always its final epoch
    assert 1 <= len(curve) <= fast["epochs"] and curve[-1]["epoch"] == fast["epochs"]
    assert all(p["elapsed_seconds"] > 0 and 0.0 <= p["val_acc"] <= 1.0 for p in curve)
    assert (out / fast["plot"]).stat().st_size > 1000
    # the whole command beside the budget: data + setup (compile, calibration) + training +
    # final scoring, and the plan's steps
    parts = [fast[k] for k in ("data_seconds", "setup_seconds", "training_seconds")]
    assert all(v > 0 for v in parts) and fast["scoring_seconds"] >= 0
    assert fast["command_seconds"] >= sum(parts) + fast["scoring_seconds"]
    assert fast["planned_steps"] >= fast["steps"] and fast["replans"] >= 0
    assert fast["validation_share"] is not None

    for words in (
        "train images/s",
        "ratio (b3)/(a)",
        "what the whole command took, beside the budget",
        "val accuracy vs wall time",
        "test acc",
    ):
        assert words in md, words


def test_gpu_report_q2_quick_measures_image_video_and_long_video(tmp_path):
    out = tmp_path / "q2"
    # 1 and 16 objects (the default 1 3 16 is checked by parse_args below; each count runs both loops)
    report, md, stdout = _gpu_report(out, "--part", "q2", "--objects", "1", "16")
    sections = report["sections"]
    q2 = ["setup", "image", "video", "long", "sam3_image", "sam3_video", "tracking"]
    assert list(sections) == q2 and not report["skipped"]
    (image,) = sections["image"]["result"]
    assert image["size"] == "tiny" and image["ours_ms"] > 0 and image["seed_ms"] > 0
    assert image["documented_ms"] > 0
    # one row per object count, 16 among them, each measured by both loops
    rows = sections["video"]["result"]
    assert [r["objects"] for r in rows] == [1, 16]
    for video in rows:
        assert video["frames"] == 3 and video["ours_e2e_fps"] > 0
        assert video["official_e2e_fps"] > 0 and video["warmup_s"] > 0
        assert video["ours_prop_fps"] > 0 and video["official_prop_fps"] > 0
    assert "1 16 objects" in " ".join(p["what"] for p in report["plan"])
    assert "estimate " in stdout.split("video SAM 2.1 tiny;")[0].splitlines()[-1]
    long = sections["long"]["result"]
    assert long["frames"] == 8 and long["fps"] > 0 and long["rss_mib"] > 100
    assert long["peak_mib"] is None  # CPU: no GPU memory to report
    notes = " ".join(sections["video"]["notes"])
    assert "SAM2VideoPredictor (not compiled), float32, TF32 off" in notes
    words_ = ("text -> masks", "ours ms", "tracking FPS", "sam2 loop fps (propagation)")
    for words in (*words_, "ours fps (end to end)", "peak GPU", "peak RSS"):
        assert words in md, words
    # what ran, next to the figures: the documented usage's reference and compile kept apart
    for words in (
        "documented usage ms (warm)",
        "write-ups' fp32 loop ms (warm)",
        'torch.autocast("cuda", dtype=torch.bfloat16)',
        "warm-up s incl. compile (not in any fps)",
        "every fps excludes compile",
        "fps end to end (after warm-up)",
        "fps (no warm-up; nothing compiled)",
    ):
        assert words in md, words
    (s3i,) = sections["sam3_image"]["result"]
    assert s3i["model"] == "sam3 random-toy" and s3i["ms"] > 0 and s3i["phrases"] == 2
    (s3v,) = sections["sam3_video"]["result"]
    assert s3v["frames"] == 3 and s3v["fps"] > 0 and s3v["e2e_fps"] > 0
    for words in ("SAM 3 image", "SAM 3 video", "text encoding saved"):
        assert words in md, words
    # tracking identity (CPU, last): q2_tracking's quick variant on one seed, per condition
    tracking = sections["tracking"]["result"]
    assert list(tracking["conditions"]) == ["distinct@30", "lookalike@30", "noisy@30"]
    assert tracking["seeds"] == [0] and tracking["targets_met"]  # one seed: a sanity run
    for words in ("Q2 tracking identity", "IDF1 ours", "ID switches baseline", "targets: "):
        assert words in md, words


def test_gpu_report_is_one_command_that_skips_what_the_budget_cannot_hold(tmp_path):
    """No --part: both parts are planned; with a budget too small for any estimate every
    section is skipped, each with its reason printed after its estimate line and written to
    report.md and report.json; a skip is not a failure (exit status 0)."""
    report, md, stdout = _gpu_report(tmp_path / "all", "--budget-s", "1")
    assert report["part"] == "q1+q2" and report["budget_seconds"] == 1
    planned = [p["section"] for p in report["plan"]]
    assert planned[:3] == ["data", "fast", "throughput"] and planned[3] == "setup"
    assert "video:tiny" in planned and planned[-1] == "tracking"
    q1 = ["data", "fast", "throughput"]
    q2 = ["setup", "image", "video", "long", "sam3_image", "sam3_video", "tracking"]
    assert list(report["sections"]) == q1 + q2 == report["skipped"]
    for sec in report["sections"].values():
        assert sec["skipped"].startswith("skipped: ") and sec["result"] is None
        assert f"**{sec['skipped']}**" in md
    assert "only 0 s of the 1 s budget left" in md or "only 1 s of the 1 s budget left" in md
    assert "10 skipped: data, fast, throughput, setup" in stdout


def test_gpu_report_parses_one_command_with_16_objects():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_report

    args = gpu_report.parse_args([])
    assert args.parts == ["q1", "q2"] and args.part is None and args.data == "cifar10"
    assert args.objects == [1, 3, 16] and args.budget_s == 540 and args.out == "runs/gpu_report"
    assert args.minutes == gpu_report.FAST_MINUTES_WITH_Q2
    assert gpu_report.parse_args(["--part", "q1"]).minutes == gpu_report.FAST_MINUTES_ALONE
    assert gpu_report.parse_args(["--objects", "1,3,16"]).objects == [1, 3, 16]
    assert gpu_report.parse_args(["--objects", "2", "5"]).objects == [2, 5]
    assert gpu_report.parse_args(["--only", "video,long"]).parts == ["q2"]
    assert gpu_report.parse_args(["--budget-minutes", "2"]).budget_s == 120
    assert gpu_report.parse_args(["--quick"]).budget_s == float("inf")


def test_16_objects_fit_a_720p_frame_apart():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import q2_common

    for k in (1, 3, 16, q2_common.MAX_OBJECTS):
        boxes = q2_common.object_boxes(k, 720, 1280)
        assert boxes.shape == (k, 4)
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= 1280).all() and (boxes[:, 3] <= 720).all()
        assert ((boxes[:, 2] - boxes[:, 0]) >= 64).all() and (
            (boxes[:, 3] - boxes[:, 1]) >= 64
        ).all()
        for i in range(k):  # no two boxes share a pixel
            for j in range(i + 1, k):
                a, b = boxes[i], boxes[j]
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (k, i, j)
    assert q2_common.parse_objects(["1", "3", "16"]) == [1, 3, 16]
    assert q2_common.parse_objects("1,3,16") == q2_common.parse_objects(["1,3", "16"])
    for bad in (["0"], ["65"], ["x"], []):
        try:
            q2_common.parse_objects(bad)
        except ValueError as e:
            assert "--objects" in str(e)
        else:
            raise AssertionError(bad)


def test_gpu_report_skips_a_size_or_section_that_does_not_fit_what_is_left(tmp_path):
    """The budget check reads the estimate against the time left (here a fixed clock): a
    section that does not fit is recorded as skipped, not run; within a section measured
    per model size, each size is checked on its own."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_report
    import gpu_report_q2
    import torch

    args = gpu_report.parse_args(["--quick", "--budget-s", "100", "--out", str(tmp_path)])
    report = gpu_report.Report(args, torch.device("cpu"), "python benchmarks/gpu_report.py")
    report.elapsed = lambda: 40.0  # 60 s left
    ran = []

    def section(sec):
        ran.append("section")
        sizes = ["tiny", "large"]
        estimates = {"tiny": 30.0, "large": 90.0}
        gpu_report_q2._per_size(
            sec, report, "video", sizes, lambda z: [{"size": z}], estimates.__getitem__
        )

    report.run("fits", "Fits", section, estimate_s=120.0, first_part_s=30.0)
    report.run("too_big", "Too big", lambda sec: ran.append("too big"), estimate_s=61.0)
    assert ran == ["section"]
    saved = json.loads((tmp_path / "report.json").read_text())
    rows = saved["sections"]["fits"]["result"]
    assert rows[0] == {"size": "tiny"} and rows[1]["skipped"].startswith("skipped: estimated 90 s")
    assert saved["sections"]["too_big"]["skipped"].startswith("skipped: estimated 61 s")
    assert saved["skipped"] == ["video:large", "too_big"]
    assert "only 60 s of the 100 s budget left" in (tmp_path / "report.md").read_text()


def test_gpu_report_records_a_failed_section_and_goes_on(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_report
    import torch

    args = gpu_report.parse_args(["--part", "q2", "--quick", "--out", str(tmp_path)])
    report = gpu_report.Report(args, torch.device("cpu"), "python benchmarks/gpu_report.py")

    def boom(sec):
        sec["notes"].append("partial")
        raise RuntimeError("CUDA out of memory (pretend)")

    def fine(sec):
        sec["table"] = gpu_report.md_table(["a", "b"], [[1, 2]], right={1})

    report.run("bad", "Bad section", boom)
    report.run("good", "Good section", fine)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert "out of memory" in saved["sections"]["bad"]["error"]
    assert saved["sections"]["good"]["table"] == "| a | b |\n| --- | ---: |\n| 1 | 2 |"
    md = (tmp_path / "report.md").read_text()
    assert "**error:** RuntimeError: CUDA out of memory (pretend)" in md and "| 1 | 2 |" in md
    assert report.failed() == ["bad"]


def test_q1_scaling_quick_runs_one_and_two_processes(tmp_path):
    out = tmp_path / "scaling.json"
    stdout = _run("q1_scaling.py", "--quick", "--steps", "2", "--procs", "2", "--out", str(out))
    res = json.loads(out.read_text())
    assert [r["processes"] for r in res["rows"]] == [1, 2]  # N = 1 is always the base
    assert all(r["images_per_second"] > 0 for r in res["rows"])
    assert "synchronisations" in res["timing"]
    base = res["rows"][0]["images_per_second"]
    assert res["rows"][1]["efficiency"] == res["rows"][1]["images_per_second"] / (2 * base)
    assert res["rows"][0]["efficiency"] == 1.0 and res["rows"][1]["efficiency"] > 0
    assert "efficiency" in stdout


def test_each_q2_measurement_runs_alone_and_the_fronts_delegate(tmp_path):
    """One measurement a file: the mask-memory figure runs on its own, and the commands
    that ran it before (``q2_tracking.py --memory-only``) still give the same figure."""
    alone, front = tmp_path / "alone.json", tmp_path / "front.json"
    stdout = _run("q2_track_memory.py", "--frames", "20", "--out", str(alone))
    _run("q2_tracking.py", "--memory-only", "--quick", "--out", str(front))
    mem = json.loads(alone.read_text())["memory"]
    assert mem["frames"] == 20 and mem["objects"] == 5 and mem["resolution"] == "1920x1080"
    assert mem["held_mib"] > 0 and mem["compact_disk_mib"] > 0 and "memory 20 frames" in stdout
    via_front = json.loads(front.read_text())["memory"]  # same masks, same sizes
    keys = ("frames", "objects", "resolution", "rle_bytes_mib", "json_with_masks_mib")
    assert {k: via_front[k] for k in keys} == {k: mem[k] for k in keys}
