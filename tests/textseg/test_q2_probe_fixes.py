"""Q2 under awkward but real conditions: file names that are not UTF-8, stdout's reader gone,
ground truth that is not 0/255, images in subfolders of a folder run, and temporary frame
folders left by a killed run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import files
from helpers.textseg import command_checks, mask_metrics, naming
from tests.textseg.test_cli_segment import FAST, _scene, run_cli

REPO = Path(__file__).parents[2]
BAD = b"caf\xe9"  # Latin-1 bytes: not UTF-8


# --------------------------------------------------------------------------- names


def test_names_with_bytes_that_are_not_utf8():
    name = os.fsdecode(BAD + b".png")  # how Python holds such a file name
    stem = command_checks.stem_for(name)
    assert stem == "caf" and stem.encode("utf-8")  # a name every file system takes
    assert naming.cut_bytes(name, 4) == name[:4] and naming.cut_bytes(name, 3) == "caf"
    assert naming.cut_bytes("猫" * 3, 7) == "猫猫"  # never inside a character
    a, b = naming.claim_names([f"/x/{name}", "/x/caf.png"], lambda n: None)
    assert a != b and b"\xe9" not in a.encode("utf-8")


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses names that are not UTF-8")
def test_folder_with_a_name_that_is_not_utf8(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    bad = Path(os.fsdecode(bytes(d) + b"/" + BAD + b".png"))
    Image.fromarray(_scene()).save(bad)
    Image.fromarray(_scene(seed=1)).save(d / "plain.png")
    out = tmp_path / "o"
    argv = ["segment", "--folder", d, "--prompt", "ball", "--out", out, *FAST]
    code, res, err = run_cli(argv, capsys)
    assert code == 0 and "Traceback" not in err, err
    assert res["done"] == 2 and not res["failed"]
    assert sorted(p.name for p in out.glob("*.json")) == ["caf.json", "plain.json"]
    assert json.loads((out / "caf.json").read_text())["source_path"] == str(bad)
    code, res, _ = run_cli(argv, capsys)  # resumed: its outputs are recognised as its own
    assert code == 0 and res["skipped"] == 2


# --------------------------------------------------------------------------- stdout


def _masks(tmp_path) -> tuple[Path, Path]:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    m = np.zeros((16, 16), np.uint8)
    m[4:12, 4:12] = 255
    Image.fromarray(m).save(pred / "a.png")
    Image.fromarray(m).save(gt / "a.png")
    return pred, gt


def test_stdout_reader_gone_exits_quietly(tmp_path):
    pred, gt = _masks(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "helpers", "eval-masks", "--pred", str(pred), "--gt", str(gt)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # as `| head -c0`: nobody reads the JSON line
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err.decode() and "BrokenPipe" not in err.decode(), err.decode()
    assert proc.returncode == 141


def test_stdout_reader_gone_in_process(tmp_path, monkeypatch, capsys):
    from helpers import cli, result_line

    class Gone:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    pred, gt = _masks(tmp_path)
    monkeypatch.setattr(sys, "stdout", Gone())
    assert cli.main(["eval-masks", "--pred", str(pred), "--gt", str(gt)]) == 141
    assert result_line.write_line("x", Gone()) is False
    assert "Traceback" not in capsys.readouterr().err


# --------------------------------------------------------------------------- ground truth


@pytest.mark.parametrize(
    "values, dtype",
    [((0, 1, 2), np.uint8), ((0, 100), np.uint8), ((0, 3, 700), np.uint16), ((0, 255), np.uint8)],
    ids=["instance_ids", "grey_100", "ids_16bit", "0_255"],
)
def test_ground_truth_any_non_zero_is_foreground(tmp_path, values, dtype):
    gt = np.zeros((20, 30), dtype)
    gt[2:8, 2:10] = values[1]
    gt[10:18, 12:28] = values[-1]
    path = tmp_path / "gt.png"
    Image.fromarray(gt).save(path)
    if dtype == np.uint16:
        assert Image.open(path).mode.startswith("I")
    assert np.array_equal(mask_metrics.read_mask(path), gt != 0)


def test_ground_truth_jpeg_noise_is_not_foreground(tmp_path):
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 8:24] = 255
    Image.fromarray(m).save(tmp_path / "m.jpg", quality=60)
    assert mask_metrics.mask_iou(mask_metrics.read_mask(tmp_path / "m.jpg"), m > 0) > 0.95


def test_ground_truth_exif_orientation_is_applied(tmp_path):
    upright = np.zeros((20, 30), np.uint8)
    upright[2:6, 3:25] = 255  # a wide bar near the top
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # 20 wide, 30 high as stored
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # shown turned a quarter clockwise: the upright mask
    im.save(tmp_path / "gt.png", exif=exif.tobytes())
    assert np.array_equal(mask_metrics.read_mask(tmp_path / "gt.png"), upright > 0)


def test_eval_masks_with_instance_id_ground_truth(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    ids = np.zeros((16, 16), np.uint8)
    ids[2:8, 2:8], ids[9:14, 9:14] = 1, 2
    Image.fromarray(ids).save(gt / "a.png")
    Image.fromarray((ids > 0).astype(np.uint8) * 255).save(pred / "a_mask.png")
    code, res, err = run_cli(["eval-masks", "--pred", pred, "--gt", gt], capsys)
    assert code == 0, err
    assert res["mean_iou"] == 1.0


# --------------------------------------------------------------------------- subfolders


def test_folder_run_says_how_many_images_in_subfolders_it_left_out(tmp_path, capsys):
    d = tmp_path / "in"
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / ".hidden").mkdir()
    Image.fromarray(_scene()).save(d / "top.png")
    Image.fromarray(_scene(seed=1)).save(d / "sub" / "a.png")
    Image.fromarray(_scene(seed=2)).save(d / "sub" / "deeper" / "b.jpg")
    Image.fromarray(_scene(seed=3)).save(d / ".hidden" / "c.png")
    out = d / "out"  # inside the input folder: its outputs are not counted
    argv = ["segment", "--folder", d, "--prompt", "ball", "--out", out, *FAST]
    code, res, err = run_cli(argv, capsys)
    assert code == 0, err
    assert res["done"] == 1 and res["in_subfolders"] == 2
    assert "2 image(s) in subfolders were left out" in res["note"]
    assert sum("image(s) in subfolders" in line for line in err.splitlines()) == 1
    code, res, _ = run_cli(argv, capsys)  # the outputs folder does not count as a subfolder
    assert res["in_subfolders"] == 2


def test_folder_with_images_only_in_subfolders_is_one_line(tmp_path, capsys):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(_scene()).save(d / "sub" / "a.png")
    code, _, err = run_cli(["segment", "--folder", d, "--prompt", "ball", "--out",
                            tmp_path / "o", *FAST], capsys)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "1 in its subfolders" in err and "sub/a.png" in err, err


# --------------------------------------------------------------------------- temporaries


def test_temporary_frame_folders_of_a_killed_run_are_removed(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = 2**22 + 4321  # beyond the usual pid range: no such process
    left = tmp_path / f"track_{dead}_abc"
    (left / "frames").mkdir(parents=True)
    (left / "frames" / "00000.jpg").write_bytes(b"jpeg")
    mine = tmp_path / f"track_{os.getpid()}_xyz"  # a live process's (this one's): kept
    mine.mkdir()
    other = tmp_path / "track_notes"  # not one of ours
    other.mkdir()
    made = files.make_temp_dir("track_")
    assert made.parent == tmp_path and made.name.startswith(f"track_{os.getpid()}_")
    assert not left.exists() and mine.is_dir() and other.is_dir()


def test_track_and_frame_folders_use_the_recognisable_names(tmp_path, monkeypatch):
    import tempfile

    from helpers.textseg import media, track

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    video = media.write_video([np.full((16, 16, 3), 9 * i, np.uint8) for i in range(2)],
                              tmp_path / "v.mp4")  # fmt: skip
    frames = media.video_to_frames(video)
    assert frames.frame_dir.name.startswith(f"frames_{os.getpid()}_")
    with track.decoded_frames(video, None, None, None) as (_, root, _):
        assert root.name.startswith(f"track_{os.getpid()}_")
    assert not root.exists()
