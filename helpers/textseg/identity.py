"""Who is who in a video: ids for detections, kept across misses, exits and occlusions.

No model lives here: masks are bool arrays, appearance embeddings are plain float vectors
(the tracker pools SAM 2 image-encoder features under each detection's mask; the tracking
benchmark scripts them). ``IdBook.keyframe`` decides, for one keyframe's detections:

- **re-seed**: a detection of an object being tracked (mask IoU with its propagated mask,
  vetoed when the appearance clearly differs; or appearance alone with the same label, which
  undoes swaps and large drift) re-prompts that object from the fresh detection;
- **keep**: an object being tracked that the detector missed stays in the propagation for
  ``keep_missed`` keyframes (none for an object detected on one keyframe only: it may be a
  false detection), then is **retired** (removed from the propagation state) but its id,
  label and appearance are kept;
- **re-identify**: a detection that matches no tracked object is compared with retired
  objects by appearance (cosine similarity >= ``reid_threshold``, same label), wherever it is;
  without embeddings, by where the object was last seen (mask or box IoU, same label);
- **new**: everything else gets a new id; two detections of one thing never get two ids, and
  a tracked object whose mask sits on another object's fresh detection is retired, so one
  object never has two live tracks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from helpers.errors import InputError

# --------------------------------------------------------------------------- geometry


def masks_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [K, M] between bool masks ``a`` [K,H,W] and ``b`` [M,H,W] (one matmul)."""
    a = np.asarray(a, dtype=bool).reshape(len(a), -1)
    b = np.asarray(b, dtype=bool).reshape(len(b), -1)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    if a.shape[1] != b.shape[1]:
        raise InputError("masks_iou: the two sets of masks have different sizes.")
    af, bf = a.astype(np.float32), b.astype(np.float32)
    inter = af @ bf.T
    union = af.sum(1)[:, None] + bf.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [K, M] between xyxy boxes ``a`` [K,4] and ``b`` [M,4]."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """xyxy box (float32) around the set pixels of a 2-D mask; zeros when empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return np.zeros(4, dtype=np.float32)
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=np.float32)


def _assign(score: np.ndarray, threshold: float) -> dict[int, int]:
    """Optimal one-to-one pairs (column -> row) with ``score >= threshold``."""
    from scipy.optimize import linear_sum_assignment

    if score.size == 0:
        return {}
    rows, cols = linear_sum_assignment(score, maximize=True)
    return {int(c): int(r) for r, c in zip(rows, cols) if score[r, c] >= threshold}


def match_ids(
    track_masks: dict[int, np.ndarray], det_masks: np.ndarray, iou_threshold: float = 0.5
) -> list[int | None]:
    """Id of the tracked mask each detection mask belongs to (None = a new object).

    ``track_masks`` maps id -> bool [H,W] (the masks being tracked on this frame);
    ``det_masks`` is bool [M,H,W]. Pairs are chosen by optimal assignment on mask IoU and
    kept when IoU >= ``iou_threshold``; each id is given to at most one detection.
    """
    ids = list(track_masks)
    if len(det_masks) == 0:
        return []
    if not ids:
        return [None] * len(det_masks)
    iou = masks_iou(np.stack([track_masks[i] for i in ids]), det_masks)
    pairs = _assign(iou, iou_threshold)
    return [ids[pairs[j]] if j in pairs else None for j in range(len(det_masks))]


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


# --------------------------------------------------------------------------- identities


@dataclass
class IdentityConfig:
    """Thresholds of ``IdBook.keyframe`` (see the module docstring)."""

    iou_threshold: float = 0.5  # mask IoU for "same object" (box IoU without masks)
    box_iou_threshold: float = 0.3  # last-box IoU for re-identification without embeddings
    reid_threshold: float = 0.8  # cosine similarity for "same object" by appearance
    veto_threshold: float = 0.5  # an IoU match is refused below this appearance similarity
    keep_missed: int = 2  # keyframes a tracked object may go undetected before retirement
    momentum: float = 0.7  # appearance memory: new = m * old + (1 - m) * detection

    def check(self) -> IdentityConfig:
        for name in ("iou_threshold", "box_iou_threshold", "reid_threshold"):
            v = getattr(self, name)
            if not 0 < float(v) <= 1:
                raise InputError(f"{name} must be in (0, 1], got {v}.")
        if not -1 <= float(self.veto_threshold) <= 1:
            raise InputError(f"veto_threshold must be in [-1, 1], got {self.veto_threshold}.")
        if int(self.keep_missed) < 0:
            raise InputError(f"keep_missed must be >= 0 keyframes, got {self.keep_missed}.")
        if not 0 <= float(self.momentum) < 1:
            raise InputError(f"momentum must be in [0, 1), got {self.momentum}.")
        return self


@dataclass
class Identity:
    """What the book knows about one id."""

    label: str
    score: float = 0.0
    embedding: np.ndarray | None = None  # unit vector, or None
    last_mask: np.ndarray | None = None  # last non-empty mask (position fallback)
    last_seen: int = -1
    live: bool = False  # in the propagation state now
    misses: int = 0  # keyframes in a row without a matching detection
    hits: int = 0  # keyframes with a matching detection


@dataclass
class Detections:
    """One keyframe's detections as plain arrays (``embeddings`` [N,D] or None)."""

    boxes: np.ndarray
    labels: list[str]
    scores: np.ndarray
    masks: np.ndarray | None = None
    embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.labels = [str(s) for s in self.labels]
        if len(self.labels) != n or len(self.scores) != n:
            raise InputError(f"{n} boxes need {n} labels and scores.")
        if self.masks is not None:
            self.masks = np.asarray(self.masks, dtype=bool)
            if len(self.masks) != n:
                raise InputError(f"{n} boxes need {n} masks, got {len(self.masks)}.")
        if self.embeddings is not None:
            self.embeddings = normalize_rows(np.asarray(self.embeddings).reshape(n, -1))

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class Plan:
    """What to do with the propagation state at a keyframe.

    ``ids[j]``: the id of detection ``j``; ``reseed``: id -> detection that re-prompts an
    object already tracked; ``start``: id -> detection that adds a new or returning object
    (``revived`` are the returning ones); ``retire``: ids to remove from the state.
    """

    ids: list[int]
    reseed: dict[int, int] = field(default_factory=dict)
    start: dict[int, int] = field(default_factory=dict)
    revived: set[int] = field(default_factory=set)
    retire: list[int] = field(default_factory=list)

    @property
    def prompted(self) -> dict[int, int]:
        return {**self.reseed, **self.start}


@dataclass
class IdBook:
    """Every id seen so far (``Identity``) and the rules that give detections their ids."""

    config: IdentityConfig = field(default_factory=IdentityConfig)
    objects: dict[int, Identity] = field(default_factory=dict)
    next_id: int = 1

    # -- views
    @property
    def labels(self) -> dict[int, str]:
        return {i: o.label for i, o in self.objects.items()}

    @property
    def scores(self) -> dict[int, float]:
        return {i: o.score for i, o in self.objects.items()}

    @property
    def live(self) -> list[int]:
        return [i for i, o in self.objects.items() if o.live]

    def copy(self) -> IdBook:
        objs = {
            i: Identity(
                o.label, o.score, o.embedding, o.last_mask, o.last_seen, o.live, o.misses, o.hits
            )
            for i, o in self.objects.items()
        }
        return IdBook(self.config, objs, self.next_id)

    # -- bookkeeping between keyframes
    def observe(self, frame_idx: int, masks: dict[int, np.ndarray]) -> None:
        """Remember the non-empty masks of a frame (position fallback for re-identification)."""
        for i, m in masks.items():
            o = self.objects.get(i)
            if o is not None and m.any():
                o.last_mask = m
                o.last_seen = frame_idx

    def retire(self, ids) -> None:
        """Mark ids as out of the propagation state (their identity is kept)."""
        for i in ids:
            if i in self.objects:
                self.objects[i].live = False
                self.objects[i].misses = 0

    def _new(self, label: str) -> int:
        i = self.next_id
        self.objects[i] = Identity(label)
        self.next_id += 1
        return i

    def _remember(self, i: int, emb: np.ndarray | None) -> None:
        o = self.objects[i]
        if emb is None:
            return
        if o.embedding is None:
            o.embedding = emb
        else:
            m = self.config.momentum
            o.embedding = normalize_rows(m * o.embedding + (1 - m) * emb)

    def similarity(self, ids: list[int], emb: np.ndarray | None, n: int) -> np.ndarray:
        """Cosine similarity [len(ids), n] of the ids' appearance with n detections' (NaN =
        unknown)."""
        sim = np.full((len(ids), n), np.nan, dtype=np.float32)
        for r, i in enumerate(ids):
            e = self.objects[i].embedding
            if e is not None and emb is not None:
                sim[r] = emb @ e
        return sim

    # -- the keyframe decision
    def keyframe(
        self, frame_idx: int, track_masks: dict[int, np.ndarray], dets: Detections
    ) -> Plan:
        """Ids for a keyframe's detections and what to re-seed, start and retire.

        ``track_masks``: id -> propagated mask on this frame for the objects being tracked
        (ids marked live that are missing count as empty).
        """
        cfg = self.config
        n = len(dets)
        boxes, masks, emb = dets.boxes, dets.masks, dets.embeddings
        live = self.live
        plan = Plan(ids=[0] * n)
        ids: list[int | None] = [None] * n
        shape = masks.shape[1:] if masks is not None and n else None
        cur = {}
        for i in live:
            m = track_masks.get(i)
            cur[i] = m if m is not None and (shape is None or m.shape == shape) else None
        visible = [i for i in live if cur[i] is not None and cur[i].any()]

        # 1. objects being tracked: IoU with the propagated mask (appearance may veto), or
        #    appearance alone with the same label
        if live and n:
            iou = np.zeros((len(live), n), dtype=np.float32)
            if visible:
                rows = [live.index(i) for i in visible]
                if masks is not None:
                    iou[rows] = masks_iou(np.stack([cur[i] for i in visible]), masks)
                else:
                    iou[rows] = box_iou(np.stack([mask_box(cur[i]) for i in visible]), boxes)
            sim = self.similarity(live, emb, n)
            known = ~np.isnan(sim)
            s0 = np.where(known, sim, 0.0)
            same = np.array([[self.objects[i].label == lab for lab in dets.labels] for i in live])
            by_iou = (iou >= cfg.iou_threshold) & (~known | (sim >= cfg.veto_threshold))
            by_look = known & same & (sim >= cfg.reid_threshold)
            score = np.where(by_iou | by_look, 1.0 + iou + s0, 0.0)
            for j, r in _assign(score, 1.0).items():
                ids[j] = live[r]
                plan.reseed[live[r]] = j

        # 2. a second detection of an already-claimed thing (another label, a duplicate box)
        claimed = [j for j in range(n) if ids[j] is not None]
        for j in range(n):
            if ids[j] is None:
                dup = self._duplicate_of(j, claimed, boxes, masks)
                if dup is not None:
                    ids[j] = ids[dup]

        # 3. returning objects: appearance (any position), else last position; same label
        open_dets = [j for j in range(n) if ids[j] is None]
        gone = [i for i, o in self.objects.items() if not o.live]
        if open_dets and gone:
            score = np.zeros((len(gone), len(open_dets)), dtype=np.float32)
            sim = self.similarity(gone, None if emb is None else emb[open_dets], len(open_dets))
            for r, i in enumerate(gone):
                o = self.objects[i]
                for c, j in enumerate(open_dets):
                    if o.label != dets.labels[j]:
                        continue
                    if not np.isnan(sim[r, c]):
                        if sim[r, c] >= cfg.reid_threshold:
                            score[r, c] = 1.0 + sim[r, c]
                    elif o.last_mask is not None:
                        score[r, c] = self._position_score(o.last_mask, j, boxes, masks)
            for c, r in _assign(score, 1e-6).items():
                j, i = open_dets[c], gone[r]
                ids[j] = i
                plan.start[i] = j
                plan.revived.add(i)

        # 4. the rest are new objects (highest score first; duplicates among them merged)
        for j in sorted((j for j in range(n) if ids[j] is None), key=lambda j: -dets.scores[j]):
            dup = self._duplicate_of(j, list(plan.start.values()), boxes, masks)
            if dup is not None:
                ids[j] = ids[dup]
                continue
            ids[j] = self._new(dets.labels[j])
            plan.start[ids[j]] = j

        # 5. missed objects: keep for a while, retire when gone, or when their mask now sits
        #    on another object's fresh detection (one object, one live track)
        for i in live:
            if i in plan.reseed:
                continue
            o = self.objects[i]
            o.misses += 1
            empty = cur[i] is None or not cur[i].any()
            taken = False
            if not empty and n:
                ov = (
                    masks_iou(cur[i][None], masks)[0]
                    if masks is not None
                    else box_iou(mask_box(cur[i])[None], boxes)[0]
                )
                taken = bool((ov >= cfg.iou_threshold).any())
            # an object seen on one keyframe only may be a false detection: no second chance
            patience = cfg.keep_missed if o.hits > 1 else 0
            if empty or taken or o.misses > patience:
                plan.retire.append(i)
        self.retire(plan.retire)

        # 6. bookkeeping for the prompted ones
        for i, j in plan.prompted.items():
            o = self.objects[i]
            o.live = True
            o.misses = 0
            o.hits += 1
            self._remember(i, None if emb is None else emb[j])
            if masks is not None and masks[j].any():
                o.last_mask = masks[j]
                o.last_seen = frame_idx
        for j in range(n):
            o = self.objects[ids[j]]
            o.score = max(o.score, float(dets.scores[j]))
        plan.ids = [int(i) for i in ids]
        return plan

    def _position_score(self, last_mask, j, boxes, masks) -> float:
        cfg = self.config
        b = float(box_iou(mask_box(last_mask)[None], boxes[j : j + 1])[0, 0])
        m = 0.0
        if masks is not None and masks[j].shape == last_mask.shape:
            m = float(masks_iou(last_mask[None], masks[j : j + 1])[0, 0])
        if m >= cfg.iou_threshold or b >= cfg.box_iou_threshold:
            return max(m, b)
        return 0.0

    def _duplicate_of(self, j, others, boxes, masks) -> int | None:
        others = [k for k in others if k != j]
        if not others:
            return None
        if masks is not None:
            iou = masks_iou(masks[others], masks[j : j + 1])[:, 0]
        else:
            iou = box_iou(boxes[others], boxes[j : j + 1])[:, 0]
        k = int(iou.argmax())
        return others[k] if iou[k] >= self.config.iou_threshold else None
