"""A video's frames as decoded RGB arrays, read in order and held only while needed.

SAM 3 takes decoded frames directly (transformers' documented usage: ``load_video`` with
PyAV, then ``init_video_session(video=frames)``), so its route reads a video file the same
way, without the JPEG frame folder (quality 95) that the sam2 package needs. Frames are
decoded once, in order; ``DecodedVideo(i)`` returns frame ``i`` while it is among the last
``keep`` decoded (a chunk of SAM 3 frames and their rendering), older ones are let go.
A frame folder's images are decoded as they are (no re-encoding).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from helpers.errors import InputError


def _pyav_frames(path: Path) -> Iterator[np.ndarray]:
    """RGB frames of a video file, as transformers' PyAV reader decodes them, turned upright
    (the container's display rotation); a damaged tail ends the stream (the frames before it
    are kept)."""
    import av

    from helpers.textseg import media

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise InputError(
            f"Could not open video {path} ({type(e).__name__}): the file is corrupt or not a "
            "video (try re-encoding it as H.264 MP4)."
        ) from None
    with container:
        stream = container.streams.video[0]
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except (av.error.FFmpegError, OSError, ValueError):  # a truncated / damaged tail
                return
            turns = media.display_turns(frame, stream)
            yield media.upright(frame.to_ndarray(format="rgb24"), turns)


def _video_info(path: Path) -> tuple[int, float, int]:
    """(frames listed in the header, fps, frames that decode): one decode-only pass (no
    colour conversion; a few percent of SAM 3's own time per frame)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            listed = int(stream.frames or 0)
            rate = stream.average_rate
            fps = float(rate) if rate else 30.0
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as e:
        raise InputError(
            f"Could not open video {path} ({type(e).__name__}): the file is corrupt or not a "
            "video (try re-encoding it as H.264 MP4)."
        ) from None
    decoded = 0  # what really decodes: a truncated file lists more than it holds
    with contextlib.suppress(av.error.FFmpegError, OSError, ValueError), av.open(str(path)) as c:
        c.streams.video[0].thread_type = "AUTO"  # counting only: frame threads are fine
        for _ in c.decode(video=0):
            decoded += 1
    return listed, fps, decoded


class DecodedVideo:
    """Frames of a video file or a folder of numbered frames, decoded in order.

    ``num_frames``, ``fps``, ``width``, ``height`` (upright) as ``media.VideoFrames``; call it
    with a frame index. Indices may go back at most ``keep`` frames from the newest decoded one."""

    def __init__(
        self,
        source: str | os.PathLike,
        max_frames: int | None = None,
        max_side: int | None = None,
        keep: int = 256,
    ):
        from helpers.textseg import media

        src = media.check_video_path(source)
        if max_frames is not None and max_frames < 1:
            raise InputError(f"max_frames must be >= 1 (or None for all), got {max_frames}.")
        self.source, self.max_side, self.keep = src, max_side, max(2, int(keep))
        if src.is_dir():
            files = media._list_frame_folder(src, allow_gaps=False)[:max_frames]
            media.probe_video(src)  # sides of at least MIN_SIDE pixels, one size for all
            self.num_frames, self.fps = len(files), 30.0
            self._open = lambda: (media.load_image(f, min_side=1) for f in files)
        else:
            media.probe_video(src)  # a video stream, and sides of at least MIN_SIDE pixels
            listed, self.fps, decoded = _video_info(src)
            if decoded == 0:
                raise InputError(
                    f"Video {src} has no readable frames (empty or corrupt); check the file."
                )
            want = decoded if max_frames is None else min(decoded, max_frames)
            if listed and decoded < listed and (max_frames is None or max_frames > decoded):
                media.warn_short_video(src, listed, decoded)
            self.num_frames = want
            self._open = lambda: _pyav_frames(src)
        self._frames = self._open()
        self._cache: dict[int, np.ndarray] = {}
        self._next = 0
        self._resized = False  # said once that the stream's frames change size
        self._lock = threading.Lock()  # the tracker and the output writer read from two threads
        first = self(0)
        self.height, self.width = first.shape[:2]

    def _decode_next(self) -> np.ndarray:
        from helpers.textseg import media

        try:
            rgb = next(self._frames)
        except StopIteration:
            raise InputError(
                f"Video {self.source} ended after {self._next} frames while {self.num_frames} "
                "were counted; it may have changed while it was read."
            ) from None
        rgb = media._shrink(np.ascontiguousarray(rgb), self.max_side)
        if self._next and rgb.shape[:2] != (self.height, self.width):
            if self.source.is_dir():
                raise InputError(
                    f"frame {self._next} of {self.source} is {rgb.shape[1]}x{rgb.shape[0]} but "
                    f"earlier frames are {self.width}x{self.height}; all frames of a video must "
                    "have the same size."
                )
            if not self._resized:  # a stream that changes size: resized as OpenCV's reader does
                self._resized = True
                print(
                    f"warning: frame {self._next} of {self.source} is {rgb.shape[1]}x"
                    f"{rgb.shape[0]} but earlier frames are {self.width}x{self.height}; frames "
                    f"from there on are resized to {self.width}x{self.height}.",
                    file=sys.stderr,
                    flush=True,
                )
            rgb = media._resized(rgb, (self.height, self.width))
        return rgb

    def __call__(self, i: int) -> np.ndarray:
        """Frame ``i`` (HxWx3 uint8 RGB)."""
        if not 0 <= i < self.num_frames:
            raise InputError(f"Frame index {i} is out of range (0..{self.num_frames - 1}).")
        with self._lock:
            return self._frame(i)

    def _frame(self, i: int) -> np.ndarray:
        if i not in self._cache:
            if i < self._next:  # let go already: start the video over (rare)
                self._frames, self._next, self._cache = self._open(), 0, {}
            while self._next <= i:
                self._cache[self._next] = self._decode_next()
                self._next += 1
                for old in [k for k in self._cache if k < self._next - self.keep]:
                    del self._cache[old]
        return self._cache[i]
