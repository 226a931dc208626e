"""Frames of a video file decoded on a background thread and held in memory, a bounded window.

``FrameLoader`` decodes (``media.decode_stream``) ahead of the reader, at most ``capacity``
frames past the oldest frame still held; ``release(before)`` lets frames go once the outputs
are written. Host memory is therefore a constant number of frames, not the video's length.
It has ``VideoFrames``' fields (``num_frames``, ``fps``, ``width``, ``height``) and
``read(i)``, so the video loop can use it where it used a JPEG frame folder.
"""

from __future__ import annotations

import threading

import numpy as np

from helpers.errors import InputError


class FrameLoader:
    def __init__(self, stream, capacity: int = 232):
        self.stream = stream
        self.num_frames, self.fps = stream.num_frames, stream.fps
        self.width, self.height = stream.width, stream.height
        self.capacity = max(2, int(capacity))
        self._frames: dict[int, np.ndarray] = {}
        self._floor = 0  # frames before this are released
        self._next = 0  # the next frame to decode
        self._error: BaseException | None = None
        self._stop = False
        self._cv = threading.Condition()
        self.peak_held = 0
        self._thread = threading.Thread(target=self._run, name="frame-loader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from helpers.textseg import media

        try:
            # plain 4:2:0 frames are held as the decoder gave them (half the bytes of RGB)
            for i, rgb in enumerate(media.decode_stream(self.stream, raw=True)):
                with self._cv:
                    while not self._stop and i - self._floor >= self.capacity:
                        self._cv.wait()
                    if self._stop:
                        return
                    self._frames[i] = rgb
                    self._next = i + 1
                    self.peak_held = max(self.peak_held, len(self._frames))
                    self._cv.notify_all()
        except BaseException as e:  # reported to the reader
            with self._cv:
                self._error = e
                self._cv.notify_all()

    def read(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame ``i`` (RGB uint8 [H,W,3]), waiting for the decoder when it is not there yet;
        a frame held as YUV is converted (into ``out`` when given)."""
        f = self._held(i)
        return f.rgb(out) if hasattr(f, "rgb") else f

    def _held(self, i: int):
        if not 0 <= i < self.num_frames:
            raise InputError(f"Frame index {i} is out of range (0..{self.num_frames - 1}).")
        with self._cv:
            if i < self._floor:
                raise RuntimeError(f"frame {i} was already released (kept from {self._floor})")
            while i not in self._frames:
                if self._error is not None:
                    raise self._error
                if i >= self._next and not self._thread.is_alive():
                    raise RuntimeError("the frame loader stopped")
                self._cv.wait(0.5)
            return self._frames[i]

    def release(self, before: int) -> None:
        """Frames before ``before`` are no longer needed."""
        with self._cv:
            for k in [k for k in self._frames if k < before]:
                del self._frames[k]
            self._floor = max(self._floor, before)
            self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._frames.clear()
            self._cv.notify_all()
        self._thread.join(timeout=5)
