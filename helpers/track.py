"""Video tracking: text prompt -> boxes on keyframes -> SAM 2 masks propagated through the video.

How it works (``track_video``):

1. The video becomes a folder of JPEG frames (``media.video_to_frames``).
2. Frames are processed in chunks of ``chunk_size``; each chunk has its own SAM 2 inference
   state, so memory stays bounded on long videos. Objects alive at the end of a chunk are
   carried into the next one by prompting its first frame (the previous chunk's last frame)
   with their last masks under the same ids.
3. On the first frame of each chunk and every ``detect_every`` frames the detector runs. New
   detections are matched (IoU, Hungarian assignment) with the masks being tracked on that
   frame: matches are the same object and keep their id; unmatched detections are compared
   with objects that left (their last mask / box and label) and get the old id back when they
   match; only the rest get new ids. New and returning objects are prompted (box, point or
   mask) on that frame and propagation continues from there.
4. Masks come back as bool arrays on the CPU and are stored as COCO RLE (small); the
   annotated MP4 and ``tracks.json`` are written atomically.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpers.errors import InputError

SAM2_SIZES = ("tiny", "small", "base_plus", "large")
_HUB_IDS = {
    "tiny": "facebook/sam2.1-hiera-tiny",
    "small": "facebook/sam2.1-hiera-small",
    "base_plus": "facebook/sam2.1-hiera-base-plus",
    "large": "facebook/sam2.1-hiera-large",
}
_CONFIGS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
PROMPT_TYPES = ("box", "point", "mask")
# SAM 2 reads at most 7 memory frames and 16 object pointers back; older per-frame outputs
# are never used again when tracking forward, so they are dropped to keep memory flat.
_MEMORY_WINDOW = 32


# --------------------------------------------------------------------------- id matching


def masks_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [K, M] between bool masks ``a`` [K,H,W] and ``b`` [M,H,W] (one matmul)."""
    a = np.asarray(a, dtype=bool).reshape(len(a), -1)
    b = np.asarray(b, dtype=bool).reshape(len(b), -1)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    if a.shape[1] != b.shape[1]:
        raise InputError("masks_iou: the two sets of masks have different sizes.")
    af, bf = a.astype(np.float32), b.astype(np.float32)
    inter = af @ bf.T
    union = af.sum(1)[:, None] + bf.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [K, M] between xyxy boxes ``a`` [K,4] and ``b`` [M,4]."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """xyxy box (float32) around the set pixels of a 2-D mask; zeros when empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return np.zeros(4, dtype=np.float32)
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=np.float32)


def _assign(score: np.ndarray, threshold: float) -> dict[int, int]:
    """Optimal one-to-one pairs (column -> row) with ``score >= threshold``."""
    from scipy.optimize import linear_sum_assignment

    if score.size == 0:
        return {}
    rows, cols = linear_sum_assignment(score, maximize=True)
    return {int(c): int(r) for r, c in zip(rows, cols) if score[r, c] >= threshold}


def match_ids(
    track_masks: dict[int, np.ndarray], det_masks: np.ndarray, iou_threshold: float = 0.5
) -> list[int | None]:
    """Id of the tracked mask each detection mask belongs to (None = a new object).

    ``track_masks`` maps id -> bool [H,W] (the masks being tracked on this frame);
    ``det_masks`` is bool [M,H,W]. Pairs are chosen by optimal assignment on mask IoU and
    kept when IoU >= ``iou_threshold``; each id is given to at most one detection.
    """
    ids = list(track_masks)
    if len(det_masks) == 0:
        return []
    if not ids:
        return [None] * len(det_masks)
    iou = masks_iou(np.stack([track_masks[i] for i in ids]), det_masks)
    pairs = _assign(iou, iou_threshold)
    return [ids[pairs[j]] if j in pairs else None for j in range(len(det_masks))]


@dataclass
class IdBook:
    """Every object id seen so far: label, best score, last non-empty mask and when it was seen.

    ``assign`` gives ids to a frame's detections: tracked objects by IoU, objects that left by
    their last mask (IoU) or last box (looser ``box_iou_threshold``) with the same label, new
    ids for the rest.
    """

    labels: dict[int, str] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)
    last_mask: dict[int, np.ndarray] = field(default_factory=dict)
    last_seen: dict[int, int] = field(default_factory=dict)
    next_id: int = 1

    def copy(self) -> IdBook:
        return IdBook(
            dict(self.labels),
            dict(self.scores),
            dict(self.last_mask),
            dict(self.last_seen),
            self.next_id,
        )

    def observe(self, frame_idx: int, masks: dict[int, np.ndarray]) -> None:
        """Remember the non-empty masks of a frame."""
        for i, m in masks.items():
            if m.any():
                self.last_mask[i] = m
                self.last_seen[i] = frame_idx

    def assign(
        self,
        track_masks: dict[int, np.ndarray],
        det_boxes: np.ndarray,
        det_labels: list[str],
        det_scores: np.ndarray,
        det_masks: np.ndarray | None = None,
        *,
        iou_threshold: float = 0.5,
        box_iou_threshold: float = 0.3,
    ) -> tuple[list[int], list[int]]:
        """Ids for a frame's detections, and the indices of those to prompt (new/returning).

        A detection that overlaps an already-claimed object (a second label on the same
        thing) gets that object's id and is not prompted again. Without ``det_masks`` the
        matching uses boxes (the tracked masks' boxes against the detection boxes).
        """
        n = len(det_boxes)
        det_boxes = np.asarray(det_boxes, dtype=np.float32).reshape(-1, 4)
        visible = {i: m for i, m in track_masks.items() if m.any()}
        vis_ids = list(visible)
        if det_masks is not None and vis_ids:
            ious = masks_iou(np.stack([visible[i] for i in vis_ids]), det_masks)
        else:
            vis_boxes = np.stack([mask_box(visible[i]) for i in vis_ids]) if vis_ids else []
            ious = box_iou(np.asarray(vis_boxes).reshape(-1, 4), det_boxes)
        pairs = _assign(ious, iou_threshold)
        ids: list[int | None] = [vis_ids[pairs[j]] if j in pairs else None for j in range(n)]
        # a detection covering an object that is already claimed is a duplicate, not new
        for j in range(n):
            if ids[j] is None and len(vis_ids) and ious[:, j].max() >= iou_threshold:
                ids[j] = vis_ids[int(ious[:, j].argmax())]

        # objects that left: last mask IoU, or last box IoU, and the same label
        open_dets = [j for j in range(n) if ids[j] is None]
        lost = [i for i in self.last_mask if i not in visible]
        if open_dets and lost:
            score = np.zeros((len(lost), len(open_dets)), dtype=np.float32)
            lost_boxes = np.stack([mask_box(self.last_mask[i]) for i in lost])
            b_iou = box_iou(lost_boxes, det_boxes[open_dets])
            m_iou = (
                masks_iou(np.stack([self.last_mask[i] for i in lost]), det_masks[open_dets])
                if det_masks is not None
                else np.zeros_like(b_iou)
            )
            for r, i in enumerate(lost):
                for c, j in enumerate(open_dets):
                    if self.labels.get(i) != det_labels[j]:
                        continue
                    if m_iou[r, c] >= iou_threshold or b_iou[r, c] >= box_iou_threshold:
                        score[r, c] = max(m_iou[r, c], b_iou[r, c])
            for c, r in _assign(score, 1e-6).items():
                ids[open_dets[c]] = lost[r]

        # the rest are new objects (highest score first; duplicates among them merged)
        prompt = [j for j in range(n) if ids[j] is not None and ids[j] not in visible]
        for j in sorted((j for j in range(n) if ids[j] is None), key=lambda j: -det_scores[j]):
            dup = self._duplicate_of(j, prompt, det_boxes, det_masks, iou_threshold)
            if dup is not None:
                ids[j] = ids[dup]
                continue
            ids[j] = self.next_id
            self.labels[self.next_id] = det_labels[j]
            self.next_id += 1
            prompt.append(j)
        for j in range(n):
            self.scores[ids[j]] = max(self.scores.get(ids[j], 0.0), float(det_scores[j]))
        return [int(i) for i in ids], sorted(prompt)

    @staticmethod
    def _duplicate_of(j, others, boxes, masks, iou_threshold) -> int | None:
        if not others:
            return None
        if masks is not None:
            iou = masks_iou(masks[others], masks[j : j + 1])[:, 0]
        else:
            iou = box_iou(boxes[others], boxes[j : j + 1])[:, 0]
        k = int(iou.argmax())
        return others[k] if iou[k] >= iou_threshold else None


# --------------------------------------------------------------------------- models


@dataclass
class VideoTracker:
    """A SAM 2 video predictor (``backend="sam2"``) or transformers Sam2VideoModel."""

    predictor: Any
    backend: str  # "sam2" | "transformers"
    device: Any
    size: str
    processor: Any = None  # transformers Sam2VideoProcessor
    dtype: Any = None  # autocast dtype (None = fp32)
    image_predictor: Any = None  # SAM2ImagePredictor sharing the weights (made on demand)


def _norm_size(size: str) -> str:
    s = str(size).lower().replace("-", "_").replace("+", "_plus")
    s = {"b_plus": "base_plus", "t": "tiny", "s": "small", "l": "large"}.get(s, s)
    if s not in SAM2_SIZES:
        raise InputError(f"Unknown SAM 2 size {size!r}; use one of {list(SAM2_SIZES)}.")
    return s


def _pick_dtype(device, precision: str):
    import torch

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise InputError(f"precision must be auto, fp32, bf16 or fp16; got {precision!r}.")
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return None  # T4 and older: fp32 (SAM 2 is trained in bf16; fp16 is opt-in)


def load_video_tracker(
    size: str = "tiny",
    backend: str = "sam2",
    device=None,
    random_weights: bool = False,
    image_size: int | None = None,
    *,
    precision: str = "auto",
    model_overrides: list[str] | tuple[str, ...] = (),
) -> VideoTracker:
    """SAM 2.1 video predictor of ``size`` (tiny, small, base_plus, large).

    ``backend="sam2"`` uses the ``sam2`` package (hub weights ``facebook/sam2.1-hiera-<size>``);
    ``backend="transformers"`` uses ``Sam2VideoModel``. ``random_weights=True`` builds the
    architecture without downloading (tests, smoke runs). ``image_size`` shrinks the model
    input for fast CPU tests (sam2: a hydra override, works with real weights too at lower
    quality; transformers: a very small random model); ``model_overrides`` are extra hydra
    overrides for the sam2 backend (e.g. ``"++model.memory_attention.num_layers=1"``).
    bf16 autocast + TF32 on Ampere and newer GPUs; fp32 on older GPUs (T4) and the CPU.
    """
    from helpers.runtime import enable_fast_matmul, pick_device

    size = _norm_size(size)
    dev = pick_device(device)
    dtype = _pick_dtype(dev, precision)
    if dev.type == "cuda":
        enable_fast_matmul()
    if image_size is not None and (int(image_size) < 64 or int(image_size) % 32):
        raise InputError(f"image_size must be a multiple of 32, >= 64; got {image_size}.")
    if backend == "sam2":
        overrides = list(model_overrides)
        if image_size is not None:
            overrides.append(f"++model.image_size={int(image_size)}")
        predictor = _load_sam2(size, dev, random_weights, overrides)
        return VideoTracker(predictor, "sam2", dev, size, dtype=dtype)
    if backend == "transformers":
        model, processor = _load_transformers(size, dev, random_weights, dtype, image_size)
        return VideoTracker(model, "transformers", dev, size, processor=processor, dtype=dtype)
    raise InputError(f"Unknown tracker backend {backend!r}; use 'sam2' or 'transformers'.")


def _load_sam2(size, dev, random_weights, overrides):
    try:
        from sam2.build_sam import build_sam2_video_predictor
        from sam2.sam2_video_predictor import SAM2VideoPredictor
    except ImportError:
        raise InputError(
            "The sam2 package is missing: pip install 'git+https://github.com/facebookresearch/sam2' "
            "(or `pip install sam2`)."
        ) from None
    if random_weights:
        return build_sam2_video_predictor(
            _CONFIGS[size], None, device=str(dev), hydra_overrides_extra=overrides
        )
    try:
        return SAM2VideoPredictor.from_pretrained(
            _HUB_IDS[size], device=str(dev), hydra_overrides_extra=overrides
        )
    except Exception as e:  # offline, hub down, ...
        raise InputError(
            f"Could not fetch SAM 2 weights {_HUB_IDS[size]} ({type(e).__name__}: {e}). Check the "
            "internet connection, or pass random_weights=True for an offline smoke test."
        ) from None


def _load_transformers(size, dev, random_weights, dtype, image_size=None):
    import torch
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    if random_weights:
        from transformers import Sam2VideoConfig

        side = int(image_size) if image_size else 1024
        processor = _random_tf_processor(side)
        model = Sam2VideoModel(_toy_tf_config(side) if image_size else Sam2VideoConfig())
    else:
        if image_size is not None:
            raise InputError(
                "image_size applies to random weights only with backend='transformers'."
            )
        try:
            processor = Sam2VideoProcessor.from_pretrained(_HUB_IDS[size])
            model = Sam2VideoModel.from_pretrained(_HUB_IDS[size])
        except Exception as e:
            raise InputError(
                f"Could not fetch {_HUB_IDS[size]} for transformers ({type(e).__name__}). Check "
                "the internet connection, or use random_weights=True offline."
            ) from None
    model = model.to(dev, dtype=dtype or torch.float32).eval()
    return model, processor


def _toy_tf_config(side: int):
    """A very small Sam2VideoConfig at ``side`` px for fast CPU tests (random weights)."""
    from transformers import Sam2VideoConfig
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig
    from transformers.models.sam2_video.configuration_sam2_video import (
        Sam2VideoPromptEncoderConfig,
    )

    trunk = Sam2HieraDetConfig(
        hidden_size=32,
        image_size=[side, side],
        blocks_per_stage=[1, 1, 1, 1],
        embed_dim_per_stage=[32, 64, 128, 256],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[8, 4, 4, 2],
        global_attention_blocks=[],
    )
    vision = Sam2VisionConfig(
        backbone_config=trunk,
        backbone_channel_list=[256, 128, 64, 32],
        backbone_feature_sizes=[[side // 4] * 2, [side // 8] * 2, [side // 16] * 2],
    )
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(image_size=side),
        image_size=side,
        memory_attention_num_layers=1,
        memory_attention_rope_feat_sizes=[side // 16] * 2,
        memory_attention_feed_forward_hidden_size=256,
        memory_fuser_intermediate_dim=256,
    )


def _random_tf_processor(side: int = 1024):
    import transformers
    from transformers import Sam2VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    image_cls = (
        getattr(transformers, "Sam2ImageProcessor", None) or transformers.Sam2ImageProcessorFast
    )
    size = {"height": side, "width": side}
    return Sam2VideoProcessor(
        image_processor=image_cls(size=size), video_processor=Sam2VideoVideoProcessor(size=size)
    )


@contextlib.contextmanager
def _quiet_sam2():
    """Silence sam2's own per-call progress bars and its missing-CUDA-extension warning."""
    mods = []
    try:
        import sam2.sam2_video_predictor as vp
        import sam2.utils.misc as misc

        mods = [m for m in (vp, misc) if hasattr(m, "tqdm")]
    except ImportError:
        pass
    saved = [m.tqdm for m in mods]
    for m in mods:
        m.tqdm = lambda it, *a, **k: it
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*post-processing.*")
            warnings.filterwarnings("ignore", message=".*_C.*")
            yield
    finally:
        for m, t in zip(mods, saved):
            m.tqdm = t


def _autocast(tracker: VideoTracker):
    import torch

    if tracker.dtype is None or tracker.backend != "sam2":
        return contextlib.nullcontext()
    return torch.autocast(tracker.device.type, dtype=tracker.dtype)


# --------------------------------------------------------------------------- backend calls


def _open(tracker: VideoTracker, folder: Path, offload: bool):
    """A fresh inference state over the JPEG frames in ``folder``."""
    if tracker.backend == "sam2":
        return tracker.predictor.init_state(
            str(folder),
            offload_video_to_cpu=offload,
            offload_state_to_cpu=offload,
            async_loading_frames=False,
        )
    import cv2
    import torch

    frames = [
        cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(folder.glob("*.jpg"))
    ]
    dev = tracker.device
    return tracker.processor.init_video_session(
        video=frames,
        inference_device=dev,
        inference_state_device="cpu" if offload else dev,
        video_storage_device="cpu" if offload else dev,
        dtype=tracker.dtype or torch.float32,
    )


def _to_masks(ids, logits) -> dict[int, np.ndarray]:
    m = (logits > 0).reshape(len(ids), *logits.shape[-2:]).cpu().numpy()
    return {int(i): m[k] for k, i in enumerate(ids)}


def _prompt(tracker: VideoTracker, state, t: int, prompts: list[tuple[int, str, Any]]):
    """Add prompts (obj_id, "box"|"point"|"mask", value) on local frame ``t``.

    Returns the masks of every object in the state on that frame.
    """
    if tracker.backend == "sam2":
        p = tracker.predictor
        ids, logits = [], None
        for oid, kind, val in prompts:
            if kind == "mask":
                _, ids, logits = p.add_new_mask(state, t, oid, np.asarray(val, dtype=bool))
            elif kind == "point":
                pts = np.asarray(val, dtype=np.float32).reshape(1, 2)
                _, ids, logits = p.add_new_points_or_box(
                    state, t, oid, points=pts, labels=np.array([1], np.int32)
                )
            else:
                box = np.asarray(val, dtype=np.float32).reshape(4)
                _, ids, logits = p.add_new_points_or_box(state, t, oid, box=box)
        return _to_masks(ids, logits)
    # transformers: one add call per kind (a later call replaces the session's list of objects
    # with new inputs), then one forward on the frame
    proc, model = tracker.processor, tracker.predictor
    out = None
    for kind in ("mask", "point", "box"):
        group = [(int(oid), val) for oid, k, val in prompts if k == kind]
        if not group:
            continue
        ids = [oid for oid, _ in group]
        if kind == "mask":
            kw: dict[str, Any] = {"input_masks": [np.asarray(v, dtype=bool) for _, v in group]}
        elif kind == "point":
            pts = [[[float(c) for c in np.asarray(v).reshape(2)]] for _, v in group]
            kw = {"input_points": [pts], "input_labels": [[[1] for _ in group]]}
        else:
            kw = {"input_boxes": [[[float(c) for c in np.asarray(v).reshape(4)] for _, v in group]]}
        proc.add_inputs_to_inference_session(
            inference_session=state, frame_idx=t, obj_ids=ids, **kw
        )
        out = model(inference_session=state, frame_idx=t)
    return _tf_masks(tracker, state, out)


def _tf_masks(tracker, state, out) -> dict[int, np.ndarray]:
    logits = tracker.processor.post_process_masks(
        [out.pred_masks.float()],
        original_sizes=[[state.video_height, state.video_width]],
        binarize=False,
    )[0]
    return _to_masks(out.object_ids, logits)


def _propagate(tracker: VideoTracker, state, a: int, b: int) -> Iterator[tuple[int, dict]]:
    """Track every object in the state over local frames a..b; yields (t, {id: mask})."""
    if tracker.backend == "sam2":
        gen = tracker.predictor.propagate_in_video(
            state, start_frame_idx=a, max_frame_num_to_track=b - a
        )
        for t, ids, logits in gen:
            yield t, _to_masks(ids, logits)
            _prune(state["output_dict_per_obj"], t)
    else:
        gen = tracker.predictor.propagate_in_video_iterator(
            state, start_frame_idx=a, max_frame_num_to_track=b - a
        )
        for out in gen:
            yield out.frame_idx, _tf_masks(tracker, state, out)
            _prune(state.output_dict_per_obj, out.frame_idx)


def _prune(output_dict_per_obj: dict, t: int) -> None:
    for d in output_dict_per_obj.values():
        old = d["non_cond_frame_outputs"]
        for k in [k for k in old if k < t - _MEMORY_WINDOW]:
            del old[k]


def _image_masks(tracker: VideoTracker, image: np.ndarray, boxes: np.ndarray) -> np.ndarray | None:
    """Masks [N,H,W] for detection boxes on one frame with SAM 2's image path (same weights)."""
    if tracker.backend != "sam2" or len(boxes) == 0:
        return None
    if tracker.image_predictor is None:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        tracker.image_predictor = SAM2ImagePredictor(tracker.predictor)
        # the image predictor assumes 1024 px input; match a smaller image_size override
        side = int(tracker.predictor.image_size)
        tracker.image_predictor._bb_feat_sizes = [(side // 4 >> k,) * 2 for k in range(3)]
    ip = tracker.image_predictor
    ip.set_image(image)
    masks, _, _ = ip.predict(box=np.asarray(boxes, np.float32), multimask_output=False)
    h, w = image.shape[:2]
    return np.asarray(masks).reshape(len(boxes), -1, h, w)[:, 0] > 0.5


def _click_point(box: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """A positive click: the mask pixel deepest inside the object, else the box centre."""
    if mask is not None and mask.any():
        import cv2

        dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
        y, x = np.unravel_index(int(dist.argmax()), dist.shape)
        return np.array([x + 0.5, y + 0.5], dtype=np.float32)
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float32)


# --------------------------------------------------------------------------- results


class MaskStore(Mapping):
    """frame -> {id: bool mask}, kept as COCO RLE in memory and decoded on access."""

    def __init__(self) -> None:
        self.rles: dict[int, dict[int, dict]] = {}

    def put(self, frame_idx: int, masks: dict[int, np.ndarray]) -> None:
        from helpers.render import mask_to_rle

        self.rles[frame_idx] = {i: mask_to_rle(m) for i, m in masks.items()}

    def __getitem__(self, frame_idx: int) -> dict[int, np.ndarray]:
        from helpers.render import rle_to_mask

        return {i: rle_to_mask(r) for i, r in self.rles[frame_idx].items()}

    def __iter__(self):
        return iter(self.rles)

    def __len__(self) -> int:
        return len(self.rles)


@dataclass
class TrackResult:
    masks: Mapping[int, dict[int, np.ndarray]]  # frame -> id -> bool [H,W]
    labels: dict[int, str]
    scores: dict[int, float]
    video_path: Path | None
    json_path: Path | None
    fps: float
    num_frames: int
    width: int = 0
    height: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return sorted(self.labels)


@dataclass
class _Options:
    detect_every: int
    prompt_type: str
    iou_threshold: float
    box_iou_threshold: float
    offload: bool


# --------------------------------------------------------------------------- tracking


def _chunk_folder(frames, first: int, end: int, root: Path) -> Path:
    """A folder whose 00000.jpg.. are frames first..end-1 (links, or copies if links fail)."""
    if first == 0 and end == frames.num_frames:
        return Path(frames.frame_dir)
    sub = root / f"chunk_{first:06d}_{end:06d}"
    shutil.rmtree(sub, ignore_errors=True)
    sub.mkdir(parents=True)
    for k, g in enumerate(range(first, end)):
        src = Path(frames.frame_paths[g]).resolve()
        dst = sub / f"{k:05d}.jpg"
        try:
            os.symlink(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    return sub


def _pack(masks: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    return {i: np.packbits(m, axis=None) for i, m in masks.items()}


def _unpack(packed: dict[int, np.ndarray], h: int, w: int) -> dict[int, np.ndarray]:
    return {i: np.unpackbits(p, count=h * w).reshape(h, w).view(bool) for i, p in packed.items()}


def _run_chunk(tracker, frames, start, end, carried, book, detect_fn, opts, bar, root):
    """Track frames start..end-1. Returns ({frame: {id: bit-packed mask}}, {id: mask} of the
    last frame); ``book`` is updated in place. Packing keeps a chunk's masks 8x smaller."""
    from helpers import media

    first = start - 1 if carried else start
    folder = _chunk_folder(frames, first, end, root)
    out: dict[int, dict[int, np.ndarray]] = {}
    last: dict[int, np.ndarray] = {}  # masks on the latest frame produced
    try:
        state = _open(tracker, folder, opts.offload)
        has_objects = False
        if carried:
            _prompt(tracker, state, 0, [(i, "mask", m) for i, m in carried.items()])
            has_objects = True
        keys = sorted({start} | {g for g in range(start, end) if g % opts.detect_every == 0})
        nxt = start
        for k in [*keys, None]:
            stop = end - 1 if k is None else k
            if nxt <= stop:
                if has_objects:
                    for t, last in _propagate(tracker, state, nxt - first, stop - first):
                        out[t + first] = _pack(last)
                        book.observe(t + first, last)
                        bar.update(1)
                else:
                    for g in range(nxt, stop + 1):
                        out[g] = {}
                        bar.update(1)
                nxt = stop + 1
            if k is None:
                break
            image = media.read_frame(frames, k)
            dets = detect_fn(image)
            if len(dets) == 0:
                continue
            boxes = np.asarray(dets.xyxy, dtype=np.float32).reshape(-1, 4)
            names = dets.data.get("class_name") if dets.data else None
            labels = [str(x) for x in names] if names is not None else ["object"] * len(dets)
            conf = dets.confidence if dets.confidence is not None else np.ones(len(dets))
            det_masks = dets.mask if dets.mask is not None else _image_masks(tracker, image, boxes)
            if opts.prompt_type == "mask" and det_masks is None:
                raise InputError(
                    "prompt_type='mask' needs masks for the detections; the transformers backend "
                    "has no image path here: use prompt_type='box' or the sam2 backend."
                )
            ids, to_prompt = book.assign(
                last,
                boxes,
                labels,
                np.asarray(conf, dtype=np.float32),
                det_masks,
                iou_threshold=opts.iou_threshold,
                box_iou_threshold=opts.box_iou_threshold,
            )
            prompts = []
            for j in to_prompt:
                m = det_masks[j] if det_masks is not None else None
                if opts.prompt_type == "mask" and m is not None and m.any():
                    prompts.append((ids[j], "mask", m))
                elif opts.prompt_type == "point":
                    prompts.append((ids[j], "point", _click_point(boxes[j], m)))
                else:
                    prompts.append((ids[j], "box", boxes[j]))
            if prompts:
                last = _prompt(tracker, state, k - first, prompts)
                out[k] = _pack(last)
                book.observe(k, last)
                has_objects = True
    finally:
        if folder != Path(frames.frame_dir):
            shutil.rmtree(folder, ignore_errors=True)
    return out, last


def _is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.cuda.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower()
    )


def _track_frames(tracker, frames, detect_fn, opts, chunk_size, book, bar, root):
    """Yields (frame, {id: mask}) for every frame, chunk by chunk; retries a chunk on CUDA OOM
    with offloading on, then with half the chunk size, then raises InputError with advice."""
    import torch

    n = frames.num_frames
    start, carried = 0, {}
    while start < n:
        end = min(start + chunk_size, n)
        trial = book.copy()
        try:
            with _quiet_sam2(), _autocast(tracker), torch.inference_mode():
                out, last = _run_chunk(
                    tracker, frames, start, end, carried, trial, detect_fn, opts, bar, root
                )
        except Exception as e:
            if not _is_oom(e):
                raise
            out = None  # handled below, once the traceback (and its tensors) is released
        if out is None:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            bar.n = start
            bar.refresh()
            if not opts.offload:
                opts.offload = True
                print(f"CUDA out of memory at frame {start}; retrying with offload=True.")
            elif chunk_size > 16:
                chunk_size //= 2
                print(
                    f"CUDA out of memory at frame {start}; retrying with chunk_size={chunk_size}."
                )
            else:
                raise InputError(
                    "CUDA ran out of memory while tracking, even with offloading and "
                    f"chunk_size={chunk_size}. Use a smaller model (size='tiny'), downscale the "
                    "video (max_side=720 or less), track fewer objects (a narrower prompt or a "
                    "higher box_threshold), or free GPU memory (restart the runtime)."
                )
            continue
        book.__dict__.update(trial.__dict__)
        carried = {i: m for i, m in last.items() if m.any()}
        for g in range(start, end):
            yield g, _unpack(out.pop(g), frames.height, frames.width)
        start = end


def _frame_detections(masks: dict[int, np.ndarray], book: IdBook, label_ids: dict[str, int]):
    import supervision as sv

    ids = [i for i, m in masks.items() if m.any()]
    if not ids:
        return sv.Detections.empty()
    labels = [book.labels.get(i, "object") for i in ids]
    return sv.Detections(
        xyxy=np.stack([mask_box(masks[i]) for i in ids]).astype(np.float32),
        mask=np.stack([masks[i] for i in ids]),
        confidence=np.array([book.scores.get(i, 0.0) for i in ids], dtype=np.float32),
        class_id=np.array([label_ids.setdefault(s, len(label_ids)) for s in labels], dtype=int),
        tracker_id=np.array(ids, dtype=int),
        data={"class_name": np.array(labels, dtype=str)},
    )


def track_video(
    source,
    prompt: str,
    detector,
    tracker: VideoTracker,
    out_dir,
    *,
    detect_every: int = 30,
    prompt_type: str = "box",
    box_threshold: float = 0.35,
    text_threshold: float = 0.25,
    iou_threshold: float = 0.5,
    chunk_size: int = 200,
    offload: bool = True,
    max_frames: int | None = None,
    render: bool = True,
    max_side: int | None = None,
    box_iou_threshold: float = 0.3,
    frame_dir=None,
    detect_fn: Callable[[np.ndarray], Any] | None = None,
    video_name: str = "tracked.mp4",
) -> TrackResult:
    """Segment and track every object ``prompt`` names through a video.

    ``source``: a video file or a folder of numbered frames. Detection (``detector``,
    a ``detect.Detector``) runs on the first frame of each chunk and every ``detect_every``
    frames; SAM 2 (``tracker``) propagates masks in between. ``prompt_type``: how detections
    prompt SAM 2 ("box", "point" = one positive click inside the object, "mask"). Writes
    ``tracked.mp4`` (annotated, if ``render``) and ``tracks.json`` into ``out_dir``.
    ``detect_fn(image) -> sv.Detections`` replaces the detector when given.
    """
    import time

    from tqdm.auto import tqdm

    from helpers import media
    from helpers import render as rnd
    from helpers.files import atomic_write_json

    if prompt_type not in PROMPT_TYPES:
        raise InputError(f"prompt_type must be one of {list(PROMPT_TYPES)}, got {prompt_type!r}.")
    if int(detect_every) < 1:
        raise InputError(f"detect_every must be >= 1 frame, got {detect_every}.")
    if int(chunk_size) < 2:
        raise InputError(f"chunk_size must be >= 2 frames, got {chunk_size}.")
    for name, v in (("iou_threshold", iou_threshold), ("box_iou_threshold", box_iou_threshold)):
        if not 0 < float(v) <= 1:
            raise InputError(f"{name} must be in (0, 1], got {v}.")
    if not isinstance(tracker, VideoTracker):
        raise InputError("tracker must come from helpers.track.load_video_tracker().")
    if detect_fn is None:
        from helpers import detect as det

        if detector is None:
            raise InputError("No detector given: pass detect.load_detector(...) as `detector`.")
        det.normalize_prompt(prompt)  # empty prompt -> InputError before any work

        def detect_fn(image):
            return det.detect(
                detector,
                image,
                prompt,
                box_threshold=box_threshold,
                text_threshold=text_threshold,
            )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    own_tmp = frame_dir is None
    root = Path(tempfile.mkdtemp(prefix="track_")) if own_tmp else Path(frame_dir)
    try:
        frames = media.video_to_frames(
            source, root / "frames", max_frames=max_frames, max_side=max_side
        )
        timings["decode_s"] = time.perf_counter() - t0
        opts = _Options(int(detect_every), prompt_type, iou_threshold, box_iou_threshold, offload)
        book = IdBook()
        store = MaskStore()
        records: list[dict] = []
        label_ids: dict[str, int] = {}
        bar = tqdm(total=frames.num_frames, desc="tracking", unit="frame")
        t1 = time.perf_counter()

        def annotated() -> Iterator[np.ndarray]:
            for g, masks in _track_frames(
                tracker, frames, detect_fn, opts, int(chunk_size), book, bar, root
            ):
                store.put(g, masks)
                dets = _frame_detections(masks, book, label_ids)
                objs = rnd.detections_to_records(dets) if len(dets) else []
                records.append({"frame": g, "objects": objs})
                if render:
                    yield rnd.annotate(media.read_frame(frames, g), dets)
                else:
                    yield None

        video_path = None
        try:
            if render:
                video_path = media.write_video(annotated(), out_dir / video_name, fps=frames.fps)
            else:
                for _ in annotated():
                    pass
        finally:
            bar.close()
        timings["track_s"] = time.perf_counter() - t1
        timings["per_frame_s"] = timings["track_s"] / max(1, frames.num_frames)
        doc = {
            "video": {
                "fps": frames.fps,
                "width": frames.width,
                "height": frames.height,
                "num_frames": frames.num_frames,
            },
            "prompt": prompt,
            "settings": {
                "detect_every": int(detect_every),
                "prompt_type": prompt_type,
                "iou_threshold": iou_threshold,
                "chunk_size": int(chunk_size),
                "tracker": f"{tracker.backend}:{tracker.size}",
            },
            "objects": {
                str(i): {
                    "label": book.labels[i],
                    "score": round(book.scores.get(i, 0.0), 4),
                    "frames": sum(1 for r in records for o in r["objects"] if o["id"] == i),
                }
                for i in sorted(book.labels)
            },
            "frames": records,
        }
        json_path = atomic_write_json(out_dir / "tracks.json", doc, indent=None)
    finally:
        if own_tmp:
            shutil.rmtree(root, ignore_errors=True)
    return TrackResult(
        masks=store,
        labels=dict(book.labels),
        scores=dict(book.scores),
        video_path=video_path,
        json_path=json_path,
        fps=frames.fps,
        num_frames=frames.num_frames,
        width=frames.width,
        height=frames.height,
        timings=timings,
    )
