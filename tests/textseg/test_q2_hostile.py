"""Q2 under hostile inputs and faults: over-long paths, non-finite colours, elongated images,
thresholds out of range on every route, long Unicode names, output names that must never
collide or move, outputs written as a unit, folders with formats only single images read."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.textseg import commands as cli_segment
from helpers.textseg import model_cache
from tests.textseg.test_cli_segment import FAST, _scene, run_cli


@pytest.fixture
def image_path(tmp_path) -> Path:
    p = tmp_path / "scene.png"
    Image.fromarray(_scene()).save(p)
    return p


@pytest.fixture
def no_models(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("models were loaded before the input was checked")

    monkeypatch.setattr(cli_segment, "load_models", boom)


def _exit2(argv, capsys, *needles):
    code, res, err = run_cli(argv, capsys)
    assert code == 2, (code, err)
    assert err.startswith("error:") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return res, err


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize("color", ["inf,0,0", "0,-inf,0", "1e400,0,0", "nan,0,0"])
def test_non_finite_colour(color, image_path, tmp_path, capsys, no_models):
    argv = ["segment", "--image", image_path, "--prompt", "ball", "--out", tmp_path / "o"]
    _exit2([*argv, "--color", color, *FAST], capsys, "colour")


@pytest.mark.parametrize("value", ["5", "-0.1", "nan"])
def test_score_threshold_checked_on_every_route(value, image_path, tmp_path, capsys, no_models):
    for argv in (
        ["segment", "--image", image_path, "--prompt", "ball"],
        ["segment", "--image", image_path, "--prompt", "ball", "--route", "clipseg"],
        ["track", "--video", image_path, "--prompt", "ball"],
        ["eval-masks", "--data", tmp_path, "--prompt", "ball"],
    ):
        argv = [*argv, "--out", tmp_path / "o", "--score-threshold", value, *FAST]
        _exit2(argv, capsys, "--score-threshold")


def _long(tmp_path: Path, n: int = 300) -> Path:
    return tmp_path / ("x" * n)


def test_long_paths_are_one_line_errors(image_path, tmp_path, capsys, no_models):
    long_name = _long(tmp_path)
    long_cjk = tmp_path / ("猫" * 90)  # 270 bytes
    for bad in (long_name, long_cjk, Path(f"{long_name}.png"), long_name / "a.png"):
        for argv in (
            ["segment", "--image", bad, "--prompt", "ball", "--out", tmp_path / "o"],
            ["segment", "--folder", bad, "--prompt", "ball", "--out", tmp_path / "o"],
            ["segment", "--image", image_path, "--prompt", "ball", "--out", bad],
            ["track", "--video", bad, "--prompt", "ball", "--out", tmp_path / "o"],
            ["track", "--video", image_path, bad, "--prompt", "ball"],
            ["eval-masks", "--pred", bad, "--gt", tmp_path],
            ["eval-masks", "--data", bad, "--prompt", "ball"],
            ["segment", "--backend", "sam3", "--image", bad, "--prompt", "ball"],
        ):
            _exit2([*argv, *FAST], capsys, "255 bytes")
    _exit2(["segment", "--image", "/a" * 2100, "--prompt", "b", *FAST], capsys, "shorter path")


@pytest.mark.parametrize("hw", [(16, 10000), (10000, 16), (9, 2000)])
def test_elongated_image_is_refused_clearly(hw, tmp_path, capsys, no_models):
    p = tmp_path / "strip.png"
    Image.fromarray(np.full((*hw, 3), 120, np.uint8)).save(p)
    argv = ["segment", "--image", p, "--prompt", "ball", "--out", tmp_path / "o", *FAST]
    _exit2(argv, capsys, "too elongated", "--max-side")


def test_elongated_image_in_a_folder_is_one_failure(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_scene()).save(d / "ok.png")
    Image.fromarray(np.full((16, 10000, 3), 120, np.uint8)).save(d / "strip.png")
    res, _ = _exit2(
        ["segment", "--folder", d, "--prompt", "ball", "--out", tmp_path / "o", *FAST],
        capsys,
        "1 of 2 images failed",
        "too elongated",
    )
    assert res["done"] == 1


def test_fit_for_model_never_makes_a_zero_side():
    from helpers.errors import InputError
    from helpers.textseg import media

    small, _ = media.fit_for_model(np.zeros((80, 10000, 3), np.uint8), 1024)
    assert min(small.shape[:2]) >= media.MIN_SIDE
    with pytest.raises(InputError, match="too elongated"):
        media.fit_for_model(np.zeros((16, 10000, 3), np.uint8), 1024)


# --------------------------------------------------------------------------- names


def test_names_cut_by_bytes():
    from helpers.textseg import naming

    stem = naming.safe_stem("猫" * 80)  # 240 bytes: legal, but not with _overlay.png + temp
    assert len(stem.encode()) <= naming.MAX_STEM_BYTES and stem == "猫" * 40
    assert naming.safe_stem("é" * 200).encode().decode() == "é" * 60  # never half a character
    for name in naming.candidates(stem, ".jpeg", "/some/path/猫.jpeg"):
        temp = f".{name}_overlay.png.tmp-4194304-0123abcd.png"
        assert len(temp.encode()) <= 255, temp


def test_eighty_cjk_characters_work(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    a, b = "猫" * 80 + ".png", "猫" * 79 + "犬.png"  # the same first 120 bytes
    Image.fromarray(_scene(seed=1)).save(d / a)
    Image.fromarray(_scene(seed=2)).save(d / b)
    out = tmp_path / "o"
    code, res, err = run_cli(["segment", "--folder", d, "--prompt", "ball", "--out", out, *FAST],
                             capsys)  # fmt: skip
    assert code == 0 and res["done"] == 2, err
    docs = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert sorted(doc["source"] for doc in docs) == sorted([a, b])
    code, res, err = run_cli(
        ["segment", "--image", d / a, "--prompt", "ball", "--out", tmp_path / "o1", *FAST], capsys
    )
    assert code == 0 and Path(res["outputs"]["json"]).is_file(), err


def test_one_stem_two_folders_single_images(tmp_path, capsys):
    out = tmp_path / "o"
    sources = []
    for k, sub in enumerate(("a", "b", "c")):
        (tmp_path / sub).mkdir()
        p = tmp_path / sub / "photo.jpg"
        Image.fromarray(_scene(seed=k)).save(p)
        sources.append(p)
    outputs = []
    for p in sources:
        code, res, err = run_cli(
            ["segment", "--image", p, "--prompt", "ball", "--out", out, *FAST], capsys
        )
        assert code == 0, err
        outputs.append(res["outputs"]["json"])
    first = _files(out)
    assert len(set(outputs)) == 3 and len(list(out.glob("*.json"))) == 3  # nothing overwritten
    for p, j in zip(sources, outputs):
        assert json.loads(Path(j).read_text())["source_path"] == str(p)
    code, res, err = run_cli(  # the same image again: the same name, rewritten in place
        ["segment", "--image", sources[1], "--prompt", "ball", "--out", out, *FAST], capsys
    )
    assert code == 0 and res["outputs"]["json"] == outputs[1], err
    assert set(_files(out)) == set(first)


def test_one_stem_two_folders_into_one_out(tmp_path, capsys):
    out = tmp_path / "o"
    for k, sub in enumerate(("a", "b")):
        (tmp_path / sub).mkdir()
        Image.fromarray(_scene(seed=k)).save(tmp_path / sub / "photo.jpg")
    argv = ["--prompt", "ball", "--out", out, *FAST]
    code, r1, err = run_cli(["segment", "--folder", tmp_path / "a", *argv], capsys)
    assert code == 0, err
    before = _files(out)
    code, r2, err = run_cli(["segment", "--folder", tmp_path / "b", *argv], capsys)
    assert code == 0 and r2["done"] == 1, err
    after = _files(out)
    assert {k: after[k] for k in before} == before  # a's outputs untouched
    assert len(list(out.glob("*.json"))) == 2
    code, r3, err = run_cli(["segment", "--folder", tmp_path / "a", *argv], capsys)
    assert code == 0 and r3["skipped"] == 1 and r3["done"] == 0, err  # a still resumes


def test_new_extension_beside_a_done_image_renames_nothing(tmp_path, capsys):
    d, out = tmp_path / "in", tmp_path / "o"
    d.mkdir()
    Image.fromarray(_scene(seed=1)).save(d / "b.jpg")
    argv = ["segment", "--folder", d, "--prompt", "ball", "--out", out, *FAST]
    code, r1, err = run_cli(argv, capsys)
    assert code == 0 and r1["files"][0]["stem"] == "b", err
    before = _files(out)
    Image.fromarray(_scene(seed=2)).save(d / "b.png")
    code, r2, err = run_cli(argv, capsys)
    assert code == 0 and (r2["done"], r2["skipped"]) == (1, 1), err
    stems = {f["file"]: f["stem"] for f in r2["files"]}
    assert stems == {"b.jpg": "b", "b.png": "b_png"}
    after = _files(out)
    assert {k: after[k] for k in before} == before
    assert set(after) == set(before) | {"b_png.json", "b_png_mask.png", "b_png_overlay.png"}


def test_two_videos_one_stem_across_runs(tmp_path, capsys):
    from helpers.textseg import media

    out, jsons, runs = tmp_path / "o", [], []
    for k, sub in enumerate(("a", "b")):
        (tmp_path / sub).mkdir()
        frames = [np.full((48, 64, 3), 60 + 40 * k, np.uint8)]
        v = media.write_video(frames, tmp_path / sub / "clip.mp4", fps=5)
        other = media.write_video(frames, tmp_path / sub / f"other{k}.mp4", fps=5)
        argv = ["track", "--video", v, other, "--prompt", "ball", "--out", out, "--no-render",
                "--max-objects", "1"]  # fmt: skip
        code, res, err = run_cli([*argv, *FAST], capsys)
        assert code == 0 and res["done"] == 2, err
        jsons.append((out / res["files"][0]["stem"] / "job.json").read_text())
        runs.append(argv)
    assert len({*jsons}) == 2  # two folders, neither overwritten
    assert len([p for p in out.iterdir() if (p / "tracks.json").is_file()]) == 4
    job = json.loads((out / "clip" / "job.json").read_text())
    assert job["source_path"] == str(tmp_path / "a" / "clip.mp4")
    del job["source_path"]  # a job.json written before source_path was recorded
    (out / "clip" / "job.json").write_text(json.dumps(job))
    code, res, err = run_cli([*runs[0], *FAST], capsys)  # still a's: resumed, not moved
    assert code == 0 and res["skipped"] == 2, err
    assert [f["stem"] for f in res["files"]] == ["clip", "other0"]


def test_one_video_never_tracked_over_another_videos_tracks(tmp_path, capsys):
    """``track --video a/clip.mp4 --out O`` then ``b/clip.mp4`` into the same O: refused in one
    line, a's tracks untouched; a's own re-run still goes into O."""
    from helpers.textseg import media

    out, videos = tmp_path / "o", []
    for k, sub in enumerate(("a", "b")):
        (tmp_path / sub).mkdir()
        frames = [np.full((48, 64, 3), 60 + 40 * k, np.uint8)]
        videos.append(media.write_video(frames, tmp_path / sub / "clip.mp4", fps=5))
    argv = ["track", "--prompt", "ball", "--out", out, "--no-render", "--max-objects", "1", *FAST]
    code, _, err = run_cli([*argv, "--video", videos[0]], capsys)
    assert code == 0, err
    before = (out / "tracks.json").read_bytes()
    assert json.loads(before)["settings"]["source_path"] == str(videos[0])
    code, _, err = run_cli([*argv, "--video", videos[1]], capsys)
    assert code == 2 and "already holds the tracks of" in err and str(videos[0]) in err
    assert (out / "tracks.json").read_bytes() == before
    code, _, err = run_cli([*argv, "--video", videos[0]], capsys)
    assert code == 0, err


# --------------------------------------------------------------------------- folders


def test_folder_takes_what_single_images_read_and_names_the_rest(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_scene(seed=1)).save(d / "a.avif")
    Image.fromarray(_scene(seed=2)).save(d / "b.png")
    (d / "c.heic").write_bytes(b"\0\0\0\x18ftypheic")  # no decoder here: named, not silent
    (d / "notes.txt").write_text("x")
    argv = ["segment", "--folder", d, "--prompt", "ball", "--out", tmp_path / "o", *FAST]
    code, res, err = run_cli(argv, capsys)
    assert code == 0, err
    assert sorted(f["file"] for f in res["files"]) == ["a.avif", "b.png"]
    assert res["not_images"] == ["c.heic", "notes.txt"] and "left out" in res["note"]


def test_full_disk_in_a_folder_still_prints_the_summary(tmp_path, capsys, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        Image.fromarray(_scene(seed=i)).save(d / f"im{i}.png")
    from PIL import Image as PILImage

    real, calls = PILImage.Image.save, []

    def save(self, fp, *a, **k):  # the disk fills up after the first image
        calls.append(fp)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, fp, *a, **k)

    monkeypatch.setattr(PILImage.Image, "save", save)
    out = tmp_path / "o"
    res, err = _exit2(
        ["segment", "--folder", d, "--prompt", "ball", "--out", out, *FAST], capsys, "disk is full"
    )
    assert res is not None and res["done"] == 1 and "stopped" in res
    assert [f["status"] for f in res["files"]] == ["done", "failed", "not started"]
    assert sorted(p.name for p in out.iterdir()) == ["im0.json", "im0_mask.png", "im0_overlay.png"]


# --------------------------------------------------------------------------- one unit


@pytest.mark.parametrize("fail_at", ["json", "overlay", "mask"])
def test_outputs_written_as_a_unit(fail_at, tmp_path, monkeypatch):
    import supervision as sv
    from PIL import Image as PILImage

    import helpers.files as files
    from helpers.textseg import render

    img = _scene()
    mask = np.zeros((1, *img.shape[:2]), bool)
    mask[0, 10:30, 10:30] = True
    dets = sv.Detections(
        xyxy=np.array([[10, 10, 30, 30]], np.float32), mask=mask,
        confidence=np.array([0.9], np.float32), class_id=np.array([0]),
        data={"class_name": np.array(["ball"])},
    )  # fmt: skip
    out = tmp_path / "o"
    render.save_image_outputs(img, dets, out, "a", prompt="old")
    old = _files(out)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fail_at == "json":
        monkeypatch.setattr(Path, "write_bytes", full)
    else:
        real = PILImage.Image.save

        def save(self, fp, *a, **k):
            if f"_{fail_at}.png" in str(fp):
                full()
            return real(self, fp, *a, **k)

        monkeypatch.setattr(PILImage.Image, "save", save)
    with pytest.raises(files.WriteError, match="disk is full"):
        render.save_image_outputs(img, dets[:0], out, "a", prompt="new")
    assert _files(out) == old  # the old set, whole: no new mask beside an old JSON
    with pytest.raises(files.WriteError):
        render.save_image_outputs(img, dets, out, "b", prompt="new")
    assert set(_files(out)) == set(old)  # and no part of a new set


# --------------------------------------------------------------------------- signals


def test_sigterm_during_track_is_like_ctrl_c(tmp_path):
    """``timeout`` / a scheduler stops ``track``: the decoded frames leave TMPDIR, the first
    video's finished outputs stay, and the exit is the interrupt's (130), not a vanishing."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers.textseg import media

    videos = []
    for k, n in enumerate((2, 300)):
        frames = [np.full((64, 80, 3), 50 + i % 150, np.uint8) for i in range(n)]
        videos.append(media.write_video(frames, tmp_path / f"v{k}.mp4", fps=10))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "o"
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(Path(__file__).parents[2])}
    argv = [sys.executable, "-m", "helpers", "track", "--video", *map(str, videos), "--prompt",
            "ball", "--out", str(out), "--no-render", *FAST]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        t_end = time.monotonic() + 240
        while time.monotonic() < t_end and proc.poll() is None:
            if (out / "v0" / "job.json").is_file():
                break  # the first video is done, the second (300 frames) is being tracked
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert "interrupted" in err.decode()
    # no decoded frames left behind (video files are decoded in memory; frame folders that
    # must be made, e.g. for the transformers backend, are temporary)
    assert not list(tmp.glob("track_*")) and not list(tmp.glob("frames_*")), list(tmp.rglob("*"))[:5]
    assert (out / "v0" / "tracks.json").is_file() and (out / "v0" / "job.json").is_file()


# --------------------------------------------------------------------------- videos


def _truncated_mp4(path: Path, frames: int = 30) -> Path:
    """An MP4 whose header (moov first) lists ``frames`` frames, cut to 45% of its bytes."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(frames):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), np.uint8), "rgb24")
            c.mux(s.encode(f))
        c.mux(s.encode())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.45)])
    return path


def test_truncated_video_warns(tmp_path, capsys):
    from helpers.textseg import media

    video = _truncated_mp4(tmp_path / "cut.mp4")
    frames = media.video_to_frames(video, tmp_path / "frames")
    err = capsys.readouterr().err
    assert 0 < frames.num_frames < 30
    assert "warning:" in err and "lists 30 frames" in err and f"only {frames.num_frames}" in err
    media.video_to_frames(video, tmp_path / "f2", max_frames=frames.num_frames)  # asked: no warning
    assert "warning:" not in capsys.readouterr().err


# --------------------------------------------------------------------------- the hub


def test_hub_that_accepts_and_never_answers(image_path, tmp_path, capsys, monkeypatch):
    import socket
    import threading
    import time

    import huggingface_hub.constants as hub_constants
    import transformers

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held, stop = [], threading.Event()

    def accept_and_keep_silent():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_keep_silent, daemon=True)
    thread.start()
    for var in ("HTTPS_PROXY", "https_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(
        transformers.AutoProcessor,
        "from_pretrained",
        lambda *a, **k: pytest.fail("the hub client was left to wait on a silent endpoint"),
    )
    model_cache.MODELS.clear()
    try:
        t0 = time.perf_counter()
        argv = ["segment", "--image", image_path, "--prompt", "ball", "--out", tmp_path / "o"]
        _exit2([*argv, "--device", "cpu"], capsys, "did not answer", "random weights")
        assert time.perf_counter() - t0 < 20
        assert held  # the endpoint did accept the connection
    finally:
        stop.set()
        thread.join(5)
        for c in held:
            c.close()
        server.close()


def test_truncated_video_for_sam3_warns_and_reads_what_decodes(tmp_path, capsys):
    from helpers.textseg import media
    from helpers.textseg.decoded_video import DecodedVideo

    video = _truncated_mp4(tmp_path / "cut.mp4")
    frames = DecodedVideo(video, keep=4)
    err = capsys.readouterr().err
    assert "warning:" in err and "lists 30 frames" in err
    n = frames.num_frames
    assert 0 < n < 30 and f"only {n}" in err
    got = [frames(i) for i in range(n)]
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in got)
    ref = media.video_to_frames(video, tmp_path / "f")  # the same count from the other reader
    assert ref.num_frames == n
    np.testing.assert_array_equal(frames(n - 1), got[-1])
    assert frames(0).shape == got[0].shape  # an index let go: the video is read again


def test_sigterm_handler_is_scoped_to_the_command():
    """Inside a Q2 command SIGTERM raises KeyboardInterrupt (cleanup runs, exit 130 like
    Ctrl-C); the previous handler is back afterwards."""
    import os
    import signal

    caught = []
    previous = signal.signal(signal.SIGTERM, lambda *a: caught.append(a))  # never kill pytest
    try:
        with pytest.raises(KeyboardInterrupt), cli_segment.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # the handler runs between bytecodes
                pass
        assert not caught
        os.kill(os.getpid(), signal.SIGTERM)  # outside a command: the handler that was there
        for _ in range(10_000):
            pass
        assert len(caught) == 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_full_disk_in_a_video_list_still_prints_the_summary(tmp_path, capsys, monkeypatch):
    from helpers import files

    videos = []
    for k in range(3):
        (tmp_path / f"v{k}").mkdir()
        videos.append(tmp_path / f"v{k}")
        Image.fromarray(_scene(seed=k)).save(tmp_path / f"v{k}" / "00000.png")
    calls = []

    def track_one(args):  # the first video is tracked, then the disk is full
        calls.append(args.video)
        if len(calls) > 1:
            raise files.WriteError("could not write tracks.json: the disk is full.")
        return {"frames": 1, "ids": []}

    monkeypatch.setattr(cli_segment, "_track_one", track_one)
    argv = ["track", "--video", *videos, "--prompt", "ball", "--out", tmp_path / "o", *FAST]
    res, _ = _exit2(argv, capsys, "disk is full", "1 of 3 videos failed")
    assert res is not None and "stopped" in res and len(calls) == 2
    assert [f["status"] for f in res["files"]] == ["done", "failed", "not started"]
