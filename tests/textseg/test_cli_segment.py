"""``python -m helpers segment / track / eval-masks`` (helpers/textseg/commands.py), offline.

Models are random-weight (``--random-weights``: toy Grounding DINO + SAM 2 tiny at a small
``--image-size``), so the masks are meaningless; the tests check the plumbing: outputs written,
summaries consistent with them, folder runs resumable, bad input -> exit 2 with a message.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import cli

FAST = [
    "--random-weights",
    "--image-size",
    "128",
    "--device",
    "cpu",
    "--box-threshold",
    "0",
    "--text-threshold",
    "0",
]


def run_cli(argv, capsys) -> tuple[int, dict | None, str]:
    """Exit code, the JSON line printed on success, stderr."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse usage errors
        code = e.code
    captured = capsys.readouterr()
    lines = [ln for ln in captured.out.strip().splitlines() if ln.startswith("{")]
    return code, (json.loads(lines[-1]) if lines else None), captured.err


def _scene(h=72, w=96, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), (90, 160, 80), np.uint8)
    y, x = rng.integers(10, h - 30), rng.integers(10, w - 30)
    img[y : y + 20, x : x + 20] = (220, 40, 40)
    return img


@pytest.fixture
def image_path(tmp_path) -> Path:
    p = tmp_path / "scene.png"
    Image.fromarray(_scene()).save(p)
    return p


def test_segment_image_writes_outputs(image_path, tmp_path, capsys):
    out = tmp_path / "out"
    code, res, err = run_cli(
        ["segment", "--image", image_path, "--prompt", "red ball", "--out", out, *FAST], capsys
    )
    assert code == 0, err
    assert res["command"] == "segment" and res["instances"] == len(res["labels"])
    assert len(res["scores"]) == res["instances"] == len(res["boxes"])
    for key in ("overlay", "mask", "json"):
        assert Path(res["outputs"][key]).is_file()
    assert Path(res["outputs"]["overlay"]).name == "scene_overlay.png"
    doc = json.loads(Path(res["outputs"]["json"]).read_text())
    assert doc["num_instances"] == res["instances"] and doc["prompt"] == "red ball"
    mask = np.array(Image.open(res["outputs"]["mask"]))
    assert mask.shape == (72, 96) and set(np.unique(mask)) <= {0, 255}


def test_segment_fallback_choice_and_style(image_path, tmp_path, capsys):
    """Nothing at box 1.0 -> the lower-threshold retry, said in the summary and the JSON;
    --no-fallback leaves it empty; the weighted mask choice and overlay style are reachable."""
    out = tmp_path / "out"
    base = ["segment", "--image", image_path, "--prompt", "red ball", "--out", out, *FAST]
    code, res, err = run_cli([*base, "--box-threshold", "1", "--fallback", "lower-threshold",
                              "--mask-weights", "default", "--color", "#00ff00",
                              "--opacity", "0.8"], capsys)  # fmt: skip
    assert code == 0, err
    assert res["produced_by"] == "lower-threshold" and res["instances"] > 0
    assert [a["step"] for a in res["attempts"]] == ["detector", "lower-threshold"]
    assert "lower-threshold" in res["note"]
    doc = json.loads(Path(res["outputs"]["json"]).read_text())
    assert doc["produced_by"] == "lower-threshold" and len(doc["mask_choice"]) == res["instances"]
    code, res, err = run_cli([*base, "--box-threshold", "1", "--no-fallback"], capsys)
    assert code == 0, err
    assert res["instances"] == 0 and res["produced_by"] == "none"
    assert res["note"].startswith("nothing found")


def test_segment_folder_resumes(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_scene(seed=i)).save(folder / f"im{i}.jpg")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    argv = ["segment", "--folder", folder, "--prompt", "ball", "--out", out, *FAST]
    code, first, err = run_cli(argv, capsys)
    # a run with a failed file exits non-zero, after its summary line (nothing lost)
    assert code == 2 and "1 of 3 images failed" in err and "broken.jpg" in err, err
    assert (first["done"], first["skipped"], first["status"]) == (2, 0, "partial")
    assert [f["file"] for f in first["failed"]] == ["broken.jpg"]
    overlays = sorted(p.name for p in out.glob("*_overlay.png"))
    assert overlays == ["im0_overlay.png", "im1_overlay.png"]
    stamp = (out / "im0.json").stat().st_mtime_ns
    code, second, err = run_cli(argv, capsys)
    assert code == 2, err
    assert (second["done"], second["skipped"]) == (0, 2)
    status = {f["file"]: f["status"] for f in second["files"]}
    assert status == {"im0.jpg": "skipped", "im1.jpg": "skipped", "broken.jpg": "failed"}
    assert (out / "im0.json").stat().st_mtime_ns == stamp  # not rewritten


def test_track_short_video(tmp_path, capsys):
    from helpers.textseg import media

    frames = []
    for i in range(6):
        img = np.full((64, 80, 3), (90, 160, 80), np.uint8)
        img[20:40, 5 + 6 * i : 25 + 6 * i] = (220, 40, 40)
        frames.append(img)
    video = media.write_video(frames, tmp_path / "clip.mp4", fps=5)
    out = tmp_path / "track"
    code, res, err = run_cli(
        [
            "track",
            "--video",
            video,
            "--prompt",
            "red ball",
            "--out",
            out,
            "--detect-every",
            "3",
            "--max-objects",
            "2",
            "--keep-missed",
            "30f",
            "--backfill",
            "--side-by-side",
            *FAST,
        ],
        capsys,
    )
    assert code == 0, err
    assert res["command"] == "track" and res["frames"] == 6
    sbs = list(media.read_video_frames(res["side_by_side_path"]))
    video_h = sbs[0].shape[0] - 2 * 18  # caption bands above and below (the FPS line)
    assert len(sbs) == 6 and sbs[0].shape[1] == 2 * video_h * 80 // 64
    assert res["fps"] == pytest.approx(5, abs=0.5)
    assert res["ids"] == sorted(int(i) for i in res["per_id"])
    assert 1 <= len(res["ids"]) <= 4  # at most 2 new objects per keyframe (frames 0 and 3)
    assert Path(res["video_path"]).is_file() and Path(res["json_path"]).is_file()
    assert res["processing_fps"] > 0
    # one bar at a time: the tracked video is written while it is tracked, and the tracking
    # bar counts those frames (two open bars move the cursor with escape codes that a log or a
    # pipe shows as ESC[A); only the clip above and the side-by-side video have bars of theirs
    assert err.count("writing video: 6frame") == 2 and "\x1b[A" not in err


def test_eval_masks_pred_gt(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    a = np.zeros((20, 20), np.uint8)
    a[:10, :] = 255  # 200 px
    b = np.zeros((20, 20), np.uint8)
    b[:, :10] = 255  # 200 px; overlap 100, union 300
    Image.fromarray(a).save(gt / "x.png")
    Image.fromarray(b).save(pred / "x.png")
    Image.fromarray(a).save(gt / "y.png")
    Image.fromarray(a).save(pred / "y.png")  # perfect
    code, res, err = run_cli(
        ["eval-masks", "--pred", pred, "--gt", gt, "--out", tmp_path / "ev"], capsys
    )
    assert code == 0, err
    assert res["mean_iou"] == pytest.approx((1 / 3 + 1) / 2, abs=1e-6)
    assert res["cumulative_iou"] == pytest.approx(300 / 500, abs=1e-6)
    assert json.loads(Path(res["json_path"]).read_text())["mean_iou"] == res["mean_iou"]


def test_eval_masks_predicts_from_data(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    img = _scene()
    Image.fromarray(img).save(data / "images" / "a.png")
    Image.fromarray(((img[..., 0] > 200) * 255).astype(np.uint8)).save(data / "masks" / "a.png")
    code, res, err = run_cli(["eval-masks", "--data", data, "--prompt", "red ball", *FAST], capsys)
    assert code == 0, err
    assert 0.0 <= res["mean_iou"] <= 1.0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["segment", "--image", "/no/such.jpg", "--prompt", "dog"], "does not exist"),
        (["segment", "--image", "IMG", "--prompt", "  "], "prompt is empty"),
        (["segment", "--image", "IMG", "--prompt", "..."], "prompt is empty"),
        (
            ["segment", "--image", "IMG", "--prompt", "dog", "--box-threshold", "1.5"],
            "between 0 and 1",
        ),
        (
            ["segment", "--image", "IMG", "--prompt", "dog", "--text-threshold", "-0.1"],
            "between 0 and 1",
        ),
        (["segment", "--image", "IMG", "--prompt", "dog", "--size", "huge"], "unknown --size"),
        (
            ["segment", "--image", "IMG", "--prompt", "dog", "--detector", "yolo"],
            "unknown --detector",
        ),
        (["segment", "--folder", "/no/dir", "--prompt", "dog"], "not a folder"),
        (["segment", "--image", "NOTIMG", "--prompt", "dog"], "image"),
        (["track", "--video", "/no/clip.mp4", "--prompt", "dog"], "does not exist"),
        (
            ["track", "--video", "IMG", "--prompt", "dog", "--prompt-type", "scribble"],
            "prompt-type",
        ),
        (["track", "--video", "IMG", "--prompt", "dog", "--detect-every", "0"], "detect-every"),
        (["track", "--video", "IMG", "--prompt", "dog", "--max-objects", "0"], "max-objects"),
        (["track", "--video", "IMG", "--prompt", "dog", "--keep-missed", "-1"], "keep-missed"),
        (["track", "--video", "IMG", "--prompt", "dog", "--keep-missed", "2k"], "keyframes are no"),
        (["track", "--video", "IMG", "--prompt", "dog", "--keep-missed", "2x"], "frames (e.g."),
        (["track", "--video", "IMG", "--prompt", "dog", "--reid-threshold", "2"], "reid"),
        (["segment", "--image", "IMG", "--prompt", "dog", "--color", "nocolour"], "colour"),
        (["segment", "--image", "IMG", "--prompt", "dog", "--opacity", "2"], "--opacity"),
        (["segment", "--image", "IMG", "--prompt", "dog", "--fallback", "owl"], "fallback step"),
        (["segment", "--image", "IMG", "--prompt", "dog", "--mask-weights", "size=1"], "criterion"),
        (["segment", "--image", "IMG", "--prompt", "dog", "--clean-fraction", "3"], "clean-fr"),
        (
            ["track", "--video", "IMG", "--prompt", "dog", "--side-by-side", "--no-render"],
            "--side-by-side",
        ),
        (["eval-masks", "--pred", "/no/p"], "needs --pred"),
        (["eval-masks", "--pred", "/no/p", "--gt", "/no/g"], "not a folder"),
        (["eval-masks", "--data", "/no/d", "--prompt", "dog"], "images/ and masks/"),
    ],
)
def test_bad_inputs_exit_2(argv, message, image_path, tmp_path, capsys):
    bad = tmp_path / "notimage.jpg"
    bad.write_text("hello")
    argv = [str(image_path) if a == "IMG" else str(bad) if a == "NOTIMG" else a for a in argv]
    code, res, err = run_cli([*argv, "--out", tmp_path / "o"], capsys)
    assert code == 2
    assert res is None
    assert err.startswith("error:") and message in err, err
    assert "Traceback" not in err


def test_usage_errors_exit_2(capsys):
    code, _, err = run_cli(["segment", "--prompt", "dog"], capsys)  # neither --image nor --folder
    assert code == 2 and "--image" in err


def test_track_several_videos_resumes_and_shares_among_processes(tmp_path, capsys, monkeypatch):
    from helpers import distributed
    from helpers.textseg import commands as cli_segment
    from helpers.textseg import media

    videos = []
    for k in range(3):
        frames = []
        for i in range(3):
            img = np.full((48, 64, 3), (90, 160, 80), np.uint8)
            img[10:26, 4 + 5 * i + k : 20 + 5 * i + k] = (220, 40, 40)
            frames.append(img)
        videos.append(media.write_video(frames, tmp_path / f"clip{k}.mp4", fps=5))
    out = tmp_path / "many"
    argv = ["track", "--video", *videos, "--prompt", "red ball", "--out", out,
            "--detect-every", "2", "--max-objects", "1", "--no-render", *FAST]  # fmt: skip
    code, res, err = run_cli(argv, capsys)
    assert code == 0, err
    assert res["done"] == 3 and [f["stem"] for f in res["files"]] == ["clip0", "clip1", "clip2"]
    for k in range(3):
        assert (out / f"clip{k}" / "tracks.json").is_file() and (
            out / f"clip{k}" / "job.json"
        ).is_file()
    code, res, _ = run_cli(argv, capsys)  # the same settings: nothing redone
    assert code == 0 and res["skipped"] == 3 and res["done"] == 0
    code, res, _ = run_cli([*argv, "--detect-every", "1"], capsys)  # other settings: redone
    assert code == 0 and res["done"] == 3
    # process 1 of 2 in a torchrun job takes videos 1, 3, ... and leaves the summary to process 0
    taken = []
    monkeypatch.setattr(distributed, "from_env", lambda device=None: distributed.Dist(1, 2))
    monkeypatch.setattr(distributed.Dist, "gather", lambda self, obj: [obj, obj])
    real = cli_segment._track_one
    monkeypatch.setattr(cli_segment, "_track_one", lambda a: taken.append(a.video) or real(a))
    code, res, _ = run_cli([*argv, "--out", tmp_path / "shard"], capsys)
    assert code == 0 and res is None and taken == [str(videos[1])]
    # a missing video is named before any work
    code, _, err = run_cli([*argv[:2], tmp_path / "nope.mp4", *argv[2:]], capsys)
    assert code == 2 and "nope.mp4 does not exist" in err
