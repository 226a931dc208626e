"""SAM 2 video without autocast (the CPU, a T4 in fp32): sam2 stores memory features in bf16;
tracking a new object backwards (``track --backfill``) must not fail with "BFloat16 and
Float" when those memories meet the fp32 layers."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from helpers import sam2_video


def test_reverse_tracking_without_autocast(tmp_path):
    torch.manual_seed(0)
    tracker = sam2_video.load_video_tracker("tiny", "sam2", "cpu", random_weights=True,
                                            image_size=128)  # fmt: skip
    assert tracker.dtype is None  # the CPU: no autocast
    for i in range(3):
        Image.fromarray(np.full((64, 80, 3), 60 * i, np.uint8)).save(tmp_path / f"{i:05d}.jpg")
    p = tracker.predictor
    state = p.init_state(str(tmp_path), offload_video_to_cpu=True, offload_state_to_cpu=True)
    p.add_new_points_or_box(state, 0, 1, box=np.array([10, 10, 40, 40], np.float32))
    list(p.propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=1))
    p.add_new_points_or_box(state, 2, 2, box=np.array([40, 20, 70, 50], np.float32))
    out = list(p.propagate_in_video(state, start_frame_idx=2, max_frame_num_to_track=2,
                                    reverse=True))  # fmt: skip
    assert [t for t, _, _ in out] == [2, 1, 0]
    for _, ids, logits in out:
        assert list(ids) == [1, 2] and logits.dtype == torch.float32
        assert torch.isfinite(logits).all()
