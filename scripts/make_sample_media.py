"""Make the Q2 notebook's sample photo and video from public-domain photographs.

    pip install scikit-image     # ships the photographs; no network needed
    python scripts/make_sample_media.py [--out assets]

Writes (each small enough to commit):
  cat.jpg            scikit-image's ``data.chelsea()``: Chelsea the cat (CC0 by the
                     photographer, Stefan van der Walt), 451x300, JPEG quality 90; the same
                     bytes on every run. The notebook's image prompt: "cat".
  coffee_video.mp4   scikit-image's ``data.coffee()``: a cup of coffee with a spoon on a saucer
                     (CC0 by the photographer, Rachel Michetti), filmed by a virtual camera that
                     pans slowly while zooming in; 320x240, 10 fps, 5 s, H.264 (through
                     ``media.write_video``; the encoder's threads may change the bytes, not
                     what the frames show). The notebook's video prompt: "cup. spoon".
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers import files  # noqa: E402
from helpers.textseg import media  # noqa: E402

PHOTO = "cat.jpg"
VIDEO = "coffee_video.mp4"
VIDEO_SIZE = (320, 240)  # width, height
FPS = 10
SECONDS = 5


def photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photographs (``chelsea``, ``coffee``) as RGB uint8."""
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("scikit-image is needed: pip install scikit-image") from None
    return np.ascontiguousarray(getattr(data, name)())


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def camera_frames(rgb: np.ndarray, size=VIDEO_SIZE, fps: int = FPS, seconds: float = SECONDS):
    """Frames of a camera panning across ``rgb`` while zooming in.

    The crop window keeps the output's aspect ratio, shrinks from the photo's full height to
    75% of it and slides from left of the centre to right of it and up a little, eased in and
    out, at sub-pixel positions (no jitter)."""
    from PIL import Image

    im = Image.fromarray(rgb)
    h, w = rgb.shape[:2]
    out_w, out_h = size
    n = int(round(fps * seconds))
    for i in range(n):
        t = i / max(1, n - 1)
        ease = 0.5 - 0.5 * np.cos(np.pi * t)  # slow start and stop
        crop_h = h * (1.0 - 0.25 * ease)
        crop_w = min(w, crop_h * out_w / out_h)
        cx = w * (0.45 + 0.1 * ease)
        cy = h * (0.5 - 0.06 * ease)
        x0 = float(np.clip(cx - crop_w / 2, 0, w - crop_w))
        y0 = float(np.clip(cy - crop_h / 2, 0, h - crop_h))
        box = (x0, y0, x0 + crop_w, y0 + crop_h)
        frame = im.resize((out_w, out_h), resample=Image.Resampling.BICUBIC, box=box)
        yield np.asarray(frame)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "assets"), help="folder to write into")
    args = parser.parse_args(argv)
    out = Path(args.out)
    files.atomic_write_bytes(out / PHOTO, jpeg_bytes(photo("chelsea")))
    media.write_video(camera_frames(photo("coffee")), out / VIDEO, fps=FPS)
    for name in (PHOTO, VIDEO):
        print(f"{out / name}  {(out / name).stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
