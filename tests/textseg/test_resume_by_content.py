"""Resuming is keyed by content: a renamed input folder reuses its outputs (no orphans beside
new copies), and new bytes under the same size and time stamp are redone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.textseg import resume_keys
from helpers.textseg.detect import random_grounding_dino
from helpers.textseg.folder_run import segment_folder
from helpers.textseg.segment import load_segmenter

LOOSE = {"box_threshold": 0.0, "text_threshold": 0.0}


@pytest.fixture(scope="module")
def models():
    det = random_grounding_dino(["dog"], size="toy", device="cpu")
    seg = load_segmenter("tiny", "sam2", device="cpu", random_weights=True, image_size=128)
    return det, seg


def _img(seed, h=40, w=56):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _folder(path: Path, n=3) -> Path:
    path.mkdir()
    for i in range(n):  # BMP: the size depends only on the image's size
        Image.fromarray(_img(i)).save(path / f"im{i}.bmp")
    return path


def _outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def test_a_renamed_folder_reuses_its_outputs(models, tmp_path):
    det, seg = models
    src, out = _folder(tmp_path / "photos"), tmp_path / "out"
    first = segment_folder(src, out, "dog", det, seg, **LOOSE)
    assert (first["done"], first["skipped"]) == (3, 0)
    made = _outputs(out)
    stamps = {n: (out / n).stat().st_mtime_ns for n in made if not n.endswith(".json")}
    moved = src.rename(tmp_path / "photos 2024")
    second = segment_folder(moved, out, "dog", det, seg, **LOOSE)
    assert (second["done"], second["skipped"], second["redone"]) == (0, 3, 0)
    assert [f["stem"] for f in second["files"]] == ["im0", "im1", "im2"]
    assert _outputs(out) == made  # no new names beside orphans
    assert {n: (out / n).stat().st_mtime_ns for n in stamps} == stamps  # masks not rewritten
    doc = json.loads((out / "im1.json").read_text())
    assert doc["source_path"] == str((moved / "im1.bmp").absolute())  # the record follows
    third = segment_folder(moved, out, "dog", det, seg, **LOOSE)
    assert (third["done"], third["skipped"]) == (0, 3)


def test_new_bytes_under_the_same_size_and_time_are_redone(models, tmp_path):
    det, seg = models
    src, out = _folder(tmp_path / "in"), tmp_path / "out"
    segment_folder(src, out, "dog", det, seg, **LOOSE)
    path = src / "im1.bmp"
    st = path.stat()
    Image.fromarray(_img(99)).save(path)  # other pixels, the same number of bytes
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    again = segment_folder(src, out, "dog", det, seg, **LOOSE)
    assert (again["done"], again["redone"], again["skipped"]) == (1, 1, 2)
    status = {f["file"]: f["status"] for f in again["files"]}
    assert status == {"im0.bmp": "skipped", "im1.bmp": "done", "im2.bmp": "skipped"}


def test_a_moved_image_with_new_bytes_is_redone_under_a_name_of_its_own(models, tmp_path):
    """Content decides: a moved folder whose image changed is not that image's result."""
    det, seg = models
    src, out = _folder(tmp_path / "a", n=2), tmp_path / "out"
    segment_folder(src, out, "dog", det, seg, **LOOSE)
    moved = src.rename(tmp_path / "b")
    Image.fromarray(_img(50)).save(moved / "im0.bmp")
    res = segment_folder(moved, out, "dog", det, seg, **LOOSE)
    assert (res["done"], res["skipped"]) == (1, 1)
    stems = {f["file"]: f["stem"] for f in res["files"]}
    assert stems["im1.bmp"] == "im1" and stems["im0.bmp"] != "im0"


def test_a_copy_beside_the_original_does_not_take_its_outputs(models, tmp_path):
    """The original is still where its result says: a copy elsewhere gets its own name."""
    det, seg = models
    src, out = _folder(tmp_path / "a", n=1), tmp_path / "out"
    segment_folder(src, out, "dog", det, seg, **LOOSE)
    copy = tmp_path / "b"
    copy.mkdir()
    (copy / "im0.bmp").write_bytes((src / "im0.bmp").read_bytes())
    res = segment_folder(copy, out, "dog", det, seg, **LOOSE)
    assert res["done"] == 1 and res["files"][0]["stem"] != "im0"
    assert json.loads((out / "im0.json").read_text())["source_path"] == str(
        (src / "im0.bmp").absolute()
    )


def test_a_result_from_before_input_digest_is_matched_by_its_fingerprint(models, tmp_path):
    det, seg = models
    src, out = _folder(tmp_path / "a", n=2), tmp_path / "out"
    segment_folder(src, out, "dog", det, seg, **LOOSE)
    for doc_path in out.glob("*.json"):  # as an earlier version wrote them
        doc = json.loads(doc_path.read_text())
        del doc["input_digest"]
        doc_path.write_text(json.dumps(doc))
    moved = src.rename(tmp_path / "b")
    res = segment_folder(moved, out, "dog", det, seg, **LOOSE)
    assert (res["done"], res["skipped"]) == (0, 2)


def test_input_digest_of_files_and_frame_folders(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        (frames / f"{i:05d}.jpg").write_bytes(bytes([i]) * 100)
    (frames / ".DS_Store").write_bytes(b"junk")  # hidden: not part of the video
    d = resume_keys.input_digest(frames)
    os.utime(frames / "00001.jpg", ns=(1, 1))
    moved = frames.rename(tmp_path / "elsewhere")
    assert resume_keys.input_digest(moved) == d  # time stamps and place do not count
    (moved / "00001.jpg").write_bytes(bytes([9]) * 100)  # same size, new bytes
    assert resume_keys.input_digest(moved) != d
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"a" * 64)
    assert resume_keys.input_digest(clip) == resume_keys.file_digest(clip)


def test_video_job_is_keyed_by_content(tmp_path):
    clip = tmp_path / "v" / "clip.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"\0\1" * 500)
    settings = {"prompt": "ball.", "detect_every": 5}
    job = resume_keys.video_job(clip, settings)
    assert job["source_path"] == str(clip.absolute())
    st = clip.stat()
    moved = clip.parent.rename(tmp_path / "w") / "clip.mp4"
    again = resume_keys.video_job(moved, settings)
    assert again["fingerprint"] == job["fingerprint"]  # moved: the same result
    assert resume_keys.moved_here(job, again["input_digest"])  # its old place is gone
    moved.write_bytes(b"\1\0" * 500)  # the same size and time, new bytes
    os.utime(moved, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = resume_keys.video_job(moved, settings)
    assert changed["fingerprint"] != job["fingerprint"]
    assert not resume_keys.moved_here(job, changed["input_digest"])
    assert (
        resume_keys.video_job(moved, {**settings, "detect_every": 6})["fingerprint"]
        != (changed["fingerprint"])
    )


def test_moved_here_needs_the_old_place_gone(tmp_path):
    there = tmp_path / "x.jpg"
    there.write_bytes(b"x")
    doc = {"source_path": str(there), "input_digest": "abc"}
    assert not resume_keys.moved_here(doc, "abc")  # still there: not moved
    there.unlink()
    assert resume_keys.moved_here(doc, "abc") and not resume_keys.moved_here(doc, "abd")
    assert not resume_keys.moved_here({"source_path": "https://x/y.jpg", "input_digest": "abc"},
                                      "abc")  # fmt: skip
    assert not resume_keys.moved_here(None, "abc") and not resume_keys.moved_here({}, "abc")


def test_video_job_of_a_named_pipe_does_not_block(tmp_path):
    import threading

    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    got = []
    worker = threading.Thread(target=lambda: got.append(resume_keys.video_job(fifo, {})))
    worker.daemon = True
    worker.start()
    worker.join(20)
    assert not worker.is_alive() and got[0]["input_digest"].startswith("unread:")


# --------------------------------------------------------------------------- videos


def _clip(path: Path, seed: int, n: int = 2) -> Path:
    from helpers.textseg import media

    path.parent.mkdir(parents=True, exist_ok=True)
    return media.write_video([_img(seed + i, 48, 64) for i in range(n)], path, fps=5)


def _track(videos, out: Path, capsys):
    from tests.textseg.test_cli_segment import FAST, run_cli

    argv = ["track", "--video", *videos, "--prompt", "ball", "--out", out, "--no-render",
            "--max-objects", "1", *FAST]  # fmt: skip
    return run_cli(argv, capsys)


def test_several_videos_in_a_renamed_folder_resume(tmp_path, capsys):
    src, out = tmp_path / "clips", tmp_path / "out"
    videos = [_clip(src / "a.mp4", 0), _clip(src / "b.mp4", 10)]
    code, first, err = _track(videos, out, capsys)
    assert code == 0 and (first["done"], first["skipped"]) == (2, 0), err
    made = {n: (out / n / "tracks.json").read_bytes() for n in _outputs(out)}
    assert sorted(made) == ["a", "b"]
    moved = src.rename(tmp_path / "clips 2024")
    again = [moved / "a.mp4", moved / "b.mp4"]
    code, second, err = _track(again, out, capsys)
    assert code == 0 and (second["done"], second["skipped"]) == (0, 2), err
    assert [f["stem"] for f in second["files"]] == ["a", "b"]
    assert _outputs(out) == ["a", "b"]  # no new folders beside orphans
    assert {n: (out / n / "tracks.json").read_bytes() for n in made} == made
    job = json.loads((out / "b" / "job.json").read_text())
    assert job["source_path"] == str((moved / "b.mp4").absolute())  # the record follows
    code, third, err = _track(again, out, capsys)
    assert code == 0 and (third["done"], third["skipped"]) == (0, 2), err


def _frames(folder: Path, seed: int) -> Path:
    folder.mkdir()
    for i in range(2):  # PNG without compression: the size depends only on the frame's size
        Image.fromarray(_img(seed + i, 48, 64)).save(folder / f"{i:05d}.png", compress_level=0)
    return folder


def test_same_size_and_time_with_new_bytes_is_redone_for_videos(tmp_path, capsys):
    out = tmp_path / "out"
    videos = [_frames(tmp_path / "v0", 0), _frames(tmp_path / "v1", 10)]
    code, first, err = _track(videos, out, capsys)
    assert code == 0 and first["done"] == 2, err
    frame = videos[1] / "00001.png"
    stats = [(p.stat().st_size, p.stat().st_mtime_ns) for p in (videos[1], frame)]
    times = [(p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in (frame, videos[1])]
    Image.fromarray(_img(99, 48, 64)).save(frame, compress_level=0)  # new pixels, same size
    for p, ns in zip((frame, videos[1]), times):
        os.utime(p, ns=ns)
    assert [(p.stat().st_size, p.stat().st_mtime_ns) for p in (videos[1], frame)] == stats
    code, again, err = _track(videos, out, capsys)
    assert code == 0 and (again["done"], again["skipped"]) == (1, 1), err
    status = {Path(f["file"]).name: (f["status"], f.get("stem")) for f in again["files"]}
    assert status == {"v0": ("skipped", "v0"), "v1": ("done", "v1")}


def test_a_moved_video_tracks_into_its_out_again(tmp_path, capsys):
    """One video into ``--out``: the same bytes under a new path are the same input; a copy
    whose original is still there, or a moved video with new bytes, is still refused."""
    out = tmp_path / "out"
    video = _clip(tmp_path / "a" / "clip.mp4", 0)
    code, _, err = _track([video], out, capsys)
    assert code == 0 and (out / "job.json").is_file(), err
    moved = video.parent.rename(tmp_path / "b") / "clip.mp4"
    code, _, err = _track([moved], out, capsys)
    assert code == 0, err
    tracks = json.loads((out / "tracks.json").read_text())
    assert tracks["settings"]["source_path"] == str(moved.absolute())
    assert json.loads((out / "job.json").read_text())["source_path"] == str(moved.absolute())
    copy = tmp_path / "c" / "clip.mp4"
    copy.parent.mkdir()
    copy.write_bytes(moved.read_bytes())
    code, _, err = _track([copy], out, capsys)
    assert code == 2 and err.startswith("error:") and "already holds the tracks of" in err
    other = _clip(moved.parent.rename(tmp_path / "d") / "clip.mp4", 50)  # new bytes
    before = (out / "tracks.json").read_bytes()
    code, _, err = _track([other], out, capsys)
    assert code == 2 and "already holds the tracks of" in err
    assert (out / "tracks.json").read_bytes() == before
