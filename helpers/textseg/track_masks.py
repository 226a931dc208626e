"""The masks of a long tracked video in a compact file next to ``tracks.json``.

``tracks.json`` keeps one compressed COCO RLE per object per frame (``"mask"``) for videos up
to ``COMPACT_AFTER`` frames. Longer videos keep everything else there (ids, labels, scores,
boxes, areas per frame) and move the masks to ``masks.json.xz``: per object, the frames it
appears on and their COCO RLE ``counts`` strings, LZMA-compressed. COCO RLE of wavy outlines
repeats itself a lot from frame to frame, so this is about 3x smaller than the JSON (1,800
frames x 5 objects at 1080p: ~7 MB instead of ~18 MB). ``read_tracks`` gives either layout
back with ``"mask"`` in every object, so readers need not care.

    {"format": "coco-rle-per-object", "size": [H, W],
     "objects": {"3": {"frames": [0, 1, ...], "counts": ["...", "...", ...]}, ...}}
"""

from __future__ import annotations

import json
from pathlib import Path

COMPACT_AFTER = 900  # frames (30 s at 30 fps): longer videos get masks.json.xz
MASKS_FILE = "masks.json.xz"
FORMAT = "coco-rle-per-object"


def per_object(records: list[dict]) -> tuple[dict[str, dict], list[int] | None]:
    """``{id: {"frames": [...], "counts": [...]}}`` from the per-frame records (their
    ``"mask"`` entries are removed) and the masks' [H, W]."""
    objects: dict[str, dict] = {}
    size = None
    for r in records:
        for o in r["objects"]:
            m = o.pop("mask", None)
            if m is None:
                continue
            size = size or [int(v) for v in m["size"]]
            run = objects.setdefault(str(o["id"]), {"frames": [], "counts": []})
            run["frames"].append(int(r["frame"]))
            run["counts"].append(m["counts"])
    return objects, size


def write_masks(path: str | Path, records: list[dict], frame_size) -> Path:
    """Move the records' masks into ``path`` (LZMA JSON, written atomically)."""
    import lzma

    from helpers.files import atomic_path

    objects, size = per_object(records)
    doc = {"format": FORMAT, "size": size or [int(v) for v in frame_size], "objects": objects}
    path = Path(path)
    with atomic_path(path) as tmp, lzma.open(tmp, "wt", encoding="ascii", preset=6) as f:
        json.dump(doc, f, separators=(",", ":"))
    return path


def read_tracks(json_path: str | Path) -> dict:
    """``tracks.json`` with ``"mask"`` (COCO RLE) in every object of every frame, whether
    the masks are inside it or in its ``masks.json.xz``."""
    import lzma

    from helpers.errors import InputError

    json_path = Path(json_path)
    doc = json.loads(json_path.read_text())
    ref = doc.get("masks")
    if not ref:
        return doc
    path = json_path.parent / ref["file"]
    if not path.is_file():
        raise InputError(f"{json_path} keeps its masks in {path}, which is missing.")
    with lzma.open(path, "rt", encoding="ascii") as f:
        masks = json.load(f)
    size = masks["size"]
    at: dict[tuple[int, int], str] = {}
    for i, run in masks["objects"].items():
        for t, c in zip(run["frames"], run["counts"]):
            at[(t, int(i))] = c
    for r in doc["frames"]:
        for o in r["objects"]:
            c = at.get((int(r["frame"]), int(o["id"])))
            if c is not None:
                o["mask"] = {"size": size, "counts": c}
    return doc
