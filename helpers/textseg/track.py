"""Video tracking: text prompt -> boxes on keyframes -> SAM 2 masks propagated through the video.

How it works (``track_video``):

1. With the sam2 backend a video file is decoded in memory on a background thread
   (``frame_loader.FrameLoader``: uint8 frames, a bounded window) and each frame is prepared
   for the model on the device just ahead of propagation (``sam2_video.PreparedFrames``);
   otherwise (a frame folder, ``frame_dir`` given, other backends) the video becomes a folder
   of JPEG frames (``media.video_to_frames``; a folder of JPEG frames is used as it is).
2. Frames are processed in chunks of ``chunk_size``; each chunk has its own SAM 2 inference
   state, so memory stays bounded on long videos. Objects alive at the end of a chunk are
   carried into the next one by prompting its first frame (the previous chunk's last frame)
   with their last masks under the same ids.
3. On the first frame of each chunk and every ``detect_every`` frames the detector runs; SAM 2
   gives each box a mask and an appearance embedding (image-encoder features under the mask).
   ``identity.IdBook`` decides who is who: tracked objects that were detected are re-seeded
   from the fresh detection (drift cannot build up), tracked objects the detector missed are
   kept for a while (``keep_missed``, in seconds or frames, while their masks look
   right) and then retired from the SAM 2 state (their ids stay), detections of retired
   objects get their old id back by appearance where they could plausibly be, and only the
   rest get new ids. When a keyframe shows that two tracks swapped objects, or that a lost
   track re-acquired another object, the frames since the previous keyframe get their right
   ids back (``repair``). With ``backfill`` (the default) an object a keyframe starts is
   also tracked backwards to the previous keyframe, so its masks begin where it came into
   view. A track started by one detection that ends without a second one, unless it left
   through an edge it was moving towards, was most likely a false detection: its masks are
   taken back (``Unconfirmed``), and given back if it is re-identified later in the chunk.
4. The propagating thread reads each object's box and area on every s-th pixel of the logits
   (what identity needs) and hands the logits to an encoder thread
   (``mask_encoder.MaskEncoder``) that thresholds them and encodes compressed COCO RLE; the
   chunk holds its frames' masks as that RLE, a constant few frames' worth of host memory. A
   writer thread (``drain_in_worker``) builds the JSON records, draws the annotated MP4 and
   releases the frames, so propagation never waits for outputs. The MP4 and ``tracks.json``
   are written atomically (long videos: masks in ``masks.json.xz``, see
   ``helpers.textseg.track_masks``).

The loop only talks to a *propagator* (``open(first, end)`` -> a session with ``prompt``,
``propagate``, ``remove``, ``reset``, ``close``) and a *keyframe function* (frame ->
``identity.Detections``), so the tracking benchmark plugs in scripted stand-ins for both.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpers.errors import InputError
from helpers.textseg import durations, naming
from helpers.textseg.doubt import DEFAULT_GAP, Doubt
from helpers.textseg.identity import (  # noqa: F401  (public names kept here for callers)
    Detections,
    IdBook,
    IdentityConfig,
    box_iou,
    mask_box,
    masks_iou,
    match_ids,
)
from helpers.textseg.sam2_video import (  # noqa: F401
    PROMPT_TYPES,
    SAM2_SIZES,
    NewIdRefused,
    Sam2Propagator,
    VideoTracker,
    load_video_tracker,
)

# --------------------------------------------------------------------------- results


class MaskStore(Mapping):
    """frame -> {id: bool mask}, held as compressed COCO RLE and decoded on access."""

    def __init__(self) -> None:
        self.rles: dict[int, dict[int, dict]] = {}

    def put(self, frame_idx: int, masks: dict[int, np.ndarray]) -> None:
        from helpers.textseg.render import mask_to_rle

        self.rles[frame_idx] = {i: mask_to_rle(m, compressed=True) for i, m in masks.items()}

    def put_rles(self, frame_idx: int, rles: dict[int, dict]) -> None:
        self.rles[frame_idx] = dict(rles)

    def __getitem__(self, frame_idx: int) -> dict[int, np.ndarray]:
        from helpers.textseg.render import rle_to_mask

        return {i: rle_to_mask(r) for i, r in self.rles[frame_idx].items()}

    def __iter__(self):
        return iter(self.rles)

    def __len__(self) -> int:
        return len(self.rles)

    def nbytes(self) -> int:
        """Bytes held by the RLE strings (what grows with the video)."""
        return sum(len(r["counts"]) for per in self.rles.values() for r in per.values())


@dataclass
class TrackResult:
    masks: Mapping[int, dict[int, np.ndarray]]  # frame -> id -> bool [H,W]
    labels: dict[int, str]
    scores: dict[int, float]
    video_path: Path | None
    json_path: Path | None
    fps: float
    num_frames: int
    width: int = 0
    height: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return sorted(self.labels)


@dataclass
class LoopOptions:
    """Settings of the keyframe loop (``track_frames``)."""

    detect_every: int = 30
    prompt_type: str = "box"  # how new objects are prompted: box, point or mask
    chunk_size: int = 200
    backfill: bool = True  # track new objects backwards to the previous keyframe
    detect_on_doubt: bool = True  # also detect when an object's mask signals trouble
    doubt_gap: int = DEFAULT_GAP  # frames between such an extra keyframe and any other


# --------------------------------------------------------------------------- the loop


def _as_rles(frame: dict) -> dict[int, dict]:
    """A frame's {id: compressed COCO RLE} from what the loop produced: RLEs already, masks
    the encoder thread encoded (``mask_encoder.PendingMask``), or bool masks (encoded here)."""
    from helpers.textseg.mask_encoder import rle_of

    return {i: rle_of(m) for i, m in frame.items()}


def _hold(encoder, masks: dict) -> dict:
    """A frame's masks as the chunk keeps them until its frames are written: compact
    (``PendingMask``: RLE, encoded on the encoder's thread) when there is an ``encoder``."""
    return encoder.masks(masks) if encoder is not None else masks


def _prompt_for(i, j, dets: Detections, kind: str, reseed: bool):
    from helpers.textseg.sam2_video import _click_point

    m = dets.masks[j] if dets.masks is not None else None
    if m is not None and m.any() and (reseed or kind == "mask"):
        return (i, "mask", m)
    if kind == "point":
        return (i, "point", _click_point(dets.boxes[j], m))
    return (i, "box", dets.boxes[j])


def _apply_plan(session, k, plan, dets, last, book, opts):
    """Retire, re-seed and start objects on keyframe ``k``; returns the live masks on ``k``."""
    live = book.live
    prompts = [
        _prompt_for(i, j, dets, opts.prompt_type, i in plan.reseed)
        for i, j in plan.prompted.items()
    ]
    kept = [(i, "mask", last[i]) for i in live if i not in plan.prompted and i in last]
    removed = not plan.retire or session.remove(plan.retire)
    masks = None
    if removed and prompts:
        try:
            masks = session.prompt(k, prompts)
        except NewIdRefused:  # older sam2: no new ids once tracking started
            removed = False
    if not removed:  # start over on this frame with every live object
        session.reset()
        prompts = prompts + kept
        masks = session.prompt(k, prompts) if prompts else {}
    if masks is None:
        masks = {i: last[i] for i in live if i in last}
    return {i: m for i, m in masks.items() if i in book.objects and book.objects[i].live}


def _run_chunk(prop, start, end, carried, book, keyframe_fn, opts, bar, encoder=None, final=False):
    """Track frames start..end-1. Returns ({frame: {id: mask}}, {id: bool mask} on the last
    frame); ``book`` is updated in place. With an ``encoder`` (``mask_encoder.MaskEncoder``)
    the frames' masks are held as ``PendingMask`` (RLE, encoded off this thread), so what the
    chunk holds does not grow with its length x resolution x objects.

    With keyframes on demand (``opts.detect_on_doubt``), on the video's ``final`` chunk every
    track still unconfirmed (one detection) is judged: a closing detection on the last frame
    (unless that frame was a keyframe already) may confirm it; one it does not confirm is
    taken back as a false box (``Unconfirmed``), as it would have been had the video gone on.
    Tracks the last keyframe starts are not judged (they had no chance of a second
    detection); the closing detection only judges: it starts no track (it would have no
    second chance either) and prompts nothing, so every frame keeps its propagated masks."""
    from helpers.textseg.mask_encoder import resolve

    first = start - 1 if carried else start
    out: dict[int, dict[int, dict]] = {}
    last: dict[int, np.ndarray] = {}  # masks on the latest frame produced
    session = prop.open(first, end)
    unconfirmed = Unconfirmed(out, start)
    try:
        if carried:
            last = session.prompt(first, [(i, "mask", m) for i, m in carried.items()])
        keys = sorted({start} | {g for g in range(start, end) if g % opts.detect_every == 0})
        doubt = Doubt(opts.doubt_gap) if opts.detect_on_doubt else None
        nxt, prev_key = start, start
        judge = final and opts.detect_on_doubt and book.config.uses("closing_detection")
        closing = None  # the closing keyframe, once it is asked for
        while True:
            k = keys.pop(0) if keys else None
            stop = end - 1 if k is None else k
            if nxt <= stop:
                if book.live:
                    t, last, early = _propagate_until(
                        session, nxt, stop, k, book, out, doubt, encoder, bar
                    )
                    if early:  # an object's signals asked for a detection on frame t
                        keys.insert(0, k)
                        k = stop = t
                else:
                    last = {}
                    for g in range(nxt, stop + 1):
                        out[g] = {}
                        bar.update(1)
                nxt = stop + 1
            if k is None and judge and closing is None and prev_key < end - 1 and _unsure(book):
                k = closing = end - 1  # the closing detection
            if k is None:
                break
            last = resolve(last)
            dets = keyframe_fn(k)
            plan = book.keyframe(k, last, dets)
            if k == closing:  # it only judges: no new track, no prompt, the masks as propagated
                for i in [i for i in plan.start if i not in plan.revived]:
                    book.take_back(i)
                unconfirmed.ended(plan.retire, book, k)
                break
            if plan.moved:
                repair(out, plan.moved, prev_key + 1, k)
            if plan.retire or plan.prompted:
                last = _apply_plan(session, k, plan, dets, last, book, opts)
                out[k] = _hold(encoder, last)
                unconfirmed.ended(plan.retire, book, k)
                unconfirmed.returned(plan.revived)
                seen = _observe(book, k, out[k], session)
                if doubt is not None:
                    doubt.observed(*seen)
            if doubt is not None:
                doubt.keyframe(k, book.live, plan.prompted)
            if opts.backfill and plan.start and k > max(prev_key, first):
                _backfill(session, k, max(prev_key + 1, first), set(plan.start), out, encoder)
            prev_key = k
        last = resolve(last)
        ended = [i for i in book.live if i not in last or not last[i].any()]
        if judge:  # no later detection will come for them
            ended += [i for i in _unsure(book) if i not in ended]
        book.retire(ended)  # the rest are carried into the next chunk
        unconfirmed.ended(ended, book, end - 1)
        unconfirmed.forget(book)
    finally:
        session.close()
    return out, last


def _unsure(book: IdBook) -> list[int]:
    """Live tracks that one detection started, on a frame before the latest one's."""
    return [
        i for i in book.live
        if book.objects[i].hits <= 1 and book.objects[i].last_detected < book.objects[i].last_seen
    ]  # fmt: skip


class Unconfirmed:
    """Tracks that a single detection started and that ended without a second one were most
    likely false detections: their masks in this chunk are taken back (frames earlier chunks
    wrote stay as they are). They are held until the chunk ends, so an
    object that was really there and is re-identified later in the chunk gets them back; an id
    still unconfirmed then, with no masks left anywhere, is no longer reported (``taken_back``)
    unless a later detection brings it back. A track whose mask left the view through the
    frame's edge keeps its masks (an object passing quickly is detected once); one that only
    sat at the edge, or was still in view when it ended, does not (``IdBook.left_view``)."""

    def __init__(self, out: dict[int, dict], start: int):
        self.out, self.start = out, start
        self.held: dict[int, dict[int, Any]] = {}  # id -> {frame: mask} taken back

    def ended(self, ids, book: IdBook, t: int) -> None:
        """``ids`` were just retired on frame ``t``: take back the unconfirmed ones' masks in
        this chunk (a track carried in from the previous chunk keeps the frames already
        written)."""
        for i in ids:
            o = book.objects.get(i)
            if not book.config.uses("take_back"):
                return
            if o is None or o.hits > 1 or (o.last_seen < t and book.left_view(o)):
                continue  # confirmed, or its mask left the view through an edge
            self.held[i] = {g: f.pop(i) for g, f in self.out.items() if i in f}

    def returned(self, ids) -> None:
        """``ids`` were re-identified: they were real, their masks go back."""
        for i in ids:
            for t, m in self.held.pop(i, {}).items():
                self.out[t][i] = m

    def forget(self, book: IdBook) -> None:
        """The chunk ends: its frames go out without the masks still held; an id whose one
        detection was in this chunk has no masks anywhere and is no longer reported."""
        for i in self.held:
            o = book.objects.get(i)
            if o is not None and not o.live and o.last_detected >= self.start:
                book.take_back(i)
        self.held = {}


def _propagate_until(session, a, b, key, book, out, doubt, encoder, bar):
    """Propagate frames a..b into ``out``; with ``doubt``, stop early on a frame whose objects
    ask for a detection (``doubt.Doubt``). Returns (the last frame produced, its masks,
    whether it stopped early)."""
    last, t = {}, a - 1
    with contextlib.closing(session.propagate(a, b)) as frames:
        for t, last in frames:
            last = {i: m for i, m in last.items() if i in book.objects}
            out[t] = _hold(encoder, last)
            seen = _observe(book, t, out[t], session)
            bar.update(1)
            if doubt is None:
                continue
            doubt.observed(*seen)
            if t < b and doubt.wants(t, book, key, getattr(session, "object_scores", None)):
                return t, last, True
    return t, last, False


def _observe(book: IdBook, t: int, masks: dict[int, np.ndarray], session):
    """Tell the book where each object is on frame ``t`` (boxes and areas from the masks, and
    SAM 2's object scores when the session keeps them); returns those (boxes, areas)."""
    boxes, areas = {}, {}
    for i, m in masks.items():
        if book.frame_hw is None:
            book.frame_hw = tuple(int(v) for v in getattr(m, "shape", np.shape(m))[-2:])
        b, a = _box_area(m)
        if a:
            boxes[i], areas[i] = b, a
    book.observe(t, boxes, areas, getattr(session, "object_scores", None))
    return boxes, areas


def _box_area(m) -> tuple[np.ndarray, float]:
    """(xyxy box, area) of a bool mask or a COCO RLE, read on every ``s``-th pixel of large
    masks (identity needs a few pixels' precision, not the full-resolution cost); a
    ``PendingMask`` has them already."""
    from helpers.textseg import mask_encoder

    if isinstance(m, mask_encoder.PendingMask):
        return m.box, m.area
    if isinstance(m, dict):
        from helpers.textseg.render import rle_area, rle_bbox

        x, y, w, h = rle_bbox(m)
        return np.array([x, y, x + w, y + h], np.float32), float(rle_area(m))
    m = np.asarray(m)
    s = mask_encoder.stride_for(m.shape[-2:])
    return mask_encoder.box_area_sampled(m[::s, ::s], s)


def _empty(m) -> bool:
    return m is None or _box_area(m)[1] == 0


def _box_iou_rle(a, b) -> float:
    return float(box_iou(_box_area(a)[0][None], _box_area(b)[0][None])[0, 0])


def _rle_box(m) -> np.ndarray:
    return _box_area(m)[0]


def _continuity(out, frames, ids) -> dict[int, int]:
    """Follow ``ids`` frame to frame by box overlap and relabel ``out`` in place where two
    tracks exchanged objects (a mask that jumps onto the object another track was on); returns
    raw id -> corrected id on the last frame."""
    name = {i: i for i in ids}  # raw id on this frame -> corrected id
    prev: dict[int, np.ndarray] = {}  # corrected id -> box on the previous frame
    for t in frames:
        raw = {i: out[t][i] for i in ids if not _empty(out[t].get(i))}
        cur = {i: _rle_box(r) for i, r in raw.items()}
        seen = [c for c in prev if c in name.values()]
        if seen and cur:
            rs = list(cur)
            iou = box_iou(np.stack([prev[c] for c in seen]), np.stack([cur[i] for i in rs]))
            from scipy.optimize import linear_sum_assignment

            rows, cols = linear_sum_assignment(iou, maximize=True)
            for r_, c_ in zip(rows, cols):
                own = list(seen).index(name[rs[c_]]) if name[rs[c_]] in seen else None
                stay = iou[own, c_] if own is not None else 0.0
                if iou[r_, c_] >= 0.5 and iou[r_, c_] > stay + 0.3:
                    old = name[rs[c_]]
                    other = next(k for k, v in name.items() if v == seen[r_])
                    name[rs[c_]], name[other] = seen[r_], old
        for i in raw:
            out[t].pop(i)
        for i, r in raw.items():
            out[t][name[i]] = r
            prev[name[i]] = cur[i]
    return name


def repair(out: dict[int, dict[int, dict]], moved: dict[int, int], a: int, b: int) -> None:
    """Give frames a..b-1 back their right ids after the keyframe ``b`` found that id ``r``'s
    propagated mask sat on object ``i`` (``moved[i] = r``): tracks that exchanged objects
    (crossings) are followed frame to frame by overlap; a wrong re-acquisition (``r``'s masks
    after its last empty frame belong to ``i``) is relabelled from there."""
    frames = [t for t in range(a, b) if t in out]
    if not frames:
        return
    ids = sorted(set(moved) | set(moved.values()))
    trial = {t: dict(out[t]) for t in frames}
    name = _continuity(trial, frames, ids)
    agree = sum(name.get(r) == i for i, r in moved.items())
    if agree and 2 * agree >= len(moved):
        out.update(trial)
        return
    for i, r in moved.items():  # wrong re-acquisitions
        gaps = [t for t in frames if _empty(out[t].get(r))]
        if not gaps or any(not _empty(out[t].get(i)) for t in frames if t > gaps[-1]):
            continue
        for t in frames:
            if t > gaps[-1] and r in out[t]:
                out[t][i] = out[t].pop(r)


def _backfill(session, k, a, ids, out, encoder=None):
    """Track objects started on keyframe ``k`` backwards over frames k-1..a (where absent)."""
    for t, masks in session.propagate(k, a, reverse=True):
        if t == k or t not in out:
            continue
        for i in ids:
            m = masks.get(i)
            if m is not None and m.any() and i not in out[t]:
                out[t] = _hold(encoder, {**out[t], i: m})


def is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.cuda.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower()
    )


def after_oom(bar, start: int) -> None:
    """Free what an out-of-memory chunk left behind and rewind the progress bar to ``start``."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if bar is not None:
        bar.n = start
        bar.refresh()


def track_frames(
    num_frames: int,
    propagator,
    keyframe_fn: Callable[[int], Detections],
    book: IdBook,
    opts: LoopOptions,
    bar=None,
    encode: bool = True,
) -> Iterator[tuple[int, dict[int, dict]]]:
    """Yields (frame, {id: compressed RLE}) for every frame, chunk by chunk (``encode=False``:
    {id: mask}, bool arrays or ``mask_encoder.PendingMask``, for a consumer on another thread:
    ``_as_rles`` gives their RLE).

    ``propagator.open(first, end)`` gives a session over frames first..end-1 (see
    ``sam2_video.Sam2Session``); ``keyframe_fn(frame)`` gives that frame's detections. A chunk
    that hits CUDA out-of-memory is retried with offloading on (when the propagator has that
    switch), then with half the chunk size, then InputError with advice. Masks are thresholded
    and RLE-encoded on an encoder thread (``mask_encoder.MaskEncoder``; the propagator's
    sessions hand it the logits when it has an ``encoder`` field).
    """
    from helpers.textseg.mask_encoder import MaskEncoder

    encoder = MaskEncoder()
    shared = hasattr(propagator, "encoder")
    if shared:
        propagator.encoder = encoder
    finished = False
    try:
        for g, frame in _chunks(num_frames, propagator, keyframe_fn, book, opts, bar, encoder):
            yield g, _as_rles(frame) if encode else frame
        finished = True
    finally:
        if shared:
            propagator.encoder = None
        encoder.close(wait=finished)


def _chunks(num_frames, propagator, keyframe_fn, book, opts, bar, encoder):
    """``track_frames``' loop: (frame, {id: mask}) chunk by chunk, out-of-memory retries."""
    import contextlib

    n = int(num_frames)
    chunk_size = int(opts.chunk_size)
    start, carried = 0, {}
    while start < n:
        end = min(start + chunk_size, n)
        trial = book.copy()
        ctx = propagator.context() if hasattr(propagator, "context") else contextlib.nullcontext()
        try:
            with ctx:
                out, last = _run_chunk(
                    propagator, start, end, carried, trial, keyframe_fn, opts, bar or _NoBar(),
                    encoder, final=end >= n,
                )  # fmt: skip
        except Exception as e:
            if not is_oom(e):
                raise
            out = None  # handled below, once the traceback (and its tensors) is released
        if out is None:
            after_oom(bar, start)
            if not getattr(propagator, "offload", True):
                propagator.offload = True
                print(f"CUDA out of memory at frame {start}; retrying with offload=True.")
            elif chunk_size > 16:
                chunk_size //= 2
                print(
                    f"CUDA out of memory at frame {start}; retrying with chunk_size={chunk_size}."
                )
            else:
                raise InputError(
                    "CUDA ran out of memory while tracking, even with offloading and "
                    f"chunk_size={chunk_size}. Use a smaller model (size='tiny'), downscale the "
                    "video (max_side=720 or less), track fewer objects (a narrower prompt or a "
                    "higher box_threshold), or free GPU memory (restart the runtime)."
                )
            continue
        book.__dict__.update(trial.__dict__)
        carried = {i: m for i, m in last.items() if m.any() and i in book.live}
        for g in range(start, end):
            yield g, out.pop(g)
        start = end


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


# --------------------------------------------------------------------------- outputs


def frame_records(
    rles: dict[int, dict], book: IdBook, label_ids: dict[str, int], frame: int | None = None
) -> list[dict]:
    """JSON-ready objects of one frame, in id order: non-empty masks only, unless ``book``
    says ``keep_empty`` (then an empty one is kept with ``"empty": true``). The score is the
    id's score in this frame when ``book.frame_scores[frame]`` has it, else its best score.
    Each object costs one look-up (``IdBook.label_of`` / ``score_of``), however many ids the
    video has seen."""
    from helpers.textseg.render import rle_area, rle_bbox

    per_frame = getattr(book, "frame_scores", {}).get(frame, {})
    label_of, score_of = _lookups(book)
    objs = []
    for i in sorted(rles):
        r = rles[i]
        area = rle_area(r)
        if area == 0 and not getattr(book, "keep_empty", False):
            continue
        x, y, w, h = rle_bbox(r) if area else (0, 0, 0, 0)
        label = label_of(i, "object")
        obj = {
            "id": int(i),
            "label": label,
            "class_id": label_ids.setdefault(label, len(label_ids)),
            "score": round(float(per_frame.get(i, score_of(i, 0.0))), 4),
            "box": [float(x), float(y), float(x + w), float(y + h)],
            "area": int(area),
            "mask": r,
        }
        if area == 0:
            obj["empty"] = True
        objs.append(obj)
    return objs


def _lookups(book):
    """(label_of, score_of) of a book: one look-up per object, however many ids the video has
    seen (``IdBook.label_of``); a plain book's dicts of labels and scores otherwise."""
    label_of = getattr(book, "label_of", None)
    score_of = getattr(book, "score_of", None)
    if label_of is not None and score_of is not None:
        return label_of, score_of
    labels, scores = book.labels, book.scores
    return (lambda i, default="object": labels.get(i, default)), (
        lambda i, default=0.0: scores.get(i, default)
    )


def _frame_detections(masks: dict[int, np.ndarray], book: IdBook, label_ids: dict[str, int]):
    import supervision as sv

    ids = [i for i, m in masks.items() if m.any()]
    if not ids:
        return sv.Detections.empty()
    label_of, score_of = _lookups(book)
    labels = [label_of(i, "object") for i in ids]
    return sv.Detections(
        xyxy=np.stack([mask_box(masks[i]) for i in ids]).astype(np.float32),
        mask=np.stack([masks[i] for i in ids]),
        confidence=np.array([score_of(i, 0.0) for i in ids], dtype=np.float32),
        class_id=np.array([label_ids.setdefault(s, len(label_ids)) for s in labels], dtype=int),
        tracker_id=np.array(ids, dtype=int),
        data={"class_name": np.array(labels, dtype=str)},
    )


def _to_detections(dets) -> Detections:
    """``identity.Detections`` from supervision detections (labels from ``class_name``)."""
    boxes = np.asarray(dets.xyxy, dtype=np.float32).reshape(-1, 4)
    names = dets.data.get("class_name") if dets.data else None
    labels = [str(x) for x in names] if names is not None else ["object"] * len(dets)
    conf = dets.confidence if dets.confidence is not None else np.ones(len(dets))
    return Detections(boxes, labels, np.asarray(conf, np.float32), dets.mask)


def _read(frames, k: int) -> np.ndarray:
    """Frame ``k`` of a frame folder (``media.VideoFrames``) or a ``FrameLoader``."""
    from helpers.textseg import media

    return frames.read(k) if hasattr(frames, "read") else media.read_frame(frames, k)


def make_keyframe_fn(tracker: VideoTracker, frames, detect_fn, prompt_type: str, prop=None):
    """frame -> ``Detections`` with masks and embeddings from SAM 2's image path (sam2).

    With the propagator ``prop`` (frames in memory) a keyframe reuses the image-encoder
    features propagation computed on it: one encoder pass per keyframe."""
    from helpers.textseg import sam2_video

    def keyframe_fn(k: int) -> Detections:
        image = _read(frames, k)
        d = detect_fn(image)
        if len(d) == 0:
            return Detections(np.zeros((0, 4)), [], np.zeros(0))
        dets = _to_detections(d)
        session = getattr(prop, "session", None)
        extra = {"session": session, "frame": k} if session is not None else {}
        dets.masks, emb = sam2_video.keyframe_features(
            tracker, image, dets.boxes, dets.masks, **extra
        )
        if emb is not None:
            dets.embeddings = emb
        if prompt_type == "mask" and dets.masks is None:
            raise InputError(
                "prompt_type='mask' needs masks for the detections; the transformers backend "
                "has no image path here: use prompt_type='box' or the sam2 backend."
            )
        return dets

    return keyframe_fn


def _check(
    prompt_type, detect_every, chunk_size, iou_threshold, box_iou_threshold, tracker, **id_kw
):
    if prompt_type not in PROMPT_TYPES:
        raise InputError(f"prompt_type must be one of {list(PROMPT_TYPES)}, got {prompt_type!r}.")
    if int(detect_every) < 1:
        raise InputError(f"detect_every must be >= 1 frame, got {detect_every}.")
    if int(chunk_size) < 2:
        raise InputError(f"chunk_size must be >= 2 frames, got {chunk_size}.")
    if not isinstance(tracker, VideoTracker):
        raise InputError("tracker must come from helpers.textseg.track.load_video_tracker().")
    return IdentityConfig(
        iou_threshold=iou_threshold, box_iou_threshold=box_iou_threshold, **id_kw
    ).check()


def track_video(
    source,
    prompt: str,
    detector,
    tracker: VideoTracker,
    out_dir,
    *,
    detect_every: int = 30,
    prompt_type: str = "box",
    box_threshold: float = 0.35,
    text_threshold: float = 0.25,
    iou_threshold: float = 0.5,
    chunk_size: int = 200,
    offload: bool | None = None,
    max_frames: int | None = None,
    render: bool = True,
    max_side: int | None = None,
    box_iou_threshold: float = 0.3,
    reid_threshold: float = 0.8,
    keep_missed: float | str = durations.KEEP_MISSED,
    backfill: bool = True,
    detect_on_doubt: bool = True,
    frame_dir=None,
    detect_fn: Callable[[np.ndarray], Any] | None = None,
    video_name: str = "tracked.mp4",
) -> TrackResult:
    """Segment and track every object ``prompt`` names through a video.

    ``source``: a video file or a folder of numbered frames. Detection (``detector``,
    a ``detect.Detector``) runs on the first frame of each chunk and every ``detect_every``
    frames; SAM 2 (``tracker``) propagates masks in between. ``prompt_type``: how new objects
    prompt SAM 2 ("box", "point" = one positive click inside the object, "mask"); tracked
    objects are re-seeded from their fresh detection's mask. An object the detector misses is
    kept for ``keep_missed`` (seconds: ``2``, ``"1.5s"``; or frames: ``"45f"``, whatever the
    detection cadence) while its mask keeps its size and SAM 2 still sees it, then retired; a returning object
    gets its old id back when its appearance matches (cosine >= ``reid_threshold``, same
    label, without a rival as close) where it could plausibly be. ``backfill`` (default)
    also tracks new objects backwards to the previous keyframe. ``detect_on_doubt``: the
    detector also runs early on a frame where an object's mask signals that propagation is
    failing (lost, reappeared, area halved or doubled, box off its expected place; see
    ``helpers.textseg.doubt``), at most once every ``doubt.DEFAULT_GAP`` frames. Writes ``tracked.mp4``
    (annotated, if ``render``) and ``tracks.json`` (compressed COCO RLE) into ``out_dir``.
    ``detect_fn(image) -> sv.Detections`` replaces the detector when given. ``offload``
    (None = auto): SAM 2's state on the CPU only when the GPU's free memory would not hold it
    (``sam2_video.choose_offload``); after an out-of-memory error it is turned on anyway. A
    video file is decoded in memory for the sam2 backend (no frame folder) unless
    ``frame_dir`` asks for frames on disk.
    """

    from tqdm.auto import tqdm

    config = _check(
        prompt_type,
        detect_every,
        chunk_size,
        iou_threshold,
        box_iou_threshold,
        tracker,
        reid_threshold=reid_threshold,
    )
    durations.seconds(keep_missed, 30.0, "keep_missed")  # bad values fail before any work
    if detect_fn is None:
        from helpers.textseg import detect as det

        if detector is None:
            raise InputError("No detector given: pass detect.load_detector(...) as `detector`.")
        det.normalize_prompt(prompt)  # empty prompt -> InputError before any work

        def detect_fn(image):
            return det.detect(
                detector,
                image,
                prompt,
                box_threshold=box_threshold,
                text_threshold=text_threshold,
            )

    from helpers.textseg.sam2_compile import clock_of

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    in_memory = tracker.backend == "sam2"
    clock = clock_of(tracker.predictor)
    compiled_before = clock.seconds if clock else 0.0
    with decoded_frames(
        source, frame_dir, max_frames, max_side, in_memory=in_memory, chunk_size=int(chunk_size)
    ) as (frames, root, timings):
        opts = LoopOptions(
            int(detect_every), prompt_type, int(chunk_size), bool(backfill), bool(detect_on_doubt)
        )
        book = IdBook(identity_config(config, keep_missed, frames.fps, detect_on_doubt))
        from helpers.textseg.sam2_video import choose_offload

        side = int(getattr(tracker.predictor, "image_size", 1024) or 1024)
        offload = choose_offload(
            offload, tracker.device, min(int(chunk_size), frames.num_frames), side,
            detect_every=int(detect_every),
        )  # fmt: skip
        prop = Sam2Propagator(tracker, frames, root, offload)
        if hasattr(frames, "read"):
            keyframe_fn = make_keyframe_fn(tracker, frames, detect_fn, prompt_type, prop=prop)
        else:
            keyframe_fn = make_keyframe_fn(tracker, frames, detect_fn, prompt_type)
        bar = tqdm(total=frames.num_frames, desc="tracking", unit="frame")
        stream = track_frames(frames.num_frames, prop, keyframe_fn, book, opts, bar, encode=False)
        settings = {
            "detect_every": int(detect_every),
            "prompt_type": prompt_type,
            "iou_threshold": iou_threshold,
            "reid_threshold": reid_threshold,
            "keep_missed_s": round(book.config.keep_seconds, 3),
            "backfill": bool(backfill),
            "detect_on_doubt": bool(detect_on_doubt),
            "chunk_size": int(chunk_size),
            "tracker": f"{tracker.backend}:{tracker.size}",
            "offload": bool(offload),
            "frames_in_memory": hasattr(frames, "read"),
            "source_path": naming.source_key(source),  # which video these tracks are of
        }
        try:
            out = write_outputs(
                stream, frames, book, {}, prompt, settings, out_dir, video_name, render
            )
        finally:
            bar.close()
        out.timings.update(timings)
        out.timings["compile_s"] = clock.seconds - compiled_before if clock else 0.0
    return out


def identity_config(
    config: IdentityConfig, keep_missed, fps, detect_on_doubt: bool = True
) -> IdentityConfig:
    """``config`` at the video's frame rate, ``keep_missed`` (seconds, or ``"45f"`` frames)
    as the seconds the identity rules use; without keyframes on demand a missed object is
    looked at again only on the next fixed keyframe (``recheck_frames`` None)."""
    from dataclasses import replace

    fps = float(fps) if fps and fps > 0 else 30.0
    keep = durations.seconds(keep_missed, fps, "keep_missed")
    recheck = config.recheck_frames if detect_on_doubt else None
    return replace(config, fps=fps, keep_seconds=keep, recheck_frames=recheck)


@contextlib.contextmanager
def decoded_frames(
    source,
    frame_dir,
    max_frames,
    max_side,
    prefix: str = "track_",
    *,
    in_memory: bool = False,
    chunk_size: int = 200,
):
    """The video's frames as numbered JPEGs (``media.VideoFrames``), the folder they sit in,
    and ``{"decode_s": ...}``; a temporary folder (``frame_dir`` None) is removed afterwards.

    ``in_memory``: a video file (with no ``frame_dir`` asked for) is decoded on a background
    thread into a ``frame_loader.FrameLoader`` instead (no JPEG round trip); it holds about
    ``chunk_size`` + 32 frames at a time (a chunk, the writer's queue and a few decoded
    ahead), whatever the video's length."""
    import time

    from helpers import files
    from helpers.textseg import media

    t0 = time.perf_counter()
    src = Path(source).expanduser()
    if in_memory and frame_dir is None and src.is_file():
        from helpers.textseg.frame_loader import FrameLoader

        stream = media.open_video_stream(src, max_frames=max_frames, max_side=max_side)
        loader = FrameLoader(stream, capacity=int(chunk_size) + 32)
        try:
            yield loader, None, {"decode_s": time.perf_counter() - t0}
        finally:
            loader.close()
        return
    own_tmp = frame_dir is None
    # <prefix><pid>_...: one left by a killed run (its process gone) is removed here
    root = files.make_temp_dir(prefix) if own_tmp else Path(frame_dir)
    try:
        frames = media.video_to_frames(
            source, root / "frames", max_frames=max_frames, max_side=max_side
        )
        yield frames, root, {"decode_s": time.perf_counter() - t0}
    finally:
        if own_tmp:
            shutil.rmtree(root, ignore_errors=True)


def write_outputs(
    stream,
    frames,
    book,
    label_ids: dict[str, int],
    prompt: str,
    settings: dict,
    out_dir: Path,
    video_name: str = "tracked.mp4",
    render: bool = True,
    read_frame=None,
) -> TrackResult:
    """Consume ``stream`` ((frame, {id: compressed RLE}) in frame order): keep each frame's
    objects, draw the annotated MP4 (if ``render``) and write ``tracks.json``; every video
    backend ends here, so they all write the same files. ``read_frame(g)`` gives frame g to
    draw on (default: from the JPEG frame folder ``frames``). The files are written as a unit
    (``files.output_set``): a failure leaves the folder's earlier set, or nothing new."""
    import time

    from helpers import files
    from helpers.textseg import media, track_masks
    from helpers.textseg import render as rnd

    store, records = MaskStore(), []
    t1 = time.perf_counter()
    release = getattr(frames, "release", None)

    def annotated(items) -> Iterator[np.ndarray | None]:
        for g, frame in items:
            objs = frame_records(_as_rles(frame), book, label_ids, g)
            store.put_rles(g, {o["id"]: o["mask"] for o in objs if not o.get("empty")})
            records.append({"frame": g, "objects": objs})
            if render:
                dets = _frame_detections(store[g], book, label_ids)
                image = read_frame(g) if read_frame else _read(frames, g)
                yield rnd.annotate(image, dets)
            else:
                yield None
            if release is not None:
                release(g)

    def write(items):
        if render:
            target = out_dir / video_name
            media.write_video(  # the tracking bar counts these frames already
                annotated(items), files.output_path(target), fps=frames.fps, progress=False
            )
            return target
        for _ in annotated(items):
            pass
        return None

    # the video, tracks.json and masks.json.xz are one unit: all of them or none replace the
    # folder's earlier set (the command adds its side-by-side video to the same unit)
    members = [video_name, track_masks.MASKS_FILE]
    with files.output_set(out_dir, members=members, last=["tracks.json"]):
        video_path = drain_in_worker(stream, write)
        track_s = time.perf_counter() - t1
        timings = {"track_s": track_s, "per_frame_s": track_s / max(1, frames.num_frames)}
        video = (frames.fps, frames.width, frames.height, frames.num_frames)
        json_path = write_tracks(out_dir, records, book, prompt, video, settings)
    return TrackResult(
        masks=store,
        labels=dict(book.labels),
        scores=dict(book.scores),
        video_path=video_path,
        json_path=json_path,
        fps=frames.fps,
        num_frames=frames.num_frames,
        width=frames.width,
        height=frames.height,
        timings=timings,
    )


def write_tracks(out_dir: Path, records, book: IdBook, prompt: str, video, settings) -> Path:
    """``tracks.json`` (masks inside), or for videos over ``track_masks.COMPACT_AFTER``
    frames ``tracks.json`` without masks + ``masks.json.xz`` (see ``helpers.textseg.track_masks``)."""
    from helpers.files import atomic_write_json, output_path
    from helpers.textseg import track_masks

    out_dir = Path(out_dir)
    masks_ref = None
    if len(records) > track_masks.COMPACT_AFTER:
        records = [{**r, "objects": [dict(o) for o in r["objects"]]} for r in records]
        masks = output_path(out_dir / track_masks.MASKS_FILE)  # staged in an open output set
        track_masks.write_masks(masks, records, video[2:0:-1])
        masks_ref = {"file": track_masks.MASKS_FILE, "format": track_masks.FORMAT}
    doc = tracks_document(records, book, prompt, video, settings)
    if masks_ref:
        doc["masks"] = masks_ref
    atomic_write_json(output_path(out_dir / "tracks.json"), doc, indent=None)
    return out_dir / "tracks.json"


class _Abort(Exception):
    """The producer failed: the writer stops without finishing its files."""


def drain_in_worker(stream, consume, depth: int = 16):
    """``consume(items)`` on a worker thread while this thread pulls ``stream`` (the
    propagation) and hands its items over through a queue of ``depth``; returns what
    ``consume`` returned. Errors on either side stop both and are raised here."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    end, abort = object(), object()
    result: dict[str, Any] = {}

    def items():
        while True:
            item = q.get()
            if item is end:
                return
            if item is abort:
                raise _Abort()
            yield item

    def run():
        try:
            result["value"] = consume(items())
        except BaseException as e:
            result["error"] = e

    worker = threading.Thread(target=run, name="track-writer", daemon=True)
    worker.start()

    def put(item) -> None:
        while worker.is_alive():
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    try:
        for item in stream:
            if "error" in result:
                break
            put(item)
    except BaseException:
        put(abort)
        worker.join()
        raise
    put(end)
    worker.join()
    if "error" in result and not isinstance(result["error"], _Abort):
        raise result["error"]
    return result.get("value")


def tracks_document(records, book: IdBook, prompt: str, video, settings: dict) -> dict:
    """The ``tracks.json`` document: video info, settings, per-id summary, per-frame objects."""
    fps, width, height, num_frames = video
    counts: dict[int, int] = {}
    for r in records:
        for o in r["objects"]:
            if not o.get("empty"):  # frames the object is seen in
                counts[o["id"]] = counts.get(o["id"], 0) + 1
    return {
        "video": {"fps": fps, "width": width, "height": height, "num_frames": num_frames},
        "prompt": prompt,
        "settings": settings,
        "objects": {
            str(i): {
                "label": book.labels[i],
                "score": round(book.scores.get(i, 0.0), 4),
                "frames": counts.get(i, 0),
            }
            for i in sorted(book.labels)
        },
        "frames": records,
    }
