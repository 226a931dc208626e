"""Text -> boxes: Grounding DINO or OWLv2 (transformers), prompt normalization, per-label NMS.

``detect`` returns a ``supervision.Detections`` in full-image pixel coordinates with
``class_id`` = index of the prompt phrase and ``data["class_name"]`` = the phrase.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpers.errors import InputError, unit_interval
from helpers.textseg.image_settings import RouteSettings
from helpers.textseg.media import check_rgb_array

DETECTORS = {
    "grounding-dino-tiny": ("grounding-dino", "IDEA-Research/grounding-dino-tiny"),
    "grounding-dino-base": ("grounding-dino", "IDEA-Research/grounding-dino-base"),
    "owlv2": ("owlv2", "google/owlv2-base-patch16-ensemble"),
}

_EMPTY_PROMPT = "type what to segment, e.g. 'dog. person.'"
MAX_PROMPT_TOKENS = 256  # Grounding DINO's text length (max_text_len)
MAX_PROMPT_CHARS = 600  # well inside MAX_PROMPT_TOKENS for ordinary words


@dataclass
class Detector:
    kind: str  # "grounding-dino" | "owlv2"
    model: Any
    processor: Any
    device: Any
    name: str


# ---------------------------------------------------------------- prompts


def prompt_phrases(text: str) -> list[str]:
    """Lowercased phrases of a prompt split on '.', ',', ';' and newlines (no trailing dots)."""
    if not isinstance(text, str):
        raise InputError(f"the prompt must be text, got {type(text).__name__}; {_EMPTY_PROMPT}")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(
            f"the prompt is {len(text):,} characters long; the detector reads at most about "
            f"{MAX_PROMPT_TOKENS} tokens, so keep it under {MAX_PROMPT_CHARS} characters "
            "(a few short phrases, e.g. 'dog. red car')."
        )
    parts = re.split(r"[.,;\n\r]+", text.lower())
    phrases = [" ".join(p.split()) for p in parts]
    phrases = [p for p in phrases if p]
    if not phrases:
        raise InputError(f"the prompt is empty: {_EMPTY_PROMPT}")
    worded = [p for p in phrases if any(ch.isalnum() for ch in p)]  # "!?" names nothing
    if not worded:
        raise InputError(
            f"the prompt {text.strip()[:40]!r} has no words, only punctuation or symbols: "
            f"{_EMPTY_PROMPT}"
        )
    return worded


def normalize_prompt(text: str) -> str:
    """``"Car, the dog on the left"`` -> ``"car. the dog on the left."`` (Grounding DINO's format)."""
    return " ".join(p + "." for p in prompt_phrases(text))


def match_phrase(label: str, phrases: list[str]) -> int | None:
    """Index of the prompt phrase a decoded model label belongs to (None if nothing overlaps).

    Grounding DINO labels are the tokens above ``text_threshold``: a phrase, part of one, several
    merged, or empty. Exact match wins, then the phrase explaining most of the label's words
    (ties: the phrase the label covers best, then the first).
    """
    label = " ".join(label.lower().replace(".", " ").split())
    if not label:
        return None
    if label in phrases:
        return phrases.index(label)
    words = set(label.replace(" ##", "").split())
    best, best_score = None, (0.0, 0.0)
    for i, p in enumerate(phrases):
        pw = set(p.split())
        common = len(words & pw)
        if not common:
            continue
        # most of the label explained first, then most of the phrase covered
        score = (common / max(1, len(words)), common / len(pw))
        if score > best_score:
            best, best_score = i, score
    return best


# ---------------------------------------------------------------- loading


def _device(device):
    from helpers.runtime import pick_device

    return pick_device(str(device)) if device is not None else pick_device()


def _hub_address() -> tuple[str, int]:
    """(host, port) a download from the hub first connects to: the HTTPS proxy if one is set,
    else the hub endpoint (``HF_ENDPOINT``, default huggingface.co)."""
    import os
    from urllib.parse import urlparse

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    u = urlparse(proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return u.hostname or "huggingface.co", u.port or (443 if u.scheme == "https" else 80)


def hub_problem(timeout: float = 3.0) -> str | None:
    """Why the hub (or the proxy) cannot be used, or None when it answers an HTTP request
    within ``timeout`` seconds: a TCP connection must open, and then the answer's headers
    must come (an endpoint that accepts connections and never answers would otherwise hold
    the hub client forever)."""
    import os
    import socket

    try:
        socket.create_connection(_hub_address(), timeout=timeout).close()
    except OSError:
        return "cannot be reached"
    import requests

    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    try:  # a HEAD: only the status line and headers, each read under the timeout
        requests.head(endpoint + "/", timeout=(timeout, timeout), allow_redirects=False).close()
    except requests.exceptions.Timeout:
        return f"accepted the connection but did not answer within {timeout:g} s"
    except requests.exceptions.RequestException as e:
        return f"cannot be reached ({type(e).__name__})"
    return None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers within ``timeout`` seconds (see :func:`hub_problem`)."""
    return hub_problem(timeout) is None


def _in_cache(repo: str) -> bool:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo, local_files_only=True)
    except Exception:  # LocalEntryNotFoundError and friends: not downloaded before
        return False
    return True


def hub_local_only(repo: str) -> bool:
    """Decide, in seconds, how to load ``repo``: False = from the hub as usual, True = from the
    local cache only (the hub cannot be reached but the weights were downloaded before).

    Raises ``InputError`` at once when the hub cannot be reached and the weights are not
    cached, instead of letting the hub client retry for minutes."""
    import os

    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False"):
        return True
    problem = hub_problem()
    if problem is None:
        return False
    if _in_cache(repo):
        return True
    host, port = _hub_address()
    raise InputError(
        f"the Hugging Face hub ({host}:{port}) {problem}, and the weights {repo} are not in the "
        "local cache; connect to the internet once to download them, or use random weights "
        "for an offline smoke test."
    )


def load_detector(name: str = "grounding-dino-tiny", device=None) -> Detector:
    """Load a pretrained open-vocabulary detector from the Hugging Face hub (needs internet once).

    Fails within seconds when the hub cannot be reached and the weights are not cached."""
    if name not in DETECTORS:
        raise InputError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}.")
    kind, repo = DETECTORS[name]
    dev = _device(device)
    local = {"local_files_only": hub_local_only(repo)}
    try:
        if kind == "grounding-dino":
            from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

            processor = AutoProcessor.from_pretrained(repo, **local)
            model = AutoModelForZeroShotObjectDetection.from_pretrained(repo, **local)
        else:
            from transformers import Owlv2ForObjectDetection, Owlv2Processor

            processor = Owlv2Processor.from_pretrained(repo, **local)
            model = Owlv2ForObjectDetection.from_pretrained(repo, **local)
    except (OSError, ValueError, ConnectionError) as e:
        raise InputError(
            f"the weights of {name!r} ({repo}) could not be fetched from the Hugging Face hub: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}. Check the internet "
            "connection (or HF_HUB_OFFLINE), or use random weights for a smoke test."
        ) from e
    model = model.to(dev).eval()
    return Detector(kind=kind, model=model, processor=processor, device=dev, name=name)


_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_BASE_WORDS = (
    "a an the of on in at left right top bottom small big red blue green person dog cat car "
    "bird tree sky road shirt ball box"
).split()


def _write_vocab(words: list[str] | None, folder: Path) -> Path:
    vocab = list(_SPECIAL) + [".", ",", ";"]
    extra = []
    for w in list(_BASE_WORDS) + [t for s in words or [] for t in re.findall(r"\w+", s.lower())]:
        if w not in vocab and w not in extra:
            extra.append(w)
    path = folder / "vocab.txt"
    path.write_text("\n".join(vocab + extra) + "\n", encoding="utf-8")
    return path


def _swin_backbone(image_size, embed_dim, depths, num_heads, *, window_size) -> dict:
    """A Swin backbone config for Grounding DINO: its last three stages feed the encoder."""
    return {
        "model_type": "swin",
        "image_size": image_size,
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": num_heads,
        "window_size": window_size,
        "out_indices": [2, 3, 4],
        "out_features": ["stage2", "stage3", "stage4"],
    }


def _toy_gdino_config():
    from transformers import GroundingDinoConfig

    backbone = _swin_backbone(64, 16, [1, 1, 1, 1], [1, 1, 2, 2], window_size=4)
    text = {
        "model_type": "bert",
        "vocab_size": 128,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    }
    return GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        num_queries=10,
        encoder_layers=1,
        decoder_layers=2,  # weight tying of the box heads needs >= 2
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        d_model=32,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=64,
        disable_custom_kernels=True,
    )


def _tiny_gdino_config():
    """The grounding-dino-tiny architecture (Swin-T + BERT-base), built without any download."""
    from transformers import GroundingDinoConfig

    backbone = _swin_backbone(224, 96, [2, 2, 6, 2], [3, 6, 12, 24], window_size=7)
    text = {"model_type": "bert"}  # bert-base-uncased shape
    return GroundingDinoConfig(backbone_config=backbone, text_config=text)


def random_grounding_dino(
    words: list[str] | None = None, size: str = "toy", device=None, seed: int = 0
) -> Detector:
    """Grounding DINO with random weights and a tokenizer built from a vocab it writes.

    ``size="toy"``: a tiny network (a CPU forward takes well under a second) for tests and smoke
    runs; ``size="tiny"``: the grounding-dino-tiny architecture for speed benchmarks. Words of
    ``words`` (e.g. the prompt) get their own tokens; other words become ``[UNK]``.
    """
    import torch
    from transformers import (
        BertTokenizer,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    if size not in ("toy", "tiny"):
        raise InputError(f"unknown random Grounding DINO size {size!r}; use 'toy' or 'tiny'.")
    config = _toy_gdino_config() if size == "toy" else _tiny_gdino_config()
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = _write_vocab(words, Path(tmp))
        vocab = vocab_file.read_text(encoding="utf-8").split("\n")[:-1]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    if len(vocab) > config.text_config.vocab_size:
        raise InputError(
            f"too many distinct prompt words ({len(vocab)}) for the toy model's vocabulary "
            f"({config.text_config.vocab_size}); use fewer words."
        )
    if size == "toy":
        image_processor = GroundingDinoImageProcessor(
            size={"shortest_edge": 96, "longest_edge": 160}
        )
    else:
        image_processor = GroundingDinoImageProcessor()
    processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config)
    dev = _device(device)
    model = model.to(dev).eval()
    return Detector(
        kind="grounding-dino", model=model, processor=processor, device=dev, name=f"random-{size}"
    )


def toy_clip_tokenizer(max_length: int = 16):
    """A CLIP BPE tokenizer over single characters (no merges), written here without download.

    Every word becomes its characters; enough for random-weight CLIP/OWLv2/CLIPSeg test models.
    """
    import string

    from transformers import CLIPTokenizer

    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab: dict[str, int] = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    # Special tokens last, like CLIP (OWLv2 treats a query starting with id 0 as padding).
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    tok.model_max_length = max_length
    return tok


def random_owlv2(size: str = "toy", device=None, seed: int = 0) -> Detector:
    """OWLv2 with random weights and a tiny config (64 px input) for CPU tests."""
    import torch
    from transformers import (
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    if size != "toy":
        raise InputError(f"unknown random OWLv2 size {size!r}; only 'toy' is available.")
    tokenizer = toy_clip_tokenizer(16)
    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    config = Owlv2Config(
        text_config={
            **common,
            "num_attention_heads": 2,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 16,
            "bos_token_id": len(tokenizer) - 2,
            "eos_token_id": len(tokenizer) - 1,
            "pad_token_id": len(tokenizer) - 1,
        },
        vision_config={**common, "num_attention_heads": 2, "image_size": 64, "patch_size": 16},
        projection_dim=32,
    )
    image_processor = Owlv2ImageProcessor(size={"height": 64, "width": 64})
    processor = Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)
    torch.manual_seed(seed)
    dev = _device(device)
    model = Owlv2ForObjectDetection(config).to(dev).eval()
    return Detector(kind="owlv2", model=model, processor=processor, device=dev, name="random-owlv2")


# ---------------------------------------------------------------- detection


def _empty_detections():
    import supervision as sv

    return sv.Detections(
        xyxy=np.zeros((0, 4), np.float32),
        confidence=np.zeros((0,), np.float32),
        class_id=np.zeros((0,), int),
        data={"class_name": np.array([], dtype=str)},
    )


def _model_dtype(model):
    try:
        return next(model.parameters()).dtype
    except StopIteration:
        import torch

        return torch.float32


def _autocast(device):
    """bf16 autocast (+ TF32) on Ampere+ GPUs, nothing elsewhere (fp32)."""
    import contextlib

    import torch

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_bf16_supported(including_emulation=False):
        return contextlib.nullcontext()
    from helpers.runtime import enable_fast_matmul

    enable_fast_matmul()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


def _run_grounding_dino(detector, small, phrases, box_threshold, text_threshold):
    import torch

    text = " ".join(p + "." for p in phrases)
    h, w = small.shape[:2]
    inputs = detector.processor(images=small, text=text, return_tensors="pt")
    limit = getattr(detector.model.config, "max_text_len", MAX_PROMPT_TOKENS)
    if inputs["input_ids"].shape[-1] > limit:
        raise InputError(
            f"the prompt is {inputs['input_ids'].shape[-1]} tokens long but the detector reads "
            f"at most {limit}; shorten it to a few short phrases."
        )
    inputs = {k: v.to(detector.device) for k, v in inputs.items()}
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(_model_dtype(detector.model))
    with torch.inference_mode(), _autocast(detector.device):
        outputs = detector.model(**inputs)
    outputs.logits = outputs.logits.float()
    outputs.pred_boxes = outputs.pred_boxes.float()
    res = detector.processor.post_process_grounded_object_detection(
        outputs,
        input_ids=inputs["input_ids"],
        threshold=box_threshold,
        text_threshold=text_threshold,
        target_sizes=[(h, w)],
    )[0]
    labels = res.get("text_labels", None)
    if labels is None:
        labels = dict.get(res, "labels")
    boxes = res["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
    scores = res["scores"].detach().float().cpu().numpy().reshape(-1)
    ids, names = [], []
    for lab in labels:
        lab = lab if isinstance(lab, str) else str(lab)
        idx = match_phrase(lab, phrases)
        if idx is None:
            # Unmatched labels (empty or [UNK] tokens): keep the box, file it under a phrase
            # only when the prompt has exactly one, else keep the raw text.
            if len(phrases) == 1:
                ids.append(0)
                names.append(phrases[0])
            else:
                ids.append(len(phrases))
                names.append(lab.strip() or "object")
        else:
            ids.append(idx)
            names.append(phrases[idx])
    return boxes, scores, ids, names


def _run_owlv2(detector, small, phrases, box_threshold):
    import torch

    h, w = small.shape[:2]
    inputs = detector.processor(text=[phrases], images=small, return_tensors="pt")
    inputs = {k: v.to(detector.device) for k, v in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(_model_dtype(detector.model))
    with torch.inference_mode(), _autocast(detector.device):
        outputs = detector.model(**inputs)
    for key in ("logits", "pred_boxes"):
        setattr(outputs, key, getattr(outputs, key).float())
    res = detector.processor.post_process_grounded_object_detection(
        outputs, threshold=box_threshold, target_sizes=[(h, w)]
    )[0]
    boxes = res["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
    scores = res["scores"].detach().float().cpu().numpy().reshape(-1)
    ids = [int(i) for i in res["labels"].detach().cpu().reshape(-1).tolist()]
    return boxes, scores, ids, [phrases[i] for i in ids]


def detect(
    detector: Detector,
    image: np.ndarray,
    prompt: str,
    *,
    box_threshold: float = RouteSettings.box_threshold,
    text_threshold: float = RouteSettings.text_threshold,
    nms_iou: float = RouteSettings.nms_iou,
    max_side: int | None = RouteSettings.max_side,
):
    """Boxes for every prompt phrase found in ``image`` (HxWx3 uint8 RGB), as ``sv.Detections``.

    The image is downscaled so its long side is at most ``max_side`` for the model; boxes come
    back in full-image pixels. Duplicate boxes of one label are merged with NMS (``nms_iou``).
    OWLv2 scores each phrase separately and ignores ``text_threshold``.
    Nothing found -> empty Detections.
    """
    import torch
    import torchvision

    box, text = RouteSettings.box_threshold, RouteSettings.text_threshold
    hint = f"try {box:g} for boxes, {text:g} for text"
    box_threshold = unit_interval("box_threshold", box_threshold, hint)
    text_threshold = unit_interval("text_threshold", text_threshold, hint)
    nms_iou = unit_interval("nms_iou", nms_iou, hint)
    phrases = prompt_phrases(prompt)
    image = check_rgb_array(image)
    H, W = image.shape[:2]
    small = _downscale(image, max_side)
    sx, sy = small.shape[1] / W, small.shape[0] / H
    if detector.kind == "grounding-dino":
        boxes, scores, ids, names = _run_grounding_dino(
            detector, small, phrases, box_threshold, text_threshold
        )
    elif detector.kind == "owlv2":
        boxes, scores, ids, names = _run_owlv2(detector, small, phrases, box_threshold)
    else:
        raise InputError(
            f"unknown detector kind {detector.kind!r}; use 'grounding-dino' or 'owlv2'."
        )
    if len(scores) == 0:
        return _empty_detections()
    boxes = boxes / np.array([sx, sy, sx, sy], dtype=np.float32)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, W)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, H)
    boxes = np.stack(
        [
            np.minimum(boxes[:, 0], boxes[:, 2]),
            np.minimum(boxes[:, 1], boxes[:, 3]),
            np.maximum(boxes[:, 0], boxes[:, 2]),
            np.maximum(boxes[:, 1], boxes[:, 3]),
        ],
        axis=1,
    )
    ids_arr = np.asarray(ids, dtype=int)
    keep = torchvision.ops.batched_nms(
        torch.from_numpy(boxes).float(),
        torch.from_numpy(scores).float(),
        torch.from_numpy(ids_arr),
        nms_iou,
    ).numpy()
    import supervision as sv

    return sv.Detections(
        xyxy=boxes[keep].astype(np.float32).reshape(-1, 4),
        confidence=scores[keep].astype(np.float32),
        class_id=ids_arr[keep],
        data={"class_name": np.array([names[i] for i in keep], dtype=str)},
    )


def _downscale(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Copy with long side <= max_side (the input itself when it already fits)."""
    if max_side is None:
        return image
    from helpers.textseg.media import fit_for_model

    return fit_for_model(image, int(max_side))[0]
