"""Regenerate the small synthetic sample media in this folder.

    python assets/make_samples.py

Writes (each well under 1 MB, deterministic):
  sample.jpg            640x427 still: sky, ground, a red ball, a blue box, a green "tree"
  sample_video.mp4      320x240, 10 fps, 4 s: a red ball and a blue box moving; the ball leaves
                        the frame and comes back (to exercise id re-use in tracking)
  eval_small/images/    three 160x120 scenes ...
  eval_small/masks/     ... with their ground-truth "ball" masks (0/255 PNG, same stems)

Nothing here needs a network or a model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from helpers.files import atomic_path, atomic_save_image  # noqa: E402

RED = (220, 40, 40)
BLUE = (40, 70, 210)
GREEN = (40, 150, 60)
BROWN = (110, 75, 40)


def _background(h: int, w: int, horizon: float = 0.6) -> np.ndarray:
    """Sky gradient above ``horizon`` (fraction of height), textured grass below."""
    img = np.zeros((h, w, 3), np.uint8)
    hz = int(h * horizon)
    t = np.linspace(0, 1, hz)[:, None]
    sky = (1 - t) * np.array([120, 170, 235]) + t * np.array([200, 225, 250])
    img[:hz] = sky[:, None, :].astype(np.uint8)
    rng = np.random.default_rng(0)
    grass = np.array([90, 160, 80]) + rng.integers(-12, 12, size=(h - hz, w, 1))
    img[hz:] = np.clip(grass, 0, 255).astype(np.uint8)
    return img


def _disk(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _rect(h: int, w: int, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)


def _paint(img: np.ndarray, mask: np.ndarray, color, shade: bool = True) -> None:
    """Fill ``mask`` with ``color``, slightly darker towards the bottom (a hint of 3-D)."""
    if not mask.any():
        return
    ys = np.nonzero(mask)[0]
    y0, y1 = ys.min(), max(ys.max(), ys.min() + 1)
    f = 1.0 - 0.35 * (np.arange(img.shape[0]) - y0) / (y1 - y0) if shade else np.ones(img.shape[0])
    col = np.clip(np.array(color)[None, :] * np.clip(f, 0.5, 1.0)[:, None], 0, 255)
    rows = np.broadcast_to(col[:, None, :], img.shape)
    img[mask] = rows[mask].astype(np.uint8)


def make_still(h: int = 427, w: int = 640) -> np.ndarray:
    img = _background(h, w)
    _paint(img, _rect(h, w, 470, 150, 490, 300), BROWN, shade=False)  # trunk
    _paint(img, _disk(h, w, 480, 130, 60), GREEN)  # crown
    _paint(img, _rect(h, w, 250, 220, 390, 330), BLUE)  # box
    _paint(img, _disk(h, w, 150, 300, 55), RED)  # ball
    return img


def video_frames(n: int = 40, h: int = 240, w: int = 320):
    """Frames of a ball that rolls right, leaves the frame and comes back; a box that drifts."""
    bg = _background(h, w)
    for i in range(n):
        t = i / (n - 1)
        img = bg.copy()
        bx = 40 + 200 * t
        _paint(img, _rect(h, w, bx, 120, bx + 60, 180), BLUE)
        # ball: x goes 60 -> 420 (off-screen) during the first 60 %, then back to 120
        cx = 60 + 360 * (t / 0.6) if t < 0.6 else 420 - 300 * ((t - 0.6) / 0.4)
        _paint(img, _disk(h, w, cx, 190 - 30 * np.sin(np.pi * t * 2), 28), RED)
        yield img


def write_mp4(frames, path: Path, fps: float) -> Path:
    import cv2

    frames = list(frames)
    h, w = frames[0].shape[:2]
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError("OpenCV could not open an MP4 writer (mp4v).")
        for f in frames:
            writer.write(np.ascontiguousarray(f[:, :, ::-1]))
        writer.release()
    return path


def make_eval(root: Path, n: int = 3, h: int = 120, w: int = 160) -> None:
    rng = np.random.default_rng(1)
    for k in range(n):
        img = _background(h, w, horizon=0.5)
        bx, by = rng.uniform(10, w - 60), rng.uniform(h * 0.5, h - 40)
        _paint(img, _rect(h, w, bx, by, bx + 45, by + 30), BLUE)
        cx, cy, r = rng.uniform(25, w - 25), rng.uniform(25, h - 25), rng.uniform(12, 20)
        ball = _disk(h, w, cx, cy, r)
        _paint(img, ball, RED)
        atomic_save_image(root / "images" / f"scene{k}.jpg", img)
        atomic_save_image(root / "masks" / f"scene{k}.png", (ball * 255).astype(np.uint8))


def main() -> None:
    atomic_save_image(HERE / "sample.jpg", make_still())
    write_mp4(video_frames(), HERE / "sample_video.mp4", fps=10)
    make_eval(HERE / "eval_small")
    for p in sorted(HERE.rglob("*")):
        if p.is_file() and p.suffix in {".jpg", ".png", ".mp4"}:
            print(f"{p.relative_to(HERE)}  {p.stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
