"""Boxes -> masks with SAM 2.1 (``sam2`` package; transformers ``Sam2Model`` as the alternate),
mask cleanup, a CLIPSeg text -> mask route and CLIP re-scoring of SAM's candidate masks.

Masks are bool ``np.ndarray`` [N,H,W] at the size of the image given.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from helpers.chatter import without_jit_script_warning
from helpers.errors import InputError
from helpers.media import check_rgb_array

SAM2_SIZES = {"tiny", "small", "base_plus", "large"}
SAM2_HUB_IDS = {
    "tiny": "facebook/sam2.1-hiera-tiny",
    "small": "facebook/sam2.1-hiera-small",
    "base_plus": "facebook/sam2.1-hiera-base-plus",
    "large": "facebook/sam2.1-hiera-large",
}
SAM2_CONFIGS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
# Hiera trunk shapes of each size, for random transformers Sam2 models (no download).
_HIERA = {
    "tiny": dict(
        hidden_size=96,
        blocks_per_stage=[1, 2, 7, 2],
        embed_dim_per_stage=[96, 192, 384, 768],
        num_attention_heads_per_stage=[1, 2, 4, 8],
        global_attention_blocks=[5, 7, 9],
    ),
    "small": dict(
        hidden_size=96,
        blocks_per_stage=[1, 2, 11, 2],
        embed_dim_per_stage=[96, 192, 384, 768],
        num_attention_heads_per_stage=[1, 2, 4, 8],
        global_attention_blocks=[7, 10, 13],
    ),
    "base_plus": dict(
        hidden_size=112,
        num_attention_heads=2,
        blocks_per_stage=[2, 3, 16, 3],
        embed_dim_per_stage=[112, 224, 448, 896],
        num_attention_heads_per_stage=[2, 4, 8, 16],
        global_attention_blocks=[12, 16, 20],
        window_positional_embedding_background_size=[14, 14],
    ),
    "large": dict(
        hidden_size=144,
        num_attention_heads=2,
        blocks_per_stage=[2, 6, 36, 4],
        embed_dim_per_stage=[144, 288, 576, 1152],
        num_attention_heads_per_stage=[2, 4, 8, 16],
        global_attention_blocks=[23, 33, 43],
        window_size_per_stage=[8, 4, 16, 8],
        window_positional_embedding_background_size=[7, 7],
    ),
}
_SIZE_ALIASES = {"t": "tiny", "s": "small", "b+": "base_plus", "base-plus": "base_plus",
                 "base": "base_plus", "l": "large"}  # fmt: skip


@dataclass
class Segmenter:
    backend: str  # "sam2" | "transformers"
    predictor: Any  # SAM2ImagePredictor, or transformers Sam2Model
    processor: Any  # Sam2Processor for the transformers backend, else None
    device: Any
    size: str
    image_size: int = 1024

    @property
    def model(self):
        return self.predictor if self.backend == "transformers" else self.predictor.model


# ---------------------------------------------------------------- precision


def amp_dtype(device):
    """bf16 autocast dtype on CUDA GPUs with native bf16 (Ampere+), else None (fp32)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return None


def inference_context(device):
    """``torch.inference_mode`` + bf16 autocast (and TF32) where the GPU supports it."""
    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    dtype = amp_dtype(device)
    if dtype is not None:
        from helpers.runtime import enable_fast_matmul

        enable_fast_matmul()
        stack.enter_context(torch.autocast(device_type="cuda", dtype=dtype))
    return stack


def _device(device):
    from helpers.runtime import pick_device

    return pick_device(str(device)) if device is not None else pick_device()


# ---------------------------------------------------------------- loading


def normalize_size(size: str) -> str:
    s = str(size).strip().lower()
    s = _SIZE_ALIASES.get(s, s)
    if s not in SAM2_SIZES:
        raise InputError(
            f"unknown SAM 2 size {size!r}; choose one of {sorted(SAM2_SIZES)} "
            "(tiny is fastest, large most accurate)."
        )
    return s


def _check_image_size(image_size) -> int | None:
    if image_size is None:
        return None
    if not isinstance(image_size, int) or image_size < 128 or image_size % 32:
        raise InputError(
            f"image_size must be a multiple of 32 and at least 128 (SAM 2 uses 1024), got {image_size!r}."
        )
    return image_size


def load_segmenter(
    size: str = "tiny",
    backend: str = "sam2",
    device=None,
    random_weights: bool = False,
    image_size: int | None = None,
) -> Segmenter:
    """SAM 2.1 image predictor of ``size`` (tiny/small/base_plus/large).

    ``backend="sam2"`` uses Meta's package, ``"transformers"`` Hugging Face's ``Sam2Model``.
    ``random_weights=True`` builds the architecture without downloading a checkpoint (tests,
    smoke runs, speed benchmarks). ``image_size`` (multiple of 32) overrides the 1024 px input,
    e.g. 256 for fast CPU tests.
    """
    size = normalize_size(size)
    image_size = _check_image_size(image_size)
    if backend not in ("sam2", "transformers"):
        raise InputError(f"unknown segmenter backend {backend!r}; use 'sam2' or 'transformers'.")
    dev = _device(device)
    if backend == "sam2":
        return _load_sam2(size, dev, random_weights, image_size)
    return _load_hf_sam2(size, dev, random_weights, image_size)


@without_jit_script_warning  # sam2 scripts its transforms: torch's FutureWarning
def _load_sam2(size, dev, random_weights, image_size) -> Segmenter:
    try:
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor
    except ImportError as e:
        from helpers.install import sam2_missing_message

        raise InputError(sam2_missing_message("use backend='transformers'")) from e
    overrides = [f"++model.image_size={image_size}"] if image_size else []
    if random_weights:
        model = build_sam2(
            SAM2_CONFIGS[size], None, device=str(dev), hydra_overrides_extra=overrides
        )
        predictor = SAM2ImagePredictor(model)
    else:
        from helpers.detect import hub_local_only

        local_only = hub_local_only(SAM2_HUB_IDS[size])  # fails fast when the hub is unreachable
        try:
            if local_only:  # sam2's own loader always asks the hub first
                predictor = SAM2ImagePredictor(
                    _build_sam2_cached(SAM2_HUB_IDS[size], str(dev), overrides)
                )
            else:
                predictor = SAM2ImagePredictor.from_pretrained(
                    SAM2_HUB_IDS[size], device=str(dev), hydra_overrides_extra=overrides
                )
        except Exception as e:  # hub/network errors come in many types
            raise _weights_error(SAM2_HUB_IDS[size], e) from e
    res = int(predictor.model.image_size)
    # The predictor hard-codes the feature-map sizes of a 1024 px input.
    predictor._bb_feat_sizes = [(res // 4, res // 4), (res // 8, res // 8), (res // 16, res // 16)]
    return Segmenter("sam2", predictor, None, dev, size, res)


def _build_sam2_cached(repo: str, device: str, overrides: list[str]):
    """A SAM 2 model from the checkpoint in the local hub cache (no network)."""
    from huggingface_hub import hf_hub_download
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES, build_sam2

    config_name, checkpoint_name = HF_MODEL_ID_TO_FILENAMES[repo]
    ckpt = hf_hub_download(repo_id=repo, filename=checkpoint_name, local_files_only=True)
    return build_sam2(config_name, ckpt, device=device, hydra_overrides_extra=overrides)


def _weights_error(repo: str, e: Exception, hint: str = "random_weights=True") -> InputError:
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return InputError(
        f"the weights {repo} could not be fetched from the Hugging Face hub ({first}). Check the "
        f"internet connection (or HF_HUB_OFFLINE), or use {hint} for a smoke test."
    )


def hf_sam2_config(size: str = "tiny", image_size: int = 1024, toy: bool = False):
    """A transformers ``Sam2Config`` for ``size`` at ``image_size`` (``toy``: a very small net)."""
    from transformers import Sam2Config

    if toy:
        trunk = dict(
            hidden_size=16,
            blocks_per_stage=[1, 1, 2, 1],
            embed_dim_per_stage=[16, 32, 64, 128],
            num_attention_heads_per_stage=[1, 1, 2, 2],
            global_attention_blocks=[3],  # not a stage's first (pooling) block
        )
        hidden = 32
    else:
        trunk = dict(_HIERA[normalize_size(size)])
        hidden = 256
    trunk["image_size"] = [image_size, image_size]
    dims = trunk["embed_dim_per_stage"]
    feats = [[image_size // s, image_size // s] for s in (4, 8, 16)]
    vision = dict(
        backbone_config={"model_type": "sam2_hiera_det_model", **trunk},
        backbone_channel_list=list(reversed(dims)),
        backbone_feature_sizes=feats,
        fpn_hidden_size=hidden,
    )
    prompt = dict(hidden_size=hidden, image_size=image_size, patch_size=16)
    decoder = dict(hidden_size=hidden)
    if toy:
        decoder.update(mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32)
    return Sam2Config(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )


def _load_hf_sam2(size, dev, random_weights, image_size) -> Segmenter:
    from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

    if random_weights:
        res = image_size or 1024
        model = Sam2Model(hf_sam2_config(size, res))
        image_processor = Sam2ImageProcessor(size={"height": res, "width": res})
        processor = Sam2Processor(image_processor=image_processor)
    else:
        if image_size not in (None, 1024):
            raise InputError(
                "image_size can only be changed with random weights on the transformers backend."
            )
        res = 1024
        from helpers.detect import hub_local_only

        local = {"local_files_only": hub_local_only(SAM2_HUB_IDS[size])}
        try:
            model = Sam2Model.from_pretrained(SAM2_HUB_IDS[size], **local)
            processor = Sam2Processor.from_pretrained(SAM2_HUB_IDS[size], **local)
        except (OSError, ValueError) as e:
            raise _weights_error(SAM2_HUB_IDS[size], e) from e
    model = model.to(dev).eval()
    return Segmenter("transformers", model, processor, dev, size, res)


def toy_hf_segmenter(image_size: int = 128, device=None) -> Segmenter:
    """A very small random-weight transformers Sam2 (tests)."""
    from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

    image_size = _check_image_size(image_size)
    model = Sam2Model(hf_sam2_config(image_size=image_size, toy=True))
    processor = Sam2Processor(
        image_processor=Sam2ImageProcessor(size={"height": image_size, "width": image_size})
    )
    dev = _device(device)
    return Segmenter("transformers", model.to(dev).eval(), processor, dev, "toy", image_size)


# ---------------------------------------------------------------- boxes -> masks


def _check_boxes(xyxy, H: int, W: int) -> np.ndarray:
    boxes = np.asarray(xyxy, dtype=np.float32)
    if boxes.size == 0:
        return np.zeros((0, 4), np.float32)
    if boxes.ndim == 1 and boxes.shape[0] == 4:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputError(f"boxes must be an [N,4] array of x0,y0,x1,y1; got shape {boxes.shape}.")
    if not np.isfinite(boxes).all():
        raise InputError("boxes contain NaN or infinite values.")
    boxes = boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, W)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, H)
    return boxes


def segment_boxes(
    segmenter: Segmenter,
    image: np.ndarray,
    xyxy,
    *,
    multimask: bool = False,
    out_size: tuple[int, int] | None = None,
):
    """Masks for all boxes of one image in one call.

    Returns ``(masks bool [N,H,W], scores float32 [N], candidates)``; with ``multimask`` the
    candidates are ``(masks [N,3,H,W], scores [N,3])`` and the best-scoring one is picked,
    otherwise ``candidates`` is None. No boxes -> ``[0,H,W]`` masks. ``out_size=(H, W)``
    gives masks at that size (e.g. the full image when ``image`` is a downscaled copy): SAM's
    logits are upsampled to it and thresholded there, as SAM 2 does for the original size,
    rather than upsampling a thresholded mask.
    """
    image = check_rgb_array(image)
    H, W = image.shape[:2]
    boxes = _check_boxes(xyxy, H, W)
    n = len(boxes)
    if out_size is not None:
        H, W = int(out_size[0]), int(out_size[1])
    if n == 0:
        empty = (np.zeros((0, 3, H, W), bool), np.zeros((0, 3), np.float32)) if multimask else None
        return np.zeros((0, H, W), bool), np.zeros((0,), np.float32), empty
    if segmenter.backend == "sam2":
        masks, scores = _predict_sam2(segmenter, image, boxes, multimask, out_size)
    elif segmenter.backend == "transformers":
        masks, scores = _predict_hf(segmenter, image, boxes, multimask, out_size)
    else:
        raise InputError(f"unknown segmenter backend {segmenter.backend!r}.")
    # masks [N,C,H,W] bool, scores [N,C]
    best = scores.argmax(axis=1)
    picked = masks[np.arange(n), best]
    picked_scores = scores[np.arange(n), best].astype(np.float32)
    candidates = (masks, scores.astype(np.float32)) if multimask else None
    return picked, picked_scores, candidates


def _predict_sam2(segmenter, image, boxes, multimask, out_size=None):
    pred = segmenter.predictor
    with inference_context(segmenter.device):
        pred.set_image(image)
        masks, scores, low_res = pred.predict(box=boxes, multimask_output=multimask)
    scores = np.asarray(scores, dtype=np.float32)
    if out_size is not None:
        masks = upsample_logits(low_res, out_size) > 0
    masks = np.asarray(masks)
    if masks.ndim == 3:  # one box: [C,H,W]
        masks, scores = masks[None], scores[None]
    return masks > 0, scores.reshape(masks.shape[0], masks.shape[1])


def upsample_logits(logits, size: tuple[int, int]) -> np.ndarray:
    """Mask logits [..., h, w] resized bilinearly to ``size=(H, W)`` (float32 numpy)."""
    import torch

    t = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    lead = t.shape[:-2]
    t = t.reshape(-1, 1, *t.shape[-2:])
    out = torch.nn.functional.interpolate(
        t, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False
    )
    return out.reshape(*lead, int(size[0]), int(size[1])).numpy()


def _predict_hf(segmenter, image, boxes, multimask, out_size=None):
    import torch

    proc, model = segmenter.processor, segmenter.predictor
    inputs = proc(images=image, input_boxes=[boxes.tolist()], return_tensors="pt")
    original_sizes = inputs["original_sizes"]
    dtype = next(model.parameters()).dtype
    feed = {
        k: (v.to(segmenter.device, dtype) if k == "pixel_values" else v.to(segmenter.device))
        for k, v in inputs.items()
        if k in ("pixel_values", "input_boxes")
    }
    with inference_context(segmenter.device):
        out = model(**feed, multimask_output=multimask)
    if out_size is not None:
        original_sizes = torch.tensor([[int(out_size[0]), int(out_size[1])]])
    masks = proc.post_process_masks(out.pred_masks.float().cpu(), original_sizes.cpu())[0]
    masks = torch.as_tensor(masks).bool().numpy()  # [N,C,H,W]
    scores = out.iou_scores[0].float().cpu().numpy()  # [N,C]
    return masks, scores.reshape(masks.shape[0], masks.shape[1])


# ---------------------------------------------------------------- cleanup


def clean_masks(masks, min_hole_area=64, min_sprinkle_area=64) -> np.ndarray:
    """Fill holes smaller than ``min_hole_area`` px and drop islands smaller than
    ``min_sprinkle_area`` px in each mask of ``[N,H,W]`` (or one ``[H,W]``).

    Each threshold is one number for every mask or one per mask (``[N]``, e.g. from
    :func:`scaled_clean_areas`, so a large object loses larger specks than a small one)."""
    import cv2

    masks = np.asarray(masks)
    single = masks.ndim == 2
    if single:
        masks = masks[None]
    if masks.ndim != 3:
        raise InputError(f"masks must be [N,H,W] or [H,W]; got shape {masks.shape}.")
    holes_px = _per_mask(min_hole_area, len(masks), "min_hole_area")
    specks_px = _per_mask(min_sprinkle_area, len(masks), "min_sprinkle_area")
    out = masks.astype(bool).copy()
    for i, m in enumerate(out):
        if not m.any():
            continue
        min_sprinkle, min_hole = specks_px[i], holes_px[i]
        if min_sprinkle > 0:
            n, lab, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
            small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_sprinkle) + 1
            if len(small) and len(small) < n - 1:  # never delete the whole mask
                m[np.isin(lab, small)] = False
        if min_hole > 0:
            bg = (~m).astype(np.uint8)
            n, lab, stats, _ = cv2.connectedComponentsWithStats(bg, connectivity=4)
            x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
            w, h = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
            inner = (x > 0) & (y > 0) & (x + w < m.shape[1]) & (y + h < m.shape[0])
            holes = np.flatnonzero(inner[1:] & (stats[1:, cv2.CC_STAT_AREA] < min_hole)) + 1
            if len(holes):
                m[np.isin(lab, holes)] = True
        out[i] = m
    return out[0] if single else out


def _per_mask(value, n: int, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.size == 1:
        v = np.full((n,), float(v[0]))
    if v.size != n:
        raise InputError(f"{name} must be one number or one per mask ({n}); got {v.size}.")
    if not np.isfinite(v).all() or (v < 0).any():
        raise InputError(f"{name} must be >= 0.")
    return v


def scaled_clean_areas(masks, fraction: float = 0.01, floor: float = 16) -> np.ndarray:
    """Per-mask cleanup threshold in px: ``max(floor, fraction * mask area)``.

    A 500x500 px object then loses specks / gains holes below 2,500 px, a 20x20 px one only
    below ``floor`` — a fixed threshold is either too small for big objects or eats small
    ones. ``fraction=0`` gives the fixed ``floor`` for every mask."""
    if not 0.0 <= float(fraction) <= 1.0:
        raise InputError(f"the cleanup fraction must be in [0, 1], got {fraction}.")
    if float(floor) < 0:
        raise InputError(f"the cleanup floor must be >= 0 px, got {floor}.")
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    areas = masks.reshape(len(masks), -1).astype(bool).sum(axis=1)
    return np.maximum(float(floor), float(fraction) * areas).round()


# ---------------------------------------------------------------- choosing among candidates

CRITERIA = ("sam", "clip", "compact", "box")


@dataclass(frozen=True)
class MaskWeights:
    """Weights of the criteria that pick one of SAM's candidate masks (see :func:`mask_criteria`).

    ``score = sam * SAM's IoU estimate + clip * CLIP's preference + compact * compactness
    + box * IoU with the prompt box``; every criterion lies in [0, 1]. The default leans on
    SAM's own estimate and breaks near-ties with the shape: a mask that fills its box in one
    solid piece wins over a sliver or a scatter of fragments."""

    sam: float = 1.0
    clip: float = 0.0
    compact: float = 0.25
    box: float = 0.25

    def as_dict(self) -> dict:
        return {k: float(getattr(self, k)) for k in CRITERIA}


def parse_weights(text) -> MaskWeights:
    """``"sam=1,clip=0.5,compact=0.25,box=0.25"`` (missing names: 0) -> :class:`MaskWeights`.

    A ``MaskWeights`` or a dict is accepted too; ``"default"`` gives the defaults."""
    if isinstance(text, MaskWeights):
        return text
    if isinstance(text, dict):
        items = list(text.items())
    else:
        text = str(text).strip()
        if text.lower() in ("default", "auto"):
            return MaskWeights()
        items = []
        for part in text.replace(";", ",").split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise InputError(
                    f"mask weights look like 'sam=1,clip=0.5,compact=0.25,box=0.25'; got {part!r}."
                )
            items.append((name, value))
    out = dict.fromkeys(CRITERIA, 0.0)
    for name, value in items:
        key = str(name).strip().lower()
        if key not in CRITERIA:
            raise InputError(f"unknown mask criterion {name!r}; use {', '.join(CRITERIA)}.")
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise InputError(f"the weight of {key} must be a number, got {value!r}.") from None
        if not np.isfinite(out[key]) or out[key] < 0:
            raise InputError(f"the weight of {key} must be >= 0, got {value!r}.")
    if not any(out.values()):
        raise InputError("at least one mask weight must be > 0.")
    return MaskWeights(**out)


def compactness(mask) -> float:
    """Largest connected piece's area / the convex hull area of the whole mask, in [0, 1]:
    1 for a solid convex blob, low for slivers, rings and scattered fragments."""
    import cv2

    m = np.asarray(mask).astype(np.uint8)
    area = int(m.sum())
    if area == 0:
        return 0.0
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max())
    ys, xs = np.nonzero(m)
    pts = np.stack([xs, ys], axis=1).astype(np.int32)
    # pixel centres -> pixel squares: grow the hull by half a pixel each way
    corners = np.concatenate([pts, pts + (1, 0), pts + (0, 1), pts + (1, 1)])
    hull = cv2.convexHull(corners)
    hull_area = float(cv2.contourArea(hull))
    return float(min(1.0, largest / hull_area)) if hull_area > 0 else 1.0


def box_iou(mask, box) -> float:
    """IoU of a mask with the filled rectangle of ``box`` (x0, y0, x1, y1) at the mask's size."""
    m = np.asarray(mask).astype(bool)
    H, W = m.shape
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = int(np.clip(np.floor(x0), 0, W)), int(np.clip(np.ceil(x1), 0, W))
    y0, y1 = int(np.clip(np.floor(y0), 0, H)), int(np.clip(np.ceil(y1), 0, H))
    rect = max(0, x1 - x0) * max(0, y1 - y0)
    inside = int(m[y0:y1, x0:x1].sum()) if rect else 0
    union = rect + int(m.sum()) - inside
    return inside / union if union else 0.0


def mask_criteria(masks, sam_scores, *, box=None, clip_sims=None) -> dict[str, np.ndarray]:
    """Each criterion ``[K]`` in [0, 1] for the ``K`` candidate masks of one object.

    ``sam``: SAM's predicted IoU (clipped to [0, 1]). ``clip``: CLIP's probability that each
    candidate is the phrase's best crop (softmax of 100 x cosine similarity, CLIP's own logit
    scale; 0 without ``clip_sims``). ``compact``: :func:`compactness`. ``box``: :func:`box_iou`
    with the prompt box (0 without ``box``)."""
    masks = np.asarray(masks).astype(bool)
    if masks.ndim == 2:
        masks = masks[None]
    k = len(masks)
    sam = np.clip(np.asarray(sam_scores, np.float32).reshape(-1), 0.0, 1.0)
    if len(sam) != k:
        raise InputError(f"got {len(sam)} SAM scores for {k} candidate masks.")
    if clip_sims is not None:
        sims = np.asarray(clip_sims, np.float64).reshape(-1)
        logits = 100.0 * np.where(sims < -0.5, -np.inf, sims)  # -1 marks an empty mask
        if np.isfinite(logits).any():
            e = np.exp(logits - logits[np.isfinite(logits)].max())
            clip = (e / e.sum()).astype(np.float32)
        else:
            clip = np.zeros((k,), np.float32)
    else:
        clip = np.zeros((k,), np.float32)
    compact = np.array([compactness(m) for m in masks], np.float32)
    fit = np.array([box_iou(m, box) if box is not None else 0.0 for m in masks], np.float32)
    return {"sam": sam, "clip": clip, "compact": compact, "box": fit}


def choose_mask(masks, sam_scores, weights=None, *, box=None, clip_sims=None) -> tuple[int, dict]:
    """Index of the best candidate by the weighted sum of :func:`mask_criteria`, and the
    breakdown ``{"picked", "total": [K], "weights", <criterion>: [K]}`` (JSON-ready lists).

    An empty candidate never wins unless all are empty."""
    w = parse_weights(weights) if weights is not None else MaskWeights()
    crit = mask_criteria(masks, sam_scores, box=box, clip_sims=clip_sims)
    total = sum(getattr(w, name) * crit[name] for name in CRITERIA)
    empty = ~np.asarray(masks).astype(bool).reshape(len(total), -1).any(axis=1)
    if not empty.all():
        total = np.where(empty, -np.inf, total)
    best = int(np.argmax(total))
    info = {name: [round(float(v), 4) for v in crit[name]] for name in CRITERIA}
    info["total"] = [round(float(v), 4) if np.isfinite(v) else None for v in total]
    info["picked"] = best
    info["weights"] = w.as_dict()
    return best, info


# ---------------------------------------------------------------- CLIPSeg / CLIP


@dataclass
class TextImageModel:
    """A CLIPSeg or CLIP model with its processor."""

    kind: str  # "clipseg" | "clip"
    model: Any
    processor: Any
    device: Any
    name: str


def load_clipseg(device=None, name: str = "CIDAS/clipseg-rd64-refined") -> TextImageModel:
    """CLIPSeg (text -> coarse mask) from the Hugging Face hub."""
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    return _from_hub("clipseg", CLIPSegForImageSegmentation, CLIPSegProcessor, name, device)


def _from_hub(kind: str, model_cls, processor_cls, name: str, device) -> TextImageModel:
    from helpers.detect import hub_local_only

    local = {"local_files_only": hub_local_only(name)}  # fails fast when the hub is unreachable
    try:
        processor = processor_cls.from_pretrained(name, **local)
        model = model_cls.from_pretrained(name, **local)
    except (OSError, ValueError) as e:
        raise _weights_error(name, e, f"random_{kind}()") from e
    dev = _device(device)
    return TextImageModel(kind, model.to(dev).eval(), processor, dev, name)


def _toy_clip_parts(layers: int):
    """A toy CLIP tokenizer with matching tiny text and vision config dicts (64 px images)."""
    from helpers.detect import toy_clip_tokenizer

    tok = toy_clip_tokenizer(16)
    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": layers,
              "num_attention_heads": 2}  # fmt: skip
    text = {
        **common,
        "vocab_size": len(tok),
        "max_position_embeddings": 16,
        "bos_token_id": len(tok) - 2,
        "eos_token_id": len(tok) - 1,
        "pad_token_id": len(tok) - 1,
    }
    return tok, text, {**common, "image_size": 64, "patch_size": 16}


def random_clipseg(device=None, seed: int = 0) -> TextImageModel:
    """A tiny random-weight CLIPSeg (64 px input) for tests."""
    import torch
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        ViTImageProcessor,
    )

    tok, text, vision = _toy_clip_parts(layers=2)
    config = CLIPSegConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=32,
        extract_layers=[1],
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    )
    ip = ViTImageProcessor(size={"height": 64, "width": 64})
    torch.manual_seed(seed)
    dev = _device(device)
    model = CLIPSegForImageSegmentation(config).to(dev).eval()
    return TextImageModel(
        "clipseg", model, CLIPSegProcessor(image_processor=ip, tokenizer=tok), dev, "random"
    )


def _phrases(phrases) -> list[str]:
    from helpers.detect import prompt_phrases

    if isinstance(phrases, str):
        return prompt_phrases(phrases)
    phrases = [str(p).strip() for p in phrases if str(p).strip()]
    if not phrases:
        raise InputError("no phrases given: type what to segment, e.g. 'dog. person.'")
    return phrases


def clipseg_probs(model: TextImageModel, image: np.ndarray, phrases, size=None) -> np.ndarray:
    """CLIPSeg's per-pixel probability ``[P, H, W]`` for each phrase, upsampled (bilinear) to
    ``size`` = (H, W), by default the image's own size."""
    import torch

    image = check_rgb_array(image)
    phrases = _phrases(phrases)
    H, W = size or image.shape[:2]
    inputs = model.processor(
        text=phrases, images=[image] * len(phrases), padding=True, return_tensors="pt"
    )
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    with inference_context(model.device):
        logits = model.model(**inputs).logits
    logits = logits.float().reshape(len(phrases), 1, *logits.shape[-2:])
    probs = torch.nn.functional.interpolate(
        logits.sigmoid(), size=(H, W), mode="bilinear", align_corners=False
    )
    return probs[:, 0].cpu().numpy()


def clipseg_masks(model: TextImageModel, image: np.ndarray, phrases, threshold: float = 0.4):
    """One coarse bool mask ``[P,H,W]`` per phrase (CLIPSeg probabilities >= ``threshold``)."""
    if not 0.0 <= float(threshold) <= 1.0:
        raise InputError(f"threshold must be in [0, 1], got {threshold}.")
    return clipseg_probs(model, image, phrases) >= float(threshold)


def load_clip(device=None, name: str = "openai/clip-vit-base-patch32") -> TextImageModel:
    """CLIP for re-scoring candidate masks against the prompt."""
    from transformers import CLIPModel, CLIPProcessor

    return _from_hub("clip", CLIPModel, CLIPProcessor, name, device)


def random_clip(device=None, seed: int = 0) -> TextImageModel:
    """A tiny random-weight CLIP (64 px input) for tests."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok, text, vision = _toy_clip_parts(layers=1)
    config = CLIPConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=32,
    )
    ip = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    torch.manual_seed(seed)
    dev = _device(device)
    model = CLIPModel(config).to(dev).eval()
    return TextImageModel(
        "clip", model, CLIPProcessor(image_processor=ip, tokenizer=tok), dev, "random"
    )


def mask_crop(image: np.ndarray, mask: np.ndarray, pad: float = 0.1) -> np.ndarray | None:
    """The mask's bounding box (plus ``pad``), with pixels outside the mask blurred and greyed."""
    import cv2

    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    H, W = mask.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    py, px = int((y1 - y0) * pad), int((x1 - x0) * pad)
    y0, y1, x0, x1 = max(0, y0 - py), min(H, y1 + py), max(0, x0 - px), min(W, x1 + px)
    crop = image[y0:y1, x0:x1].astype(np.float32)
    m = mask[y0:y1, x0:x1, None]
    k = max(3, (max(crop.shape[:2]) // 16) | 1)
    background = 0.5 * cv2.GaussianBlur(crop, (k, k), 0) + 0.5 * 127.0
    return np.where(m, crop, background).astype(np.uint8)


def clip_rescore(clip: TextImageModel, image: np.ndarray, candidate_masks, text: str) -> np.ndarray:
    """Cosine similarity ``[K]`` between ``text`` and each candidate mask's crop (empty -> -1)."""
    import torch

    image = check_rgb_array(image)
    masks = np.asarray(candidate_masks).astype(bool)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise InputError(
            f"candidate masks must be [K,H,W] with the image's size {image.shape[:2]}; got {masks.shape}."
        )
    scores = np.full((len(masks),), -1.0, np.float32)
    crops = [mask_crop(image, m) for m in masks]
    idx = [i for i, c in enumerate(crops) if c is not None]
    if not idx:
        return scores
    text = " ".join(_phrases(text)) if isinstance(text, str) else " ".join(_phrases(text))
    inputs = clip.processor(
        text=[text], images=[crops[i] for i in idx], padding=True, return_tensors="pt"
    )
    inputs = {k: v.to(clip.device) for k, v in inputs.items()}
    with inference_context(clip.device):
        out = clip.model(**inputs)
    img = torch.nn.functional.normalize(out.image_embeds.float(), dim=-1)
    txt = torch.nn.functional.normalize(out.text_embeds.float(), dim=-1)
    scores[idx] = (img @ txt.T)[:, 0].cpu().numpy()
    return scores
