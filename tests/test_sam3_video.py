"""SAM 3 video (helpers/sam3_video.py) with a random-weight model from a small config (CPU).

DIFFERENTIAL: per frame, our ids and masks equal transformers' documented video usage
(``init_video_session`` -> ``add_text_prompt`` -> ``propagate_in_video_iterator`` ->
``postprocess_outputs``) on the same model and frames, exactly. Chunked runs carry ids over by
mask IoU (checked with scripted SAM 3 outputs), and ``track --backend sam3 --random-weights``
writes the MP4 and tracks.json through the CLI.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import cli, media, sam3_video
from helpers.render import rle_to_mask

H, W, N = 72, 96, 4


@pytest.fixture(scope="module")
def tracker():
    return sam3_video.random_sam3_video("toy", device="cpu")


@pytest.fixture(scope="module")
def frame_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    for i in range(N):
        Image.fromarray(np.roll(base, 3 * i, axis=1)).save(d / f"{i:05d}.jpg", quality=95)
    return d


def _documented(tracker, frames, phrases):
    """transformers' documented SAM 3 video usage, verbatim (whole video, one session)."""
    processor, model = tracker.processor, tracker.model
    session = processor.init_video_session(
        video=frames,
        inference_device="cpu",
        processing_device="cpu",
        video_storage_device="cpu",
        dtype=torch.float32,
    )
    session = processor.add_text_prompt(inference_session=session, text=phrases)
    outputs = {}
    for model_outputs in model.propagate_in_video_iterator(inference_session=session):
        outputs[model_outputs.frame_idx] = processor.postprocess_outputs(session, model_outputs)
    return outputs


def test_differential_matches_documented_usage(tracker, frame_dir, tmp_path):
    res = sam3_video.track_video_sam3(
        frame_dir, "Red car. dog", tracker, tmp_path / "out", render=False
    )
    frames = media.video_to_frames(frame_dir, tmp_path / "fr")
    vid = [media.read_frame(frames, i) for i in range(frames.num_frames)]
    ref = _documented(tracker, vid, ["red car", "dog"])
    assert sorted(ref) == list(range(N)) and res.num_frames == N
    seen = 0
    for t, out in ref.items():
        expect = {int(i): m.numpy() for i, m in zip(out["object_ids"], out["masks"]) if m.any()}
        ours = res.masks[t]
        assert sorted(ours) == sorted(expect)
        for i in expect:
            np.testing.assert_array_equal(ours[i], expect[i])
        for phrase, ids in out["prompt_to_obj_ids"].items():
            for i in ids:
                assert res.labels[int(i)] == phrase
        seen += len(expect)
    assert seen > 0  # the toy model finds something on the first frame
    doc = json.loads((tmp_path / "out" / "tracks.json").read_text())
    assert doc["video"]["num_frames"] == N and len(doc["frames"]) == N
    for rec in doc["frames"]:
        for o in rec["objects"]:
            np.testing.assert_array_equal(rle_to_mask(o["mask"]), res.masks[rec["frame"]][o["id"]])
            assert o["label"] in ("red car", "dog")


def test_differential_on_an_mp4_fed_decoded_frames(tracker, tmp_path, monkeypatch):
    """On an MP4, our route equals the documented usage (``load_video`` -> session) exactly:
    SAM 3 is fed the decoded frames, never a JPEG frame folder (a second lossy generation)."""
    from transformers.video_utils import load_video

    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    mp4 = media.write_video([np.roll(base, 4 * i, axis=1) for i in range(N)], tmp_path / "c.mp4")

    def no_jpegs(*a, **k):
        raise AssertionError("SAM 3 was fed a JPEG frame folder")

    monkeypatch.setattr(media, "_write_jpeg", no_jpegs)
    monkeypatch.setattr(media, "video_to_frames", no_jpegs)
    res = sam3_video.track_video_sam3(mp4, "Red car. dog", tracker, tmp_path / "out")
    video, _ = load_video(str(mp4))  # the documented way to read a video for SAM 3
    ref = _documented(tracker, video, ["red car", "dog"])
    assert sorted(ref) == list(range(N)) and res.num_frames == N
    seen = 0
    for t, out in ref.items():
        expect = {int(i): m.numpy() for i, m in zip(out["object_ids"], out["masks"]) if m.any()}
        assert sorted(res.masks[t]) == sorted(expect)
        for i in expect:
            np.testing.assert_array_equal(res.masks[t][i], expect[i])
        seen += len(expect)
    assert seen > 0
    assert res.video_path is not None and len(list(media.read_video_frames(res.video_path))) == N


def _disk(cx, r=6):
    yy, xx = np.mgrid[:H, :W]
    return (yy - H // 2) ** 2 + (xx - cx) ** 2 <= r * r


def test_chunks_carry_ids_and_new_objects_get_new_ids(monkeypatch):
    """Scripted SAM 3 outputs: a car moving right all video, a dog from frame 4 on. Each chunk's
    session numbers its objects from 0 again; the loop must keep the car's id across chunks and
    give the dog one new id."""

    def script(tracker, frames, phrases, offload=True):
        car, dog = (1, 0) if frames[0]["g"] >= 4 else (0, 1)  # sessions renumber objects
        for t, f in enumerate(frames):
            g = f["g"]
            ids, masks, labels = [car], [_disk(10 + 5 * g)], {"red car": [car]}
            if g >= 4:
                ids.append(dog)
                masks.append(_disk(80, 5))
                labels["dog"] = [dog]
            yield (
                t,
                {
                    "object_ids": torch.tensor(ids),
                    "scores": torch.full((len(ids),), 0.9),
                    "masks": torch.from_numpy(np.stack(masks)),
                    "prompt_to_obj_ids": labels,
                },
            )

    monkeypatch.setattr(sam3_video, "propagate_chunk", script)
    got = dict(
        sam3_video.track_frames_sam3(
            None, lambda g: {"g": g}, 9, ["red car", "dog"], chunk_size=3, book=None
        )
    )
    assert sorted(got) == list(range(9))
    car_ids = {g: [i for i, m in got[g].items() if m[H // 2, 10 + 5 * g]] for g in got}
    assert all(ids == [0] for ids in car_ids.values())  # one car id across 4 chunks
    dog_ids = {i for g in range(4, 9) for i in got[g] if i != 0}
    assert len(dog_ids) == 1 and dog_ids != {0}  # the dog: one new id, kept across chunks
    assert all(len(got[g]) == 1 for g in range(4))


def test_cli_track_sam3_random_weights(frame_dir, tmp_path, capsys):
    argv = ["track", "--backend", "sam3", "--random-weights", "--device", "cpu",
            "--video", str(frame_dir), "--prompt", "red car. dog", "--out", str(tmp_path / "t"),
            "--score-threshold", "0.2", "--chunk-size", "3"]  # fmt: skip
    code = cli.main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    res = json.loads([ln for ln in out.out.splitlines() if ln.startswith("{")][-1])
    assert res["backend"] == "sam3" and res["frames"] == N
    assert (tmp_path / "t" / "tracks.json").is_file() and (tmp_path / "t" / "tracked.mp4").is_file()
    code = cli.main([*argv[:-2], "--chunk-size", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "--chunk-size" in err
