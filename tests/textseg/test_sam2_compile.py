"""The compiled SAM 2 video path, driven on the CPU through inductor.

On a CUDA GPU ``compile="auto"`` compiles SAM 2 (``helpers.textseg.sam2_compile``). Here the
same compiled parts run on the CPU through a whole ``track_video`` whose keyframes bring 1 to
16 boxes, objects added and removed: no recompile-limit error, and the number of compiles
stays bounded whatever the number of boxes. The parts whose inputs could vary with the boxes
and objects (memory encoder and attention, prompt encoder, mask decoder) go through inductor;
the image encoder, whose input is always one frame, is traced by dynamo alone (the same
guards and recompile limit, without a minute of CPU code generation).
"""

import numpy as np
import pytest
import supervision as sv
import torch

from helpers.textseg import media, sam2_compile, sam2_video, track

CPU = torch.device("cpu")
# the keyframes' numbers of boxes: every count 1..16, up and down (objects start and retire)
COUNTS = [1, 3, 7, 16, 2, 9, 4, 1, 12, 5, 8, 1, 6, 11, 2, 10, 3, 13, 1, 16, 14, 15]
H, W = 96, 160


def _grid_boxes(n: int) -> np.ndarray:
    """n of the 16 cells of a 4 x 4 grid over the frame, as xyxy boxes."""
    cells = [(r, c) for r in range(4) for c in range(4)][:n]
    ch, cw = H / 4, W / 4
    return np.array(
        [[c * cw + 3, r * ch + 3, (c + 1) * cw - 3, (r + 1) * ch - 3] for r, c in cells],
        np.float32,
    )


@pytest.fixture(scope="module")
def compiled_tiny(build_sam2_tiny):
    tracker = build_sam2_tiny(compile=True)
    assert tracker.compiled and sam2_compile.clock_of(tracker.predictor) is not None
    sam2_compile.compile_parts(tracker.predictor, "default", {"image_encoder": "eager"})
    sam2_video._memory_in_layer_dtype(tracker.predictor)  # as load_video_tracker does in fp32
    return tracker


def _video(tmp_path, n: int):
    rng = np.random.default_rng(0)
    frames = []
    for t in range(n):
        im = np.full((H, W, 3), 40, np.uint8)
        for b in _grid_boxes(16):
            x0, y0, x1, y1 = (int(v) for v in b)
            im[y0 + 2 : y1 - 2, x0 + 2 + t % 3 : x1 - 2] = rng.integers(90, 250, 3)
        frames.append(im)
    return media.write_video(frames, tmp_path / "grid.mp4", fps=10)


def _detector(start: int = 0):
    """Grid cells as detections (with their box masks), COUNTS[start + k] on keyframe k."""

    calls = [start]

    def detect_fn(image):
        n = COUNTS[calls[0] % len(COUNTS)]
        calls[0] += 1
        boxes = _grid_boxes(n)
        masks = np.zeros((n, H, W), bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
            masks[k, y0:y1, x0:x1] = True
        return sv.Detections(
            xyxy=boxes,
            mask=masks,
            confidence=np.full(n, 0.9, np.float32),
            class_id=np.zeros(n, int),
            data={"class_name": np.array(["cell"] * n)},
        )

    return detect_fn


def _compiles(tracker) -> dict[str, int]:
    return {name: part.compiles for name, part in tracker.predictor.compiled_parts.items()}


def test_compiled_tracking_survives_keyframes_of_1_to_16_boxes(compiled_tiny, tmp_path):
    """22 keyframes (every frame) with 1..16 boxes each, through the compiled parts:
    no FailOnRecompileLimitHit, and each part compiled a bounded number of times: the
    keyframe image path (one batch of every box) runs its heads eagerly, the propagation
    works object by object (batch 1), prompts add one object at a time."""
    every, n = 1, len(COUNTS)
    src = _video(tmp_path, n)
    r = track.track_video(
        src, "cell", None, compiled_tiny, tmp_path / "out", detect_every=every,
        chunk_size=200, detect_fn=_detector(), render=False, detect_on_doubt=False,
    )  # fmt: skip
    assert r.num_frames == n and len(r.labels) >= 16
    first = _compiles(compiled_tiny)
    assert set(first) == set(sam2_compile.PARTS) and all(first.values()), first
    # shapes: propagation (batch 1), a box prompt, a mask prompt; plus one recompile for
    # sam2's position-encoding cache filling on the first call
    assert all(c <= 4 for c in first.values()), first
    assert sum(first.values()) <= 4 * len(sam2_compile.PARTS), first
    # a second video with other box counts compiles none of the parts the boxes reach (the
    # image encoder may recompile once more as sam2's position-encoding cache fills)
    r2 = track.track_video(
        src, "cell", None, compiled_tiny, tmp_path / "out2", detect_every=2,
        chunk_size=200, detect_fn=_detector(start=5), render=False, max_frames=6,
    )  # fmt: skip
    assert r2.num_frames == 6
    again = _compiles(compiled_tiny)
    assert {k: v for k, v in again.items() if k != "image_encoder"} == {
        k: v for k, v in first.items() if k != "image_encoder"
    }
    assert again["image_encoder"] <= first["image_encoder"] + 1
    clock = sam2_compile.clock_of(compiled_tiny.predictor)
    assert clock.compiles == sum(again.values()) and clock.seconds > 0


def test_keyframe_heads_run_eagerly_whatever_the_box_count(compiled_tiny):
    """keyframe_features with 1..16 boxes: masks and embeddings for every box; the mask
    decoder's compiled function is not called (eager inside ``eager_heads``)."""
    img = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    decoder = compiled_tiny.predictor.compiled_parts["sam_mask_decoder"]
    calls = decoder.calls
    for n in range(1, 17):
        masks, emb = sam2_video.keyframe_features(compiled_tiny, img, _grid_boxes(n), None)
        assert masks.shape == (n, H, W) and masks.dtype == bool and emb.shape[0] == n
    assert decoder.calls == calls  # every one of them ran eagerly


def test_compile_mode_fits_the_gpu(monkeypatch):
    class Props:
        multi_processor_count = 40  # a T4

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: Props)
    cuda = torch.device("cuda")
    assert sam2_compile.compile_mode(cuda) is None
    Props.multi_processor_count = 132  # an H100
    assert sam2_compile.compile_mode(cuda) == "max-autotune"
    assert sam2_compile.compile_mode(CPU) is None
