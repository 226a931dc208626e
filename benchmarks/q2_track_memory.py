"""Q2 track mask memory: the RAM the tracker's results hold and the files it writes for 1,800
frames x 5 objects with wavy outlines and holes at 1080p (synthetic masks, no model; CPU).

    python benchmarks/q2_track_memory.py                     # 1,800 frames (about a CPU-minute)
    python benchmarks/q2_track_memory.py --frames 40 --out q2_track_memory.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import files  # noqa: E402
from helpers.textseg import identity, render, track  # noqa: E402


def wavy_masks(objects: int, h: int, w: int, seed: int = 0):
    """frame -> [objects] bool masks: blobs of 150-400 px with wavy, changing outlines and
    two holes each, moving across the frame (what real segmentations look like to RLE)."""
    import cv2

    rng = np.random.default_rng(seed)
    sizes = rng.integers(75, 200, (objects, 2))
    starts = rng.uniform(0.1, 0.9, (objects, 2)) * (w, h)
    speed = rng.uniform(-2, 2, (objects, 2))
    freqs = rng.integers(3, 9, (objects, 3)) * np.array([1, 2, 4])
    amps = rng.uniform(0.04, 0.12, (objects, 3))
    th = np.linspace(0, 2 * np.pi, 720, endpoint=False)

    def frame(t: int) -> list[np.ndarray]:
        out = []
        for i in range(objects):
            cx, cy = (starts[i] + speed[i] * t) % (w, h)
            r = 1 + sum(amps[i, k] * np.sin(freqs[i, k] * th + 0.05 * t * (k + 1) + i)
                        for k in range(3))  # fmt: skip
            pts = np.stack([cx + sizes[i, 0] * r * np.cos(th), cy + sizes[i, 1] * r * np.sin(th)])
            m = np.zeros((h, w), np.uint8)
            cv2.fillPoly(m, [np.round(pts.T).astype(np.int32)], 1)
            for k in range(2):
                hx = cx + 0.4 * sizes[i, 0] * np.cos(t * 0.03 + 3 * k)
                hy = cy + 0.4 * sizes[i, 1] * np.sin(t * 0.02 + 3 * k)
                axes = (int(sizes[i, 0] * 0.15), int(sizes[i, 1] * 0.1))
                cv2.ellipse(m, (int(hx), int(hy)), axes, 30.0 * k, 0, 360, 0, -1)
            out.append(m.astype(bool))
        return out

    return frame


def memory(frames: int, objects: int = 5, h: int = 1080, w: int = 1920) -> dict:
    """RAM held by the tracker's results (``track.MaskStore`` + the per-frame records) and
    the files written (``track.write_tracks``: masks.json.xz past ``COMPACT_AFTER`` frames)
    for ``frames`` x ``objects`` wavy blobs at ``h`` x ``w``; ``frames`` below the compact
    threshold are also written compact, to measure it."""
    import gc
    import tempfile
    import tracemalloc

    from tqdm.auto import tqdm

    from helpers.textseg import track_masks

    make = wavy_masks(objects, h, w)
    book = identity.IdBook()
    for _ in range(objects):
        book._new("person")
    gc.collect()
    tracemalloc.start()
    store = track.MaskStore()
    records: list[dict] = []
    label_ids: dict[str, int] = {}
    for t in tqdm(range(frames), desc="masks", unit="frame"):
        rles = {i + 1: render.mask_to_rle(m, compressed=True) for i, m in enumerate(make(t))}
        objs = track.frame_records(rles, book, label_ids)
        store.put_rles(t, {o["id"]: o["mask"] for o in objs})
        records.append({"frame": t, "objects": objs})
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()  # the store + the JSON records (same RLEs)
    tracemalloc.stop()
    json_bytes = len(json.dumps(records, separators=(",", ":")).encode())
    old = track_masks.COMPACT_AFTER
    track_masks.COMPACT_AFTER = 0  # measure the compact layout at any length
    try:
        with tempfile.TemporaryDirectory() as d:
            video = (30.0, w, h, frames)
            track.write_tracks(Path(d), records, book, "person", video, {})
            disk = sum(f.stat().st_size for f in Path(d).iterdir())
    finally:
        track_masks.COMPACT_AFTER = old
    res = {
        "frames": frames,
        "objects": objects,
        "resolution": f"{w}x{h}",
        "held_mib": round(held / 2**20, 2),
        "rle_bytes_mib": round(store.nbytes() / 2**20, 2),
        "json_with_masks_mib": round(json_bytes / 2**20, 2),
        "compact_disk_mib": round(disk / 2**20, 2),
    }
    print(
        f"memory {frames} frames x {objects} wavy objects at {w}x{h}: held "
        f"{res['held_mib']} MiB (RLE strings {res['rle_bytes_mib']} MiB); on disk "
        f"{res['compact_disk_mib']} MiB (tracks.json + masks.json.xz; masks inside "
        f"tracks.json would be {res['json_with_masks_mib']} MiB)"
    )
    return res


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=1800, help="frames of 5 objects at 1080p")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = p.parse_args(argv)
    res = {"memory": memory(args.frames)}
    if args.out:
        files.atomic_write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
