"""helpers.textseg.track_masks: long videos keep their masks in masks.json.xz; read_tracks gives
either layout back the same."""

import json

import numpy as np
import pytest

from helpers.errors import InputError
from helpers.textseg import identity, render, track, track_masks


def _records(frames=6):
    book = identity.IdBook()
    book._new("dog")
    book._new("cat")
    recs, label_ids = [], {}
    for t in range(frames):
        m1 = np.zeros((32, 48), bool)
        m1[4 + t : 14 + t, 5:20] = True
        m2 = np.zeros((32, 48), bool)
        m2[20:30, 30 - t : 40 - t] = True
        rles = {1: render.mask_to_rle(m1, compressed=True)}
        if t % 2 == 0:  # object 2 on every other frame
            rles[2] = render.mask_to_rle(m2, compressed=True)
        recs.append({"frame": t, "objects": track.frame_records(rles, book, label_ids)})
    return recs, book


def test_long_videos_write_masks_apart_and_read_back_the_same(tmp_path, monkeypatch):
    recs, book = _records()
    video = (30.0, 48, 32, len(recs))
    short = track.write_tracks(tmp_path / "a", recs, book, "dog. cat", video, {})
    assert not (tmp_path / "a" / track_masks.MASKS_FILE).exists()
    monkeypatch.setattr(track_masks, "COMPACT_AFTER", 3)
    long = track.write_tracks(tmp_path / "b", recs, book, "dog. cat", video, {})
    doc = json.loads(long.read_text())
    assert doc["masks"]["file"] == track_masks.MASKS_FILE
    assert all("mask" not in o for r in doc["frames"] for o in r["objects"])
    assert all("mask" in o for r in recs for o in r["objects"])  # the caller's records kept
    a, b = track_masks.read_tracks(short), track_masks.read_tracks(long)
    assert a["frames"] == b["frames"] and a["objects"] == b["objects"]
    m = render.rle_to_mask(b["frames"][4]["objects"][1]["mask"])
    assert m.shape == (32, 48) and m[20:30, 26:36].all() and m.sum() == 100
    (tmp_path / "b" / track_masks.MASKS_FILE).unlink()
    with pytest.raises(InputError, match="missing"):
        track_masks.read_tracks(long)
