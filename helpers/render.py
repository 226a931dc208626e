"""Draw and save segmentation results: overlays with stable per-id colours, COCO RLE, JSON/PNG.

Images are ``HxWx3`` uint8 RGB; results are ``supervision.Detections`` (see INTERFACES).
An instance's id is its ``tracker_id`` when the detections have one, else its index.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from helpers.errors import InputError, unit_interval

# 20 distinct, saturated colours (RGB). Index = id % 20, so an id keeps its colour everywhere.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 225, 25),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
    (255, 99, 71),
)


def color_for_id(i: int) -> tuple[int, int, int]:
    """RGB colour for instance/track id ``i`` (same id -> same colour, in every frame)."""
    return PALETTE[int(i) % len(PALETTE)]


def parse_color(color) -> tuple[int, int, int] | None:
    """An overlay colour: ``None`` / ``"auto"`` / ``""`` -> None (each id its own palette
    colour); a CSS name (``"red"``), ``"#ff8800"``, ``"#f80"``, ``"255,136,0"`` or an RGB
    tuple -> that RGB for every instance."""
    if color is None:
        return None
    if isinstance(color, (tuple, list, np.ndarray)):
        parts = list(color)
    else:
        text = str(color).strip()
        if text.lower() in ("", "auto", "per-id", "palette"):
            return None
        if "," in text:
            parts = text.split(",")
        else:
            from PIL import ImageColor

            try:
                return tuple(int(v) for v in ImageColor.getrgb(text)[:3])  # type: ignore[return-value]
            except ValueError:
                raise InputError(
                    f"unknown colour {color!r}; use a name (red), #rrggbb, 'r,g,b' or auto "
                    "(a colour per id)."
                ) from None
    try:
        rgb = tuple(int(round(float(v))) for v in parts)
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise InputError(f"a colour needs three values 0..255 (r,g,b); got {color!r}.")
    return rgb  # type: ignore[return-value]


def _text_color_for(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def instance_ids(detections) -> np.ndarray:
    """Per-instance ids: ``tracker_id`` if present, else ``0..N-1``."""
    n = len(detections)
    if detections.tracker_id is not None and len(detections.tracker_id) == n:
        return np.asarray(detections.tracker_id, dtype=int)
    return np.arange(n, dtype=int)


def _names(detections) -> list[str]:
    n = len(detections)
    names = detections.data.get("class_name") if detections.data else None
    if names is not None and len(names) == n:
        return [str(x) for x in names]
    if detections.class_id is not None:
        return [str(int(c)) for c in detections.class_id]
    return ["object"] * n


def default_labels(detections) -> list[str]:
    """``"name #id 0.87"`` per instance (score left out when there is none)."""
    ids = instance_ids(detections)
    conf = detections.confidence
    out = []
    for k, (name, i) in enumerate(zip(_names(detections), ids)):
        text = f"{name} #{int(i)}"
        if conf is not None and len(conf) == len(ids):
            text += f" {float(conf[k]):.2f}"
        out.append(text)
    return out


_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX, the font supervision uses
_MIN_SCALE = 0.3  # smallest text scale still readable; longer labels are cut with ".."
_MAX_SPOTS = 16384  # place_labels tries at most this many spots per label (all for <= 60 labels)


def place_labels(boxes_xyxy, label_sizes_wh, image_wh, scores=None) -> np.ndarray:
    """Label rectangles ``[N,4]`` (int ``x0, y0, x1, y1``, ends exclusive) for the ``N`` boxes:
    each fully inside the ``image_wh`` image (a label larger than the image is cut to it) and
    none overlapping another while the image has room for it.

    Labels are placed one by one, highest ``score`` first (else in order), each at the first
    free one of: just above its box's top-left corner, inside the top-left, below the
    bottom-left, inside the bottom-left, then the same four right-aligned (each clamped into
    the image). If none is free, at the free spot nearest the first of these among those whose
    left or right and top or bottom edges line up with the image's, its box's or a placed
    label's: a free label can slide left and up until it touches one of them, so if any spot is
    free, one of these is (searched in full up to ~60 labels; with more, the ``_MAX_SPOTS``
    nearest). Only when none is free does it overlap, at the first candidate. Deterministic.
    """
    img_w, img_h = int(image_wh[0]), int(image_wh[1])
    boxes = np.rint(np.asarray(boxes_xyxy, dtype=float).reshape(-1, 4)).astype(int)
    sizes = np.minimum(np.asarray(label_sizes_wh, dtype=int).reshape(-1, 2), (img_w, img_h))
    order = np.arange(len(boxes))
    if scores is not None and len(scores) == len(boxes):
        order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    rects = np.zeros((len(boxes), 4), dtype=int)
    used, no_room = 0, []  # area of the labels placed apart; sizes that found no free spot
    for k, i in enumerate(order):
        (bx0, by0, bx1, by1), (lw, lh), placed = boxes[i], sizes[i], rects[order[:k]]
        xs, ys = [bx0, bx1 - lw], [by0 - lh, by0, by1, by1 - lh]
        first = np.clip((xs[0], ys[0]), 0, (img_w - lw, img_h - lh))
        rect = _first_free([(x, y) for x in xs for y in ys], (lw, lh), image_wh, placed)
        # the full search, unless the free area is too small or a label no larger found none
        room = used + lw * lh <= img_w * img_h and not any(w <= lw and h <= lh for w, h in no_room)
        if rect is None and room:
            xs += [0, *placed[:, 2], *(placed[:, 0] - lw)]
            ys += [0, *placed[:, 3], *(placed[:, 1] - lh)]
            spots = np.stack(np.meshgrid(np.unique(xs), np.unique(ys)), -1).reshape(-1, 2)
            rect = _first_free(spots, (lw, lh), image_wh, placed, near=first)
        if rect is None:
            no_room.append((lw, lh))
            rect = (*first, *(first + (lw, lh)))
        else:
            used += lw * lh
        rects[i] = rect
    return rects


def _first_free(xy, size_wh, image_wh, placed, near=None):
    """The first rectangle of size ``size_wh`` at a top-left corner of ``xy`` (clamped into the
    image) that misses every ``placed`` rectangle, else None. With ``near``, the
    ``_MAX_SPOTS`` corners nearest to it are tried, nearest first."""
    xy = np.clip(np.asarray(xy, dtype=int).reshape(-1, 2), 0, np.subtract(image_wh, size_wh))
    if near is not None:
        xy = xy[np.argsort(((xy - near) ** 2).sum(1), kind="stable")[:_MAX_SPOTS]]
    for start in range(0, len(xy), 1024):  # in chunks, to stop soon after the first free one
        rects = np.hstack([xy[start : start + 1024], xy[start : start + 1024] + size_wh])
        x0, y0, x1, y1 = (rects[:, None, j] for j in range(4))
        hits = (x0 < placed[:, 2]) & (placed[:, 0] < x1) & (y0 < placed[:, 3]) & (placed[:, 1] < y1)
        free = np.flatnonzero(~hits.any(1))
        if len(free):
            return rects[free[0]]
    return None


def _label_style(h: int, w: int) -> tuple[float, int]:
    """Text scale and padding of the labels on an ``h`` x ``w`` image."""
    side = max(h, w)
    return max(0.4, side / 1600), max(3, round(side / 200))


def _fit_text(text: str, scale: float, pad: int, max_wh) -> tuple[str, float, int, tuple]:
    """``(text, scale, thickness, (w, h))`` of a label no larger than ``max_wh`` where
    possible: the scale shrunk (not below ``_MIN_SCALE``), then the text cut with ".."
    (Hershey fonts have no ellipsis glyph)."""
    import cv2

    def measure(t: str, s: float) -> tuple[int, int, int]:
        thick = max(1, round(s * 2))
        (tw, th), _ = cv2.getTextSize(t, _FONT, s, thick)
        return thick, tw, th

    max_w, max_h = max_wh
    thick, tw, th = measure(text, scale)
    if tw + 2 * pad > max_w or th + 2 * pad > max_h:
        fit = min((max_w - 2 * pad) / max(tw, 1), (max_h - 2 * pad) / max(th, 1))
        scale = max(_MIN_SCALE, scale * fit)
        thick, tw, th = measure(text, scale)
    kept = text
    while tw + 2 * pad > max_w and kept:
        kept = kept[:-1]
        text = kept.rstrip() + ".."
        thick, tw, th = measure(text, scale)
    return text, scale, thick, (tw + 2 * pad, th + 2 * pad)


def label_layout(
    image_shape, detections, labels: list[str] | None = None
) -> tuple[np.ndarray, list[tuple[str, float, int]]]:
    """Where :func:`annotate` draws the labels on an image of ``image_shape``: their rectangles
    (:func:`place_labels`, best scores placed first) and per label ``(text, scale,
    thickness)``, the scale shrunk and the text cut with ".." where it would not fit the
    image. ``labels`` default to :func:`default_labels`."""
    h, w = image_shape[:2]
    n = len(detections)
    if labels is None:
        labels = default_labels(detections)
    elif len(labels) != n:
        raise InputError(f"Got {len(labels)} labels for {n} detections.")
    scale, pad = _label_style(h, w)
    fitted = [_fit_text(str(t), scale, pad, (w, h)) for t in labels]
    rects = place_labels(detections.xyxy, [f[3] for f in fitted], (w, h), detections.confidence)
    return rects, [f[:3] for f in fitted]


def annotate(
    image: np.ndarray,
    detections,
    *,
    show_boxes: bool = True,
    show_labels: bool = True,
    opacity: float = 0.5,
    labels: list[str] | None = None,
    color=None,
) -> np.ndarray:
    """Overlay masks, boxes (supervision annotators) and labels on a copy of ``image``.

    Colours come from ``color_for_id`` of each instance id, or ``color`` (see
    :func:`parse_color`) for every instance; ``opacity`` is the masks' (0 = outline only by
    the boxes, 1 = solid). Labels (``labels``, else :func:`default_labels`) lie fully inside
    the image, at the rectangles of :func:`label_layout`: next to their boxes, never over each
    other while the image has room (see :func:`place_labels`), a label too wide for the image
    drawn smaller and cut with "..". Pixels outside every mask, box and label stay unchanged.
    """
    import cv2
    import supervision as sv

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(
            f"annotate needs an HxWx3 uint8 RGB image; got {image.shape} {image.dtype}."
        )
    opacity = unit_interval("opacity", opacity)
    fixed = parse_color(color)
    n = len(detections)
    if n == 0:
        return image.copy()
    h, w = image.shape[:2]
    if detections.mask is not None and tuple(detections.mask.shape[1:]) != (h, w):
        raise InputError(
            f"Masks are {detections.mask.shape[2]}x{detections.mask.shape[1]} but the image is "
            f"{w}x{h}; resize them with media.masks_to_size first."
        )
    ids = instance_ids(detections)
    lookup = np.arange(n)  # palette built per call, in detection order
    colors = [fixed or color_for_id(i) for i in ids]
    palette = sv.ColorPalette([sv.Color(r=r, g=g, b=b) for r, g, b in colors])
    scene = np.ascontiguousarray(image[..., ::-1])  # supervision draws on BGR arrays
    if detections.mask is not None:
        scene = sv.MaskAnnotator(color=palette, opacity=opacity).annotate(
            scene, detections, custom_color_lookup=lookup
        )
    if show_boxes:
        thickness = max(1, round(max(h, w) / 400))
        scene = sv.BoxAnnotator(color=palette, thickness=thickness).annotate(
            scene, detections, custom_color_lookup=lookup
        )
    if show_labels:
        rects, texts = label_layout(image.shape, detections, labels)
        pad = _label_style(h, w)[1]
        for (x0, y0, x1, y1), (text, scale, thick), rgb in zip(rects, texts, colors):
            label = scene[y0:y1, x0:x1]  # a view: text can't spill out of its label
            label[:] = rgb[::-1]
            text_h = cv2.getTextSize(text, _FONT, scale, thick)[0][1]
            ink = _text_color_for(rgb)[::-1]  # black text on light colours
            cv2.putText(label, text, (pad, pad + text_h), _FONT, scale, ink, thick, cv2.LINE_AA)
    return np.ascontiguousarray(scene[..., ::-1])


# --------------------------------------------------------------------------- COCO RLE


def mask_to_rle(mask: np.ndarray, compressed: bool = False) -> dict:
    """COCO RLE ``{"size": [H, W], "counts": ...}`` of a 2-D mask.

    Runs go down the columns (Fortran order) and alternate 0/1 starting with a zero-run
    (which is 0 long when the first pixel is set). ``counts`` is a list of ints, or with
    ``compressed`` COCO's compact ASCII string (what ``pycocotools.mask.encode`` gives, as
    ``str``), typically 5-10x smaller in memory and in JSON.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"mask_to_rle needs one [H,W] mask; got shape {tuple(mask.shape)}.")
    h, w = mask.shape
    if compressed:
        try:
            from pycocotools import mask as mask_utils
        except ImportError:
            return {"size": [int(h), int(w)], "counts": compress_counts(_runs(mask))}
        enc = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": [int(h), int(w)], "counts": enc["counts"].decode("ascii")}
    return {"size": [int(h), int(w)], "counts": _runs(mask)}


def _runs(mask: np.ndarray) -> list[int]:
    flat = np.asarray(mask).astype(bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return [int(r) for r in runs]


def compress_counts(counts: list[int]) -> str:
    """COCO's compact string for a list of run lengths.

    Each count (from the third on, minus the count two places before it) is written as
    signed 5-bit groups, low bits first, 0x20 marking "more groups follow", each group
    offset by 48 into printable ASCII.
    """
    out = []
    for i, c in enumerate(counts):
        x = int(c) - int(counts[i - 2]) if i > 2 else int(c)
        more = True
        while more:
            group = x & 0x1F
            x >>= 5
            more = not ((x == 0 and not group & 0x10) or (x == -1 and group & 0x10))
            out.append(chr(group + (0x20 if more else 0) + 48))
    return "".join(out)


def decompress_counts(s: str | bytes) -> list[int]:
    """Run lengths of a COCO compact RLE string (the inverse of ``compress_counts``)."""
    if isinstance(s, bytes):
        s = s.decode("ascii")
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            group = ord(s[p]) - 48
            x |= (group & 0x1F) << (5 * k)
            more = bool(group & 0x20)
            p += 1
            k += 1
            if not more and group & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_to_mask(rle: dict) -> np.ndarray:
    """Decode a COCO RLE (uncompressed list counts, or compressed string counts) -> bool [H,W]."""
    try:
        h, w = (int(x) for x in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise InputError("An RLE must be a dict with 'size': [H, W] and 'counts'.") from None
    if isinstance(counts, (str, bytes)):
        try:
            from pycocotools import mask as mask_utils
        except ImportError:
            counts = decompress_counts(counts)
        else:
            enc = counts.encode("ascii") if isinstance(counts, str) else counts
            return mask_utils.decode({"size": [h, w], "counts": enc}).astype(bool)
    counts = np.asarray(counts, dtype=np.int64)
    if (counts < 0).any() or int(counts.sum()) != h * w:
        raise InputError(
            f"RLE counts sum to {int(counts.sum())} but size {h}x{w} has {h * w} pixels."
        )
    values = (np.arange(len(counts)) % 2).astype(bool)
    flat = np.repeat(values, counts)
    return flat.reshape((h, w), order="F")


def rle_area(rle: dict) -> int:
    """Foreground pixel count of an RLE."""
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        coco = _coco(rle)
        if coco is not None:
            from pycocotools import mask as mask_utils

            return int(mask_utils.area(coco))
        return int(sum(decompress_counts(counts)[1::2]))
    return int(sum(counts[1::2]))


def _coco(rle: dict) -> dict | None:
    """The RLE as pycocotools wants it (bytes counts), or None without pycocotools."""
    try:
        import pycocotools.mask  # noqa: F401
    except ImportError:
        return None
    counts = rle["counts"]
    enc = counts.encode("ascii") if isinstance(counts, str) else counts
    return {"size": [int(v) for v in rle["size"]], "counts": enc}


def mask_bbox(mask: np.ndarray) -> list[int]:
    """``[x0, y0, x1, y1]`` (inclusive-exclusive) of the set pixels; ``[0, 0, 0, 0]`` if none."""
    ys, xs = np.nonzero(np.asarray(mask))
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def rle_bbox(rle: dict) -> list[int]:
    """COCO-style ``[x, y, width, height]`` of an RLE (as ``pycocotools.mask.toBbox``)."""
    h = int(rle["size"][0])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        coco = _coco(rle)
        if coco is not None:
            from pycocotools import mask as mask_utils

            return [int(v) for v in mask_utils.toBbox(coco)]
        counts = decompress_counts(counts)
    starts = np.cumsum([0, *counts[:-1]])
    fg = [(int(s), int(c)) for s, c in zip(starts[1::2], counts[1::2]) if c > 0]
    if not fg:
        return [0, 0, 0, 0]
    x0, x1 = fg[0][0] // h, (fg[-1][0] + fg[-1][1] - 1) // h + 1
    y0, y1 = h, 0
    for s, c in fg:
        if s // h != (s + c - 1) // h:  # the run wraps past a column: rows 0..h-1 all set
            y0, y1 = 0, h
            break
        y0, y1 = min(y0, s % h), max(y1, (s + c - 1) % h + 1)
    return [x0, y0, x1 - x0, y1 - y0]


# --------------------------------------------------------------------------- outputs


def detections_to_records(detections) -> list[dict]:
    """One JSON-ready dict per instance: id, label, class_id, score, box, area, mask (RLE)."""
    n = len(detections)
    ids = instance_ids(detections)
    names = _names(detections)
    records = []
    for k in range(n):
        box = [round(float(v), 2) for v in np.asarray(detections.xyxy[k]).tolist()]
        rec: dict[str, Any] = {
            "id": int(ids[k]),
            "label": names[k],
            "class_id": None if detections.class_id is None else int(detections.class_id[k]),
            "score": None
            if detections.confidence is None
            else round(float(detections.confidence[k]), 4),
            "box": box,
        }
        if detections.mask is not None:
            m = detections.mask[k]
            rec["area"] = int(np.count_nonzero(m))
            rec["mask"] = mask_to_rle(m)
        else:
            rec["area"] = int(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))
            rec["mask"] = None
        records.append(rec)
    return records


def union_mask(detections, size: tuple[int, int]) -> np.ndarray:
    """Union of all instance masks as a bool [H,W] (all False without masks)."""
    h, w = size
    if detections.mask is None or len(detections) == 0:
        return np.zeros((h, w), dtype=bool)
    return np.asarray(detections.mask, dtype=bool).any(axis=0)


def save_image_outputs(
    image: np.ndarray,
    detections,
    out_dir: str | os.PathLike,
    stem: str,
    *,
    prompt: str | None = None,
    extra: dict | None = None,
    color=None,
    opacity: float = 0.5,
) -> dict[str, Path]:
    """Write ``{stem}_mask.png`` (union, 0/255), ``{stem}_overlay.png`` and ``{stem}.json``.

    The three are written as a unit: each to a temporary file first, and only when all three
    are complete are they renamed into place, the JSON (what a resumed folder run checks)
    last. A failure (disk full, ...) leaves the old set, or nothing, never a mix.
    ``extra`` (e.g. timings, source) is merged into the JSON. ``color`` / ``opacity`` style
    the overlay (see :func:`annotate`). Returns ``{"mask": path, "overlay": path, "json": path}``.
    """
    import contextlib
    import json

    from PIL import Image

    from helpers.files import _json_default, atomic_path

    image = np.asarray(image)
    h, w = image.shape[:2]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "mask": out / f"{stem}_mask.png",
        "overlay": out / f"{stem}_overlay.png",
        "json": out / f"{stem}.json",
    }
    union = union_mask(detections, (h, w))
    overlay = annotate(image, detections, color=color, opacity=opacity)  # bad style: no files
    doc: dict[str, Any] = {"image": {"width": int(w), "height": int(h)}}
    if prompt is not None:
        doc["prompt"] = prompt
    records = detections_to_records(detections)
    doc["num_instances"] = len(records)
    doc["instances"] = records
    if extra:
        doc.update(extra)
    text = json.dumps(doc, default=_json_default) + "\n"
    # entered JSON first, so its rename (on leaving) comes last; leaving by an exception
    # removes every temporary and renames none
    with contextlib.ExitStack() as stack:
        tmp_json = stack.enter_context(atomic_path(paths["json"]))
        tmp_overlay = stack.enter_context(atomic_path(paths["overlay"]))
        tmp_mask = stack.enter_context(atomic_path(paths["mask"]))
        tmp_json.write_bytes(text.encode("utf-8"))
        Image.fromarray(np.asarray(overlay)).save(tmp_overlay, format="PNG")
        Image.fromarray(union.astype(np.uint8) * 255).save(tmp_mask, format="PNG")
    return paths


def candidates_figure(
    image: np.ndarray,
    masks: np.ndarray,
    scores,
    title: str = "",
    best: int | None = None,
    details: list[str] | None = None,
):
    """Figure with one panel per candidate mask (score in the title); the best is framed.

    ``details`` (one line per candidate, e.g. the criteria of ``segment.choose_mask``) go
    under each panel."""
    from matplotlib.figure import Figure

    image = np.asarray(image)
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim == 2:
        masks = masks[None]
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if masks.ndim != 3 or len(scores) != len(masks):
        raise InputError(
            f"candidates_figure needs masks [K,H,W] and K scores; got {masks.shape}, {len(scores)}."
        )
    k = len(masks)
    if best is None and k:
        best = int(np.argmax(scores))
    panels = max(k, 1)
    fig = Figure(figsize=(3.2 * panels, 3.4))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for j, ax in enumerate(axes):
        ax.imshow(image)
        ax.set_xticks([])
        ax.set_yticks([])
        if j >= k:
            ax.set_title("no candidates")
            continue
        rgba = np.zeros((*masks[j].shape, 4), dtype=np.float32)
        rgba[masks[j]] = (*(np.array(color_for_id(j)) / 255.0), 0.55)
        ax.imshow(rgba)
        is_best = j == best
        ax.set_title(
            f"#{j}  score {scores[j]:.3f}" + ("  (best)" if is_best else ""),
            fontweight="bold" if is_best else "normal",
            color="tab:green" if is_best else "black",
        )
        if details is not None and j < len(details):
            # one criterion a line: a single long line runs into the next panel's
            ax.set_xlabel(details[j].replace("  ", "\n").replace(" = ", "\n= "), fontsize=8)
        for spine in ax.spines.values():
            spine.set_visible(is_best)
            spine.set_color("tab:green")
            spine.set_linewidth(4)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def weights_text(weights: dict) -> str:
    """The weights of a mask choice for a reader: ``sam ×1, compact ×0.25, box ×0.25``."""
    return ", ".join(f"{name} ×{float(w):g}" for name, w in weights.items() if w)


def choice_details(info: dict) -> list[str]:
    """One line per candidate from ``segment.choose_mask``'s breakdown: each weighted criterion
    and the total, e.g. ``"sam .91x1  compact .80x.25  box .70x.25 = 1.29"``."""
    weights = info.get("weights", {})
    k = len(info.get("total", []))
    lines = []
    for j in range(k):
        parts = [
            f"{name} {float(info[name][j]):.2f}x{float(w):g}"
            for name, w in weights.items()
            if w and name in info
        ]
        total = info["total"][j]
        lines.append("  ".join(parts) + (f" = {total:.2f}" if total is not None else " (empty)"))
    return lines
