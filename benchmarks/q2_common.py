"""What the Q2 SAM 2.1 speed benchmarks share: the synthetic scene (image, JPEG frames, H.264
file), GPU timing and memory helpers, their command-line options and the run around a
measurement (device, random-weight detector, header, JSON).

The measurements themselves live one per file: ``q2_image_speed.py`` (latency per image),
``q2_video_speed.py`` (tracking FPS), ``q2_long_video.py`` (the 1,800-frame run) and
``q2_host_cost.py`` (host work per frame); ``q2_speed.py`` runs them together.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import files, runtime  # noqa: E402
from helpers.textseg import detect, segment  # noqa: E402

SIZES = ("tiny", "small", "base_plus", "large")
DEFAULT_OBJECTS = (1, 3, 16)  # objects tracked in the video measurements, one run per count
PROMPT = "red ball. blue box"


# --------------------------------------------------------------------------- GPU timing


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


@contextlib.contextmanager
def tf32(enabled: bool):
    """TF32 on/off for the block (the seed loop runs with PyTorch's fp32 defaults)."""
    import torch

    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@contextlib.contextmanager
def torch_defaults():
    """PyTorch's own matmul / cuDNN settings for the block, as a fresh process has them (TF32
    off for matmuls, on for convolutions, no cuDNN autotuning): what a script that follows a
    library's README runs with, since neither sam2 nor transformers changes them."""
    import torch

    cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    old = (cuda.allow_tf32, cudnn.allow_tf32, cudnn.benchmark)
    cuda.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = False, True, False
    try:
        yield
    finally:
        cuda.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = old


def median_ms(fn, n: int, warmup: int, device) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), times


class RssPeak:
    """Peak resident memory of this process (MiB) while the block runs, sampled every 20 ms."""

    def __init__(self):
        import threading

        self.peak = self._now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _now() -> float:
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._now())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = round(max(self.peak, self._now()), 1)


# --------------------------------------------------------------------------- the scene


def synthetic_image(h: int, w: int, t: float = 0.0) -> np.ndarray:
    """Sky/grass background, a red disc and a blue rectangle; ``t`` in [0, 1] moves them."""
    img = np.empty((h, w, 3), np.uint8)
    img[: h // 2] = (150, 190, 240)
    img[h // 2 :] = (90, 160, 80)
    yy, xx = np.ogrid[:h, :w]
    cx, cy, r = w * (0.15 + 0.6 * t), h * 0.65, h * 0.09
    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = (220, 40, 40)
    x0 = int(w * (0.7 - 0.4 * t))
    img[int(h * 0.4) : int(h * 0.6), x0 : x0 + w // 8] = (40, 70, 210)
    return img


def write_frames(folder: Path, n: int, h: int, w: int, workers: int | None = None) -> Path:
    """``n`` JPEG frames 00000.jpg.. of two objects crossing the frame (SAM 2's folder format).

    Frames already there are kept; the rest are drawn and encoded on ``workers`` threads
    (default: up to 8, one per CPU core) -- an 1,800-frame 720p video takes seconds, not a minute.
    """
    from concurrent.futures import ThreadPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        path = folder / f"{i:05d}.jpg"
        if not path.exists():
            files.atomic_save_image(path, synthetic_image(h, w, i / max(1, n - 1)))

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, range(n)))
    return folder


def write_video_file(path: Path, n: int, h: int, w: int) -> Path:
    """An H.264 MP4 of ``n`` frames of the synthetic scene (what a user would upload)."""
    from helpers.textseg import media

    frames = (synthetic_image(h, w, i / max(1, n - 1)) for i in range(n))
    return media.write_video(frames, path, fps=30.0)


# the most objects a frame holds apart: 64 at 720p are 11 x 6 cells of 116 x 120 px, boxes of
# 81 x 84 px, still five of SAM 2's 16-px feature cells across
MAX_OBJECTS = 64


def object_boxes(k: int, h: int, w: int) -> np.ndarray:
    """``k`` fixed boxes that never overlap (the same objects for both loops): a grid of
    near-square cells over the frame, filled row by row, each box the middle 70 % of its cell.
    16 objects at 720p: 6 columns x 3 rows of 213 x 240 px cells, boxes of 149 x 168 px."""
    if not 1 <= k <= MAX_OBJECTS:
        raise ValueError(f"object_boxes: k must be in 1..{MAX_OBJECTS}, got {k}")
    cols = math.ceil(math.sqrt(k * w / h))
    rows = math.ceil(k / cols)
    cw, ch = w / cols, h / rows
    inset = 0.15
    boxes = []
    for i in range(k):
        r, c = divmod(i, cols)
        x0, y0 = c * cw, r * ch
        boxes.append([x0 + inset * cw, y0 + inset * ch, x0 + (1 - inset) * cw,
                      y0 + (1 - inset) * ch])  # fmt: skip
    return np.array(boxes, np.float32)


def frame_size(name: str) -> tuple[int, int]:
    """``"720p"`` -> (720, 1280): height and 16:9 width (even)."""
    h = int(name.rstrip("p"))
    return h, (h * 16 // 9) // 2 * 2


def parse_objects(values) -> list[int]:
    """``["1", "3", "16"]``, ``["1,3,16"]`` or ``"1,3,16"`` -> ``[1, 3, 16]`` (each count once,
    in the order given); ``ValueError`` with what to change when a count is not in
    1..``MAX_OBJECTS``."""
    items = [values] if isinstance(values, (str, int)) else list(values)
    counts: list[int] = []
    for item in items:
        for part in str(item).replace(",", " ").split():
            try:
                k = int(part)
            except ValueError:
                raise ValueError(
                    f"--objects: {part!r} is not a whole number, e.g. 1 3 16"
                ) from None
            if not 1 <= k <= MAX_OBJECTS:
                raise ValueError(f"--objects: counts between 1 and {MAX_OBJECTS}, got {k}")
            if k not in counts:
                counts.append(k)
    if not counts:
        raise ValueError("--objects: give at least one count, e.g. 1 3 16")
    return counts


# --------------------------------------------------------------------------- options and run


def parse_args(argv=None, add=None, description: str | None = None):
    """The options every SAM 2.1 speed measurement reads; ``add(parser)`` adds more."""
    p = argparse.ArgumentParser(description=description or __doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--sizes", default=",".join(SIZES), help="SAM 2.1 sizes, comma-separated")
    p.add_argument("--n", type=int, default=20, help="timed runs per variant (median)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--image-px", type=int, default=1024, help="long side of the test image")
    p.add_argument("--boxes", type=int, default=3, help="boxes per image for SAM 2")
    p.add_argument("--compile", action="store_true", help="torch.compile SAM 2's image encoder")
    p.add_argument("--video-frames", type=int, default=120)
    p.add_argument("--video-res", default="720p")
    p.add_argument("--detect-every", type=int, default=30)
    p.add_argument(
        "--objects",
        nargs="+",
        default=list(DEFAULT_OBJECTS),
        help="objects tracked, one measurement per count: 1 3 16 (default) or 1,3,16",
    )
    p.add_argument(
        "--video-compile",
        default="auto",
        choices=("auto", "on", "off"),
        help="sam2's compiled predictor (vos_optimized) for both video loops (auto: on CUDA)",
    )
    p.add_argument("--chunk-size", type=int, default=200)
    p.add_argument("--long-frames", type=int, default=1800)
    if add is not None:
        add(p)
    p.add_argument(
        "--quick",
        action="store_true",
        help="sanity check: toy detector, SAM 2 tiny at 256 px, 2 runs, 6 frames of 180p",
    )
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    try:
        args.objects = parse_objects(args.objects)
    except ValueError as e:
        p.error(str(e))
    args.video_compile = {"on": True, "off": False}.get(args.video_compile, "auto")
    for s in args.sizes:
        segment.normalize_size(s)
    args.sam_image_size = None
    args.detector_size = "tiny"
    if args.quick:
        args.sizes = args.sizes if "--sizes" in (argv or sys.argv) else ["tiny"]
        args.n, args.warmup, args.image_px, args.boxes = 2, 1, 320, 2
        args.video_frames, args.video_res, args.detect_every = 6, "180p", 3
        args.long_frames = min(args.long_frames, 12)
        args.objects = args.objects if "--objects" in (argv or sys.argv) else [2]
        args.sam_image_size, args.detector_size = 256, "toy"
    return args


def make_detector(args, device):
    """Grounding DINO (``args.detector_size``: tiny, or toy for --quick) with random weights."""
    return detect.random_grounding_dino(
        words=detect.prompt_phrases(PROMPT), size=args.detector_size, device=device
    )


def run(args, parts) -> dict:
    """Run ``parts`` -- (result key, ``measure(args, device, detector, work)``, ``print_rows``)
    in order -- on one device with one random-weight detector; print their tables and write
    the results (``--out``)."""
    import torch

    device = runtime.pick_device(args.device)
    if device.type == "cuda":
        runtime.enable_fast_matmul()
    print(f"{runtime.gpu_summary()} | sizes {args.sizes} | quick={args.quick}", flush=True)
    detector = make_detector(args, device)
    results: dict = {
        "device": runtime.gpu_summary(),
        "torch": torch.__version__,
        "random_weights": True,
        "detector": f"grounding-dino ({args.detector_size}, random weights)",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
    }
    with tempfile.TemporaryDirectory(prefix="q2_speed_") as tmp:
        for key, measure, _ in parts:
            results[key] = measure(args, device, detector, Path(tmp))
    for key, _, print_rows in parts:
        if results.get(key):
            print_rows(results[key])
    if args.out:
        files.atomic_write_json(args.out, results)
        print("wrote", args.out)
    return results
