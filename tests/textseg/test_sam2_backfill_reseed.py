"""Backfill (the default) keeps a keyframe's re-seed: tracking a new object backwards from a
keyframe leaves what every object tracked before it holds -- the re-seeded object's prompted
mask on the keyframe, the forward masks before it -- so the forward pass goes on from the
prompt, exactly as it does without backfill."""

import numpy as np
import pytest
import torch
from test_track import GREEN, RED, color_boxes, square, two_squares_video

from helpers.textseg import media, sam2_video

N, K = 6, 3  # frames; the keyframe that re-seeds red and starts green


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reseed")
    return media.video_to_frames(two_squares_video(tmp, n=N), tmp / "frames")


def _state_at(session, oid: int, t: int) -> dict:
    """What the backend holds for ``oid`` on ``t``: every tensor of its stored output (mask
    logits, memory features, object pointer, ...)."""
    st = session.state
    if session.tracker.backend == "sam2":
        out = st["output_dict_per_obj"][st["obj_id_to_idx"][oid]]
    else:
        out = st.output_dict_per_obj[st._obj_id_to_idx[oid]]
    o = out["cond_frame_outputs"].get(t) or out["non_cond_frame_outputs"].get(t)
    return {k: v.clone() for k, v in o.items() if isinstance(v, torch.Tensor)}


def _run(tracker, frames, root, backfill: bool):
    """Red from frame 0; on keyframe K red re-seeded with a mask and green started; with
    ``backfill`` green tracked back to frame 1 first; then forward to the end."""
    red0 = color_boxes(media.read_frame(frames, 0), colors=(RED,)).xyxy[0]
    green = color_boxes(media.read_frame(frames, K), colors=(GREEN,)).xyxy[0]
    red_k = square(8 + 6 * K, 16)  # where red really is on K
    prop = sam2_video.Sam2Propagator(tracker, frames, root, offload=True)
    got: dict[int, dict[int, np.ndarray]] = {}
    with prop.context():
        s = prop.open(0, N)
        s.prompt(0, [(1, "box", red0)])
        for t, masks in s.propagate(0, K - 1):
            got[t] = masks
        got[K] = s.prompt(K, [(1, "mask", red_k), (2, "box", green)])
        if backfill:
            if tracker.backend == "sam2":  # the prompt, stored (what propagation does first)
                tracker.predictor.propagate_in_video_preflight(s.state)
            before = {t: _state_at(s, 1, t) for t in range(1, K + 1)}  # K: the prompt's
            back = {t: m for t, m in s.propagate(K, 1, reverse=True)}
            assert sorted(back) == list(range(1, K + 1))
            for t, held in before.items():  # the keyframe holds what the prompt gave, the
                after = _state_at(s, 1, t)  # frames before it their forward outputs
                assert held and sorted(after) == sorted(held), t
                for key, value in held.items():
                    assert torch.equal(after[key], value), (t, key)
            got["back"] = back
        for t, masks in s.propagate(K + 1, N - 1):
            got[t] = masks
        s.close()
    return got


@pytest.fixture(scope="module", params=["sam2", "transformers"])
def tracker(request, build_sam2_tiny):
    if request.param == "sam2":
        return build_sam2_tiny()
    from helpers.textseg import track

    torch.manual_seed(0)
    return track.load_video_tracker(
        "tiny", backend="transformers", device="cpu", random_weights=True, image_size=128
    )


def test_backfill_keeps_the_keyframes_reseed(tracker, clip, tmp_path):
    plain = _run(tracker, clip, tmp_path / "a", backfill=False)
    filled = _run(tracker, clip, tmp_path / "b", backfill=True)
    # the re-seeded object goes on from its prompt: the same masks as without backfill
    for t in range(K + 1, N):
        assert np.array_equal(filled[t][1], plain[t][1]), t
    # the new object was tracked back
    assert any(filled["back"][t][2].any() for t in range(1, K))
    assert sum(int(filled[t][1].sum()) for t in range(K + 1, N)) > 0
