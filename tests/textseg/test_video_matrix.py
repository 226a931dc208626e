"""Every video reader on a matrix of small clips: containers (MP4, MOV, MKV, WebM, AVI, GIF,
MPEG-TS), codecs (H.264, H.265, VP9, MJPEG, MPEG-4), pixel formats (4:2:0, 4:4:4, 10-bit),
variable frame rate, odd sizes, one frame, a truncated file, a size change mid-stream. Each
is read with the right frame count and size by the stream decoder and its frame loader,
the JPEG frame folder writer and SAM 3's decoded video, and a few are tracked end to end;
an audio-only file, a side under 8 px and a named pipe are refused with one line before any
model loads."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from helpers.errors import InputError
from helpers.textseg import commands as cli_segment
from helpers.textseg import media
from helpers.textseg.decoded_video import DecodedVideo
from helpers.textseg.frame_loader import FrameLoader
from tests.textseg.test_cli_segment import FAST, run_cli
from tests.textseg.test_q2_hostile import _truncated_mp4
from tests.textseg.test_track import GREEN, RED, color_boxes

av = pytest.importorskip("av")


def scene(i: int, w: int = 96, h: int = 64) -> np.ndarray:
    """A red square moving right and a green one moving left on grey."""
    im = np.full((h, w, 3), 60, np.uint8)
    s = max(2, min(20, h // 3, w // 3))
    x = min(w - s, 4 + 3 * i)
    im[4 : 4 + s, x : x + s] = RED
    im[h - 4 - s : h - 4, max(0, w - 4 - s - 3 * i) : w - 4 - 3 * i] = GREEN
    return im


def encode(path: Path, fmt: str, codec: str, pix: str, n=8, w=96, h=64, **kw) -> Path:
    """``n`` frames of :func:`scene` encoded by PyAV; ``pts_ms`` gives each frame's time in
    milliseconds (variable frame rate)."""
    pts_ms = kw.pop("pts_ms", None)
    with av.open(str(path), "w", format=fmt) as box:
        stream = box.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, pix
        if codec == "libx265":
            stream.options = {"x265-params": "log-level=none"}
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(scene(i, w, h), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            box.mux(stream.encode(frame))
        box.mux(stream.encode(None))
    return path


def gif(path: Path, n=6, w=80, h=48) -> Path:
    from PIL import Image

    ims = [Image.fromarray(scene(i, w, h)) for i in range(n)]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=100, loop=0)
    return path


def resized_mid_stream(path: Path) -> Path:
    """MPEG-TS that switches from 96x64 to 64x48 after 4 frames (two streams back to back)."""
    a = encode(path.with_suffix(".a.ts"), "mpegts", "libx264", "yuv420p", n=4)
    b = encode(path.with_suffix(".b.ts"), "mpegts", "libx264", "yuv420p", n=4, w=64, h=48)
    path.write_bytes(a.read_bytes() + b.read_bytes())
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as box:
        stream = box.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return path


def tiny_frame_folder(path: Path) -> Path:
    from PIL import Image

    path.mkdir()
    for i in range(3):
        Image.fromarray(scene(i, 20, 5)).save(path / f"{i:05d}.png")
    return path


def frame_folder_of_two_sizes(path: Path) -> Path:
    from PIL import Image

    path.mkdir()
    for i, (w, h) in enumerate([(96, 64), (96, 64), (64, 48)]):
        Image.fromarray(scene(i, w, h)).save(path / f"{i:05d}.png")
    return path


# name: (how to make it, the encoder it needs, (frames, width, height) read back)
GOOD = {
    "mp4_h264_yuv420p": (lambda p: encode(p, "mp4", "libx264", "yuv420p"), "libx264", (8, 96, 64)),
    "mov_h264_yuv444p": (lambda p: encode(p, "mov", "libx264", "yuv444p"), "libx264", (8, 96, 64)),
    "mp4_h264_10bit": (lambda p: encode(p, "mp4", "libx264", "yuv420p10le"), "libx264",
                       (8, 96, 64)),
    "mkv_h265_10bit": (lambda p: encode(p, "matroska", "libx265", "yuv420p10le"), "libx265",
                       (8, 96, 64)),
    "webm_vp9": (lambda p: encode(p, "webm", "libvpx-vp9", "yuv420p"), "libvpx-vp9",
                 (8, 96, 64)),
    "avi_mjpeg": (lambda p: encode(p, "avi", "mjpeg", "yuvj420p"), "mjpeg", (8, 96, 64)),
    "gif_animated": (gif, None, (6, 80, 48)),
    "mp4_variable_rate": (
        lambda p: encode(p, "mp4", "libx264", "yuv420p", pts_ms=[0, 100, 133, 233, 266, 366, 399,
                                                                 499]),
        "libx264", (8, 96, 64),
    ),
    "mkv_odd_97x61": (lambda p: encode(p, "matroska", "libx264", "yuv444p", w=97, h=61),
                      "libx264", (8, 97, 61)),
    "mp4_single_frame": (lambda p: encode(p, "mp4", "libx264", "yuv420p", n=1), "libx264",
                         (1, 96, 64)),
    "ts_size_change": (resized_mid_stream, "libx264", (8, 96, 64)),
}  # fmt: skip
SUFFIX = {"mp4": ".mp4", "mov": ".mov", "mkv": ".mkv", "webm": ".webm", "avi": ".avi",
          "gif": ".gif", "ts": ".ts"}  # fmt: skip

# name: (how to make it, what the one-line refusal says)
REFUSED = {
    "audio_only": (lambda p: audio_only(p.with_suffix(".m4a")), "no video stream"),
    "side_under_8px": (
        lambda p: encode(p.with_suffix(".mp4"), "mp4", "libx264", "yuv420p", w=6, h=40),
        "too small to track",
    ),
    "frame_folder_under_8px": (lambda p: tiny_frame_folder(p), "too small to track"),
    "frame_folder_size_change": (lambda p: frame_folder_of_two_sizes(p), "the same size"),
}


def _make(root: Path, name: str) -> Path:
    if name in GOOD:
        make, codec, _ = GOOD[name]
        if codec is not None and codec not in av.codecs_available:
            pytest.skip(f"PyAV here has no {codec} encoder")
        return make(root / f"{name}{SUFFIX[name.split('_')[0]]}")
    return REFUSED[name][0](root / name)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = _make(root, name)
        return made[name]

    return get


def _like_scene(frame: np.ndarray, i: int) -> bool:
    """Frame ``i`` shows the scene (within lossy-codec noise)."""
    h, w = frame.shape[:2]
    want = scene(i, w, h).astype(int)
    return float(np.abs(frame.astype(int) - want).mean()) < 12


# --------------------------------------------------------------------------- read correctly


@pytest.mark.parametrize("name", sorted(GOOD))
def test_every_reader_gives_the_frames(clips, name, tmp_path):
    path = clips(name)
    n, w, h = GOOD[name][2]
    changes_size = name == "ts_size_change"

    stream = media.open_video_stream(path)
    assert (stream.num_frames, stream.width, stream.height) == (n, w, h)
    assert stream.fps > 0
    loader = FrameLoader(stream, capacity=4)
    try:
        for i in range(n):
            frame = loader.read(i)
            assert frame.shape == (h, w, 3), (i, frame.shape)
            assert changes_size or _like_scene(frame, i), i
            loader.release(i)
    finally:
        loader.close()

    frames = media.video_to_frames(path, tmp_path / "frames")
    assert (frames.num_frames, frames.width, frames.height) == (n, w, h)
    assert changes_size or all(_like_scene(media.read_frame(frames, i), i) for i in range(n))

    decoded = DecodedVideo(path)
    assert (decoded.num_frames, decoded.width, decoded.height) == (n, w, h)
    for i in range(n):
        assert decoded(i).shape == (h, w, 3)
        assert changes_size or _like_scene(decoded(i), i), i


def test_size_change_mid_stream_is_resized_and_said(clips, capsys):
    path = clips("ts_size_change")
    stream = media.open_video_stream(path)
    assert [f.shape for f in media.decode_stream(stream)] == [(64, 96, 3)] * 8
    err = capsys.readouterr().err
    assert err.count("warning: frame 4") == 1 and "resized to 96x64" in err, err
    decoded = DecodedVideo(path)
    assert [decoded(i).shape for i in range(8)] == [(64, 96, 3)] * 8
    assert "resized to 96x64" in capsys.readouterr().err


def test_truncated_file_gives_the_frames_it_has_and_says_so(tmp_path, capsys):
    path = _truncated_mp4(tmp_path / "cut.mp4")  # the header lists 30 frames
    got = media.video_to_frames(path, tmp_path / "frames").num_frames
    assert 0 < got < 30
    capsys.readouterr()
    stream = media.open_video_stream(path)
    err = capsys.readouterr().err
    assert stream.num_frames == got, "the stream counts what decodes, not the header"
    assert "lists 30 frames" in err and f"only {got}" in err, err
    assert len(list(media.decode_stream(stream))) == got
    decoded = DecodedVideo(path)
    assert decoded.num_frames == got and "lists 30 frames" in capsys.readouterr().err


def test_stream_that_ends_early_repeats_its_last_frame_and_says_so(clips, capsys):
    path = clips("mp4_h264_yuv420p")
    stream = media.open_video_stream(path)
    stream.num_frames = 10  # the count promised 10, the file holds 8
    frames = list(media.decode_stream(stream))
    assert len(frames) == 10 and np.array_equal(frames[9], frames[7])
    assert "gave only 8 of its 10 frames" in capsys.readouterr().err


# --------------------------------------------------------------------------- refused


def _one_line_error(fn, needle: str) -> None:
    with pytest.raises(InputError) as e:
        fn()
    text = str(e.value)
    assert needle in text and "\n" not in text, text


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unusable_videos_are_refused_by_every_reader(clips, name, tmp_path):
    path, needle = clips(name), REFUSED[name][1]
    if path.is_file():
        _one_line_error(lambda: media.open_video_stream(path), needle)
    _one_line_error(lambda: media.video_to_frames(path, tmp_path / "f"), needle)
    _one_line_error(lambda: DecodedVideo(path), needle)


@pytest.fixture
def no_models(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("models were loaded before the video was checked")

    monkeypatch.setattr(cli_segment, "load_models", boom)
    from helpers.textseg import sam3_commands

    monkeypatch.setattr(sam3_commands, "_tracker", boom)


def _refused_by_cli(argv, capsys, needle: str) -> None:
    code, res, err = run_cli(argv, capsys)
    assert code == 2 and res is None, (code, err)
    assert err.startswith("error:") and needle in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_track_command_refuses_before_any_model_loads(clips, name, tmp_path, capsys, no_models):
    argv = ["track", "--video", clips(name), "--prompt", "square", "--out", tmp_path / "o", *FAST]
    _refused_by_cli(argv, capsys, REFUSED[name][1])


def test_sam3_backend_refuses_a_tiny_video_before_any_model_loads(clips, tmp_path, capsys,
                                                                  no_models):  # fmt: skip
    argv = ["track", "--backend", "sam3", "--video", clips("side_under_8px"), "--prompt", "square",
            "--out", tmp_path / "o", "--random-weights", "--device", "cpu"]  # fmt: skip
    _refused_by_cli(argv, capsys, "too small to track")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_named_pipe_is_refused_without_blocking(tmp_path, capsys, no_models):
    pipe = tmp_path / "clip.mp4"
    os.mkfifo(pipe)
    for read in (media.open_video_stream, media.video_to_frames, DecodedVideo):
        _one_line_error(lambda read=read: read(pipe), "not a regular file")
    argv = ["track", "--video", pipe, "--prompt", "square", "--out", tmp_path / "o", *FAST]
    _refused_by_cli(argv, capsys, "not a regular file")


# --------------------------------------------------------------------------- tracked


# frames tracked: enough for a keyframe after the first (and, in the TS, for the new size)
TRACKED = {"mkv_h265_10bit": 4, "mkv_odd_97x61": 4, "ts_size_change": 6}


@pytest.mark.parametrize("name", sorted(TRACKED))
def test_representative_clips_are_tracked(sam2_tiny, clips, name, tmp_path):
    from helpers.textseg import track

    path = clips(name)
    n, w, h = TRACKED[name], *GOOD[name][2][1:]
    result = track.track_video(
        path, "square", None, sam2_tiny, tmp_path / "out", detect_every=3, chunk_size=8,
        max_frames=n, detect_fn=lambda im: color_boxes(im, colors=(RED, GREEN)),
    )  # fmt: skip
    assert (result.num_frames, result.width, result.height) == (n, w, h)
    assert sorted(result.masks) == list(range(n)) and len(result.labels) >= 1  # random weights
    for f in range(n):
        for m in result.masks[f].values():
            assert m.shape == (h, w)
    video = list(media.read_video_frames(result.video_path))
    assert len(video) == n and video[0].shape == (h + h % 2, w + w % 2, 3)  # H.264: even


def test_truncated_file_is_tracked_with_its_real_count(sam2_tiny, tmp_path, capsys):
    from helpers.textseg import track

    path = _truncated_mp4(tmp_path / "cut.mp4")
    result = track.track_video(
        path, "square", None, sam2_tiny, tmp_path / "out", detect_every=4, chunk_size=8,
        detect_fn=lambda im: color_boxes(im), render=False,
    )  # fmt: skip
    assert 0 < result.num_frames < 30 and sorted(result.masks) == list(range(result.num_frames))
    assert "lists 30 frames" in capsys.readouterr().err
