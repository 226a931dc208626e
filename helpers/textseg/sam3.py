"""SAM 3 (transformers ``Sam3Model``): text prompt -> every instance's mask, box and score.

One model replaces the detector + SAM 2 pair of ``textseg``: each phrase of the prompt
("car. person.") is a concept; SAM 3 returns all its instances. The image path follows
transformers' documented usage exactly:

    inputs = processor(images=image, text=phrase, return_tensors="pt")
    outputs = model(**inputs)
    processor.post_process_instance_segmentation(outputs, threshold, mask_threshold, target_sizes)

with two reuses that give the same numbers: the image features are computed once per image
(``model.get_vision_features``) for all phrases, and each phrase's text features once per
segmenter (``model.get_text_features``, cached on the ``Sam3Segmenter``), so a folder encodes
its prompt once.

Loading: ``load_sam3()`` (gated hub weights ``facebook/sam3``: a quick one-request check
first, so a missing licence or token or an unreachable hub fails in seconds with one line
saying what to do), ``random_sam3()`` (random weights from a config: ``"toy"`` for CPU tests,
``"full"`` = the real architecture for speed benchmarks). ``ensure_sam3_transformers()``
upgrades an old transformers (Colab) only when ``Sam3Model`` is missing.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from helpers.errors import InputError, unit_interval
from helpers.textseg.image_settings import Cleanup, RouteSettings

SCORE_THRESHOLD = RouteSettings.score_threshold  # SAM 3's documented defaults, kept there
MASK_THRESHOLD = RouteSettings.MASK_THRESHOLDS["sam3"]

SAM3_HUB_ID = "facebook/sam3"
MIN_TRANSFORMERS = "5.0.0"  # first release with Sam3Model / Sam3VideoModel
TOY_SIDE = 112  # input side of the toy random model (a multiple of the 14 px patch)
_TEXT_CACHE_SIZE = 256

_ACCESS_HELP = (
    "accept the licence on https://huggingface.co/{repo} and log in (Colab: add the secret "
    "HF_TOKEN with a read token; elsewhere: `hf auth login` or `huggingface-cli login`), or use "
    "the Grounding DINO + SAM 2.1 route (--backend sam2)."
)


@dataclass
class Sam3Segmenter:
    """A SAM 3 image model, its processor and a cache of encoded prompt phrases."""

    model: Any  # transformers Sam3Model
    processor: Any  # transformers Sam3Processor
    device: Any
    name: str  # hub id or "random-toy" / "random-full"
    kind: str = "sam3"
    text_cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    text_encodings: int = 0  # how many times a phrase was run through the text encoder

    def instances(
        self, image, phrases: list[str], *, threshold=SCORE_THRESHOLD, mask_threshold=MASK_THRESHOLD
    ):
        """The SAM 3 route's verb (see :func:`instances`)."""
        return instances(self, image, phrases, threshold=threshold, mask_threshold=mask_threshold)


# ---------------------------------------------------------------- availability / install


def sam3_available() -> bool:
    """True when the installed transformers has SAM 3 (``Sam3Model``).

    Does not import transformers when it is not imported yet (its version is read from the
    package metadata), so a setup cell can upgrade it without a runtime restart."""
    import sys

    module = sys.modules.get("transformers")
    if module is not None:
        return hasattr(module, "Sam3Model")
    try:
        from importlib.metadata import version

        return int(version("transformers").split(".")[0]) >= int(MIN_TRANSFORMERS.split(".")[0])
    except Exception:  # not installed, or an odd version string
        return False


def require_sam3() -> None:
    """InputError with the fix when this transformers predates SAM 3."""
    if sam3_available():
        return
    try:
        import transformers

        have = f"transformers {transformers.__version__}"
    except ImportError:
        have = "no transformers"
    raise InputError(
        f"SAM 3 needs transformers >= {MIN_TRANSFORMERS} ({have} is installed): run "
        "helpers.textseg.sam3.ensure_sam3_transformers() (or pip install -U 'transformers>=5') and "
        "restart the runtime, or use --backend sam2."
    )


SAM3_INSTALL = f'pip install -U "transformers>={MIN_TRANSFORMERS}"'


def ensure_sam3_transformers(
    *, install: bool | None = None, quiet: bool = True, runner=None
) -> dict:
    """Install a transformers with SAM 3 when ``Sam3Model`` is missing — in Colab only.

    Returns ``{"status": "present" | "installed" | "failed" | "missing", "restart": bool,
    "message"}``. Nothing is touched when SAM 3 is already there, so the Grounding DINO +
    SAM 2.1 path keeps the environment it had. ``install`` None (the default) installs only
    inside Colab, whose session is throw-away: anywhere else (your own environment) nothing is
    installed and the status is ``"missing"``, with the command to run yourself in the
    message. A failed install is reported, never raised (the SAM 2 path still works).
    ``restart`` is True when transformers was already imported in this process: the new
    version loads only after a runtime restart. ``runner`` replaces ``subprocess.run`` (tests).
    """
    import importlib
    import subprocess
    import sys

    if sam3_available():
        return {"status": "present", "restart": False, "message": "SAM 3 is available."}
    if install is None:
        from helpers.runtime import in_colab

        install = in_colab()
    if not install:
        return {
            "status": "missing",
            "restart": False,
            "message": f"SAM 3 needs transformers >= {MIN_TRANSFORMERS}, which this environment "
            f"does not have; to use it, run `{SAM3_INSTALL}` and restart the kernel. The "
            "Grounding DINO + SAM 2.1 route is unchanged and still works.",
        }
    was_imported = "transformers" in sys.modules
    cmd = [sys.executable, "-m", "pip", "install", "-U", f"transformers>={MIN_TRANSFORMERS}"]
    if quiet:
        cmd.insert(4, "-q")
    run = runner or subprocess.run
    try:
        proc = run(cmd, capture_output=True, text=True, timeout=900)
        ok = proc.returncode == 0
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] if not ok else []
    except Exception as e:  # no pip, no network, timeout: report, keep the SAM 2 path
        ok, detail = False, [f"{type(e).__name__}: {e}"]
    if not ok:
        return {
            "status": "failed",
            "restart": False,
            "message": "could not install a transformers with SAM 3 "
            f"({detail[0] if detail else 'pip failed'}); the Grounding DINO + SAM 2.1 route "
            "is unchanged and still works.",
        }
    if was_imported:
        return {
            "status": "installed",
            "restart": True,
            "message": "installed a transformers with SAM 3; restart the runtime "
            "(Runtime > Restart session) and run the cells again.",
        }
    importlib.invalidate_caches()
    return {"status": "installed", "restart": False, "message": "installed; SAM 3 is ready."}


# ---------------------------------------------------------------- hub access


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT).rstrip("/")
    except Exception:
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _token(token=None):
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()  # HF_TOKEN, the stored login, or Colab's HF_TOKEN secret
    except Exception:
        return os.environ.get("HF_TOKEN")


def _cached(repo: str) -> bool:
    """The weights' config is already in the local hub cache (no network needed)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo, "config.json")
    except Exception:
        return False
    return isinstance(path, str) and os.path.exists(path)


def _probe_hub(repo: str, token, timeout: float = 8.0) -> tuple[int, str]:
    """One HEAD request for the repo's config.json: (HTTP status, X-Error-Code).

    No retries and redirects are not followed (a redirect to the CDN means access is fine).
    Network failures raise ``OSError`` (``urllib.error.URLError`` is one)."""
    import urllib.error
    import urllib.request

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    req = urllib.request.Request(
        f"{_hub_endpoint()}/{repo}/resolve/main/config.json", method="HEAD"
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return int(resp.status), resp.headers.get("X-Error-Code", "") or ""
    except urllib.error.HTTPError as e:
        return int(e.code), (e.headers.get("X-Error-Code", "") if e.headers else "") or ""


def check_hub_access(repo: str = SAM3_HUB_ID, token=None, timeout: float = 8.0) -> None:
    """Raise a one-line InputError unless ``repo`` can be downloaded now (or is cached).

    Fast: one request with a ``timeout``, no retries, so a gated repo without licence or
    token, or an unreachable hub, is reported in seconds instead of minutes of retries."""
    if _cached(repo):
        return
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False"):
        raise InputError(
            f"{repo} is not in the local cache and HF_HUB_OFFLINE is set: unset HF_HUB_OFFLINE "
            "(with internet) to download it once, or use --backend sam2."
        )
    tok = _token(token)
    try:
        status, code = _probe_hub(repo, tok, timeout)
    except (OSError, TimeoutError) as e:
        reason = getattr(e, "reason", None) or e
        raise InputError(
            f"could not reach the Hugging Face hub ({_hub_endpoint()}) to fetch {repo}: "
            f"{str(reason).splitlines()[0] if str(reason) else type(e).__name__}. Check the "
            "internet connection, or use the Grounding DINO + SAM 2.1 route (--backend sam2)."
        ) from None
    if status < 400:
        return
    raise InputError(access_message(repo, status, code, bool(tok)))


def access_message(repo: str, status: int, code: str = "", has_token: bool = False) -> str:
    """The one-line explanation for an HTTP error of the hub on a (gated) repo."""
    help_ = _ACCESS_HELP.format(repo=repo)
    if code == "GatedRepo" or status in (401, 403):
        if not has_token:
            why = "no Hugging Face token was found"
        elif code == "GatedRepo" or status == 403:
            why = "your token has no access yet (licence not accepted or not approved)"
        else:
            why = "the token was refused (expired or mistyped)"
        return f"the SAM 3 weights ({repo}) are gated and {why}: {help_}"
    if status == 404 or code in ("RepoNotFound", "EntryNotFound"):
        return f"{repo} was not found on the Hugging Face hub (HTTP 404); check the model id."
    return (
        f"the Hugging Face hub answered HTTP {status} for {repo}; try again later, or use the "
        "Grounding DINO + SAM 2.1 route (--backend sam2)."
    )


def hub_error_message(e: BaseException, repo: str = SAM3_HUB_ID) -> str:
    """One line for an exception of ``from_pretrained`` (gated, no access, offline, ...)."""
    try:
        from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError
    except ImportError:  # pragma: no cover
        GatedRepoError = LocalEntryNotFoundError = ()  # noqa: N806
    chain, cur = [], e
    while cur is not None and len(chain) < 6:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " ".join(str(c) for c in chain).lower()
    if any(isinstance(c, GatedRepoError) for c in chain) or "gated repo" in text:
        return access_message(repo, 401, "GatedRepo", bool(_token()))
    if " 401" in text or "401 client error" in text or "unauthorized" in text:
        return access_message(repo, 401, "", bool(_token()))
    if " 403" in text or "forbidden" in text:
        return access_message(repo, 403, "", bool(_token()))
    offline = any(isinstance(c, (LocalEntryNotFoundError, ConnectionError)) for c in chain)
    if offline or "couldn't connect" in text or "offline" in text:
        return (
            f"could not reach the Hugging Face hub to fetch {repo} (offline?). Check the "
            "internet connection, or use the Grounding DINO + SAM 2.1 route (--backend sam2)."
        )
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"could not load {repo} ({type(e).__name__}: {first[:200]}); or use --backend sam2."


# ---------------------------------------------------------------- loading


def _device(device):
    from helpers.runtime import pick_device

    return pick_device(str(device)) if device is not None else pick_device()


def load_sam3(device=None, *, repo: str = SAM3_HUB_ID, token=None) -> Sam3Segmenter:
    """The pretrained SAM 3 image model (gated: licence + token needed, see ``check_hub_access``)."""
    require_sam3()
    check_hub_access(repo, token)
    from transformers import Sam3Model, Sam3Processor

    dev = _device(device)
    try:
        processor = Sam3Processor.from_pretrained(repo, token=token)
        model = Sam3Model.from_pretrained(repo, token=token)
    except (OSError, ValueError, ConnectionError) as e:
        raise InputError(hub_error_message(e, repo)) from None
    return Sam3Segmenter(model=model.to(dev).eval(), processor=processor, device=dev, name=repo)


def toy_tokenizer():
    """A CLIP tokenizer over single characters (no download), padded to SAM 3's 32 tokens."""
    from helpers.textseg.detect import toy_clip_tokenizer

    return toy_clip_tokenizer(32)


def toy_parts(side: int = TOY_SIDE, vocab_size: int | None = None) -> dict:
    """Sub-config dicts of a very small SAM 3 (CPU forward in tens of ms).

    Sizes shrink but keep the real model's constraints (tracker hidden size a multiple of its
    64-channel memory, feature sizes 4x/2x/1x the patch grid)."""
    if side % 14:
        raise InputError(f"the SAM 3 input side must be a multiple of 14 px, got {side}.")
    g = side // 14
    d = 128
    tok_len = vocab_size or len(toy_tokenizer())
    vit = {
        "model_type": "sam3_vit_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": side,
        "patch_size": 14,
        "window_size": 4,
        "global_attn_indexes": [1],
        "pretrain_image_size": side,
    }
    vision = {
        "model_type": "sam3_vision_model",
        "backbone_config": vit,
        "fpn_hidden_size": d,
        "backbone_feature_sizes": [[4 * g, 4 * g], [2 * g, 2 * g], [g, g]],
    }
    small = {"hidden_size": d, "num_attention_heads": 2, "intermediate_size": 64}
    detector = {
        "vision_config": vision,
        "text_config": {
            "vocab_size": tok_len,
            "hidden_size": 32,
            "intermediate_size": 64,
            "projection_dim": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "bos_token_id": tok_len - 2,
            "eos_token_id": tok_len - 1,
            "pad_token_id": tok_len - 1,
        },
        "geometry_encoder_config": {**small, "num_layers": 1},
        "detr_encoder_config": {**small, "num_layers": 1},
        "detr_decoder_config": {**small, "num_layers": 2, "num_queries": 20},
        "mask_decoder_config": {"hidden_size": d, "num_attention_heads": 2},
    }
    tracker = {
        "model_type": "sam3_tracker_video",
        "vision_config": vision,
        "prompt_encoder_config": {"hidden_size": d, "image_size": side, "patch_size": 14},
        "mask_decoder_config": {
            "hidden_size": d,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": d,
        },
        "image_size": side,
        "memory_attention_hidden_size": d,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 64,
        "memory_attention_rope_feat_sizes": [g, g],
        "memory_encoder_hidden_size": d,
        "memory_encoder_output_channels": 64,  # the tracker's attention expects 64
        "mask_downsampler_embed_dim": d,
        "memory_fuser_embed_dim": d,
        "memory_fuser_intermediate_dim": 64,
    }
    return {"detector": detector, "tracker": tracker, "side": side, "grid": g}


def random_processor(side: int = 1008):
    """A Sam3Processor for random models (the real image processor at ``side``, toy tokenizer)."""
    from transformers import Sam3ImageProcessor, Sam3Processor

    ip = Sam3ImageProcessor(size={"height": side, "width": side})
    return Sam3Processor(image_processor=ip, tokenizer=toy_tokenizer())


def random_sam3(size: str = "toy", device=None, seed: int = 0) -> Sam3Segmenter:
    """SAM 3 with random weights, no download: ``"toy"`` (tiny, CPU tests) or ``"full"``
    (``Sam3Config()``, the real sizes, for speed benchmarks). Masks are meaningless."""
    require_sam3()
    import torch
    from transformers import Sam3Config, Sam3Model

    if size not in ("toy", "full"):
        raise InputError(f"unknown random SAM 3 size {size!r}; use 'toy' or 'full'.")
    if size == "toy":
        parts = toy_parts()
        config, side = Sam3Config(**parts["detector"]), parts["side"]
    else:
        config, side = Sam3Config(), 1008
    torch.manual_seed(seed)
    dev = _device(device)
    model = Sam3Model(config).to(dev).eval()
    return Sam3Segmenter(
        model=model, processor=random_processor(side), device=dev, name=f"random-{size}"
    )


# ---------------------------------------------------------------- inference


def _context(device):
    from helpers.textseg.segment import inference_context

    return inference_context(device)


def encode_phrases(seg: Sam3Segmenter, phrases: list[str]) -> list[tuple[Any, Any]]:
    """(text features, attention mask) of each phrase, from the segmenter's cache when there.

    The features are ``model.get_text_features(...)`` outputs, which ``model(text_embeds=...)``
    takes in place of ``input_ids``: a folder encodes its prompt once."""
    out = []
    for phrase in phrases:
        hit = seg.text_cache.get(phrase)
        if hit is None:
            tokens = seg.processor(text=phrase, return_tensors="pt").to(seg.device)
            with _context(seg.device):
                feats = seg.model.get_text_features(
                    input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                )
            hit = (feats, tokens["attention_mask"])
            seg.text_encodings += 1
            seg.text_cache[phrase] = hit
            while len(seg.text_cache) > _TEXT_CACHE_SIZE:
                seg.text_cache.popitem(last=False)
        else:
            seg.text_cache.move_to_end(phrase)
        out.append(hit)
    return out


def _float_outputs(outputs):
    for key in ("pred_masks", "pred_boxes", "pred_logits", "presence_logits"):
        value = getattr(outputs, key, None)
        if value is not None:
            setattr(outputs, key, value.float())
    return outputs


def predict(
    seg: Sam3Segmenter,
    image: np.ndarray,
    phrases: list[str],
    *,
    threshold: float = SCORE_THRESHOLD,
    mask_threshold: float = MASK_THRESHOLD,
) -> list[dict]:
    """Per phrase, SAM 3's post-processed result ``{"scores", "boxes", "masks"}`` (tensors, at
    the image's size) for an HxWx3 uint8 RGB ``image``."""
    threshold = unit_interval("threshold", threshold, f"SAM 3's default is {SCORE_THRESHOLD:g}")
    mask_threshold = unit_interval(
        "mask_threshold", mask_threshold, f"SAM 3's default is {MASK_THRESHOLD:g}"
    )
    H, W = image.shape[:2]
    pixels = seg.processor(images=image, return_tensors="pt").to(seg.device)
    texts = encode_phrases(seg, phrases)
    results = []
    with _context(seg.device):
        vision = seg.model.get_vision_features(pixel_values=pixels["pixel_values"])
        for feats, mask in texts:
            outputs = seg.model(vision_embeds=vision, text_embeds=feats, attention_mask=mask)
            results.append(
                seg.processor.post_process_instance_segmentation(
                    _float_outputs(outputs),
                    threshold=threshold,
                    mask_threshold=mask_threshold,
                    target_sizes=[(H, W)],
                )[0]
            )
    return results


def instances(
    seg: Sam3Segmenter,
    image,
    phrases: list[str],
    *,
    threshold=SCORE_THRESHOLD,
    mask_threshold=MASK_THRESHOLD,
):
    """The SAM 3 route's raw output: every instance of every phrase in ``image`` (RGB uint8) as
    one ``sv.Detections`` (``class_id`` = phrase index, ``class_name`` = phrase, boxes clipped
    to the image); ``threshold``: instance score to keep, ``mask_threshold``: foreground."""
    from helpers.textseg.routes import _detections

    H, W = image.shape[:2]
    per_phrase = predict(seg, image, phrases, threshold=threshold, mask_threshold=mask_threshold)
    boxes, scores, masks, ids = [], [], [], []
    for i, res in enumerate(per_phrase):
        n = int(res["scores"].shape[0])
        boxes.append(res["boxes"].detach().float().cpu().numpy().reshape(-1, 4))
        scores.append(res["scores"].detach().float().cpu().numpy().reshape(-1))
        masks.append(res["masks"].detach().cpu().numpy().astype(bool).reshape(n, H, W))
        ids += [i] * n
    conf = np.concatenate(scores).astype(np.float32)
    mask = np.concatenate(masks) if masks else np.zeros((0, H, W), bool)
    return _detections(np.concatenate(boxes), mask, conf, ids, [phrases[i] for i in ids], conf)


def segment_image_sam3(
    image_or_source,
    prompt: str,
    seg: Sam3Segmenter,
    *,
    threshold: float = SCORE_THRESHOLD,
    mask_threshold: float = MASK_THRESHOLD,
    clean: bool = Cleanup.clean,
    min_hole_area: float = Cleanup.hole_floor,
    min_sprinkle_area: float = Cleanup.speck_floor,
    clean_fraction: float = Cleanup.fraction,
):
    """Every instance of every phrase of ``prompt`` in one image, as a ``pipeline.ImageResult``.

    ``threshold``: instance score (SAM 3's detection score x presence score) to keep;
    ``mask_threshold``: mask probability that counts as foreground. Each phrase is its own
    label (``class_id`` = phrase index, ``class_name`` = phrase). Boxes are clipped to the
    image. ``clean`` fills holes / removes specks with every route's defaults: below
    ``clean_fraction`` of each mask's area, at least ``min_hole_area`` / ``min_sprinkle_area``
    full-size px (``clean_fraction=0``: the fixed floors; ``clean=False``: SAM 3's raw masks,
    as transformers' documented post-processing gives them). The SAM 3 route
    (:class:`helpers.textseg.routes.Sam3`) run by :func:`helpers.textseg.pipeline.run_route`.
    """
    from helpers.textseg import pipeline, routes

    if not isinstance(seg, Sam3Segmenter):
        raise InputError("seg must come from helpers.textseg.sam3.load_sam3() or random_sam3().")
    settings = pipeline.ImageSettings(
        route=RouteSettings(score_threshold=threshold, mask_threshold=mask_threshold),
        cleanup=Cleanup(clean, clean_fraction, min_hole_area, min_sprinkle_area),
        fallback=pipeline.Fallback(steps=()),  # one model: no detector to fall back from
    )
    return pipeline.run_route(routes.Sam3(seg), image_or_source, prompt, settings)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 2)


def _folder_step(source, prompt, seg, segmenter, **kw):
    """A folder runner's step (``folder_run`` / ``folder_eval`` pass ``detector, segmenter``):
    SAM 3 is the one model, in the first place; the second must be empty."""
    if segmenter is not None:
        raise InputError("SAM 3 is one model: give it as the only model of the folder run.")
    return segment_image_sam3(source, prompt, seg, **kw)


def segment_folder_sam3(in_dir, out_dir, prompt: str, seg: Sam3Segmenter, **kw) -> dict:
    """``folder_run.segment_folder`` with SAM 3: same outputs, resumable, failures recorded.

    The prompt's phrases are encoded once for the whole folder (``seg.text_cache``);
    ``kw``: ``overwrite``, ``dist`` (under torchrun: process k of N takes images k, k+N, ...
    and the first returns the merged summary, the others None) and ``segment_image_sam3``'s
    settings."""
    from helpers.textseg.folder_run import segment_folder

    before = seg.text_encodings
    summary = segment_folder(in_dir, out_dir, prompt, seg, None, segment_fn=_folder_step, **kw)
    if summary is None:
        return None
    summary["text_encodings"] = seg.text_encodings - before  # this process's
    return summary
