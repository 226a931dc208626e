"""SAM 2 video backends: the ``sam2`` package's video predictor and transformers' Sam2VideoModel.

``load_video_tracker`` builds one; ``Sam2Propagator`` opens a ``Sam2Session`` per chunk of
frames, which the video loop (``helpers.textseg.track``) drives with global frame numbers:
``prompt`` (box, point or mask per object id), ``propagate`` (forward or backward),
``remove`` (retire ids), ``reset``. ``keyframe_features`` gives masks for detection boxes and
appearance embeddings (SAM 2 image-encoder features pooled under each mask) on a keyframe.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpers.errors import InputError
from helpers.textseg.chatter import without_jit_script_warning

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
    compiled: bool = False  # sam2's vos_optimized predictor (torch.compile of its parts)


def vos_optimized_supported() -> bool:
    """Whether the installed sam2 has the compiled video predictor (``vos_optimized``)."""
    import inspect

    try:
        import sam2.sam2_video_predictor as vp
        from sam2.build_sam import build_sam2_video_predictor
    except ImportError:
        return False
    params = inspect.signature(build_sam2_video_predictor).parameters
    return "vos_optimized" in params and hasattr(vp, "SAM2VideoPredictorVOS")


def choose_compile(compile: str | bool, device, supported: bool, big_gpu: bool | None = None):
    """``compile`` ("auto", True, False) -> whether to compile SAM 2 (``sam2_compile``):
    "auto" = on a CUDA GPU big enough for max-autotune (``sam2_compile.compile_mode``;
    ``big_gpu`` None: asked of the device) when the installed sam2 has the compiled
    predictor. On the CPU or a T4 compiling costs minutes and gains nothing on one clip."""
    if compile == "auto":
        if device.type != "cuda" or not supported:
            return False
        if big_gpu is None:
            from helpers.textseg.sam2_compile import compile_mode

            big_gpu = compile_mode(device) is not None
        return bool(big_gpu)
    if compile in (True, "on", "true", 1):
        if not supported:
            from helpers.install import SAM2_INSTALL

            raise InputError(
                "This sam2 has no compiled video predictor (vos_optimized); install the "
                f"release this project uses (`{SAM2_INSTALL}`) or use compile=False."
            )
        return True
    if compile in (False, "off", "false", 0, None):
        return False
    raise InputError(f"compile must be 'auto', True or False; got {compile!r}.")


# bytes of SAM 2 state per tracked object per frame kept in memory (mask memory features,
# low-res mask logits, object pointer) at image size S: 64 ch x (S/16)^2 + (S/4)^2 floats
def _state_bytes_per_object_frame(image_size: int) -> int:
    s = int(image_size)
    return 4 * (64 * (s // 16) ** 2 + (s // 4) ** 2 + 256)


def choose_offload(
    offload: bool | None,
    device,
    chunk_frames: int,
    image_size: int = 1024,
    objects: int = 10,
    detect_every: int = 30,
    free_bytes: int | None = None,
) -> bool:
    """Whether to keep SAM 2's state on the CPU. ``offload`` True/False is obeyed; None
    (auto) offloads only on a GPU whose free memory would not hold the state: the frames
    kept per object (``_MEMORY_WINDOW`` recent ones plus one per keyframe of the chunk) for
    ``objects`` objects, with 2 GiB of head room for the model's activations, at most half
    of what is free. Frames never need offloading: they are held as uint8 and prepared one
    at a time (an out-of-memory error still turns offloading on, see ``track.track_frames``)."""
    if offload is not None:
        return bool(offload)
    if device.type != "cuda":
        return False
    if free_bytes is None:
        import torch

        free_bytes, _ = torch.cuda.mem_get_info(device)
    kept = min(int(chunk_frames), _MEMORY_WINDOW + int(chunk_frames) // max(1, detect_every) + 1)
    need = kept * int(objects) * _state_bytes_per_object_frame(image_size) + 2 * 2**30
    return need > free_bytes / 2


def run_settings(tracker: VideoTracker, offload: bool | None = None) -> dict:
    """What actually runs, read from the tracker and torch (for reports, never typed in)."""
    import torch

    dtype = tracker.dtype
    out = {
        "backend": tracker.backend,
        "size": tracker.size,
        "device": str(tracker.device),
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else "float32",
        "compiled": bool(tracker.compiled),
        "predictor": type(tracker.predictor).__name__,
        "tf32": bool(tracker.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32),
    }
    if offload is not None:
        out["offload"] = bool(offload)
    return out


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
    compile: str | bool = "auto",
) -> VideoTracker:
    """SAM 2.1 video predictor of ``size`` (tiny, small, base_plus, large).

    ``backend="sam2"`` uses the ``sam2`` package (hub weights ``facebook/sam2.1-hiera-<size>``);
    ``backend="transformers"`` uses ``Sam2VideoModel``. ``random_weights=True`` builds the
    architecture without downloading (tests, smoke runs). ``image_size`` shrinks the model
    input for fast CPU tests (sam2: a hydra override, works with real weights too at lower
    quality; transformers: a very small random model); ``model_overrides`` are extra hydra
    overrides for the sam2 backend (e.g. ``"++model.memory_attention.num_layers=1"``).
    bf16 autocast + TF32 on Ampere and newer GPUs; fp32 on older GPUs (T4) and the CPU.
    ``compile`` ("auto": on a CUDA GPU with enough SMs for max-autotune, see
    ``sam2_compile``) builds sam2's ``vos_optimized`` predictor and compiles its parts our
    way on first use (the first frames wait; the compile is clocked and left out of FPS).
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
        vos = choose_compile(compile, dev, vos_optimized_supported())
        predictor = _load_sam2(size, dev, random_weights, overrides, vos)
        if vos:  # our compile settings in place of sam2's (see sam2_compile)
            from helpers.textseg.sam2_compile import compile_mode, compile_parts

            compile_parts(predictor, compile_mode(dev) or "default", size=size)
        if dtype is None:  # no autocast: the memories sam2 stores in bf16 must meet fp32 layers
            _memory_in_layer_dtype(predictor)
        return VideoTracker(predictor, "sam2", dev, size, dtype=dtype, compiled=vos)
    if backend == "transformers":
        model, processor = _load_transformers(size, dev, random_weights, dtype, image_size)
        return VideoTracker(model, "transformers", dev, size, processor=processor, dtype=dtype)
    raise InputError(f"Unknown tracker backend {backend!r}; use 'sam2' or 'transformers'.")


def _memory_in_layer_dtype(predictor) -> None:
    """sam2 keeps each frame's memory features in bf16 (to save memory) and relies on autocast
    to mix them with fp32 layers; without autocast (CPU, T4 in fp32) a memory made only of
    them (tracking backwards from a new object) fails with "BFloat16 and Float". Cast the
    memory to the dtype of the current frame's features before the memory attention."""
    attn = predictor.memory_attention
    inner = attn.forward

    def forward(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        dtype = (curr[0] if isinstance(curr, list) else curr).dtype
        if memory_pos is not None:
            memory_pos = memory_pos.to(dtype)
        return inner(curr, memory.to(dtype), curr_pos, memory_pos, num_obj_ptr_tokens)

    attn.forward = forward


def _load_sam2(size, dev, random_weights, overrides, vos_optimized: bool = False):
    try:
        from sam2.build_sam import build_sam2_video_predictor
        from sam2.sam2_video_predictor import SAM2VideoPredictor
    except ImportError:
        from helpers.install import sam2_missing_message

        raise InputError(sam2_missing_message("use backend='transformers'")) from None
    kw = {"vos_optimized": True} if vos_optimized else {}
    if random_weights:
        return build_sam2_video_predictor(
            _CONFIGS[size], None, device=str(dev), hydra_overrides_extra=overrides, **kw
        )
    try:
        return SAM2VideoPredictor.from_pretrained(
            _HUB_IDS[size], device=str(dev), hydra_overrides_extra=overrides, **kw
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


# sam2's image normalisation (``sam2.utils.misc.load_video_frames``' defaults)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_PREFETCH = 4  # frames prepared ahead of the one propagation asks for


def prepare_frame(
    rgb, image_size: int, device, out: np.ndarray | None = None, scratch: np.ndarray | None = None
):
    """An RGB uint8 [H,W,3] frame as sam2's model input: [3,S,S] float32 on ``device``, the
    very values sam2's own frame loader (``sam2.utils.misc.load_video_frames``) gives for the
    same RGB frame, bit for bit: resized as it resizes (PIL's ``resize`` to S x S with PIL's
    default filter, antialiased bicubic, in uint8), then ``/ 255`` in float64 taken to float32
    and normalised with its mean and std in float32 (one lookup table per channel holds those
    256 values, computed with the same operations).

    On a GPU the full uint8 frame is copied over (pinned, non-blocking) and resized there by
    ``pil_resize.resize_like_pil`` (Pillow's resize in torch, the same integers; a 1080p
    frame on the host costs PIL 20-50 ms on a 2-vCPU Colab), then looked up there
    (:func:`prepare_on_device`). Should the installed Pillow resample in a way
    ``pil_resize`` does not reproduce, PIL resizes on the host and the S x S frame is copied.
    On the CPU PIL resizes (2-3x faster than the torch version there; it releases the GIL:
    the frame-prep thread does it beside the model) and each channel goes through its table
    into its plane of the result. ``out`` (float32 [3,S,S]) receives the result and
    ``scratch`` (uint8 [2,S*S*3]) the channel planes, instead of new arrays."""
    import torch

    side = int(image_size)
    if device.type == "cuda":
        from helpers.textseg import pil_resize

        if pil_resize.pillow_order() is None:
            small = torch.from_numpy(_resize_like_sam2(rgb, side))
            return normalise_on_device(small.pin_memory().to(device, non_blocking=True))
        x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.uint8))
        return prepare_on_device(x.pin_memory().to(device, non_blocking=True), side)
    import cv2

    small = _resize_like_sam2(rgb, side)
    if scratch is None:
        scratch = np.empty((2, side * side * 3), np.uint8)
    if out is None:
        out = np.empty((3, side, side), np.float32)
    planes = list(scratch[1].reshape(3, side, side))
    cv2.split(small, planes)
    for c, lut in enumerate(_norm_luts()):  # a one-channel table: a third faster
        cv2.LUT(planes[c], lut, dst=out[c])
    return torch.from_numpy(out)


def _resize_like_sam2(rgb, side: int) -> np.ndarray:
    """uint8 [side,side,3]: what ``sam2.utils.misc._load_img_as_tensor`` makes of the frame
    before it divides by 255 (``Image.resize((side, side))``, PIL's default filter)."""
    from PIL import Image

    img = np.ascontiguousarray(rgb, dtype=np.uint8)
    if img.shape[:2] == (side, side):  # PIL returns a copy, unchanged
        return img
    return np.array(Image.fromarray(img, "RGB").resize((side, side)))  # writable


def prepare_on_device(x, side: int):
    """uint8 [H,W,3] frame (a tensor on any device) -> sam2's float32 [3,S,S] input there:
    resized as PIL resizes (``pil_resize.resize_like_pil``), then :func:`normalise_on_device`.
    What :func:`prepare_frame` does on a GPU, after the copy."""
    from helpers.textseg.pil_resize import resize_like_pil

    side = int(side)
    if tuple(x.shape[:2]) != (side, side):
        x = resize_like_pil(x, side)
    return normalise_on_device(x)


def normalise_on_device(x):
    """uint8 [S,S,3] (a tensor on any device) -> float32 [3,S,S] there, each grey level
    looked up in sam2's normalised values (:func:`_norm_values`)."""
    import torch

    table, offsets = _norm_tables(str(x.device))
    return torch.take(table, x.permute(2, 0, 1).long() + offsets)


@functools.lru_cache(maxsize=1)
def _norm_values() -> np.ndarray:
    """float32 [3,256]: grey level v of channel c as sam2's loader normalises it:
    ``float32(v / 255)`` (float64 division, stored in float32), minus ``mean[c]``, divided by
    ``std[c]``, both steps in float32."""
    import torch

    v = torch.from_numpy(np.arange(256, dtype=np.float64) / 255.0).float()
    mean = torch.tensor(_MEAN, dtype=torch.float32)[:, None]
    std = torch.tensor(_STD, dtype=torch.float32)[:, None]
    values = v[None, :].repeat(3, 1)
    values -= mean
    values /= std
    return values.numpy()


@functools.lru_cache(maxsize=4)
def _norm_tables(device: str):
    """(float32 [768]: the three channels' tables end to end, int64 [3,1,1]: where each
    channel's starts) on ``device``, made once per device."""
    import torch

    table = torch.from_numpy(_norm_values().reshape(-1).copy()).to(device)
    offsets = (torch.arange(3, dtype=torch.int64) * 256)[:, None, None].to(device)
    return table, offsets


@functools.lru_cache(maxsize=1)
def _norm_luts() -> tuple[np.ndarray, ...]:
    """Per channel c, [256,1] float32: grey level v -> sam2's normalised value of v."""
    return tuple(np.ascontiguousarray(row[:, None]) for row in _norm_values())


class PreparedFrames:
    """Frames ``first..first+n-1`` of a ``FrameLoader`` as sam2's ``state["images"]``.

    ``frames[t]`` is frame ``first + t`` prepared for the model (``prepare_frame``); a worker
    thread prepares the next few frames (in the direction propagation runs) while the model
    works on this one, on its own CUDA stream on a GPU. Only uint8 frames are held on the
    host and at most a few prepared frames on the device.
    """

    def __init__(self, loader, first: int, n: int, image_size: int, device):
        from concurrent.futures import ThreadPoolExecutor

        self.loader, self.first, self.n = loader, int(first), int(n)
        self.image_size, self.device = int(image_size), device
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="frame-prep")
        self._ready: dict[int, Any] = {}
        self._last = None
        from helpers.textseg.buffer_pool import BufferPool

        self._stream = None
        self._buffers = self._scratch = None
        # frames held as YUV are converted into these (reused) on the way to the model
        self._rgb = BufferPool((loader.height, loader.width, 3))
        if device.type == "cuda":
            import torch

            self._stream = torch.cuda.Stream(device)
        else:
            side = self.image_size
            self._buffers = BufferPool((3, side, side), np.float32)
            self._scratch = BufferPool((2, side * side * 3), np.uint8)
        self.prepared = 0

    def __len__(self) -> int:
        return self.n

    def _prepare(self, t: int):
        import torch

        rgb = self.loader.read(self.first + t, out=self._rgb.get())
        self.prepared += 1
        if self._stream is None:
            out, scratch = self._buffers.get(), self._scratch.get()
            return prepare_frame(rgb, self.image_size, self.device, out, scratch), None
        with torch.cuda.stream(self._stream):
            y = prepare_frame(rgb, self.image_size, self.device)
            done = torch.cuda.Event()
            done.record(self._stream)
        return y, done

    def __getitem__(self, t: int):
        import torch

        t = int(t)
        if not 0 <= t < self.n:
            raise IndexError(t)
        step = -1 if self._last is not None and t < self._last else 1
        self._last = t
        fut = self._ready.pop(t, None)
        for k in range(t + step, t + step * (_PREFETCH + 1), step):
            if 0 <= k < self.n and k not in self._ready:
                self._ready[k] = self._pool.submit(self._prepare, k)
        for k in [k for k in self._ready if abs(k - t) > _PREFETCH + 1]:
            self._ready.pop(k).cancel()
        y, done = fut.result() if fut is not None else self._prepare(t)
        if done is not None:
            cur = torch.cuda.current_stream(self.device)
            cur.wait_event(done)
            y.record_stream(cur)
        return y

    def close(self) -> None:
        for f in self._ready.values():
            f.cancel()
        self._ready.clear()
        self._pool.shutdown(wait=True)
        self._buffers = self._scratch = None


@contextlib.contextmanager
def _frames_hook(images, height: int, width: int):
    """sam2's ``init_state`` takes its frames from ``images`` (its ``load_video_frames`` hook)
    instead of reading a JPEG folder; everything else ``init_state`` does is unchanged."""
    import sam2.sam2_video_predictor as vp

    real = vp.load_video_frames

    def load_video_frames(**kw):
        return images, height, width

    vp.load_video_frames = load_video_frames
    try:
        yield
    finally:
        vp.load_video_frames = real


def _open_frames(tracker: VideoTracker, images: PreparedFrames, offload: bool):
    """A fresh inference state over frames in memory (sam2 backend)."""
    h, w = images.loader.height, images.loader.width
    with _frames_hook(images, h, w):
        return tracker.predictor.init_state(
            "<frames in memory>", offload_video_to_cpu=False, offload_state_to_cpu=offload
        )


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
    """{id: bool [H,W] mask} from logits [N,1,H,W] on the device.

    On a GPU the masks are thresholded and transposed there, so each arrives on the host
    already column-major (Fortran order, what COCO RLE encodes) and needs no host copy; the
    copy goes into pinned memory without blocking and is waited for once. On the CPU they
    are thresholded in place (the RLE encoder transposes them on its own thread)."""
    import torch

    shape = (len(ids), *logits.shape[-2:])
    if logits.device.type != "cuda":  # the host is the device: threshold once, no transpose
        m = logits.detach().float().numpy().reshape(shape) > 0
        return {int(i): m[k] for k, i in enumerate(ids)}
    m = (logits > 0).reshape(shape).transpose(1, 2)
    host = torch.empty(m.shape, dtype=torch.bool, pin_memory=True)
    host.copy_(m, non_blocking=True)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(m.device))
    done.synchronize()
    arr = host.numpy()
    return {int(i): arr[k].T for k, i in enumerate(ids)}


def _host_scores(ids, scores) -> dict[int, float]:
    """{id: score} from object score logits [N] on the device: one copy."""
    if scores is None:
        return {}
    return dict(zip((int(i) for i in ids), scores.detach().float().reshape(-1).tolist()))


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


def _tf_masks(tracker, state, out, encoder=None, scores=None) -> dict:
    logits = tracker.processor.post_process_masks(
        [out.pred_masks.float()],
        original_sizes=[[state.video_height, state.video_width]],
        binarize=False,
    )[0]
    if encoder is not None:
        return encoder.logits(out.object_ids, logits, scores)
    return _to_masks(out.object_ids, logits)


def _propagate(
    tracker: VideoTracker, state, a: int, b: int, reverse: bool = False, encoder=None
) -> Iterator[tuple[int, dict, dict]]:
    """Track every object in the state from local frame a to b (b < a when ``reverse``):
    (frame, {id: mask}, {id: SAM 2's object score logit}).

    Masks are bool arrays, or with a ``mask_encoder.MaskEncoder`` ``PendingMask``s: the
    logits are thresholded and encoded on the encoder's thread, not this one.

    Backwards (``reverse``: tracking objects a keyframe started back over earlier frames),
    sam2 recomputes every object on every frame it passes, the keyframe included, and keeps
    what it computed. For objects that were tracked before frame ``a`` that would undo the
    keyframe: an object re-seeded there (sam2 stores a prompt on a frame it already tracked
    as an ordinary, non-conditioning output) would lose its prompted mask, and the frames
    before it their forward masks, in the memory the forward pass goes on from. So their
    outputs are kept as they were (:class:`_ForwardHistory`); only objects first seen on
    frame ``a`` keep what the backward pass gives them."""
    n = abs(b - a)
    history = _ForwardHistory(tracker, state, a) if reverse else None
    try:
        if tracker.backend == "sam2":
            gen = tracker.predictor.propagate_in_video(
                state, start_frame_idx=a, max_frame_num_to_track=n, reverse=reverse
            )
            for t, ids, logits in gen:
                scores = _score_logits(tracker, state, t, ids)
                if encoder is not None:
                    masks = encoder.logits(ids, logits, scores)
                    yield t, masks, _scores(masks)
                else:
                    yield t, _to_masks(ids, logits), _host_scores(ids, scores)
                if not reverse:
                    _prune(state["output_dict_per_obj"], t)
        else:
            gen = tracker.predictor.propagate_in_video_iterator(
                state, start_frame_idx=a, max_frame_num_to_track=n, reverse=reverse
            )
            for out in gen:
                t, ids = out.frame_idx, out.object_ids
                scores = _score_logits(tracker, state, t, ids)
                masks = _tf_masks(tracker, state, out, encoder, scores)
                yield t, masks, _scores(masks) if encoder is not None else _host_scores(ids, scores)
                if not reverse:
                    _prune(state.output_dict_per_obj, out.frame_idx)
    finally:
        if history is not None:
            history.restore()


class _ForwardHistory:
    """What the objects tracked before local frame ``t`` hold (their non-conditioning outputs
    and the frames marked tracked), taken before a backward pass from ``t`` and put back after
    it, so the pass changes nothing of theirs. sam2's pending prompts are consolidated first
    (what its own propagation does first), so a prompt given on ``t`` is part of what is kept.
    Objects with nothing before ``t`` (started there) are left to the backward pass."""

    def __init__(self, tracker: VideoTracker, state, t: int):
        if tracker.backend == "sam2":
            if tracker.predictor._get_obj_num(state):
                tracker.predictor.propagate_in_video_preflight(state)
            per_obj, tracked = state["output_dict_per_obj"], state["frames_tracked_per_obj"]
        else:
            per_obj = getattr(state, "output_dict_per_obj", None) or {}
            tracked = getattr(state, "frames_tracked_per_obj", None) or {}
        self.kept: list[tuple[dict, dict, dict, dict]] = []
        for idx, out in per_obj.items():
            done = tracked.get(idx, {})
            frames = [*out["cond_frame_outputs"], *out["non_cond_frame_outputs"], *done]
            if not any(f < t for f in frames):
                continue  # first seen on t: what the backward pass gives it is its
            non_cond = out["non_cond_frame_outputs"]
            saved = {f: dict(o) if isinstance(o, dict) else o for f, o in non_cond.items()}
            self.kept.append((non_cond, saved, done, dict(done)))

    def restore(self) -> None:
        for non_cond, saved, done, saved_done in self.kept:
            non_cond.clear()
            non_cond.update(saved)
            done.clear()
            done.update(saved_done)
        self.kept = []


def _prune(output_dict_per_obj: dict, t: int) -> None:
    for d in output_dict_per_obj.values():
        old = d["non_cond_frame_outputs"]
        for k in [k for k in old if k < t - _MEMORY_WINDOW]:
            del old[k]


@without_jit_script_warning  # sam2 scripts its transforms: torch's FutureWarning
def _image_predictor(tracker: VideoTracker):
    if tracker.image_predictor is None:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        tracker.image_predictor = SAM2ImagePredictor(tracker.predictor)
        # the image predictor assumes 1024 px input; match a smaller image_size override
        side = int(tracker.predictor.image_size)
        tracker.image_predictor._bb_feat_sizes = [(side // 4 >> k,) * 2 for k in range(3)]
    return tracker.image_predictor


def _image_masks(tracker: VideoTracker, image: np.ndarray, boxes: np.ndarray, features_set=False):
    """Masks for detection boxes on one frame with SAM 2's image path (same weights): bool
    [N,H,W] on the device (None for other backends or no boxes).

    The predictor upsamples the low-resolution logits to the frame size and thresholds them
    there, so masks are full resolution; they stay on the device (sam2's ``predict`` would
    copy them to the host as float32). ``features_set``: the image predictor already holds
    this frame's features (no encoder pass here). The prompt encoder and mask decoder run
    uncompiled here (``sam2_compile.eager_heads``: a new batch size per number of boxes).
    """
    from helpers.textseg.sam2_compile import eager_heads

    if tracker.backend != "sam2" or len(boxes) == 0:
        return None
    ip = _image_predictor(tracker)
    if not features_set:
        ip.set_image(image)
    box = np.asarray(boxes, np.float32).reshape(-1, 4)
    _, coords, labels, unnorm_box = ip._prep_prompts(None, None, box, None, True)
    with eager_heads(tracker.predictor):
        masks, _, _ = ip._predict(coords, labels, unnorm_box, None, multimask_output=False)
    h, w = image.shape[:2]
    return masks.reshape(len(box), -1, h, w)[:, 0]


def _to_host(masks) -> np.ndarray:
    """A device bool tensor as a numpy array: one copy (pinned on a GPU), one wait."""
    import torch

    if masks.device.type != "cuda":
        return masks.cpu().numpy()
    host = torch.empty(masks.shape, dtype=torch.bool, pin_memory=True)
    host.copy_(masks, non_blocking=True)
    torch.cuda.current_stream(masks.device).synchronize()
    return host.numpy()


def pool_features(features: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Appearance embeddings [N,C]: a [C,h,w] feature map averaged under each [H,W] mask.

    The map's mean over the whole frame is subtracted first (what every position shares says
    nothing about one object); rows are unit length, zero for empty masks.
    """
    import cv2

    from helpers.textseg.identity import normalize_rows

    feats = np.asarray(features, dtype=np.float32)
    c, h, w = feats.shape
    feats = feats - feats.reshape(c, -1).mean(1)[:, None, None]
    flat = feats.reshape(c, -1)
    out = np.zeros((len(masks), c), dtype=np.float32)
    for k, m in enumerate(np.asarray(masks, dtype=bool)):
        wgt = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA).reshape(-1)
        if wgt.sum() > 1e-6:
            out[k] = flat @ wgt / wgt.sum()
    return normalize_rows(out)


def _features_from_state(tracker: VideoTracker, state, t: int, hw: tuple[int, int]) -> None:
    """Give the image predictor frame ``t``'s features from the video state (what
    ``set_image`` computes), reusing the image-encoder pass propagation made on that frame."""
    p = tracker.predictor
    ip = _image_predictor(tracker)
    _, backbone_out = state["cached_features"].get(t, (None, None))
    if backbone_out is None:
        p._get_image_feature(state, t, 1)
        _, backbone_out = state["cached_features"][t]
    _, vision_feats, _, _ = p._prepare_backbone_features(dict(backbone_out))
    if p.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + p.no_mem_embed
    feats = [
        f.permute(1, 2, 0).reshape(1, -1, *size)
        for f, size in zip(vision_feats[::-1], ip._bb_feat_sizes[::-1])
    ][::-1]
    ip.reset_predictor()
    ip._features = {"image_embed": feats[-1], "high_res_feats": feats[:-1]}
    ip._orig_hw = [tuple(hw)]
    ip._is_image_set = True


def keyframe_features(
    tracker: VideoTracker,
    image: np.ndarray,
    boxes: np.ndarray,
    masks: np.ndarray | None,
    session: Sam2Session | None = None,
    frame: int | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(masks [N,H,W], embeddings [N,C]) for a keyframe's detections.

    With the sam2 backend the frame goes through the image encoder once: its masks come from
    the boxes (unless the detector gave masks) and each embedding pools the encoder's
    features under the mask. With the propagation's ``session`` (frames in memory) and the
    keyframe's global ``frame`` number, the features propagation computed on that frame are
    reused, so a keyframe costs no second encoder pass. The transformers backend has no image
    path for masks here: its embeddings pool the vision encoder's output under the detector's
    masks, else the boxes.
    """
    if len(boxes) == 0 or tracker.backend not in ("sam2", "transformers"):
        return masks, None
    if tracker.backend == "transformers":
        if tracker.processor is None:
            return masks, None
        where = masks if masks is not None else _box_masks(boxes, image.shape[:2])
        return masks, pool_features(_tf_image_embedding(tracker, image), where)
    import torch

    from helpers.textseg.sam2_compile import eager_heads

    reuse = session is not None and frame is not None and session.in_memory
    with _autocast(tracker), torch.inference_mode(), eager_heads(tracker.predictor):
        if reuse:
            _features_from_state(tracker, session.state, frame - session.first, image.shape[:2])
        else:
            _image_predictor(tracker).set_image(image)
        where = masks
        if masks is None:
            where = _image_masks(tracker, image, boxes, features_set=True)
            masks = _to_host(where)
        embed = _image_predictor(tracker)._features["image_embed"][0]
        emb = pool_features_torch(embed, where)
    return masks, emb


def pool_features_torch(features, masks: np.ndarray) -> np.ndarray:
    """``pool_features`` on the features' device: only the [N,C] embeddings reach the host."""
    import torch
    import torch.nn.functional as F

    from helpers.textseg.identity import normalize_rows

    feats = features.float()
    c, h, w = feats.shape
    feats = feats - feats.reshape(c, -1).mean(1)[:, None, None]
    if isinstance(masks, torch.Tensor):  # on the device already
        m = masks.to(feats.device).float()[:, None]
    else:
        m = torch.as_tensor(np.asarray(masks, dtype=np.float32), device=feats.device)[:, None]
    wgt = F.interpolate(m, size=(h, w), mode="area").reshape(len(masks), -1)
    total = wgt.sum(1, keepdim=True)
    out = (wgt @ feats.reshape(c, -1).T) / total.clamp_min(1e-12)
    out = torch.where(total > 1e-6, out, torch.zeros_like(out))
    return normalize_rows(out.cpu().numpy())


def _box_masks(boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bool masks [N,H,W] filling each xyxy box."""
    out = np.zeros((len(boxes), *hw), dtype=bool)
    for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float32).reshape(-1, 4)):
        out[
            k,
            max(0, int(y0)) : max(0, int(np.ceil(y1))),
            max(0, int(x0)) : max(0, int(np.ceil(x1))),
        ] = True
    return out


def _tf_image_embedding(tracker: VideoTracker, image: np.ndarray) -> np.ndarray:
    """The transformers Sam2 vision encoder's image embedding [C,h,w] of one RGB frame."""
    import torch

    pixels = tracker.processor(images=image, return_tensors="pt")["pixel_values"]
    model = tracker.predictor
    pixels = pixels.to(tracker.device, dtype=next(model.parameters()).dtype)
    with torch.inference_mode():
        embed = model.get_image_embeddings(pixels)[-1]
    return embed[0].float().cpu().numpy()


def _click_point(box: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """A positive click: the mask pixel deepest inside the object, else the box centre."""
    if mask is not None and mask.any():
        import cv2

        dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
        y, x = np.unravel_index(int(dist.argmax()), dist.shape)
        return np.array([x + 0.5, y + 0.5], dtype=np.float32)
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float32)


# --------------------------------------------------------------------------- sessions


class NewIdRefused(RuntimeError):
    """The predictor does not take new object ids once tracking has started (older sam2)."""


def _chunk_folder(frames, first: int, end: int, root: Path) -> Path:
    """A folder whose 00000.jpg.. are frames first..end-1 (links, or copies if links fail)."""
    import os

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


def _score_logits(tracker: VideoTracker, state, t: int, ids):
    """SAM 2's object score logits [N] (> 0: the object is there) of ``ids`` on local frame
    ``t``, gathered on the device as the state keeps them (one tensor, no host sync); None
    when the state has none for some id."""
    import torch

    try:
        if tracker.backend == "sam2":
            per_obj, index = state["output_dict_per_obj"], state["obj_id_to_idx"]
        else:
            per_obj, index = state.output_dict_per_obj, state._obj_id_to_idx
        logits = []
        for i in ids:
            d = per_obj[index[int(i)]]
            o = d["non_cond_frame_outputs"].get(t) or d["cond_frame_outputs"].get(t)
            logit = None if o is None else o.get("object_score_logits")
            if logit is None:
                return None
            logits.append(logit.reshape(-1)[:1])
        return torch.cat(logits) if logits else None
    except (KeyError, AttributeError, TypeError):
        return None


def _scores(masks: dict) -> dict[int, float]:
    """id -> object score logit, from a frame's ``PendingMask``s that carry one."""
    return {i: m.score for i, m in masks.items() if getattr(m, "score", None) is not None}


class Sam2Session:
    """One inference state over frames ``first..end-1``; frame numbers are global.

    ``source`` is a JPEG folder (sam2 reads it) or ``PreparedFrames`` (frames in memory).
    With an ``encoder`` (``mask_encoder.MaskEncoder``) ``propagate`` yields ``PendingMask``s."""

    def __init__(
        self, tracker: VideoTracker, source, first: int, offload: bool, own: bool, encoder=None
    ):
        self.encoder = encoder
        self.in_memory = isinstance(source, PreparedFrames)
        self.folder = None if self.in_memory else source
        self.frames = source if self.in_memory else None
        self.tracker, self.first, self.own = tracker, first, own
        if self.in_memory:
            self.state = _open_frames(tracker, source, offload)
        else:
            self.state = _open(tracker, source, offload)

    def prompt(self, t: int, prompts: list[tuple[int, str, Any]]) -> dict[int, np.ndarray]:
        try:
            return _prompt(self.tracker, self.state, t - self.first, prompts)
        except RuntimeError as e:
            if "Cannot add new object id" in str(e):
                raise NewIdRefused(str(e)) from None
            raise

    object_scores: dict[int, float] = {}  # SAM 2's object score logits on the latest frame

    def propagate(self, a: int, b: int, reverse: bool = False):
        for t, masks, scores in _propagate(
            self.tracker, self.state, a - self.first, b - self.first, reverse, self.encoder
        ):
            self.object_scores = scores
            yield t + self.first, masks

    def remove(self, ids) -> bool:
        """Drop ids from the state; False when this backend cannot (the caller resets)."""
        p = self.tracker.predictor
        if self.tracker.backend != "sam2" or not hasattr(p, "remove_object"):
            return False
        for i in ids:
            p.remove_object(self.state, int(i), strict=False, need_output=False)
        return True

    def reset(self) -> None:
        """Forget every object and prompt (the frames' cached features stay)."""
        if self.tracker.backend == "sam2":
            self.tracker.predictor.reset_state(self.state)
        else:
            reset = getattr(self.state, "reset_tracking_data", None)
            (reset or self.state.reset_inference_session)()

    def close(self) -> None:
        self.state = None
        if self.frames is not None:
            self.frames.close()
        if self.own:
            shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Sam2Propagator:
    """Opens a ``Sam2Session`` per chunk of a ``media.VideoFrames`` folder or of a
    ``frame_loader.FrameLoader`` (a video decoded in memory: no frame folder; sam2 backend).
    With an ``encoder`` (set by the video loop) sessions yield masks still being encoded."""

    tracker: VideoTracker
    frames: Any  # media.VideoFrames | frame_loader.FrameLoader
    root: Path | None = None
    offload: bool = True
    session: Sam2Session | None = None  # the open session (keyframes reuse its features)
    encoder: Any = None  # mask_encoder.MaskEncoder

    def open(self, first: int, end: int) -> Sam2Session:
        self.session = self._open(first, end)
        return self.session

    def _open(self, first: int, end: int) -> Sam2Session:
        if hasattr(self.frames, "read") and self.tracker.backend == "sam2":
            size = int(self.tracker.predictor.image_size)
            images = PreparedFrames(self.frames, first, end - first, size, self.tracker.device)
            try:
                return Sam2Session(self.tracker, images, first, self.offload, False, self.encoder)
            except BaseException:
                images.close()
                raise
        folder = _chunk_folder(self.frames, first, end, self.root)
        own = folder != Path(self.frames.frame_dir)
        try:
            return Sam2Session(self.tracker, folder, first, self.offload, own, self.encoder)
        except BaseException:
            if own:
                shutil.rmtree(folder, ignore_errors=True)
            raise

    def context(self):
        """Silenced sam2 progress bars, autocast and inference mode for a chunk."""
        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(_quiet_sam2())
        stack.enter_context(_autocast(self.tracker))
        stack.enter_context(torch.inference_mode())
        return stack
