"""The SAM 2 video path's host work, measured on the CPU with the model replaced by a stub.

CPU proxies of the GPU speed targets: the host-cost benchmark's split of the work by thread
(its per-frame times are benchmark figures, not assertions), host memory bounded by chunks on
a long video, exactly one image-encoder pass per frame (keyframes reuse the propagation's
features), frames prepared as sam2's own loader prepares them.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_track import RED, color_boxes, two_squares_video

from helpers.textseg import media, sam2_video, track

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, timeout: int = 600) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_host_cost_benchmark_splits_the_work_by_thread(tmp_path):
    """``benchmarks/q2_host_cost.py`` (the CPU proxy of the GPU path's host work; its targets
    are benchmark targets, never asserted here): every configuration runs the whole video
    path with the stand-in (logits, object scores, keyframe masks), and the work is where it
    is meant to be, each job on its own thread."""
    out = tmp_path / "host.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "q2_host_cost.py"), "--frames", "12",
         "--repeats", "1", "--configs", "360p/3", "360p/16", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    rows = json.loads(out.read_text())["host_cost"]
    assert [(r["video"], r["objects"], r["frames"]) for r in rows] == [
        ("640x360", 3, 12),
        ("640x360", 16, 12),
    ]
    for r in rows:
        jobs = r["threads_ms"]
        assert {"propagating", "identity", "decode", "prepare", "encode", "writer"} <= set(jobs)
        assert jobs["encode"] > 0 and jobs["prepare"] > 0 and jobs["decode"] > 0
        assert 0 <= r["identity_ms"] <= r["propagating_ms"] <= r["all_ms"]
        assert isinstance(r["target_met"], bool)


MEMORY = """
import json, resource, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
import supervision as sv
from helpers.textseg import frame_loader, media, sam2_video, track
from q2_host_stub import StubPredictor

n, h, w, chunk = 600, 720, 1280, 50
tmp = Path(sys.argv[1] if len(sys.argv) > 1 else "{tmp}")
def frames():
    for i in range(n):
        im = np.full((h, w, 3), 60, np.uint8)
        im[300:420, 100 + i : 260 + i] = (220, 40, 40)
        yield im
video = media.write_video(frames(), tmp / "long.mp4", fps=30)
held = []
class Counting(frame_loader.FrameLoader):
    def close(self):
        held.append(self.peak_held)
        super().close()
frame_loader.FrameLoader = Counting
sam2_video.keyframe_features = lambda tr, im, b, m, *a, **k: (m, np.eye(len(b), 8, dtype=np.float32))
boxes = np.array([[100, 300, 260, 420], [500, 300, 700, 420], [900, 300, 1100, 420]], np.float32)
det = lambda im: sv.Detections(xyxy=boxes, confidence=np.ones(3, np.float32),
    class_id=np.zeros(3, int), data={{"class_name": np.array(["x"] * 3)}})
tracker = track.VideoTracker(StubPredictor(), "sam2", torch.device("cpu"), "stub")
# warm up imports and allocator on a few frames, then measure the long run
track.track_video(video, "x", None, tracker, tmp / "warm", detect_fn=det, render=False,
                  chunk_size=chunk, max_frames=8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
r = track.track_video(video, "x", None, tracker, tmp / "out", detect_fn=det, render=False,
                      chunk_size=chunk)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"frames": r.num_frames, "ids": len(r.labels), "held": held[-1],
                  "growth_mib": peak - before}}))
"""


def test_host_memory_for_600_frames_at_720p_is_bounded_by_chunks(tmp_path):
    """A 600-frame 720p video is 1.6 GiB of uint8 frames (6.9 GiB as sam2's float32 1024 px
    input); with chunks of 50 the loader holds at most chunk + 32 frames and the process grows
    by less than 400 MiB, less than one chunk of sam2's float frames (50 x 12 MiB) that the
    JPEG-folder path held."""
    res = json.loads(_python(MEMORY.format(tmp=tmp_path)).strip().splitlines()[-1])
    assert res["frames"] == 600 and res["ids"] == 3
    assert res["held"] <= 50 + 32
    assert res["growth_mib"] < 400, res


def test_one_image_encoder_pass_per_frame_keyframes_included(sam2_tiny, tmp_path):
    """Keyframes (0, 2, 4) reuse the features propagation computed on them: 6 frames, 6 passes
    (the separate image path made 9)."""
    n = 6
    src = two_squares_video(tmp_path, n=n)
    calls = []
    enc = sam2_tiny.predictor.image_encoder
    hook = enc.register_forward_hook(lambda *a: calls.append(1))
    keyframes = []

    def red_only(image):
        keyframes.append(1)
        return color_boxes(image, colors=(RED,))

    try:
        r = track.track_video(
            src, "square", None, sam2_tiny, tmp_path / "out", detect_every=2, chunk_size=100,
            detect_fn=red_only, render=False,
        )  # fmt: skip
    finally:
        hook.remove()
    assert r.num_frames == n and len(keyframes) == 3 and len(r.labels) == 1
    assert len(calls) == n
    (oid,) = r.labels
    assert all(r.masks[t][oid].any() for t in range(n))


@pytest.mark.parametrize("side", [1024, 256])
def test_prepared_frames_match_sam2s_own_loader(tmp_path, side):
    """prepare_frame vs sam2's JPEG loader (PIL bicubic) on the same 720p frame: the same
    values (sam2's resize and normalisation; test_sam2_frame_prep.py has more cases)."""
    from PIL import Image
    from sam2.utils.misc import _load_img_as_tensor

    rng = np.random.default_rng(0)
    img = np.kron(rng.integers(0, 255, (9, 16, 3)), np.ones((80, 80, 1))).astype(np.uint8)
    path = tmp_path / "f.png"
    Image.fromarray(img).save(path)
    want, h, w = _load_img_as_tensor(str(path), side)
    mean = torch.tensor(sam2_video._MEAN)[:, None, None]
    std = torch.tensor(sam2_video._STD)[:, None, None]
    want = (want.float() - mean) / std
    got = sam2_video.prepare_frame(img, side, torch.device("cpu"))
    assert got.shape == want.shape == (3, side, side) and (h, w) == (720, 1280)
    assert torch.equal(got, want), ((got - want) * std * 255).abs().max()  # in grey levels


def test_in_memory_path_tracks_like_the_jpeg_folder_path(sam2_tiny, tmp_path):
    """The same video through frames in memory and through a JPEG folder: the same objects,
    masks that agree (the inputs differ only by JPEG loss and the resize filter)."""
    n = 5
    src = two_squares_video(tmp_path, n=n)
    frames = media.video_to_frames(src, tmp_path / "frames")

    def red_only(image):
        return color_boxes(image, colors=(RED,))

    kw = dict(detect_every=100, chunk_size=100, detect_fn=red_only, render=False)
    mem = track.track_video(src, "square", None, sam2_tiny, tmp_path / "a", **kw)
    jpg = track.track_video(frames.frame_dir, "square", None, sam2_tiny, tmp_path / "b", **kw)
    assert list(mem.labels) == list(jpg.labels) == [1]
    for t in range(n):
        a, b = mem.masks[t][1], jpg.masks[t][1]
        assert (a & b).sum() / max(1, (a | b).sum()) > 0.9, t


def test_writer_errors_stop_propagation_and_are_raised():
    pulled = []

    def stream():
        for g in range(1000):
            pulled.append(g)
            yield g, {}

    def consume(items):
        for g, _ in items:
            if g == 3:
                raise ValueError("disk full")

    with pytest.raises(ValueError, match="disk full"):
        track.drain_in_worker(stream(), consume, depth=2)
    assert len(pulled) < 20  # the producer stopped soon after


def test_producer_errors_abort_the_writer():
    finished = []

    def stream():
        yield 0, {}
        raise RuntimeError("CUDA error")

    def consume(items):
        for _ in items:
            pass
        finished.append(True)  # never reached: the writer must not finish its files

    with pytest.raises(RuntimeError, match="CUDA error"):
        track.drain_in_worker(stream(), consume)
    assert finished == []


# --------------------------------------------------------------------------- fast GPU defaults

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
GIB = 2**30


def test_offload_only_when_the_gpu_would_not_hold_the_state():
    pick = sam2_video.choose_offload
    assert pick(None, CUDA, 200, 1024, objects=5, free_bytes=70 * GIB) is False  # H100
    assert pick(None, CUDA, 200, 1024, objects=5, free_bytes=3 * GIB) is True  # nearly full
    assert pick(None, CPU, 200, 1024, free_bytes=0) is False  # nothing to offload to
    assert pick(True, CUDA, 200, free_bytes=70 * GIB) is True  # the user's word wins
    assert pick(False, CUDA, 200, free_bytes=1) is False
    # the state is bounded by the memory window, not by the chunk's length
    long = pick(None, CUDA, 100_000, 1024, objects=5, detect_every=100_000, free_bytes=8 * GIB)
    assert long is False


def test_compile_where_the_installed_sam2_supports_it():
    pick = sam2_video.choose_compile
    assert pick("auto", CUDA, supported=True, big_gpu=True) is True
    assert pick("auto", CUDA, supported=True, big_gpu=False) is False  # a T4: eager
    assert pick("auto", CUDA, supported=False, big_gpu=True) is False
    assert pick("auto", CPU, supported=True) is False
    assert pick(False, CUDA, supported=True) is False
    assert pick(True, CPU, supported=True) is True
    with pytest.raises(track.InputError, match="vos_optimized"):
        pick(True, CUDA, supported=False)
    assert sam2_video.vos_optimized_supported() is True  # the pinned sam2 has it


def test_run_settings_are_read_from_the_tracker(sam2_tiny):
    s = sam2_video.run_settings(sam2_tiny, offload=False)
    assert s["dtype"] == "float32" and s["compiled"] is False and s["tf32"] is False
    assert s["predictor"] == "SAM2VideoPredictor" and s["offload"] is False
    fake = sam2_video.VideoTracker(None, "sam2", CUDA, "large", dtype=torch.bfloat16)
    assert sam2_video.run_settings(fake)["dtype"] == "bfloat16"


def test_decoded_stream_counts_shrinks_and_keeps_order(tmp_path):
    frames = [np.full((90, 160, 3), 10 * i, np.uint8) for i in range(7)]
    src = media.write_video(frames, tmp_path / "v.mp4", fps=25)
    s = media.open_video_stream(src, max_side=80)
    assert (s.num_frames, s.width, s.height, s.fps) == (7, 80, 45, 25.0)
    got = list(media.decode_stream(s))
    assert len(got) == 7 and got[0].shape == (45, 80, 3) and got[0].dtype == np.uint8
    means = [float(f.mean()) for f in got]
    assert means == sorted(means) and means[-1] - means[0] > 40  # the frames, in order
    assert media.open_video_stream(src, max_frames=3).num_frames == 3
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    with pytest.raises(track.InputError, match="corrupt"):
        media.open_video_stream(bad)


def test_frame_loader_holds_a_bounded_window(tmp_path):
    from helpers.textseg.frame_loader import FrameLoader

    frames = [np.full((32, 48, 3), i, np.uint8) for i in range(40)]
    src = media.write_video(frames, tmp_path / "v.mp4")
    loader = FrameLoader(media.open_video_stream(src), capacity=8)
    try:
        for i in range(40):
            assert loader.read(i).shape == (32, 48, 3)
            loader.release(i)
        assert loader.peak_held <= 8
        with pytest.raises(RuntimeError, match="released"):
            loader.read(3)
    finally:
        loader.close()


def test_frames_held_as_yuv_read_as_ffmpegs_rgb(tmp_path):
    """Plain 4:2:0 video is held as YUV (half the bytes) and converted by OpenCV when read:
    within a few grey levels of FFmpeg's own RGB conversion (the same BT.601 formula)."""
    import av

    from helpers.textseg.frame_loader import FrameLoader

    yy, xx = np.mgrid[:90, :160]
    frames = [
        np.stack([(xx + 8 * i) % 256, (yy * 2) % 256, (xx + yy) % 256], -1).astype(np.uint8)
        for i in range(5)
    ]
    src = media.write_video(frames, tmp_path / "v.mp4", fps=25)
    with av.open(str(src)) as c:
        want = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    loader = FrameLoader(media.open_video_stream(src), capacity=8)
    try:
        assert isinstance(loader._held(0), media.I420)  # what is held: YUV
        for i, w in enumerate(want):
            got = loader.read(i)
            assert got.shape == w.shape == (90, 160, 3) and got.dtype == np.uint8
            diff = np.abs(got.astype(int) - w)
            assert diff.mean() <= 1.5 and diff.max() <= 12, (i, diff.mean(), diff.max())
    finally:
        loader.close()
