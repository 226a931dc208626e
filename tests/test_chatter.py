"""Quiet cells: torch's torch.jit.script deprecation (raised inside sam2) is not shown when SAM 2
loads, and SAM 3 video's post-processing (hole filling, sprinkle removal, mask NMS) runs here
instead of being skipped with a "kernels library is not installed" warning."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

from helpers import chatter, sam3_post


def _shown(fn) -> list[str]:
    """The warnings ``fn()`` lets through when every warning is shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught]


def test_the_filter_hides_only_the_jit_script_deprecation():
    def noisy():
        warnings.warn(
            "`torch.jit.script` is deprecated. Please switch to ...", FutureWarning, stacklevel=1
        )
        warnings.warn("something the user should see", UserWarning, stacklevel=1)

    assert _shown(chatter.without_jit_script_warning(noisy)) == ["something the user should see"]
    assert len(_shown(noisy)) == 2


def test_loading_sam2_shows_no_jit_script_warning():
    pytest.importorskip("sam2")
    from helpers import segment

    shown = _shown(lambda: segment.load_segmenter("tiny", random_weights=True, image_size=128))
    assert not [m for m in shown if "torch.jit.script" in m], shown


def test_sam2_video_image_path_shows_no_jit_script_warning():
    pytest.importorskip("sam2")
    from helpers import sam2_video

    tracker = sam2_video.load_video_tracker("tiny", random_weights=True, image_size=128)
    shown = _shown(lambda: sam2_video._image_predictor(tracker))
    assert not [m for m in shown if "torch.jit.script" in m], shown


# ---------------------------------------------------------------- SAM 3 post-processing


def test_cc_2d_labels_and_areas_8_connected():
    m = np.zeros((1, 1, 6, 6), np.uint8)
    m[0, 0, 0, 0] = m[0, 0, 1, 1] = 1  # diagonal neighbours: one component of 2 (8-connected)
    m[0, 0, 4:6, 3:6] = 1  # a second component of 6
    labels, counts = sam3_post.CvUtils.cc_2d(torch.from_numpy(m), get_counts=True)
    assert labels.shape == counts.shape == (1, 1, 6, 6) and counts.dtype == torch.int32
    assert (
        counts[0, 0, 0, 0] == counts[0, 0, 1, 1] == 2 and labels[0, 0, 0, 0] == labels[0, 0, 1, 1]
    )
    assert int(counts[0, 0, 5, 5]) == 6 and int(counts[0, 0, 2, 2]) == 0 == int(labels[0, 0, 2, 2])
    assert len(set(labels[0, 0].unique().tolist())) == 3


def test_generic_nms_keeps_the_best_of_overlapping_masks():
    ious = torch.tensor([[1.0, 0.9, 0.0], [0.9, 1.0, 0.1], [0.0, 0.1, 1.0]])
    probs = torch.tensor([0.6, 0.8, 0.7])
    kept = sam3_post.CvUtils.generic_nms(ious, probs, 0.5, use_iou_matrix=True)
    assert kept.tolist() == [1, 2]  # 0 overlaps the better 1


@pytest.fixture
def sam3_video_module():
    m = pytest.importorskip("transformers.models.sam3_video.modeling_sam3_video")
    saved = m.cv_utils_kernel
    m.cv_utils_kernel = None  # not attempted yet, as in a fresh process
    yield m
    m.cv_utils_kernel = saved


def test_sam3_video_fills_holes_and_drops_specks_without_the_hub_kernel(sam3_video_module):
    m = sam3_video_module
    scores = -torch.ones(1, 1, 32, 32)
    scores[0, 0, 4:28, 4:28] = 1.0
    scores[0, 0, 15:17, 15:17] = -1.0  # a 4-pixel hole
    scores[0, 0, 0, 31] = 1.0  # a 1-pixel speck
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger(m.__name__)
    log.addHandler(handler)
    try:
        assert sam3_post.install()
        out = m.fill_holes_in_mask_scores(scores.clone(), max_area=8)
        keep = m.nms_masks(
            torch.tensor([0.9, 0.8]), torch.stack([scores[0, 0], scores[0, 0]]), 0.5, 0.5
        )
    finally:
        log.removeHandler(handler)
    assert (out[0, 0, 15:17, 15:17] > 0).all()  # the hole is filled
    assert out[0, 0, 0, 31] <= 0  # the speck is gone
    assert keep.tolist() == [True, False]  # the duplicate mask is suppressed
    assert not [r for r in records if "kernels" in r.getMessage()]


def test_random_sam3_video_installs_the_post_processing(sam3_video_module):
    from helpers import sam3_video

    sam3_video.random_sam3_video("toy", device="cpu")
    assert isinstance(sam3_video_module.cv_utils_kernel, sam3_post.CvUtils)
