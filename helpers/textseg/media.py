"""Images and videos in, RGB uint8 arrays and JPEG frame folders out.

``load_image`` takes whatever a notebook user has at hand (a URL, a path, bytes, a PIL image,
a numpy array, an ipywidgets FileUpload value) and returns an ``HxWx3`` uint8 RGB array, or
raises ``InputError`` saying what was wrong. Videos become folders of ``00000.jpg ...`` (the
layout SAM 2's video predictor reads); ``write_video`` turns RGB frames back into an MP4.
Every reader of a video file gives its frames upright: the container's display rotation (a
phone's portrait clip is stored sideways) is applied, and sizes are the upright ones.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpers.errors import InputError
from helpers.fetch import fetch_bytes

MIN_SIDE = 8
MAX_PIXELS = 100_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


# --------------------------------------------------------------------------- images


def load_image(
    source: Any,
    *,
    timeout: float = 15,
    max_bytes: int = 30_000_000,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> np.ndarray:
    """Load ``source`` as an ``HxWx3`` uint8 RGB array.

    ``source``: http(s) URL, file path (str/Path), bytes, a binary file object, ``PIL.Image``,
    ``np.ndarray`` (HxW, HxWx1/2/3/4 or 3xHxW; uint8, uint16, int, bool or float — arrays are
    taken as RGB, not OpenCV's BGR), or an ipywidgets ``FileUpload`` value (or the widget);
    with several uploaded files the first is used. Every PIL mode becomes RGB (alpha is
    composited on white; 16-bit and float data are scaled to 8 bits) and EXIF orientation is
    applied. Raises ``InputError`` for unreachable/non-image URLs, missing or non-image files,
    truncated images, images smaller than ``min_side`` or larger than ``max_pixels``.
    """
    from PIL import Image

    name = "image"
    if isinstance(source, np.ndarray):
        image = _array_to_rgb(source)
    elif isinstance(source, Image.Image):
        image = _pil_to_rgb(_exif_transpose(source))
    elif isinstance(source, (bytes, bytearray, memoryview)):
        image = _decode(bytes(source), "the image data", max_pixels)
    elif isinstance(source, os.PathLike) or (
        isinstance(source, str) and not _is_url(source) and "://" not in source
    ):
        path = _check_file(source)
        name = str(path)
        image = _decode(path, f"file {path}", max_pixels)
    elif isinstance(source, str):
        if not _is_url(source):
            raise InputError(
                f"Unsupported address {source!r}: give an http(s) URL or a local file path."
            )
        name = source
        data = fetch_bytes(source, timeout=timeout, max_bytes=max_bytes)
        image = _decode(data, f"URL {source}", max_pixels)
    elif hasattr(source, "read") and callable(source.read):
        name = str(getattr(source, "name", "file object"))
        image = _decode(source.read(), name, max_pixels)
    elif _looks_like_upload(source):
        files = upload_to_bytes(source)
        name, data = files[0]
        image = _decode(data, f"uploaded file {name!r}", max_pixels)
    else:
        raise InputError(
            f"Cannot load an image from a {type(source).__name__}: give a URL, a file path, "
            "bytes, a PIL image, a numpy array or a FileUpload value."
        )
    h, w = image.shape[:2]
    if min(h, w) < min_side:
        raise InputError(
            f"{name} is {w}x{h} pixels, too small to segment (each side needs >= {min_side} "
            "pixels); use a larger image."
        )
    if h * w > max_pixels:
        raise InputError(
            f"{name} has {w}x{h} = {w * h:,} pixels, more than max_pixels={max_pixels:,}; "
            "downscale it first or raise max_pixels."
        )
    return image


def _is_url(s: str) -> bool:
    return s.lower().startswith(("http://", "https://"))


def _check_file(source: str | os.PathLike) -> Path:
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"Image file not found: {path}. Check the path (and the working folder).")
    if path.is_dir():
        raise InputError(
            f"{path} is a folder, not an image file: pass one image, or use the folder tools."
        )
    return path


@contextlib.contextmanager
def _pil_limits(max_pixels: int):
    """Strict decoding: truncated files fail, and the bomb limit sits at ``max_pixels``."""
    from PIL import Image, ImageFile

    old_trunc, old_max = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = old_trunc, old_max


def _decode(data: bytes | Path, what: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    fp = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        with _pil_limits(max_pixels):
            with Image.open(fp) as im:
                im.load()
                return _pil_to_rgb(_exif_transpose(im))
    except UnidentifiedImageError:
        hint = " (HEIC/AVIF photos: convert to JPEG or PNG first)" if isinstance(fp, Path) else ""
        raise InputError(
            f"{what} is not an image PIL can read{hint}; give a JPEG, PNG, WebP, BMP or TIFF."
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"{what} has more than max_pixels={max_pixels:,} pixels; downscale it first or "
            "raise max_pixels."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e)
        if "truncated" in msg.lower() or isinstance(e, EOFError):
            raise InputError(
                f"{what} is truncated or incomplete ({msg}); re-download or re-export it."
            ) from None
        raise InputError(f"{what} could not be decoded ({msg}); it may be corrupt.") from None


def _exif_transpose(im):
    from PIL import ImageOps

    try:
        out = ImageOps.exif_transpose(im)
    except Exception:  # broken EXIF blocks: keep the pixels as stored
        return im
    return im if out is None else out


def _pil_to_rgb(im) -> np.ndarray:
    """Any PIL mode -> HxWx3 uint8 RGB (alpha on white, high bit depth scaled to 8 bits)."""
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _array_to_rgb(np.asarray(im))
    if mode == "P":
        has_alpha = "transparency" in im.info or (
            im.palette is not None and im.palette.mode == "RGBA"
        )
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
        if mode == "RGB":
            return np.asarray(im, dtype=np.uint8).copy()
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "L" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8).copy()
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale numeric data to uint8 by its range (0..1 floats, 16-bit ints, else min..max)."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.size == 0:
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise InputError(f"Image arrays must be numeric; got dtype {a.dtype}.")
    af = a.astype(np.float64)
    if not np.isfinite(af).all():
        raise InputError("The image array contains NaN or infinite values; clean it first.")
    lo, hi = float(af.min()), float(af.max())
    if np.issubdtype(a.dtype, np.floating):
        if lo >= 0 and hi <= 1:
            af = af * 255
        elif lo < 0 or hi > 255:
            af = (af - lo) / max(hi - lo, 1e-12) * 255
    else:
        if lo >= 0 and hi <= 255:
            pass
        elif lo >= 0 and hi <= 65535:
            af = af / 257.0
        else:
            af = (af - lo) / max(hi - lo, 1e-12) * 255
    return np.clip(np.rint(af), 0, 255).astype(np.uint8)


def _array_to_rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 2, 3, 4):
        a = np.moveaxis(a, 0, -1)  # CHW -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (2, 3, 4)):
        raise InputError(f"Image arrays must be HxW, HxWx3 or HxWx4; got shape {tuple(a.shape)}.")
    a = _to_uint8(a)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.shape[-1] == 2:  # gray + alpha
        a = np.concatenate([np.repeat(a[..., :1], 3, axis=2), a[..., 1:]], axis=2)
    if a.shape[-1] == 4:
        alpha = a[..., 3:].astype(np.float32) / 255.0
        rgb = a[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


# --------------------------------------------------------------------------- uploads


def _looks_like_upload(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, dict) for v in value)
    return hasattr(value, "value") and isinstance(value.value, (dict, list, tuple))


def upload_to_bytes(value: Any) -> list[tuple[str, bytes]]:
    """``(filename, bytes)`` pairs from an ipywidgets ``FileUpload`` value (or the widget).

    ipywidgets 7.x: ``{filename: {"metadata": {...}, "content": bytes}}``;
    8.x: a tuple of ``{"name", "type", "size", "content": memoryview, ...}`` dicts.
    Raises ``InputError`` when nothing was uploaded.
    """
    if not isinstance(value, (dict, list, tuple)) and hasattr(value, "value"):
        value = value.value  # the FileUpload widget itself
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        if "content" in value:  # a single 8.x entry
            items.append((str(value.get("name", "upload")), value["content"]))
        else:
            for fname, entry in value.items():
                content = entry.get("content") if isinstance(entry, dict) else entry
                meta = entry.get("metadata", {}) if isinstance(entry, dict) else {}
                items.append((str(meta.get("name", fname)), content))
    elif isinstance(value, (list, tuple)):
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or "content" not in entry:
                raise InputError(
                    "Unrecognised FileUpload value: expected dicts with a 'content' entry."
                )
            items.append((str(entry.get("name", f"upload_{i}")), entry["content"]))
    else:
        raise InputError(f"Unrecognised FileUpload value of type {type(value).__name__}.")
    out = []
    for fname, content in items:
        if content is None:
            raise InputError(f"Uploaded file {fname!r} has no content; upload it again.")
        out.append((fname, bytes(content)))
    if not out:
        raise InputError("No file was uploaded: choose a file with the upload button first.")
    return out


def upload_names(value: Any) -> list[str]:
    """The file names in a ``FileUpload`` value of ipywidgets 7.x or 8.x (see
    :func:`upload_to_bytes`), without copying the contents; [] for an empty or unknown value."""
    if isinstance(value, dict):
        if "content" in value:  # a single 8.x entry
            return [str(value.get("name", "upload"))]
        return [str((e.get("metadata") or {}).get("name", n)) if isinstance(e, dict) else str(n)
                for n, e in value.items()]  # fmt: skip
    if isinstance(value, (list, tuple)):
        return [
            str(e.get("name", f"upload_{i}")) for i, e in enumerate(value) if isinstance(e, dict)
        ]
    return []


# --------------------------------------------------------------------------- resizing


def check_rgb_array(image) -> np.ndarray:
    """An ``HxWx3`` array as contiguous RGB uint8 (values clipped); a clear error otherwise."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise InputError(
            f"expected an HxWx3 RGB uint8 image array, got {shape}; load it with "
            "helpers.textseg.media.load_image first."
        )
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def fit_for_model(image: np.ndarray, max_side: int = 1024) -> tuple[np.ndarray, float]:
    """Downscale so the longer side is at most ``max_side``; returns ``(image, scale)``.

    ``scale`` = small / full (1.0 and the input itself when no resize was needed). Map boxes
    back with ``scale_boxes(xyxy, 1 / scale)`` and masks with ``masks_to_size``.
    """
    import cv2

    if max_side < 1:
        raise InputError(f"max_side must be a positive number of pixels, got {max_side}.")
    h, w = image.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if min(new_w, new_h) < MIN_SIDE:  # the models' processors would make a side of 0 px
        raise InputError(
            f"the image is {w}x{h} pixels, too elongated: shrunk to a long side of {max_side} "
            f"px its short side would be {min(new_w, new_h)} px (at least {MIN_SIDE} needed). "
            f"Crop it into pieces at most {max_side // MIN_SIDE} times longer than wide, or "
            "raise --max-side."
        )
    small = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=cv2.INTER_AREA)
    return small, scale


def scale_boxes(xyxy: np.ndarray, factor: float) -> np.ndarray:
    """Multiply box coordinates by ``factor`` (float32 copy)."""
    return (np.asarray(xyxy, dtype=np.float32).reshape(-1, 4) * np.float32(factor)).astype(
        np.float32
    )


def masks_to_size(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize bool masks ``[N,h,w]`` (or ``[h,w]``) to ``size=(H, W)`` -> bool ``[N,H,W]``."""
    import cv2

    masks = np.asarray(masks)
    single = masks.ndim == 2
    if single:
        masks = masks[None]
    if masks.ndim != 3:
        raise InputError(f"masks must be [N,H,W] or [H,W]; got shape {tuple(masks.shape)}.")
    H, W = int(size[0]), int(size[1])
    if masks.shape[1:] == (H, W):
        out = masks.astype(bool)
    else:
        out = np.zeros((masks.shape[0], H, W), dtype=bool)
        for i, m in enumerate(masks):
            m8 = m.astype(np.uint8) * 255
            out[i] = cv2.resize(m8, (W, H), interpolation=cv2.INTER_LINEAR) >= 128
    return out[0] if single else out


# --------------------------------------------------------------------------- orientation


def display_turns(frame, stream=None) -> int:
    """Counter-clockwise quarter turns (0..3) that show a decoded PyAV frame upright.

    Read from the frame's display matrix (``VideoFrame.rotation``: counter-clockwise degrees),
    else from the stream's ``rotate`` tag (clockwise degrees; older FFmpeg builds). Angles
    that are not a multiple of 90 go to the nearest quarter turn."""
    degrees = getattr(frame, "rotation", None)
    if degrees is None and stream is not None:
        tag = stream.metadata.get("rotate")
        with contextlib.suppress(TypeError, ValueError):
            degrees = -float(tag) if tag else None
    return round(float(degrees or 0) / 90) % 4


def upright(rgb: np.ndarray, turns: int, out: np.ndarray | None = None) -> np.ndarray:
    """``rgb`` turned counter-clockwise ``turns`` quarter turns (a contiguous copy, into
    ``out`` when it has the turned shape); ``rgb`` itself for 0 turns."""
    turns %= 4
    if not turns:
        return rgb
    import cv2

    code = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}
    h, w = rgb.shape[:2]
    shape = ((w, h) if turns % 2 else (h, w)) + rgb.shape[2:]
    if out is not None and out.shape != shape:
        out = None
    return cv2.rotate(rgb, code[turns], dst=out)


def _video_capture(path: Path):
    """OpenCV's reader of ``path`` and the quarter turns still to apply to its frames: 0 where
    OpenCV applies the container's rotation itself (its FFmpeg backend), else the turns its
    orientation metadata asks for."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        return cap, 0
    if cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1) and cap.get(cv2.CAP_PROP_ORIENTATION_AUTO):
        return cap, 0
    clockwise = cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0
    return cap, round(-float(clockwise) / 90) % 4


def _read_rgb(cap, turns: int) -> np.ndarray | None:
    """The next frame of an OpenCV reader as upright RGB, None at the end."""
    import cv2

    ok, bgr = cap.read()
    if not ok or bgr is None:
        return None
    return upright(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), turns)


# --------------------------------------------------------------------------- videos


@dataclass
class VideoFrames:
    frame_dir: Path
    num_frames: int
    fps: float
    width: int
    height: int
    frame_paths: list[Path] = field(default_factory=list)


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    import cv2

    from helpers.files import atomic_path

    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise InputError(f"Could not encode frame {path.name} as JPEG.")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def _shrink(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side is None:
        return rgb
    return fit_for_model(rgb, max_side)[0]


def _frame_number(stem: str) -> int | None:
    m = re.search(r"(\d+)$", stem)
    return int(m.group(1)) if m else None


def _list_frame_folder(folder: Path, allow_gaps: bool) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    if not files:
        raise InputError(
            f"Frame folder {folder} has no .jpg/.png frames; give a video file or a folder of "
            "numbered frames (00000.jpg, 00001.jpg, ...)."
        )
    numbered: dict[int, Path] = {}
    bad = []
    for p in files:
        n = _frame_number(p.stem)
        if n is None:
            bad.append(p.name)
        elif n in numbered:
            raise InputError(
                f"Frame folder {folder} has two frames numbered {n}: {numbered[n].name} and "
                f"{p.name}; keep one."
            )
        else:
            numbered[n] = p
    if bad:
        raise InputError(
            f"Frame names must end in a number (00000.jpg, frame_12.png); {folder} has "
            f"{len(bad)} that do not, e.g. {sorted(bad)[:3]}."
        )
    order = sorted(numbered)
    if not allow_gaps:
        for expected, n in zip(range(order[0], order[0] + len(order)), order):
            if n != expected:
                raise InputError(
                    f"Frame folder {folder} has a gap in its numbering: frame {expected} is "
                    f"missing (frames run {order[0]}..{order[-1]}). Fill the gap, or pass "
                    "allow_gaps=True to renumber the frames consecutively."
                )
    return [numbered[n] for n in order]


def _clear_frames(frame_dir: Path) -> None:
    for p in frame_dir.iterdir():
        if (p.is_file() or p.is_symlink()) and p.suffix.lower() in (".jpg", ".jpeg"):
            if p.stem.isdigit():
                p.unlink()


def _jpeg_as_is(path: Path, max_side: int | None) -> tuple[int, int] | None:
    """(height, width) of a JPEG frame that can be used without re-encoding it (no
    downscaling needed, no EXIF rotation), else None."""
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format != "JPEG" or im.getexif().get(0x0112, 1) != 1:
                return None
            w, h = im.size
    except Exception:  # unreadable here: the decoding path reports it properly
        return None
    if max_side is not None and max(w, h) > max_side:
        return None
    return h, w


def _link_frame(src: Path, dst: Path) -> None:
    """``dst`` points at ``src`` (a symlink; a byte copy where links are not allowed)."""
    import shutil

    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        from helpers.files import atomic_path

        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def video_to_frames(
    source: str | os.PathLike,
    frame_dir: str | os.PathLike | None = None,
    *,
    max_frames: int | None = None,
    stride: int = 1,
    max_side: int | None = None,
    allow_gaps: bool = False,
    quality: int = 95,
) -> VideoFrames:
    """Write the frames of a video file (or a folder of numbered frames) as ``00000.jpg ...``.

    Keeps every ``stride``-th frame, at most ``max_frames`` of them, downscaled to ``max_side``
    if given. ``frame_dir`` defaults to a new temporary folder; old numbered JPEGs in it are
    removed first. ``fps`` is the container's rate divided by ``stride`` (30 for folders).
    """
    from tqdm.auto import tqdm

    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}.")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be >= 1 (or None for all), got {max_frames}.")
    src = check_video_path(source)
    if src.is_file():
        probe_video(src)  # a video stream, and sides of at least MIN_SIDE pixels
    if frame_dir is not None:
        out_dir = Path(frame_dir)
    else:  # frames_<pid>_...: one left by a killed run is removed here
        from helpers.files import make_temp_dir

        out_dir = make_temp_dir("frames_")
    if src.is_dir() and out_dir.resolve() == src.resolve():
        raise InputError("frame_dir must be a different folder from the source frame folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_frames(out_dir)

    paths: list[Path] = []
    size: tuple[int, int] | None = None

    def emit(rgb: np.ndarray, what: str) -> None:
        nonlocal size
        if size is None:
            check_video_size(rgb.shape[1], rgb.shape[0], f"{what} of {src}")
        rgb = _shrink(rgb, max_side)
        if size is None:
            size = rgb.shape[:2]
        elif rgb.shape[:2] != size:
            raise InputError(
                f"{what} is {rgb.shape[1]}x{rgb.shape[0]} but earlier frames are "
                f"{size[1]}x{size[0]}; all frames of a video must have the same size."
            )
        p = out_dir / f"{len(paths):05d}.jpg"
        _write_jpeg(p, rgb, quality)
        paths.append(p)

    if src.is_dir():
        fps = 30.0
        files = _list_frame_folder(src, allow_gaps)[::stride]
        if max_frames is not None:
            files = files[:max_frames]
        for f in tqdm(files, desc="frames", unit="frame"):
            hw = _jpeg_as_is(f, max_side)
            if hw is None:
                emit(load_image(f, min_side=1), f"frame {f.name}")
                continue
            # a JPEG frame is used as it is: decoding and re-encoding it would add a second
            # generation of JPEG loss (and time)
            if size is None:
                check_video_size(hw[1], hw[0], f"frame {f.name} of {src}")
                size = hw
            elif hw != size:
                raise InputError(
                    f"frame {f.name} is {hw[1]}x{hw[0]} but earlier frames are "
                    f"{size[1]}x{size[0]}; all frames of a video must have the same size."
                )
            p = out_dir / f"{len(paths):05d}.jpg"
            _link_frame(f, p)
            paths.append(p)
    else:
        import cv2

        cap, turns = _video_capture(src)
        try:
            if not cap.isOpened():
                raise InputError(
                    f"Could not open video {src}: the file is corrupt or not a video format "
                    "OpenCV reads (try re-encoding it as H.264 MP4)."
                )
            fps_src = cap.get(cv2.CAP_PROP_FPS)
            fps_src = float(fps_src) if fps_src and np.isfinite(fps_src) and fps_src > 0 else 30.0
            fps = fps_src / stride
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            expect = -(-total // stride) if total > 0 else None
            if expect is not None and max_frames is not None:
                expect = min(expect, max_frames)
            bar = tqdm(total=expect, desc="frames", unit="frame")
            i = 0
            try:
                while max_frames is None or len(paths) < max_frames:
                    rgb = _read_rgb(cap, turns)
                    if rgb is None:
                        break
                    if i % stride == 0:
                        emit(rgb, f"frame {i}")
                        bar.update(1)
                    i += 1
            finally:
                bar.close()
        finally:
            cap.release()
        if not paths:
            raise InputError(
                f"Video {src} has no readable frames (empty or corrupt); check the file."
            )
        if expect is not None and len(paths) < expect:
            warn_short_video(src, expect, len(paths))
    h, w = size  # type: ignore[misc]
    return VideoFrames(
        frame_dir=out_dir, num_frames=len(paths), fps=fps, width=w, height=h, frame_paths=paths
    )


def warn_short_video(src, listed: int, decoded: int) -> None:
    """Say on stderr that a video decoded to fewer frames than its header lists (a truncated
    download, a damaged file): the run goes on with the frames there are."""
    import sys

    print(
        f"warning: video {src} lists {listed} frames but only {decoded} could be decoded (the "
        f"file is truncated or damaged); using those {decoded}. Re-download or re-encode it "
        "to get every frame.",
        file=sys.stderr,
        flush=True,
    )


def check_video_path(source: str | os.PathLike) -> Path:
    """``source`` as a Path when it is a video file or a frame folder; a named pipe, a device
    or a socket is refused (reading one would block or never end)."""
    src = Path(source).expanduser()
    if not src.exists():
        raise InputError(f"Video not found: {src}. Check the path (and the working folder).")
    if not (src.is_file() or src.is_dir()):
        raise InputError(
            f"{src} is not a regular file (a named pipe, device or socket); save the video to "
            "a file first and give that file."
        )
    return src


def _upright_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image as shown (EXIF orientation applied), from its header; None
    when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:
        return None
    return (h, w) if turned else (w, h)


def check_video_size(width: int, height: int, what) -> None:
    """A video whose frames have a side under ``MIN_SIDE`` pixels is refused (the models'
    processors would make a side of 0 px)."""
    if min(int(width), int(height)) < MIN_SIDE:
        raise InputError(
            f"{what} is {width}x{height} pixels, too small to track (each side needs >= "
            f"{MIN_SIDE} pixels); use a larger video."
        )


def probe_video(source: str | os.PathLike) -> None:
    """The checks a video gets before any model loads: a regular file with a video stream,
    or a frame folder, whose frames have every side >= ``MIN_SIDE`` pixels."""
    src = check_video_path(source)
    if src.is_dir():
        frames = _list_frame_folder(src, allow_gaps=True)
        size = _upright_size(frames[0])
        if size is None:  # unreadable here: the decoding path reports it properly
            return
        check_video_size(*size, f"frame {frames[0].name} of {src}")
        for f in frames[1:]:  # headers only: a few microseconds a frame
            other = _upright_size(f)
            if other is not None and other != size:
                raise InputError(
                    f"frame {f.name} of {src} is {other[0]}x{other[1]} but {frames[0].name} is "
                    f"{size[0]}x{size[1]}; all frames of a video must have the same size."
                )
        return
    try:
        import av
    except ImportError:
        return
    try:
        with av.open(str(src)) as c:
            video = c.streams.video
            size = (video[0].codec_context.width or 0, video[0].codec_context.height or 0)
    except IndexError:
        raise InputError(
            f"{src} has no video stream (an audio-only or data file); give a video file."
        ) from None
    except (av.error.FFmpegError, OSError, ValueError):
        return  # not something PyAV opens: the decoders say what is wrong with it
    if all(size):
        check_video_size(*size, f"video {src}")


def read_frame(frames: VideoFrames, i: int) -> np.ndarray:
    """Frame ``i`` of a frame folder as an RGB uint8 array."""
    import cv2

    if not 0 <= i < frames.num_frames:
        raise InputError(f"Frame index {i} is out of range (0..{frames.num_frames - 1}).")
    path = frames.frame_paths[i] if frames.frame_paths else frames.frame_dir / f"{i:05d}.jpg"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"Could not read frame {path}; the frame folder may have been changed.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_video(
    frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 30.0, progress: bool = True
) -> Path:
    """Write RGB uint8 frames to a browser-playable MP4 atomically (``progress``: a "writing
    video" bar; off where another bar already counts the same frames, as ``track``'s does: two
    open bars move the cursor with escape codes that a log or a pipe shows as ``ESC[A``).

    H.264 (``libx264``, ``yuv420p``, ``+faststart``) through PyAV (``av``, which ships its own
    FFmpeg); odd widths/heights are padded by one edge pixel, since 4:2:0 needs even sizes.
    Without PyAV (or its H.264 encoder) OpenCV writes it ('avc1', else 'mp4v', which browsers
    may not play); the encoder's console chatter about codecs it could not open is captured,
    not printed.
    """
    if not fps or not np.isfinite(fps) or fps <= 0:
        raise InputError(f"fps must be a positive number, got {fps}.")
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise InputError("write_video got no frames; nothing to write.")
    first = _array_to_rgb(first)
    frames = _checked_frames(_chain(first, it), first.shape[:2], progress)
    if h264_available():
        return _write_video_av(frames, first.shape[:2], Path(path), float(fps))
    return _write_video_cv2(frames, first.shape[:2], Path(path), float(fps))


def h264_available() -> bool:
    """True when PyAV is installed with an H.264 encoder (libx264)."""
    try:
        import av
    except ImportError:
        return False
    return "libx264" in av.codecs_available


def _checked_frames(
    frames: Iterator[np.ndarray], hw: tuple[int, int], progress: bool = True
) -> Iterator[np.ndarray]:
    from tqdm.auto import tqdm

    h, w = hw
    bar = tqdm(frames, desc="writing video", unit="frame", disable=not progress)
    for n, frame in enumerate(bar):
        rgb = _array_to_rgb(frame)
        if rgb.shape[:2] != (h, w):
            raise InputError(
                f"Frame {n} is {rgb.shape[1]}x{rgb.shape[0]}, but the video is {w}x{h}; "
                "all frames must have the same size."
            )
        yield rgb


def _even(rgb: np.ndarray) -> np.ndarray:
    """Pad an odd height/width by repeating the last row/column (yuv420p needs even sizes)."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _write_video_av(frames, hw: tuple[int, int], path: Path, fps: float) -> Path:
    from fractions import Fraction

    import av

    from helpers.files import atomic_path

    h, w = hw
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path, suffix=".mp4") as tmp:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as box:
            stream = box.add_stream("libx264", rate=rate)
            stream.width, stream.height = w + w % 2, h + h % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "20", "preset": "veryfast"}
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(_even(rgb), format="rgb24")
                box.mux(stream.encode(frame))
            box.mux(stream.encode(None))  # flush the encoder
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise InputError(f"Writing {path} produced an empty file; check the disk space.")
    return path


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Capture what native code (OpenCV's FFmpeg) writes to file descriptor 2; the text is
    put in the yielded list when the block ends."""
    import sys

    got: list[str] = []
    fd = 2  # native code writes to descriptor 2 whatever sys.stderr is
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield got
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            got.append(sink.read().decode("utf-8", "replace"))


def _write_video_cv2(frames, hw: tuple[int, int], path: Path, fps: float) -> Path:
    import cv2

    from helpers.files import atomic_path

    h, w = hw
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = None
        codecs = [_CODEC_OK] if _CODEC_OK else []
        with _captured_stderr() as chatter:
            for codec in [*codecs, "avc1", "mp4v"]:
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
                if writer.isOpened():
                    _remember_codec(codec)
                    break
                writer.release()
                writer = None
        if writer is None:
            raise InputError(
                "OpenCV could not open an MP4 writer (avc1 or mp4v) on this system; install "
                f"PyAV (pip install av) for H.264. Encoder said: {' '.join(chatter).strip()[:200]}"
            )
        try:
            for rgb in frames:
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise InputError(f"Writing {path} produced an empty file; check the disk space.")
    return path


_CODEC_OK: str | None = None  # the first codec that opened, so failed tries are not repeated


def _remember_codec(codec: str) -> None:
    global _CODEC_OK
    _CODEC_OK = codec


def _chain(first, rest) -> Iterator[np.ndarray]:
    yield first
    yield from rest


# --------------------------------------------------------------------------- decoding in memory


@dataclass
class VideoStream:
    """A video file to decode frame by frame (no frame folder): its upright size after
    ``max_side``."""

    path: Path
    num_frames: int
    fps: float
    width: int
    height: int
    max_side: int | None = None


def _count_frames(path: Path) -> int:
    """Frames in the first video stream: its packets counted by PyAV without decoding
    (exact where the container's own count is an estimate), else OpenCV's count."""
    try:
        import av

        with av.open(str(path)) as c:
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except Exception:
        import cv2

        cap = cv2.VideoCapture(str(path))
        try:
            return int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        finally:
            cap.release()


def open_video_stream(
    source: str | os.PathLike, max_frames: int | None = None, max_side: int | None = None
) -> VideoStream:
    """Probe a video file for ``decode_stream``: frame count, fps and the decoded size (upright:
    the size of the frames ``decode_stream`` gives)."""
    import cv2

    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be >= 1 (or None for all), got {max_frames}.")
    src = check_video_path(source)
    if not src.is_file():
        raise InputError(f"{src} is a folder, not a video file; give a video file.")
    probe_video(src)  # a video stream, and sides of at least MIN_SIDE pixels
    cap, turns = _video_capture(src)
    try:
        rgb = _read_rgb(cap, turns) if cap.isOpened() else None
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    if rgb is None:
        raise InputError(
            f"Could not read a frame of video {src}: the file is corrupt, empty or not a video "
            "format OpenCV reads (try re-encoding it as H.264 MP4)."
        )
    first = _first_decoded(src)  # the size of the frames decode_stream will give
    first = rgb if first is None else first
    check_video_size(first.shape[1], first.shape[0], f"video {src}")
    h, w = _shrink(first, max_side).shape[:2]
    n = max(1, _count_frames(src))
    listed = _listed_frames(src)
    if listed > n and (max_frames is None or max_frames > n):
        warn_short_video(src, listed, n)
    if max_frames is not None:
        n = min(n, int(max_frames))
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 30.0
    return VideoStream(src, n, fps, w, h, max_side)


def _listed_frames(path: Path) -> int:
    """The frame count the container's header gives (0 where it gives none)."""
    try:
        import av

        with av.open(str(path)) as c:
            return int(c.streams.video[0].frames or 0)
    except Exception:
        return 0


def _first_decoded(path: Path) -> np.ndarray | None:
    """The first frame as ``decode_stream``'s decoder gives it (None if it gives none)."""
    frames = _decoded_rgb(path)
    try:
        return next(frames, None)
    except Exception:  # what the decoder makes of a damaged file is decode_stream's to say
        return None
    finally:
        frames.close()


def _decoded_rgb(path: Path, raw: bool = False) -> Iterator[np.ndarray]:
    """Upright RGB uint8 frames straight from the decoder: PyAV (its FFmpeg converts to RGB),
    else OpenCV. ``raw``: plain 4:2:0 frames come as ``I420`` (converted when read)."""
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            cc = s.codec_context
            if (cc.width or 0) * (cc.height or 0) > 1920 * 1088:
                s.thread_type = "AUTO"  # beyond 1080p FFmpeg's frame threads keep up
            else:  # one thread: less CPU in all, and hundreds of 1080p frames a second
                cc.thread_count = 1
            for frame in c.decode(s):
                yield _frame_rgb(frame, raw, display_turns(frame, s))
        return
    cap, turns = _video_capture(path)
    try:
        while (rgb := _read_rgb(cap, turns)) is not None:
            yield rgb
    finally:
        cap.release()


# AVColorSpace values FFmpeg converts with BT.601 (unspecified, BT470BG, SMPTE170M) and
# AVColorRange values of limited ("MPEG") range (unspecified, MPEG)
_BT601, _LIMITED = (2, 5, 6), (0, 1)


class I420:
    """A decoded 4:2:0 frame as the decoder gave it (``yuv``: [H*3/2, W] uint8, half the bytes
    of RGB); ``rgb()`` converts it (OpenCV's BT.601 limited-range formula) and turns it
    upright (``turns`` counter-clockwise quarter turns). ``shape`` is the upright RGB shape."""

    __slots__ = ("yuv", "shape", "turns")

    def __init__(self, yuv: np.ndarray, height: int, width: int, turns: int = 0):
        self.yuv, self.turns = yuv, int(turns) % 4
        h, w = (int(width), int(height)) if self.turns % 2 else (int(height), int(width))
        self.shape = (h, w, 3)

    def rgb(self, out: np.ndarray | None = None) -> np.ndarray:
        import cv2

        if out is not None and out.shape != self.shape:
            out = None
        if not self.turns:
            return cv2.cvtColor(self.yuv, cv2.COLOR_YUV2RGB_I420, dst=out)
        return upright(cv2.cvtColor(self.yuv, cv2.COLOR_YUV2RGB_I420), self.turns, out)


def _frame_rgb(frame, raw: bool = False, turns: int = 0) -> np.ndarray | I420:
    """A PyAV frame as RGB uint8 [H,W,3], turned upright by ``turns`` counter-clockwise quarter
    turns. Plain 4:2:0 BT.601 video (most files) is converted by OpenCV
    (``COLOR_YUV2RGB_I420``: the same BT.601 limited-range formula as FFmpeg's default, within
    a few grey levels, at a third of its CPU time), or with ``raw`` kept as ``I420`` (turned
    when converted); anything else by FFmpeg."""
    fmt = frame.format.name
    plain = (
        fmt == "yuv420p"
        and frame.width % 2 == 0
        and frame.height % 2 == 0
        and int(getattr(frame, "colorspace", 2)) in _BT601
        and int(getattr(frame, "color_range", 0)) in _LIMITED
    )
    if not plain:
        return upright(frame.to_ndarray(format="rgb24"), turns)
    import cv2

    if raw:
        return I420(frame.to_ndarray(), frame.height, frame.width, turns)
    return upright(cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420), turns)


def decode_stream(stream: VideoStream, raw: bool = False) -> Iterator[np.ndarray]:
    """The stream's ``num_frames`` frames as RGB uint8 [H,W,3], decoded one at a time.
    ``raw``: frames that need no shrinking and are plain 4:2:0 video come as ``I420``
    (half the bytes; ``.rgb()`` converts).

    A file that ends early repeats its last frame (the count came from the container), and
    says so on stderr; frames whose size changes mid-stream are resized to the first one's
    (as OpenCV's reader does), also said once."""
    last = None
    frames = _decoded_rgb(stream.path, raw)
    size = (stream.height, stream.width)
    resized = False
    try:
        for i in range(stream.num_frames):
            try:
                rgb = next(frames, None)
            except Exception as e:  # a damaged stream: say which frame, not a decoder trace
                raise InputError(
                    f"Could not decode frame {i} of {stream.path} ({type(e).__name__}: {e}); "
                    "the file may be damaged: re-encode it (e.g. as H.264 MP4) and try again."
                ) from None
            if isinstance(rgb, I420) and rgb.shape[:2] != size:
                rgb = rgb.rgb()  # to be shrunk
            if rgb is None and last is not None:  # the file ended early
                _say_repeated(stream, i)
                for _ in range(i, stream.num_frames):
                    yield last
                return
            if rgb is not None:
                last = rgb if isinstance(rgb, I420) else _shrink(rgb, stream.max_side)
                if last.shape[:2] != size:
                    if not resized:
                        _say_resized(stream, i, last.shape[:2])
                        resized = True
                    last = _resized(last, size)
            if last is None:
                raise InputError(f"Video {stream.path} has no readable frames; check the file.")
            yield last
    finally:
        frames.close()


def _resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _say_resized(stream: VideoStream, i: int, hw: tuple[int, int]) -> None:
    import sys

    print(
        f"warning: frame {i} of {stream.path} is {hw[1]}x{hw[0]} but earlier frames are "
        f"{stream.width}x{stream.height}; frames from there on are resized to "
        f"{stream.width}x{stream.height}.",
        file=sys.stderr,
        flush=True,
    )


def _say_repeated(stream: VideoStream, decoded: int) -> None:
    import sys

    print(
        f"warning: video {stream.path} gave only {decoded} of its {stream.num_frames} frames "
        "(damaged or truncated); its last frame is repeated for the rest. Re-encode it to get "
        "every frame.",
        file=sys.stderr,
        flush=True,
    )


# --------------------------------------------------------------------------- side by side


def read_video_frames(source: str | os.PathLike, max_frames: int | None = None):
    """Upright RGB uint8 frames of a video file or a folder of numbered frames, one at a
    time."""
    src = Path(source).expanduser()
    if not src.exists():
        raise InputError(f"Video not found: {src}. Check the path (and the working folder).")
    if src.is_dir():
        for n, f in enumerate(_list_frame_folder(src, allow_gaps=True)):
            if max_frames is not None and n >= max_frames:
                return
            yield load_image(f, min_side=1)
        return
    cap, turns = _video_capture(src)
    try:
        if not cap.isOpened():
            raise InputError(f"Could not open video {src}: corrupt, or not a video OpenCV reads.")
        n = 0
        while max_frames is None or n < max_frames:
            rgb = _read_rgb(cap, turns)
            if rgb is None:
                return
            yield rgb
            n += 1
    finally:
        cap.release()


def side_by_side_frame(left: np.ndarray, right: np.ndarray, text: str = "") -> np.ndarray:
    """``left | right`` at the right frame's height (left resized to it), with ``"input"`` /
    ``"output"`` captions in a black band above the frames and ``text`` (e.g. ``"processing
    12.3 FPS"``) in one below them: captions never cover the video's own labels, and plain
    white on black stays sharp at any size (240p included)."""
    import cv2

    left, right = _array_to_rgb(left), _array_to_rgb(right)
    h = right.shape[0]
    if left.shape[0] != h:
        w = max(1, round(left.shape[1] * h / left.shape[0]))
        left = cv2.resize(left, (w, h), interpolation=cv2.INTER_AREA)
    video = np.concatenate([left, right], axis=1)
    scale = max(0.4, h / 720)
    thick = max(1, round(scale * 1.5))
    band = 2 * round(max(9, 17 * scale))  # even, so the frame stays even for H.264
    bottom = band if text else 0
    frame = np.zeros((band + h + bottom, video.shape[1], 3), np.uint8)
    frame[band : band + h] = video

    def put(s: str, x: int, top: int) -> None:
        (_, th), _ = cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        y = top + (band + th) // 2
        cv2.putText(frame, s, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)  # fmt: skip

    put("input", 8, 0)
    put("output", left.shape[1] + 8, 0)
    if text:
        put(text, left.shape[1] + 8, band + h)
    return frame


def side_by_side_video(
    original: str | os.PathLike,
    annotated: str | os.PathLike,
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    processing_fps: float | None = None,
    note: str = "",
) -> Path:
    """An MP4 (H.264, through :func:`write_video`) of ``original | annotated``, frame by frame,
    with ``processing <N> FPS`` (and ``note`` after it) drawn on it when ``processing_fps`` is
    given. Stops at the shorter of the two (a run limited to its first frames). ``fps``: the
    playback rate (default: the annotated video's)."""
    import cv2

    if fps is None:
        cap = cv2.VideoCapture(str(annotated))
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        cap.release()
    text = f"processing {processing_fps:.1f} FPS{note}" if processing_fps else ""
    pairs = zip(read_video_frames(original), read_video_frames(annotated))
    return write_video((side_by_side_frame(a, b, text) for a, b in pairs), path, fps=float(fps))
