"""``track``'s outputs are one unit: a failure while writing any of them (the annotated MP4,
``masks.json.xz``, ``tracks.json``, the side-by-side video) leaves ``--out`` with its earlier
set, whole, or with nothing new; never new files beside old ones. Also ``segment``'s."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import files
from helpers.textseg import media, track, track_masks, track_summary
from helpers.textseg.frame_loader import FrameLoader
from tests.textseg.test_cli_segment import FAST, _scene, run_cli
from tests.textseg.test_video_matrix import RED, scene

N = 6


def _listing(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` (temporaries included) and its bytes."""
    if not folder.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def clip(tmp_path) -> Path:
    return media.write_video([scene(i) for i in range(N)], tmp_path / "clip.mp4", fps=10)


class RedRoute:
    """A route whose ``track`` writes through the real writers: the red square's mask on
    every frame, no model."""

    def track(self, video, phrases, settings, out, prompt):
        loader = FrameLoader(media.open_video_stream(video))
        book = SimpleNamespace(labels={1: "square"}, scores={1: 0.9})

        def items():
            for g in range(loader.num_frames):
                red = np.abs(loader.read(g).astype(int) - np.array(RED)).sum(-1) < 90
                yield g, {1: red}

        try:
            return track.write_outputs(
                items(), loader, book, {}, prompt, {"source_path": str(video)}, Path(out)
            )
        finally:
            loader.close()


def _run(clip: Path, out: Path, prompt: str = "square"):
    args = argparse.Namespace(video=str(clip), out=str(out), side_by_side=True)
    return track_summary.run_track(args, prompt, RedRoute(), None)


@pytest.fixture
def compact(monkeypatch):
    """Masks go to masks.json.xz from 2 frames on, so the set has four files."""
    monkeypatch.setattr(track_masks, "COMPACT_AFTER", 2)


def _fail_at(monkeypatch, k: int) -> list[Path]:
    """The k-th atomic write (1-based) fails as a full disk does; the paths written."""
    real, calls = files.atomic_path, []

    @contextlib.contextmanager
    def atomic_path(path, suffix=None):
        calls.append(Path(path))
        with real(path, suffix) as tmp:
            yield tmp
            if len(calls) == k:
                raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "atomic_path", atomic_path)
    return calls


SET = ["masks.json.xz", "side_by_side.mp4", "tracked.mp4", "tracks.json"]


def test_a_good_run_writes_the_whole_set_and_no_temporaries(clip, tmp_path, compact):
    out = tmp_path / "o"
    res = _run(clip, out)
    assert sorted(_listing(out)) == SET
    assert res["video_path"] == str(out / "tracked.mp4")
    assert res["json_path"] == str(out / "tracks.json")
    assert res["side_by_side_path"] == str(out / "side_by_side.mp4")
    assert res["frames"] == N and res["per_id"]["1"]["frames_seen"] == N
    assert len(list(media.read_video_frames(out / "side_by_side.mp4"))) == N
    assert track_masks.read_tracks(out / "tracks.json")["frames"][N - 1]["objects"]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_a_failure_at_any_output_leaves_the_old_set(clip, tmp_path, compact, monkeypatch, k):
    out = tmp_path / "o"
    _run(clip, out, prompt="old")
    old = _listing(out)
    calls = _fail_at(monkeypatch, k)
    with pytest.raises(files.WriteError, match="disk is full"):
        _run(clip, out, prompt="new")
    assert len(calls) == k  # the k-th of the four writes failed and stopped the run
    assert _listing(out) == old  # the old set, whole, and no temporaries


@pytest.mark.parametrize("k", [1, 3, 4])
def test_a_failure_in_a_new_folder_leaves_nothing(clip, tmp_path, compact, monkeypatch, k):
    out = tmp_path / "o"
    _fail_at(monkeypatch, k)
    with pytest.raises(files.WriteError):
        _run(clip, out)
    assert _listing(out) == {}


def test_an_interrupt_while_tracking_leaves_the_old_set(clip, tmp_path, compact, monkeypatch):
    out = tmp_path / "o"
    _run(clip, out, prompt="old")
    old = _listing(out)

    class Stopped(RedRoute):
        def track(self, video, phrases, settings, out, prompt):
            loader = FrameLoader(media.open_video_stream(video))
            book = SimpleNamespace(labels={}, scores={})

            def items():
                yield 0, {}
                raise KeyboardInterrupt

            try:
                return track.write_outputs(items(), loader, book, {}, prompt, {}, Path(out))
            finally:
                loader.close()

    args = argparse.Namespace(video=str(clip), out=str(out), side_by_side=True)
    with pytest.raises(KeyboardInterrupt):
        track_summary.run_track(args, "new", Stopped(), None)
    assert _listing(out) == old


def test_a_new_set_replaces_every_member_of_the_old_one(clip, tmp_path, compact, monkeypatch):
    out = tmp_path / "o"
    _run(clip, out)
    monkeypatch.setattr(track_masks, "COMPACT_AFTER", 1000)  # masks inside tracks.json now
    args = argparse.Namespace(video=str(clip), out=str(out), side_by_side=False)
    track_summary.run_track(args, "square", RedRoute(), None)
    # no masks.json.xz or side-by-side video of the old run beside the new tracks
    assert sorted(_listing(out)) == ["tracked.mp4", "tracks.json"]


def test_staged_files_of_a_killed_run_are_removed_next_time(clip, tmp_path, compact):
    out = tmp_path / "o"
    out.mkdir()
    dead = 2**22 + 12345  # beyond the usual pid range: no such process
    left = out / f".tracked.mp4{files.TMP_MARK}{dead}-abcd1234.mp4"
    left.write_bytes(b"half a video")
    _run(clip, out)
    assert sorted(_listing(out)) == SET


def test_output_set_alone(tmp_path):
    out = tmp_path / "o"
    with files.output_set(out, members=["a.txt", "b.txt"], last=["c.txt"]) as unit:
        files.atomic_write_text(files.output_path(out / "c.txt"), "c1")
        files.atomic_write_text(files.output_path(out / "a.txt"), "a1")
        with files.output_set(out) as inner:  # joins the open set: it commits nothing itself
            assert inner is unit
            files.atomic_write_text(files.output_path(out / "b.txt"), "b1")
        assert not (out / "a.txt").exists()
    assert {n: v.decode() for n, v in _listing(out).items()} == {"a.txt": "a1", "b.txt": "b1",
                                                                 "c.txt": "c1"}  # fmt: skip
    with pytest.raises(RuntimeError), files.output_set(out, members=["a.txt", "b.txt"]):
        files.atomic_write_text(files.output_path(out / "a.txt"), "a2")
        raise RuntimeError("stop")
    assert _listing(out)["a.txt"] == b"a1" and len(_listing(out)) == 3
    assert files.output_path(out / "a.txt") == out / "a.txt"  # no set open: the path itself
    os.chmod(out / "a.txt", 0o600)
    with files.output_set(out, members=["a.txt"]):
        files.atomic_write_text(files.output_path(out / "a.txt"), "a3")
    assert (out / "a.txt").read_text() == "a3" and (out / "a.txt").stat().st_mode & 0o777 == 0o600


# --------------------------------------------------------------------------- the CLI


def test_past_a_file_size_limit_the_old_set_stays(clip, tmp_path):
    """``ulimit -f``: the annotated video fits, the side-by-side video (twice as wide) does not;
    the write fails with one line (the command's ``error:``) and ``--out`` keeps the earlier
    run's files."""
    resource = pytest.importorskip("resource")
    out = tmp_path / "o"
    _run(clip, out, prompt="old")
    old = _listing(out)
    limit = max(len(old["tracked.mp4"]), len(old["tracks.json"])) + 256
    assert len(old["side_by_side.mp4"]) > limit
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(files.WriteError, match="file size limit") as e:
            _run(clip, out, prompt="new")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "side_by_side.mp4" in str(e.value) and "\n" not in str(e.value)
    assert _listing(out) == old


def test_segment_command_failure_at_the_last_output_keeps_the_old_set(tmp_path, capsys,
                                                                      monkeypatch):  # fmt: skip
    from PIL import Image

    image = tmp_path / "scene.png"
    Image.fromarray(_scene()).save(image)
    out = tmp_path / "o"
    argv = ["segment", "--image", image, "--prompt", "ball", "--out", out, *FAST]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    old = _listing(out)
    assert len(old) == 3
    _fail_at(monkeypatch, 3)
    code, _, err = run_cli([*argv[:4], "red ball", *argv[5:]], capsys)
    assert code == 2 and "disk is full" in err, err
    assert _listing(out) == old
    assert not [p for p in os.listdir(out) if files.TMP_MARK in p]
