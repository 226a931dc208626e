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
    assert doc["objects"]["0"]["frames"] == len(SCORES) - 1  # frames it is seen in
    assert res.scores[0] == pytest.approx(max(SCORES))  # the id's best score stays in the summary


def test_sam3_folder_is_sharded_under_torchrun(tmp_path, capsys, monkeypatch):
    """Two processes of a torchrun job (run one after the other here): each segments its
    share of the folder (k, k+N, ...) and only the first prints the one merged summary."""
    from helpers import cli, distributed, sam3

    d = tmp_path / "in"
    d.mkdir()
    for i in range(4):
        Image.fromarray(np.full((40, 56, 3), 30 * i, np.uint8)).save(d / f"im{i}.png")
    seen: list[str] = []
    real = sam3._folder_step
    monkeypatch.setattr(sam3, "_folder_step", lambda path, *a, **k: seen.append(path.name)
                        or real(path, *a, **k))  # fmt: skip
    parts: dict[int, dict] = {}
    argv = ["segment", "--backend", "sam3", "--folder", str(d), "--prompt", "dog", "--out",
            str(tmp_path / "o"), "--random-weights", "--device", "cpu"]  # fmt: skip
    lines = {}
    for rank in (1, 0):
        monkeypatch.setattr(
            distributed, "from_env", lambda device=None, r=rank: distributed.Dist(r, 2)
        )

        def gather(self, obj):
            parts[self.rank] = obj
            return [parts.get(0), parts.get(1)]

        monkeypatch.setattr(distributed.Dist, "gather", gather)
        seen.clear()
        assert cli.main(argv) == 0
        assert seen == [f"im{i}.png" for i in range(rank, 4, 2)]  # its share only
        lines[rank] = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert lines[1] == [] and len(lines[0]) == 1  # one merged summary
    res = json.loads(lines[0][0])
    assert res["processes"] == 2 and res["done"] == 4 and len(res["files"]) == 4
