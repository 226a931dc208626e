"""SAM 3 video outputs (tracks.json) from scripted SAM 3 results, no model: each frame's
"score" is that frame's score (not the id's best so far) and an object SAM 3 still tracks
with an empty final mask is kept, marked empty."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import sam3_video

H, W = 48, 64
SCORES = [0.9, 0.3, 0.6, 0.2]  # frame -> the car's score
EMPTY_AT = 2  # the car's mask is empty on this frame


def _script(tracker, frames, phrases, offload=True):
    for t, _ in enumerate(frames):
        mask = np.zeros((1, H, W), bool)
        if t != EMPTY_AT:
            mask[0, 10:20, 10 + 5 * t : 20 + 5 * t] = True
        yield (
            t,
            {
                "object_ids": torch.tensor([0]),
                "scores": torch.tensor([SCORES[t]]),
                "masks": torch.from_numpy(mask),
                "prompt_to_obj_ids": {"car": [0]},
            },
        )


def test_tracks_json_has_per_frame_scores_and_empty_objects(tmp_path, monkeypatch):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(len(SCORES)):
        Image.fromarray(np.full((H, W, 3), 40 * i, np.uint8)).save(frames / f"{i:05d}.png")
    monkeypatch.setattr(sam3_video, "propagate_chunk", _script)
    tracker = sam3_video.Sam3VideoTracker(None, None, "cpu", "scripted")
    res = sam3_video.track_video_sam3(frames, "car", tracker, tmp_path / "out", render=False)
    doc = json.loads((tmp_path / "out" / "tracks.json").read_text())
    objs = {rec["frame"]: rec["objects"] for rec in doc["frames"]}
    assert [objs[g][0]["score"] for g in range(len(SCORES))] == SCORES
    empty = objs[EMPTY_AT][0]
    assert empty["id"] == 0 and empty.get("empty") is True and empty["area"] == 0
    assert all("empty" not in objs[g][0] for g in range(len(SCORES)) if g != EMPTY_AT)
    assert 0 not in res.masks[EMPTY_AT]  # the result's masks: visible ones only
    assert res.scores[0] == pytest.approx(max(SCORES))  # the id's best score stays in the summary
