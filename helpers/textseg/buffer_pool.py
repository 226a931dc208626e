"""Reusable host arrays for per-frame work (decoded frames, prepared model inputs).

A fresh multi-megabyte array per video frame costs the kernel more in page faults (zeroing
new pages) than the work that fills it. ``BufferPool.get()`` hands back an array no one refers
to any more (CPython's reference count: a numpy view, a ``torch.from_numpy`` tensor or a dict
entry holding it keeps it taken), else a new one; the pool grows to the number of arrays
alive at once and no further.
"""

from __future__ import annotations

import sys
import threading

import numpy as np


class BufferPool:
    def __init__(self, shape, dtype=np.uint8):
        self.shape, self.dtype = tuple(int(v) for v in shape), np.dtype(dtype)
        self._all: list[np.ndarray] = []
        self._lock = threading.Lock()

    def get(self) -> np.ndarray:
        """An array of the pool's shape and dtype (its contents are stale)."""
        with self._lock:
            for k in range(len(self._all)):
                if sys.getrefcount(self._all[k]) <= 2:  # the list's and the call's: free
                    self._all.append(self._all.pop(k))  # taken: to the back
                    return self._all[-1]
            a = np.empty(self.shape, self.dtype)
            self._all.append(a)
            return a

    def __len__(self) -> int:
        return len(self._all)
