"""Videos with a display rotation (how phones store portrait clips) are read upright by every
reader: media's stream decoder and frame folders, the frame loader (frames held as YUV), SAM
3's decoded video, the side-by-side video and a whole SAM 2 tracking run; and images with an
EXIF orientation are segmented upright."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers.textseg import media
from tests.textseg.test_track import GREEN, RED, color_boxes

W, H = 96, 128  # the upright clip: portrait, as a phone shows it
N = 4
ROTATIONS = (90, 180, 270)  # counter-clockwise display rotation written into the container


def upright_frames(n: int = N) -> list[np.ndarray]:
    """Two squares moving apart on a grey ground; nothing in it is symmetric."""
    frames = []
    for i in range(n):
        im = np.full((H, W, 3), 40, np.uint8)
        im[10 : 10 + 24, 8 + 4 * i : 32 + 4 * i] = RED
        im[80 - 4 * i : 104 - 4 * i, 60:84] = GREEN
        frames.append(im)
    return frames


def write_clip(path: Path, frames: list[np.ndarray], rotation: int = 0) -> Path:
    """An H.264 MP4 of ``frames`` stored turned by ``-rotation`` degrees, with a display matrix
    of ``rotation`` degrees (counter-clockwise): a player that applies it shows ``frames``."""
    import av

    turns = round(rotation / 90) % 4
    stored = [np.ascontiguousarray(np.rot90(f, -turns)) for f in frames]
    with av.open(str(path), mode="w", format="mp4") as box:
        stream = box.add_stream("libx264", rate=10)
        stream.height, stream.width = stored[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        if rotation:
            stream.set_display_rotation(rotation)
        for rgb in stored:
            box.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        box.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[int, Path]:
    """The same clip stored upright (0) and with each display rotation."""
    root = tmp_path_factory.mktemp("rotated")
    frames = upright_frames()
    return {r: write_clip(root / f"rot{r}.mp4", frames, r) for r in (0, *ROTATIONS)}


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """The same picture within H.264 noise."""
    return a.shape == b.shape and float(np.abs(a.astype(int) - b.astype(int)).mean()) < 4


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# --------------------------------------------------------------------------- the fixtures


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_fixture_is_stored_sideways_with_a_display_matrix(clips, rotation):
    import av

    with av.open(str(clips[rotation])) as c:
        frame = next(c.decode(c.streams.video[0]))
        stored = frame.to_ndarray(format="rgb24")
        assert frame.rotation % 360 == rotation
    turns = rotation // 90
    assert stored.shape[:2] == ((W, H) if turns % 2 else (H, W))
    assert close(np.rot90(stored, turns), upright_frames()[0])
    # OpenCV, a player that applies the display matrix, shows it upright
    cap = cv2.VideoCapture(str(clips[rotation]))
    ok, bgr = cap.read()
    cap.release()
    assert ok and close(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), upright_frames()[0])


# --------------------------------------------------------------------------- the helpers


class _Frame:
    def __init__(self, rotation):
        self.rotation = rotation


class _OldFrame:  # a PyAV without VideoFrame.rotation
    pass


class _Stream:
    def __init__(self, tag=None):
        self.metadata = {} if tag is None else {"rotate": tag}


def test_display_turns_from_the_display_matrix_and_the_legacy_tag():
    cases = {0: 0, 90: 1, 180: 2, -180: 2, 270: 3, -90: 3, 89.6: 1}
    for degrees, turns in cases.items():
        assert media.display_turns(_Frame(degrees)) == turns, degrees
    # the tag is clockwise: "90" (a phone's portrait clip) is a quarter turn clockwise
    assert media.display_turns(_OldFrame(), _Stream("90")) == 3
    assert media.display_turns(_OldFrame(), _Stream("270")) == 1
    assert media.display_turns(_OldFrame(), _Stream("180")) == 2
    assert media.display_turns(_OldFrame(), _Stream()) == 0
    assert media.display_turns(_OldFrame(), _Stream("sideways")) == 0
    assert media.display_turns(_OldFrame()) == 0


def test_upright_turns_counter_clockwise_into_out():
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert media.upright(a, 0) is a
    for turns in (1, 2, 3, -1):
        got = media.upright(a, turns)
        assert got.flags.c_contiguous and (got == np.rot90(a, turns)).all()
    out = np.empty((3, 2, 3), np.uint8)
    assert media.upright(a, 1, out) is out and (out == np.rot90(a)).all()
    assert media.upright(a, 1, np.empty((2, 3, 3), np.uint8)).shape == (3, 2, 3)  # wrong out


# --------------------------------------------------------------------------- every reader


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_stream_decode_is_upright(clips, rotation):
    want = list(media.decode_stream(media.open_video_stream(clips[0])))
    s = media.open_video_stream(clips[rotation])
    assert (s.num_frames, s.width, s.height) == (N, W, H)
    got = list(media.decode_stream(s))
    assert len(got) == N and all(close(g, w) for g, w in zip(got, want))
    small = media.open_video_stream(clips[rotation], max_side=64)
    assert (small.width, small.height) == (48, 64)
    assert all(f.shape == (64, 48, 3) for f in media.decode_stream(small))


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_frame_loader_turns_frames_held_as_yuv(clips, rotation):
    from helpers.textseg.frame_loader import FrameLoader

    want = upright_frames()
    loader = FrameLoader(media.open_video_stream(clips[rotation]), capacity=8)
    try:
        assert (loader.width, loader.height) == (W, H)
        held = loader._held(0)
        assert isinstance(held, media.I420) and held.shape == (H, W, 3)
        assert held.turns == rotation // 90
        for i in range(N):
            out = np.empty((H, W, 3), np.uint8)
            got = loader.read(i, out=out)
            assert got is out and close(got, want[i])
            assert close(loader.read(i), want[i])
    finally:
        loader.close()


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_video_to_frames_and_read_video_frames_are_upright(clips, rotation, tmp_path):
    vf = media.video_to_frames(clips[rotation], tmp_path / "frames")
    assert (vf.num_frames, vf.width, vf.height) == (N, W, H)
    want = upright_frames()
    frames = (media.read_frame(vf, i) for i in range(vf.num_frames))
    assert all(close(f, w) for f, w in zip(frames, want))
    got = list(media.read_video_frames(clips[rotation]))
    assert len(got) == N and all(close(f, w) for f, w in zip(got, want))


def test_opencv_without_its_own_rotation_is_turned_by_its_metadata(clips, monkeypatch):
    """An OpenCV backend that does not rotate frames itself: its orientation metadata is used."""
    real = cv2.VideoCapture

    class NoAutoRotation:
        def __init__(self, path):
            self._cap = real(path)
            self._cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)

        def set(self, prop, value):
            return False if prop == cv2.CAP_PROP_ORIENTATION_AUTO else self._cap.set(prop, value)

        def __getattr__(self, name):
            return getattr(self._cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", NoAutoRotation)
    want = upright_frames()
    for rotation in ROTATIONS:
        got = list(media.read_video_frames(clips[rotation]))
        assert len(got) == N and all(close(f, w) for f, w in zip(got, want)), rotation


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_decoded_video_for_sam3_is_upright(clips, rotation):
    from helpers.textseg.decoded_video import DecodedVideo

    video = DecodedVideo(clips[rotation])
    assert (video.num_frames, video.width, video.height) == (N, W, H)
    want = upright_frames()
    assert all(close(video(i), want[i]) for i in range(N))
    small = DecodedVideo(clips[rotation], max_side=64)
    assert (small.width, small.height) == (48, 64) and small(N - 1).shape == (64, 48, 3)


def test_side_by_side_of_a_rotated_original_keeps_its_shape(clips, tmp_path):
    path = media.side_by_side_video(clips[90], clips[0], tmp_path / "sbs.mp4")
    got = list(media.read_video_frames(path))
    assert len(got) == N and got[0].shape[1] == 2 * W  # left: upright, the same size as right
    band = got[0].shape[0] - H  # the captions above
    assert close(got[0][band : band + H, :W], upright_frames()[0])


# --------------------------------------------------------------------------- tracking


def _track(sam2_tiny, src, out, frame_dir=None, render=True):
    from helpers.textseg import track

    return track.track_video(
        src,
        "square",
        None,
        sam2_tiny,
        out,
        detect_every=2,
        chunk_size=8,
        detect_fn=lambda im: color_boxes(im, colors=(RED, GREEN)),
        render=render,
        frame_dir=frame_dir,
    )


def _check_like_upright(result, want):
    doc = json.loads(result.json_path.read_text())
    assert (doc["video"]["width"], doc["video"]["height"]) == (W, H)
    assert doc["video"]["num_frames"] == N and len(doc["frames"]) == N
    assert result.labels == want.labels and len(result.labels) >= 1
    for f in range(N):
        assert set(result.masks[f]) == set(want.masks[f])
        for i, m in result.masks[f].items():
            assert m.shape == (H, W)
            assert iou(m, want.masks[f][i]) > 0.8, (f, i)


def test_tracking_a_rotated_video_matches_the_upright_one(sam2_tiny, clips, tmp_path):
    want = _track(sam2_tiny, clips[0], tmp_path / "up", render=False)
    got = _track(sam2_tiny, clips[90], tmp_path / "rot")  # decoded in memory
    _check_like_upright(got, want)
    video = list(media.read_video_frames(got.video_path))
    assert len(video) == N and all(f.shape == (H, W, 3) for f in video)
    # the frame-folder path (a frame_dir asked for), without the annotated video
    folder = _track(sam2_tiny, clips[270], tmp_path / "rot2", tmp_path / "fd", render=False)
    _check_like_upright(folder, want)


def test_track_command_on_a_rotated_video(clips, tmp_path, capsys):
    from tests.textseg.test_cli_segment import FAST, run_cli

    out = tmp_path / "track"
    argv = ["track", "--video", clips[90], "--prompt", "red square", "--out", out,
            "--detect-every", "2", "--max-objects", "2", "--side-by-side", *FAST]  # fmt: skip
    code, res, err = run_cli(argv, capsys)  # the toy detector: masks of no meaning
    assert code == 0, err
    doc = json.loads(Path(res["json_path"]).read_text())
    assert (doc["video"]["width"], doc["video"]["height"]) == (W, H)
    annotated = list(media.read_video_frames(res["video_path"]))
    assert len(annotated) == N and annotated[0].shape == (H, W, 3)
    sbs = list(media.read_video_frames(res["side_by_side_path"]))
    assert len(sbs) == N and sbs[0].shape[1] == 2 * W


# --------------------------------------------------------------------------- images


def test_exif_rotated_image_is_segmented_upright(tmp_path, capsys):
    from tests.textseg.test_cli_segment import FAST, _scene, run_cli

    scene = _scene(h=72, w=96)
    stored = np.ascontiguousarray(np.rot90(scene, 1))  # 72 wide, 96 high as stored
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # show it turned a quarter clockwise: the 96x72 scene
    path = tmp_path / "phone.jpg"
    im.save(path, quality=95, exif=exif.tobytes())
    assert close(media.load_image(path), scene)
    out = tmp_path / "out"
    code, res, err = run_cli(
        ["segment", "--image", path, "--prompt", "red square", "--out", out, *FAST], capsys
    )
    assert code == 0, err
    doc = json.loads(Path(res["outputs"]["json"]).read_text())
    assert (doc["image"]["width"], doc["image"]["height"]) == (96, 72)
    assert np.array(Image.open(res["outputs"]["mask"])).shape == (72, 96)
    assert np.array(Image.open(res["outputs"]["overlay"])).shape[:2] == (72, 96)
