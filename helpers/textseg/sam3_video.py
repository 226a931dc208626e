"""SAM 3 video (transformers ``Sam3VideoModel``): a text prompt -> every instance, tracked.

SAM 3 detects the prompt's concepts on every frame and tracks them with its own memory
tracker; objects that appear later get new ids as the model finds them. Each chunk of frames
runs transformers' documented usage exactly:

    session = processor.init_video_session(video=frames, inference_device=device,
                                           processing_device="cpu", video_storage_device="cpu")
    processor.add_text_prompt(session, phrases)
    for out in model.propagate_in_video_iterator(session):
        result = processor.postprocess_outputs(session, out)   # ids, scores, boxes, masks

Long videos: a session holds every preprocessed frame (1008 px, on the CPU with ``offload``)
and per-frame tracker memory, so the video runs in chunks of ``chunk_size`` frames. Chunks
overlap by one frame; ids are carried over by mask IoU on that frame (same label), and a chunk
that runs out of GPU memory is retried with half the frames. Outputs are those of
``helpers.textseg.track``: an annotated MP4 and ``tracks.json`` with compressed COCO RLE per frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpers.errors import InputError
from helpers.textseg import naming
from helpers.textseg.routes import TrackSettings
from helpers.textseg.sam3 import SAM3_HUB_ID
from helpers.textseg.track import after_oom, is_oom


@dataclass
class Sam3VideoTracker:
    model: Any  # transformers Sam3VideoModel
    processor: Any  # transformers Sam3VideoProcessor
    device: Any
    name: str
    dtype: Any = None  # session / model dtype (bf16 on Ampere+ GPUs, else fp32)
    size: str = "sam3"
    backend: str = "sam3"

    def track(
        self, source, prompt: str, out_dir, *, score_threshold=TrackSettings.score_threshold, **kw
    ):
        """The SAM 3 route's video verb: :func:`track_video_sam3` keeping instances scored
        ``score_threshold`` or more (the model's detection threshold, restored afterwards)."""
        saved = self.model.score_threshold_detection
        self.model.score_threshold_detection = float(score_threshold)
        try:
            return track_video_sam3(source, prompt, self, out_dir, **kw)
        finally:
            self.model.score_threshold_detection = saved


@dataclass
class _Book:
    """What ``track.frame_records`` / ``tracks_document`` read: a label and a score per id."""

    labels: dict[int, str] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)  # each id's best score
    frame_scores: dict[int, dict[int, float]] = field(default_factory=dict)  # frame -> id -> score
    keep_empty: bool = True  # an object SAM 3 still tracks with an empty mask stays listed


# --------------------------------------------------------------------------- loading


def _dtype(dev):
    import torch

    if dev.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return torch.float32


def load_sam3_video(device=None, *, repo: str = SAM3_HUB_ID, token=None) -> Sam3VideoTracker:
    """The pretrained SAM 3 video model (gated weights: see ``sam3.check_hub_access``)."""
    from helpers.textseg import sam3, sam3_post

    sam3.require_sam3()
    sam3.check_hub_access(repo, token)
    sam3_post.install()  # hole filling, sprinkle removal, mask NMS without the hub kernel
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    dev = sam3._device(device)
    dtype = _dtype(dev)
    try:
        processor = Sam3VideoProcessor.from_pretrained(repo, token=token)
        model = Sam3VideoModel.from_pretrained(repo, token=token)
    except (OSError, ValueError, ConnectionError) as e:
        raise InputError(sam3.hub_error_message(e, repo)) from None
    model = model.to(dev, dtype=dtype).eval()
    return Sam3VideoTracker(model, processor, dev, repo, dtype)


def random_processor(side: int = 1008):
    """A Sam3VideoProcessor for random models (real processors at ``side``, toy tokenizer)."""
    from transformers import Sam3ImageProcessor, Sam3VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    from helpers.textseg.sam3 import toy_tokenizer

    size = {"height": side, "width": side}
    image = Sam3ImageProcessor(size=size)
    video = Sam2VideoVideoProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return Sam3VideoProcessor(
        image_processor=image, video_processor=video, tokenizer=toy_tokenizer()
    )


def random_sam3_video(size: str = "toy", device=None, seed: int = 0) -> Sam3VideoTracker:
    """SAM 3 video with random weights, no download: ``"toy"`` (tiny; lenient detection
    thresholds and a 2-frame hot start so random weights still find and track objects) or
    ``"full"`` (``Sam3VideoConfig()``, the real sizes, for speed benchmarks)."""
    from helpers.textseg import sam3, sam3_post

    sam3.require_sam3()
    sam3_post.install()  # hole filling, sprinkle removal, mask NMS without the hub kernel
    import torch
    from transformers import Sam3VideoConfig, Sam3VideoModel

    if size not in ("toy", "full"):
        raise InputError(f"unknown random SAM 3 video size {size!r}; use 'toy' or 'full'.")
    if size == "toy":
        parts = sam3.toy_parts()
        config = Sam3VideoConfig(
            detector_config={"model_type": "sam3", **parts["detector"]},
            tracker_config=parts["tracker"],
            low_res_mask_size=4 * parts["grid"],
            score_threshold_detection=0.2,
            new_det_thresh=0.2,
            max_num_objects=4,
            hotstart_delay=2,
            hotstart_unmatch_thresh=1,
            hotstart_dup_thresh=1,
        )
        side = parts["side"]
    else:
        config, side = Sam3VideoConfig(), 1008
    torch.manual_seed(seed)
    dev = sam3._device(device)
    dtype = _dtype(dev)
    model = Sam3VideoModel(config).to(dev, dtype=dtype).eval()
    return Sam3VideoTracker(model, random_processor(side), dev, f"random-{size}", dtype)


# --------------------------------------------------------------------------- one chunk


def propagate_chunk(
    tracker: Sam3VideoTracker, frames: list[np.ndarray], phrases: list[str], *, offload=True
) -> Iterator[tuple[int, dict]]:
    """(frame index within ``frames``, ``postprocess_outputs`` dict) for every frame, in order
    (transformers' documented whole-video usage on this list of RGB frames)."""
    import torch

    dev = tracker.device
    session = tracker.processor.init_video_session(
        video=frames,
        inference_device=dev,
        processing_device="cpu" if offload else dev,
        video_storage_device="cpu" if offload else dev,
        dtype=tracker.dtype or torch.float32,
    )
    session = tracker.processor.add_text_prompt(inference_session=session, text=list(phrases))
    try:
        for out in tracker.model.propagate_in_video_iterator(
            inference_session=session, start_frame_idx=0, max_frame_num_to_track=len(frames)
        ):
            yield int(out.frame_idx), tracker.processor.postprocess_outputs(session, out)
    finally:
        del session


def _carry_ids(prev: dict[int, np.ndarray], prev_labels, cur: dict[int, np.ndarray], labels,
               iou_threshold: float) -> dict[int, int]:  # fmt: skip
    """local id -> carried global id: greedy best mask IoU >= threshold, same label."""
    from helpers.textseg.identity import masks_iou

    if not prev or not cur:
        return {}
    g_ids, l_ids = list(prev), list(cur)
    iou = masks_iou(np.stack([cur[i] for i in l_ids]), np.stack([prev[i] for i in g_ids]))
    for a, lid in enumerate(l_ids):
        for b, gid in enumerate(g_ids):
            if labels.get(lid) != prev_labels.get(gid):
                iou[a, b] = -1.0
    out: dict[int, int] = {}
    while iou.size and iou.max() >= iou_threshold:
        a, b = np.unravel_index(int(np.argmax(iou)), iou.shape)
        out[l_ids[a]] = g_ids[b]
        iou[a, :] = -1.0
        iou[:, b] = -1.0
    return out


def track_frames_sam3(
    tracker: Sam3VideoTracker,
    read_frame,
    num_frames: int,
    phrases: list[str],
    *,
    chunk_size: int = TrackSettings.chunk_size,
    offload: bool = True,
    iou_threshold: float = TrackSettings.iou_threshold,
    book: _Book | None = None,
    bar=None,
) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
    """Yields (frame, {global id: bool mask}) for frames 0..num_frames-1, chunk by chunk.

    ``read_frame(i)`` gives frame i (HxWx3 uint8 RGB). The first chunk keeps SAM 3's ids;
    later chunks start on the previous chunk's last frame, whose objects keep their ids when
    a mask overlaps (IoU >= ``iou_threshold``, same label); other objects get new ids.
    ``book`` collects each id's label (its phrase) and best score."""

    book = book if book is not None else _Book()
    n, size = int(num_frames), int(chunk_size)
    start, last, next_id = 0, {}, 0
    while start < n:
        first = start - 1 if start > 0 else 0
        end = min(first + size, n)
        if end <= start:  # a chunk must add at least one frame
            end = min(start + 1, n)
        try:
            results = []
            frames = [read_frame(g) for g in range(first, end)]
            for t, res in propagate_chunk(tracker, frames, phrases, offload=offload):
                results.append((first + t, _to_numpy(res)))
                if bar is not None and first + t >= start:
                    bar.update(1)
            del frames
        except Exception as e:
            if not is_oom(e):
                raise
            results = None
        if results is None:
            after_oom(bar, start)
            if size <= 8:
                raise InputError(
                    "CUDA ran out of memory while tracking with SAM 3, even with "
                    f"chunk_size={size}. Downscale the video (max_side=720 or less), narrow the "
                    "prompt, free GPU memory (restart the runtime), or use the Grounding DINO + "
                    "SAM 2.1 route (backend='sam2')."
                )
            size //= 2
            print(f"CUDA out of memory at frame {start}; retrying with chunk_size={size}.")
            continue
        mapping: dict[int, int] = {}
        for g, res in results:
            labels = {i: p for p, ids in res["prompt_to_obj_ids"].items() for i in ids}
            masks = dict(zip(res["object_ids"], res["masks"]))
            if g == first and start > 0:  # the overlap frame: carry ids, already written
                mapping.update(_carry_ids(last, book.labels, masks, labels, iou_threshold))
            for lid in res["object_ids"]:
                if lid not in mapping:  # new: SAM 3's id in the first chunk, then the next free
                    mapping[lid] = lid if start == 0 else next_id
                    next_id = max(next_id, mapping[lid] + 1)
            out, scores = {}, {}
            for lid, score in zip(res["object_ids"], res["scores"]):
                gid = mapping[lid]
                book.labels.setdefault(gid, labels.get(lid, "object"))
                book.scores[gid] = max(float(score), book.scores.get(gid, 0.0))
                out[gid], scores[gid] = masks[lid], float(score)
            if g >= start:
                book.frame_scores[g] = scores
            if g == end - 1:
                last = out
            if g >= start:
                yield g, out
        start = end


def _to_numpy(res: dict) -> dict:
    return {
        "object_ids": [int(i) for i in res["object_ids"].tolist()],
        "scores": res["scores"].detach().float().cpu().numpy().reshape(-1),
        "masks": res["masks"].detach().cpu().numpy().astype(bool),
        "prompt_to_obj_ids": {
            str(k): [int(i) for i in v] for k, v in res["prompt_to_obj_ids"].items()
        },
    }


# --------------------------------------------------------------------------- the video


def track_video_sam3(
    source,
    prompt: str,
    tracker: Sam3VideoTracker,
    out_dir,
    *,
    chunk_size: int = TrackSettings.chunk_size,
    offload: bool = True,
    iou_threshold: float = TrackSettings.iou_threshold,
    max_frames: int | None = None,
    max_side: int | None = None,
    render: bool = True,
    video_name: str = "tracked.mp4",
):
    """Segment and track every instance ``prompt`` names through a video with SAM 3.

    ``source``: a video file or a folder of numbered frames, fed to SAM 3 as decoded frames
    (PyAV, as transformers' documented usage; no JPEG round trip: see
    ``helpers.textseg.decoded_video``). Writes ``tracked.mp4`` (annotated, if ``render``) and
    ``tracks.json`` into ``out_dir``, like ``track.track_video``; returns a
    ``track.TrackResult``. ``chunk_size`` frames per SAM 3 session (memory),
    ``iou_threshold`` for carrying ids across chunks, ``offload`` keeps the preprocessed
    frames on the CPU.
    """
    import time

    from tqdm.auto import tqdm

    from helpers.textseg.decoded_video import DecodedVideo
    from helpers.textseg.detect import normalize_prompt, prompt_phrases
    from helpers.textseg.track import MaskStore, write_outputs

    if not isinstance(tracker, Sam3VideoTracker):
        raise InputError("tracker must come from helpers.textseg.sam3_video.load_sam3_video().")
    norm = normalize_prompt(prompt)
    phrases = prompt_phrases(prompt)
    if int(chunk_size) < 2:
        raise InputError(f"chunk_size must be >= 2 frames, got {chunk_size}.")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise InputError(f"iou_threshold must be in [0, 1], got {iou_threshold}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # a chunk's frames and those the writer thread (queue of 16) still draws stay decoded
    frames = DecodedVideo(source, max_frames, max_side, keep=int(chunk_size) + 2 + 16)
    timings = {"decode_s": time.perf_counter() - t0}
    book = _Book()
    label_ids: dict[str, int] = {p: i for i, p in enumerate(phrases)}
    bar = tqdm(total=frames.num_frames, desc="tracking (SAM 3)", unit="frame")

    def stream():
        encode = MaskStore()
        for g, masks in track_frames_sam3(
            tracker,
            frames,
            frames.num_frames,
            phrases,
            chunk_size=chunk_size,
            offload=offload,
            iou_threshold=iou_threshold,
            book=book,
            bar=bar,
        ):
            encode.put(g, masks)
            yield g, encode.rles.pop(g)

    settings = {
        "backend": "sam3",
        "chunk_size": int(chunk_size),
        "iou_threshold": float(iou_threshold),
        "tracker": f"sam3:{tracker.name}",
        "frames": "decoded (no JPEG round trip)",
        "source_path": naming.source_key(source),  # which video these tracks are of
    }
    try:
        out = write_outputs(
            stream(), frames, book, label_ids, norm, settings, out_dir, video_name, render,
            read_frame=frames,
        )  # fmt: skip
    finally:
        bar.close()
    out.timings.update(timings)
    return out
