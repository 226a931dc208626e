"""SAM 2 video: the project's propagation equals the sam2 package's documented usage exactly.

Documented usage (sam2's README / video notebook): ``init_state(video_dir)`` ->
``add_new_points_or_box(state, frame_idx, obj_id, box=...)`` per object -> ``propagate_in_video``
-> masks are ``logits > 0``. The same random-weight predictor and the same JPEG frames go
through the project's session (``sam2_video.Sam2Propagator``) and through ``track_video``.
"""

import numpy as np
import torch
from test_track import GREEN, RED, color_boxes, two_squares_video

from helpers import media, sam2_video, track


def official(predictor, folder, boxes_at: dict[int, dict[int, np.ndarray]], n: int):
    """The documented loop; ``boxes_at[frame] = {obj_id: box}``. Objects added at a later frame
    are added after propagating up to that frame, as the sam2 video notebook does."""
    out: dict[int, dict[int, np.ndarray]] = {}
    with torch.inference_mode():
        state = predictor.init_state(
            str(folder), offload_video_to_cpu=True, offload_state_to_cpu=True
        )
        frames = sorted(boxes_at)
        for k, f in enumerate(frames):
            for oid, box in boxes_at[f].items():
                predictor.add_new_points_or_box(state, frame_idx=f, obj_id=oid, box=box)
            end = frames[k + 1] if k + 1 < len(frames) else n
            for t, ids, logits in predictor.propagate_in_video(
                state, start_frame_idx=f, max_frame_num_to_track=end - f
            ):
                out[t] = {int(i): (logits[j] > 0).cpu().numpy()[0] for j, i in enumerate(ids)}
    return out


def test_session_two_boxes_and_a_later_object_equal_the_documented_loop(sam2_tiny, tmp_path):
    n = 6
    frames = media.video_to_frames(two_squares_video(tmp_path, n=n), tmp_path / "frames")
    red0 = color_boxes(media.read_frame(frames, 0), colors=(RED,)).xyxy[0]
    green3 = color_boxes(media.read_frame(frames, 3), colors=(GREEN,)).xyxy[0]
    want = official(sam2_tiny.predictor, frames.frame_dir, {0: {1: red0}, 3: {2: green3}}, n)

    prop = sam2_video.Sam2Propagator(sam2_tiny, frames, tmp_path / "chunks", offload=True)
    got: dict[int, dict[int, np.ndarray]] = {}
    with prop.context():
        s = prop.open(0, n)
        s.prompt(0, [(1, "box", red0)])
        for t, masks in s.propagate(0, 3):
            got[t] = masks
        s.prompt(3, [(2, "box", green3)])
        for t, masks in s.propagate(3, n):
            got[t] = masks
        s.close()
    assert sorted(got) == sorted(want) == list(range(n))
    for t in range(n):
        assert sorted(got[t]) == sorted(want[t]), t
        for i in want[t]:
            assert np.array_equal(got[t][i], want[t][i]), (t, i)
    assert any(m.any() for t in range(3, n) for m in [got[t][2]])  # the later object is tracked


def test_track_video_with_one_keyframe_equals_the_documented_loop(sam2_tiny, tmp_path):
    """Detection on frame 0 only, one chunk: track_video's masks are the documented loop's
    (given the JPEG folder the documented loop reads, which sam2 itself loads).

    One object: with random weights SAM 2's masks of different objects overlap a lot, and the
    project (rightly) refuses two live tracks on one region, which the bare loop does not."""
    n = 5
    src = two_squares_video(tmp_path, n=n)
    frames = media.video_to_frames(src, tmp_path / "frames")

    def red_only(image):
        return color_boxes(image, colors=(RED,))

    box = red_only(media.read_frame(frames, 0)).xyxy[0]
    want = official(sam2_tiny.predictor, frames.frame_dir, {0: {1: box}}, n)
    r = track.track_video(  # the same JPEG frames the documented loop reads
        frames.frame_dir, "square", None, sam2_tiny, tmp_path / "out", detect_every=100, chunk_size=100,
        detect_fn=red_only, prompt_type="box", render=False,
    )  # fmt: skip
    assert len(r.labels) == 1
    (oid,) = r.labels
    for t in range(n):
        assert np.array_equal(r.masks[t][oid], want[t][1]), t
