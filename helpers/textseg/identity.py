"""Who is who in a video: ids for detections, kept across misses, exits and occlusions.

No model lives here: masks are bool arrays, appearance embeddings are plain float vectors
(the tracker pools SAM 2 image-encoder features under each detection's mask; the tracking
benchmark scripts them). How far looks are trusted is learnt per video and label
(``LookEvidence``): from confirmed observations, how alike one object's views are and how alike
different objects are. A look says "same object" only where it separates the two by a margin,
"another object" only far below an object's own views; in between, and for "same" where a
label's objects look alike, it says nothing and place, motion and size decide, as they do
without embeddings. ``IdBook.keyframe`` decides, for one keyframe's detections:

- **re-seed**: a detection of an object being tracked (mask IoU with its propagated mask and
  the same label, refused when another id explains the detection clearly better by look; or
  look alone where the object could plausibly be; or, when the mask slid part-way off, where
  its motion puts it or overlapping the slid mask's centre) re-prompts that object; two
  tracks whose detections look crossed, or, where looks say nothing, lie crossed where their
  motions put them, are exchanged (swaps at crossings);
- **keep**: an object being tracked that the detector missed stays in the propagation for
  ``keep_seconds`` (a duration, whatever the detection cadence) while its propagated mask keeps
  its usual area, SAM 2's object score stays positive and its propagation is expected to hold
  it still (the slide of its masks measured at its re-seeds, less the detector's noise;
  keyframes on demand check it again when it slides, ``doubt``). Then it is **retired**
  (removed from the propagation state); its id, label, look and last box are kept. A track
  retired without a second detection, unless it left the view through an edge it was moving
  towards (``IdBook.left_view``), was most likely a false detection: the loop takes its masks
  back (``track.Unconfirmed``);
- **re-identify**: a detection that matches no tracked object gets a retired id back when the
  label agrees, the look says "same" (``IdBook.look_cuts``: ``reid_threshold`` until the
  video's own confirmed looks say where) and the place is plausible:
  near where it was hidden or where it could have walked since (``max_speed`` sizes per
  second), anywhere for an object that left at an edge; a recently retired object whose look is
  merely unsure also comes back where its motion predicts; without a look that says anything,
  by where it was last seen (box IoU), unless its look says "another object";
- **ambiguity**: two candidates within ``ambiguity`` in cosine give a new id rather than
  possibly the wrong old one;
- **new**: everything else gets a new id; two detections of one thing never get two ids (a box
  mostly inside a tracked object's mask is that object), and a tracked object whose mask sits
  on another object's fresh detection is retired, so one object never has two live tracks
  (``Plan.moved`` says whose, so the frames since the previous keyframe can be repaired).

Memory stays bounded: an id keeps a few small arrays (look, boxes, velocity), never a mask,
and only the ``max_retired`` most recent retired ids are compared with new detections. A
keyframe costs the same at any resolution: its masks are reduced once to at most
``COMPARE_SIDE`` cells a side (``LowRes``) and compared there; areas and boxes stay in
full-resolution pixels, and the detections keep their full-resolution masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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


# masks are compared at most this many cells a side: IoU within 0.04 of full resolution's for
# objects 25 px across at 1080p (0.015 at 50 px), at one cost whatever the video's resolution
COMPARE_SIDE = 256
_CODE = np.array([(1 << k) - 1 for k in range(9)], np.uint8)  # k eighths -> k low bits set
_BITS = np.array([bin(v).count("1") for v in range(256)], np.uint8)  # set bits of a byte


def _ones(x: np.ndarray) -> np.ndarray:
    """Set bits in each row of the uint8 array ``x`` [..., P] (P a multiple of 8)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(np.ascontiguousarray(x).view(np.uint64)).sum(-1, dtype=np.int64)
    return _BITS[x].sum(-1, dtype=np.int64)


@dataclass
class LowRes:
    """Masks as identity compares them: each ``scale`` x ``scale`` block of pixels is one
    cell (``scale`` the smallest integer that brings the long side to at most
    ``COMPARE_SIDE`` cells; 1 for smaller frames, where every comparison is exact).

    A cell holds how much of it the mask covers, in eighths (at least one for any pixel: an
    object smaller than a cell never vanishes), as one byte with that many low bits set. The
    overlap of two masks in a cell is then the smaller of their two coverages, the set bits of
    the two bytes' AND (``overlaps``: packed bit sets, every pair at once): that is the
    overlap whenever one mask's share of the cell lies inside the other's, as it does along
    the edges of two outlines of one object, so IoU and shares covered stay close to their
    full-resolution values. (A cell kept only when half covered loses thin and small
    objects; a product of coverages counts a half-covered cell two outlines share as a
    quarter.) ``area`` is the masks' exact full-resolution pixel count."""

    code: np.ndarray  # [N, P] uint8, P = cells rounded up to a multiple of 8
    area: np.ndarray  # [N] full-resolution pixels in each mask
    scale: int  # full-resolution pixels per cell side
    grid: tuple[int, int]  # cells down and across

    @classmethod
    def of(cls, masks, hw: tuple[int, int], side: int | None = None) -> LowRes:
        """``masks``: bool [H, W] masks of size ``hw`` (a sequence or an [N, H, W] array)."""
        side = COMPARE_SIDE if side is None else int(side)
        h, w = int(hw[0]), int(hw[1])
        f = max(1, -(-max(h, w) // side))
        ch, cw = -(-h // f), -(-w // f)
        code = np.zeros((len(masks), -(-ch * cw // 8) * 8), np.uint8)
        area = np.zeros(len(masks), np.int64)
        # pixels covered in a cell -> its byte (cells that hang over the right or bottom edge
        # count the part outside the frame as uncovered)
        n = np.arange(f * f + 1)
        to_code = _CODE[np.maximum(np.rint(8 * n / (f * f)), n > 0).astype(np.intp)]
        for k, m in enumerate(masks):
            u = np.ascontiguousarray(m, dtype=bool).view(np.uint8)
            if (ch * f, cw * f) != (h, w):
                u = np.pad(u, ((0, ch * f - h), (0, cw * f - w)))
            rows = u[0::f].astype(np.uint32)  # pixel counts: f rows at a time, then f columns
            for r in range(1, f):
                rows += u[r::f]
            counts = rows[:, 0::f].copy()
            for c in range(1, f):
                counts += rows[:, c::f]
            code[k, : ch * cw] = to_code[counts.reshape(-1)]
            area[k] = int(counts.sum())
        return cls(code, area, f, (ch, cw))

    def __len__(self) -> int:
        return len(self.code)

    def take(self, rows) -> LowRes:
        return LowRes(self.code[rows], self.area[rows], self.scale, self.grid)

    @property
    def size(self) -> np.ndarray:
        """[N] each mask's overlap with itself (eighths of a cell)."""
        return _ones(self.code)

    def overlaps(self, other: LowRes) -> np.ndarray:
        """[N, M] overlap of each mask with each of ``other``'s (eighths of a cell)."""
        out = np.zeros((len(self), len(other)), np.int64)
        step = max(1, 2**24 // max(other.code.size, 1))  # rows at a time: 16 MB at most
        for k in range(0, len(self), step):
            out[k : k + step] = _ones(self.code[k : k + step, None] & other.code[None])
        return out


def _iou(inter: np.ndarray, size_a: np.ndarray, size_b: np.ndarray) -> np.ndarray:
    """IoU [K, M] from overlaps [K, M] and the two sets' own sizes [K], [M]."""
    union = size_a[:, None] + size_b[None, :] - inter
    return np.where(union > 0, _ratio(inter, union), 0).astype(np.float32)


def _share(inter: np.ndarray, size_b: np.ndarray) -> np.ndarray:
    """[K, M]: share of each mask of the second set covered by each mask of the first."""
    return _ratio(inter, np.broadcast_to(size_b[None, :], inter.shape))


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / np.maximum(b, 1).astype(np.float32)


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


CALIBRATE = 5  # confirmed looks of each kind before the video's own threshold is used
RECHECK_FRAMES = 10  # the soonest the loop detects again after a keyframe (``doubt``'s gap)
LOOK_WINDOW = 50  # the look statistics follow about the latest this many samples
STEPS = 9  # an object's speed is the median of this many per-frame moves of its mask (odd)
SLIDE_MEMORY = 0.5  # the slide's average keeps this share of what it was at each keyframe
_EMA_SD = float(np.sqrt((1 - SLIDE_MEMORY) / (1 + SLIDE_MEMORY)))  # its noise / one sample's


@dataclass
class IdentityConfig:
    """Settings of ``IdBook.keyframe`` (see the module docstring). Durations are in seconds
    and become frames through ``fps``, so they do not change with the detection cadence."""

    # each setting: its unit, then why this value
    iou_threshold: float = 0.5  # IoU (mask, else box): "same object"; the MOT matching rule
    box_iou_threshold: float = 0.3  # IoU of boxes: a returning object without embeddings is
    # where it was last seen (lower than ``iou_threshold``: it moved a little while unseen)
    reid_threshold: float = 0.8  # cosine: "same object" by look before the video shows its
    # own looks (the prior's decision point; ``LookEvidence``)
    veto_threshold: float = 0.5  # cosine: below it a look says "another object" before the
    # video shows its own looks (an IoU match is then refused when another id explains the
    # detection by look, or when that id's look is ``2 * ambiguity`` better)
    keep_seconds: float = 2.0  # seconds a missed object may stay in the propagation: long
    # enough for one or two missed keyframes at the default cadence (1 s)
    momentum: float = 0.9  # share of the stored look kept at each detection: a look follows
    # about the latest ten views, so one odd view (occluded, blurred) does not replace it
    fps: float = 30.0  # frames per second of the video (durations -> frames)
    max_speed: float = 1.0  # object sizes per second an unseen object may move (walking
    # people cover about their width per second)
    ambiguity: float = 0.05  # cosine: two candidates closer than this give a new id (a new
    # id costs one fragment; the wrong old one costs a swap)
    max_retired: int = 200  # ids: retired ids compared with new detections (bounded cost)
    min_area: float = 0.25  # share of its usual area: a missed object's mask below it (or
    # above its inverse) is no longer the object
    # frames: the soonest the loop looks at a missed object again (keyframes on demand; None:
    # only on the next fixed keyframe)
    recheck_frames: int | None = RECHECK_FRAMES
    motion_swap: float = 0.5  # motion scores (each in (0, 1]): two tracks' detections are
    # exchanged by motion when the crossed pairing is nearer where their motions put them by
    # this much in sum (a quarter of an object's size closer: above a detector's jitter)
    # how far looks are trusted (``LookEvidence``, per label, from this video's confirmed
    # observations). Before any, a prior whose decision points are the two thresholds above:
    look_prior_n: float = 2.0  # samples the prior weighs as before any of the video's own
    # (fading as they come): two or three of them already move the estimate most of the way
    look_prior_sd: float = 0.2  # cosine spread of the prior (cosines of unrelated features
    # spread about this much; it puts the prior's means at 0.4 "other" and 0.9 "same")
    look_z: float = 2.0  # a look says "same" only this many spreads above the other-object
    # mean (and "other" this many below the same-object mean): about 2 % wrong either way
    look_separation: float = 2.0  # a label's looks decide at all only when its same- and
    # other-object means lie this many pooled spreads apart; else place, motion, size decide

    def check(self) -> IdentityConfig:
        for name in ("iou_threshold", "box_iou_threshold", "reid_threshold"):
            v = getattr(self, name)
            if not 0 < float(v) <= 1:
                raise InputError(f"{name} must be in (0, 1], got {v}.")
        if not -1 <= float(self.veto_threshold) <= 1:
            raise InputError(f"veto_threshold must be in [-1, 1], got {self.veto_threshold}.")
        if float(self.keep_seconds) < 0:
            raise InputError(f"keep_seconds must be >= 0 s, got {self.keep_seconds}.")
        if not 0 <= float(self.momentum) < 1:
            raise InputError(f"momentum must be in [0, 1), got {self.momentum}.")
        if not float(self.fps) > 0:
            raise InputError(f"fps must be > 0, got {self.fps}.")
        if int(self.max_retired) < 0:
            raise InputError(f"max_retired must be >= 0, got {self.max_retired}.")
        if self.recheck_frames is not None and int(self.recheck_frames) < 1:
            raise InputError(f"recheck_frames must be >= 1 or None, got {self.recheck_frames}.")
        for name in ("look_prior_n", "look_prior_sd", "look_z", "look_separation"):
            if not float(getattr(self, name)) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}.")
        return self

    def frames(self, seconds: float) -> float:
        return float(seconds) * float(self.fps)


@dataclass
class Identity:
    """What the book keeps about one id: a few numbers, never a mask (memory stays bounded)."""

    label: str
    score: float = 0.0
    embedding: np.ndarray | None = None  # unit vector, or None
    box: np.ndarray | None = None  # last non-empty box (xyxy), detected or propagated
    last_seen: int = -1  # frame of ``box``
    det_box: np.ndarray | None = None  # box of the last matching detection
    last_detected: int = -1  # its frame
    velocity: np.ndarray | None = None  # px per frame, from detections
    steps: tuple[float, ...] = ()  # its propagated mask's latest per-frame moves (px)
    speed: float = 0.0  # the fastest it was seen moving: px per frame (``STEPS``)
    area: float = 0.0  # usual mask area (from detections)
    exited: bool = False  # last seen touching the frame's edge
    live: bool = False  # in the propagation state now
    hits: int = 0  # keyframes with a matching detection
    low_since: int | None = None  # first frame of the current run of bad masks (quality)
    forgotten: bool = False  # dropped from re-identification (``max_retired``)
    slide: np.ndarray | None = None  # how fast its propagated mask slides off it (px per
    # frame, x and y), measured against its detections (``_outlasts``)
    span: int = 0  # frames that measure covered
    noise: np.ndarray | None = None  # the detector's noise on its box edges (px, x and y)
    taken_back: bool = False  # its one detection's masks were taken back (``track``): not
    # reported unless a later detection confirms it


@dataclass
class LookEvidence:
    """How well looks tell one label's objects apart in this video: the cosines of confirmed
    observations with their own object's stored look (*same*) and with other confirmed
    objects' looks (*other*), the latest ``LOOK_WINDOW`` of each. Each kind's centre and spread
    are their median and median absolute deviation (one odd sample, such as a false box that
    was the only other detection on a keyframe, moves neither), shrunk towards a prior
    (``IdentityConfig.look_prior_*``) that weighs as ``look_prior_n`` samples before any and
    fades as they come (``n * n / (n + k)`` after ``k``: half after ``n``, 4 % after 50).

    A look decides only where it separates (``cut``): it says "another object" below the
    same-object centre by ``look_z`` spreads (a false box, or another class of thing, even
    when this label's objects all look alike), and "same" above the other-object centre by as
    many, only when the two centres lie ``look_separation`` pooled spreads apart (both split
    at the point between the two centres, so a cosine never says both). Between the two, and
    for "same" where objects look alike, the look says nothing, and place, motion and size
    decide as they do without embeddings."""

    samples: dict[str, list[float]] = field(default_factory=lambda: {"same": [], "other": []})

    def add(self, kind: str, value: float) -> None:
        self.samples[kind] = [*self.samples[kind], float(value)][-LOOK_WINDOW:]

    def estimate(self, kind: str, cfg: IdentityConfig) -> tuple[float, float]:
        """(centre, spread) of one kind, the prior's counted as ``look_prior_n`` samples."""
        x = np.asarray(self.samples[kind], np.float64)
        p, sd = float(cfg.look_prior_n), float(cfg.look_prior_sd)
        if kind == "same":
            mu = float(cfg.veto_threshold) + cfg.look_z * sd
        else:
            mu = float(cfg.reid_threshold) - cfg.look_z * sd
        if not len(x):
            return mu, sd
        k, med = len(x), float(np.median(x))
        p = p * p / (p + k)  # the prior fades as the video's own samples come in
        spread = 1.4826 * float(np.median(np.abs(x - med)))  # a normal's sd from its MAD
        return (p * mu + k * med) / (p + k), float(np.sqrt((p * sd * sd + k * spread**2) / (p + k)))

    def cut(self, cfg: IdentityConfig) -> tuple[float, float]:
        """(says "same" at or above: NaN where this label's objects look alike, says
        "other" below)."""
        (ms, ss), (mo, so) = self.estimate("same", cfg), self.estimate("other", cfg)
        if ms - mo < cfg.look_separation * np.sqrt((ss * ss + so * so) / 2):
            return float("nan"), ms - cfg.look_z * ss
        split = (mo * ss + ms * so) / max(ss + so, 1e-9)  # as many spreads from each centre
        return max(mo + cfg.look_z * so, split), min(ms - cfg.look_z * ss, split)

    def copy(self) -> LookEvidence:
        return LookEvidence({k: list(v) for k, v in self.samples.items()})


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
            e = np.asarray(self.embeddings)
            self.embeddings = normalize_rows(e.reshape(n, -1)) if n else None

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class Plan:
    """What to do with the propagation state at a keyframe.

    ``ids[j]``: the id of detection ``j``; ``reseed``: id -> detection that re-prompts an
    object already tracked; ``start``: id -> detection that adds a new or returning object
    (``revived`` are the returning ones); ``retire``: ids to remove from the state;
    ``moved``: id -> the id whose propagated mask sat on its detection (a swap or a wrong
    re-acquisition since the previous keyframe, which ``track`` can repair backwards).
    """

    ids: list[int]
    reseed: dict[int, int] = field(default_factory=dict)
    start: dict[int, int] = field(default_factory=dict)
    revived: set[int] = field(default_factory=set)
    retire: list[int] = field(default_factory=list)
    moved: dict[int, int] = field(default_factory=dict)

    @property
    def prompted(self) -> dict[int, int]:
        return {**self.reseed, **self.start}


def _centre(box: np.ndarray) -> np.ndarray:
    return (np.asarray(box[:2]) + np.asarray(box[2:])) / 2


def _size(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1], 1.0))


@dataclass
class IdBook:
    """Every id seen so far (``Identity``) and the rules that give detections their ids."""

    config: IdentityConfig = field(default_factory=IdentityConfig)
    objects: dict[int, Identity] = field(default_factory=dict)
    next_id: int = 1
    frame_hw: tuple[int, int] | None = None  # frame size (edges: exits and entries)
    # this video's looks: mean cosine of an object's stored look with its own confirmed
    # detections and with other confirmed objects of its label, and how many of each
    looks: dict[str, list[float]] = field(
        default_factory=lambda: {"same": [0.0, 0], "other": [0.0, 0]}
    )
    # per label: how well looks separate its objects, what decisions use (``LookEvidence``)
    evidence: dict[str, LookEvidence] = field(default_factory=dict)

    # -- views
    @property
    def labels(self) -> dict[int, str]:
        return {i: o.label for i, o in self.objects.items() if not o.taken_back}

    @property
    def scores(self) -> dict[int, float]:
        return {i: o.score for i, o in self.objects.items() if not o.taken_back}

    def label_of(self, i: int, default: str = "object") -> str:
        """``labels.get(i, default)`` without building ``labels`` (cost independent of how
        many ids the video has seen)."""
        o = self.objects.get(i)
        return default if o is None or o.taken_back else o.label

    def score_of(self, i: int, default: float = 0.0) -> float:
        """``scores.get(i, default)`` without building ``scores``."""
        o = self.objects.get(i)
        return default if o is None or o.taken_back else o.score

    @property
    def live(self) -> list[int]:
        return [i for i, o in self.objects.items() if o.live]

    def copy(self) -> IdBook:
        objs = {i: replace(o) for i, o in self.objects.items()}
        looks = {k: list(v) for k, v in self.looks.items()}
        evidence = {k: v.copy() for k, v in self.evidence.items()}
        return IdBook(self.config, objs, self.next_id, self.frame_hw, looks, evidence)

    @property
    def reid_threshold(self) -> float:
        """A video-wide summary of the cosine that says "same object", for reports:
        ``config.reid_threshold`` until this video has shown enough confirmed looks
        (``CALIBRATE`` of each), then halfway between its same-object and other-object
        similarities (never below ``veto_threshold``). Decisions use each label's own
        evidence instead (``look_cuts``)."""
        (same, n_same), (other, n_other) = self.looks["same"], self.looks["other"]
        if min(n_same, n_other) < CALIBRATE:
            return float(self.config.reid_threshold)
        return max((same + other) / 2, float(self.config.veto_threshold))

    def look_cuts(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Per id: the cosine at or above which a detection's look says "same object" (NaN
        where the id's label's objects look alike in this video: then a look never says
        so), and the one below which it says "another object" (``LookEvidence``)."""
        cuts = np.full((len(ids), 2), np.nan, np.float32)
        for r, i in enumerate(ids):
            cuts[r] = self.evidence.get(self.objects[i].label, LookEvidence()).cut(self.config)
        return cuts[:, 0], cuts[:, 1]

    def _calibrate(self, pairs: dict[int, int], placed, sim, cand, dets) -> None:
        """Learn this video's looks from re-seeds that place alone confirms (mask IoU, or
        where the object's motion puts it): a track against its own detection (same), and
        the look a wrong match would have (other): the track against the most similar other
        detection of its label on the same keyframe, and the detection against the most
        similar other confirmed id of its label. ``sim`` [len(cand), n]: cosines of the
        candidates (``cand``, the live ones first, as ``pairs`` counts them) with the
        detections."""
        for j, r in pairs.items():
            if not placed[r, j] or not np.isfinite(sim[r, j]):
                continue
            self._look_sample("same", float(sim[r, j]))
            label = dets.labels[j]
            ev = self.evidence.setdefault(label, LookEvidence())
            ev.add("same", float(sim[r, j]))
            others = [  # the other detections of its label: other things, the closest counts
                sim[r, k] for k in range(len(dets))
                if k != j and dets.labels[k] == label and np.isfinite(sim[r, k])
            ]  # fmt: skip
            if others:
                self._look_sample("other", float(max(others)))
                ev.add("other", float(max(others)))
            rivals = [  # other confirmed ids of its label, the closest counts
                sim[q, j] for q, i in enumerate(cand)
                if q != r and self.objects[i].label == label and self.objects[i].hits > 1
                and np.isfinite(sim[q, j])
            ]  # fmt: skip
            if rivals:
                ev.add("other", float(max(rivals)))

    def _look_sample(self, kind: str, value: float) -> None:
        mean, n = self.looks[kind]
        n += 1
        self.looks[kind] = [mean + (value - mean) / min(n, LOOK_WINDOW), n]

    # -- bookkeeping between keyframes
    def observe(
        self,
        frame_idx: int,
        boxes: dict[int, np.ndarray],
        areas: dict[int, float] | None = None,
        object_scores: dict[int, float] | None = None,
    ) -> None:
        """Remember where each tracked object is on a frame (its box; empty objects are
        absent) and how good its mask looks (area against its usual area, SAM 2's object
        score logit when known): a bad run starts ``low_since``."""
        areas, object_scores = areas or {}, object_scores or {}
        for i in self.live:
            o = self.objects[i]
            b = boxes.get(i)
            good = b is not None
            if good:
                b = np.asarray(b, np.float32)
                if o.box is not None and o.last_seen == frame_idx - 1:
                    step = float(np.linalg.norm(_centre(b) - _centre(o.box)))
                    if step <= _size(o.box):  # a jump is another object, not its motion
                        o.steps = (*o.steps, step)[-STEPS:]
                        if len(o.steps) == STEPS:  # one bad mask is not a speed: the median
                            o.speed = max(o.speed, sorted(o.steps)[STEPS // 2])
                o.box, o.last_seen = b, frame_idx
                o.exited = self._at_edge(o.box)
                a = areas.get(i)
                if a is not None and o.area > 0:
                    good = self.config.min_area * o.area <= a <= o.area / self.config.min_area
                if object_scores.get(i, 1.0) <= 0:
                    good = False
            if good:
                o.low_since = None
            elif o.low_since is None:
                o.low_since = frame_idx

    def observe_masks(self, frame_idx: int, masks: dict[int, np.ndarray], scores=None) -> None:
        """``observe`` from bool masks."""
        boxes = {i: mask_box(m) for i, m in masks.items() if m.any()}
        self.observe(frame_idx, boxes, {i: float(masks[i].sum()) for i in boxes}, scores)

    def _at_edge(self, box: np.ndarray) -> bool:
        if self.frame_hw is None:
            return False
        h, w = self.frame_hw
        m = 0.02 * max(h, w)
        return bool(box[0] <= m or box[1] <= m or box[2] >= w - m or box[3] >= h - m)

    def left_view(self, o: Identity) -> bool:
        """Did ``o``'s mask leave the view through an edge? Its last box touches an edge that
        it moved towards since its last detection, by a quarter of its extent across that
        edge at least (a box leaving shrinks against the edge, so its centre moves at most
        half its extent): a box that only sits at the edge, like a person whose feet the frame
        cuts, did not leave."""
        if not o.exited or o.box is None or o.det_box is None or self.frame_hw is None:
            return False
        h, w = self.frame_hw
        m, b = 0.02 * max(h, w), o.box
        dx, dy = _centre(b) - _centre(o.det_box)
        sx, sy = 0.25 * np.maximum(o.det_box[2:] - o.det_box[:2], 1.0)
        return bool(
            (b[0] <= m and dx <= -sx) or (b[2] >= w - m and dx >= sx)
            or (b[1] <= m and dy <= -sy) or (b[3] >= h - m and dy >= sy)
        )  # fmt: skip

    def retire(self, ids) -> None:
        """Mark ids as out of the propagation state (their identity is kept); beyond
        ``max_retired`` the oldest retired ids are forgotten for re-identification."""
        for i in ids:
            if i in self.objects:
                self.objects[i].live = False
                self.objects[i].low_since = None
        self._forget()

    def _forget(self) -> None:
        """Beyond ``max_retired`` retired ids, the oldest lose what re-identification needs."""
        gone = [i for i, o in self.objects.items() if not o.live and not o.forgotten]
        extra = len(gone) - int(self.config.max_retired)
        for i in sorted(gone, key=lambda i: self.objects[i].last_seen)[: max(extra, 0)]:
            o = self.objects[i]
            o.forgotten, o.embedding, o.box, o.det_box, o.velocity = True, None, None, None, None

    def _new(self, label: str) -> int:
        i = self.next_id
        self.objects[i] = Identity(label)
        self.next_id += 1
        return i

    def _remember(self, i: int, emb: np.ndarray | None, clean: bool) -> None:
        """Slow, robust appearance update: views overlapping another detection are skipped
        (they mix two objects) once the id has a look."""
        o = self.objects[i]
        if emb is None:
            return
        if o.embedding is None:
            o.embedding = emb
        elif clean:
            m = self.config.momentum
            o.embedding = normalize_rows(m * o.embedding + (1 - m) * emb)

    def similarity(self, ids: list[int], emb: np.ndarray | None, n: int) -> np.ndarray:
        """Cosine similarity [len(ids), n] of the ids' appearance with n detections' (NaN =
        unknown)."""
        sim = np.full((len(ids), n), np.nan, dtype=np.float32)
        if emb is None:
            return sim
        for r, i in enumerate(ids):
            e = self.objects[i].embedding
            if e is not None:
                sim[r] = emb @ e
        return sim

    def plausible(self, i: int, frame_idx: int, boxes: np.ndarray) -> np.ndarray:
        """[M] bool: could object ``i`` be at each of ``boxes`` on ``frame_idx``?

        Within reach of where it was last seen or where its motion would have taken it: its
        size, plus per frame since then ``max_speed`` sizes per second and the fastest it was
        seen moving (its propagated mask's steps, its detections' velocity: it may have turned
        or sped up again, and a small fast object covers many of its sizes in a second). The
        size is the larger of its last seen and last detected box (a mask clipped by an
        occluder is not the object's size). An object that left at an edge may come back
        anywhere."""
        o = self.objects[i]
        ref, seen = (o.det_box, o.last_detected) if o.live else (o.box, o.last_seen)
        if ref is None:
            ref, seen = o.box, o.last_seen
        if ref is None or len(boxes) == 0:
            return np.ones(len(boxes), bool)
        if not o.live and o.exited:
            return np.ones(len(boxes), bool)
        dt = max(frame_idx - seen, 0)
        size = max(_size(ref), _size(o.det_box) if o.det_box is not None else 0.0)
        v = o.velocity if o.velocity is not None else np.zeros(2, np.float32)
        reach = size + (self.config.max_speed * size / self.config.fps + o.speed) * dt
        c = _centre(ref)
        pred = c + v * dt
        cb = (boxes[:, :2] + boxes[:, 2:]) / 2
        d = np.minimum(np.linalg.norm(cb - c, axis=1), np.linalg.norm(cb - pred, axis=1))
        return d <= reach

    def _look_candidates(self, frame_idx, cand, dets, sim, same_at) -> np.ndarray:
        """[len(cand), n] bool: same label, plausible position, a look that says "same"
        (``same_at``: per candidate, from ``look_cuts``)."""
        ok = np.zeros(sim.shape, bool)
        for r, i in enumerate(cand):
            same = np.array([self.objects[i].label == lab for lab in dets.labels], bool)
            ok[r] = same & (sim[r] >= same_at[r])
            if ok[r].any():
                ok[r] &= self.plausible(i, frame_idx, dets.boxes)
        return ok

    def _unambiguous(self, sim: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Drop look matches with a rival within ``ambiguity`` (for the detection or the id):
        a new id is better than the wrong old one."""
        s = np.where(ok, sim, -np.inf)
        out = ok.copy()
        eps = self.config.ambiguity
        for axis in (0, 1):
            if s.shape[axis] < 2:
                continue
            top2 = -np.sort(-s, axis=axis).take([0, 1], axis=axis)
            best, second = top2.take(0, axis=axis), top2.take(1, axis=axis)
            gap = np.where(np.isfinite(second), best - np.where(np.isfinite(second), second, 0), 1)
            close = gap < eps
            out &= ~(np.expand_dims(close, axis) & ok)
        return out

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
        if masks is not None and n:
            self.frame_hw = tuple(masks.shape[1:])
        live = self.live
        plan = Plan(ids=[0] * n)
        ids: list[int | None] = [None] * n
        # every mask comparison below is made on masks reduced once (``LowRes``), at one
        # frame size: the detections', else the first tracked mask's (others count as missing)
        given = [track_masks.get(i) for i in live]
        shape = masks.shape[1:] if masks is not None and n else None
        shape = shape or next((m.shape for m in given if m is not None), None)
        cur = {i: m if m is not None and m.shape == shape else None for i, m in zip(live, given)}
        seen = [i for i in live if cur[i] is not None]
        tracked = LowRes.of([cur[i] for i in seen], shape or (0, 0))
        visible = [i for i, a in zip(seen, tracked.area) if a > 0]
        tracked = tracked.take([seen.index(i) for i in visible])
        found = LowRes.of(masks, shape) if masks is not None and n else None
        iou = np.zeros((len(live), n), dtype=np.float32)
        on = np.zeros((len(live), n), dtype=bool)  # the track's mask lies on the detection
        inside = None  # [visible, n]: share of each detection's mask under each tracked mask
        dup_iou = None  # [n, n]: mask IoU between detections
        if found is not None:
            dup_iou = _iou(found.overlaps(found), found.size, found.size)
        if visible and n:
            rows = [live.index(i) for i in visible]
            if found is not None:
                inter = tracked.overlaps(found)
                iou[rows] = _iou(inter, tracked.size, found.size)
                on[rows] = _share(inter.T, tracked.size).T >= 0.8
                inside = _share(inter, found.size)
            else:
                iou[rows] = box_iou(np.stack([mask_box(cur[i]) for i in visible]), boxes)
            on[rows] |= iou[rows] >= cfg.iou_threshold
            on &= iou >= 0.3
        gone = [i for i, o in self.objects.items() if not o.live and not o.forgotten]
        cand = live + gone
        # a look says "same" only for labels whose looks separate their objects in this
        # video (``look_cuts``); for the others every rule below sees no look (NaN), as
        # without embeddings, except that a look far below the object's own still says
        # "another object" (``raw`` against ``other_below``)
        raw = self.similarity(cand, emb, n)
        same_at, other_below = self.look_cuts(cand)
        sim = np.where(np.isnan(same_at)[:, None], np.nan, raw)
        look = self._unambiguous(sim, self._look_candidates(frame_idx, cand, dets, sim, same_at))

        # 1. objects being tracked: IoU with the propagated mask and the same label (refused
        #    when another id explains the detection by look), or look + place alone
        if live and n:
            s_live, known = sim[: len(live)], ~np.isnan(sim[: len(live)])
            same = np.array([[self.objects[i].label == lab for lab in dets.labels] for i in live])
            rival = np.zeros((len(live), n), bool)
            for r in range(len(live)):
                others = np.delete(np.where(look, sim, -np.inf), r, axis=0)
                best = others.max(0) if len(others) else np.full(n, -np.inf)
                worse = (s_live[r] < other_below[r]) | (best - s_live[r] >= 2 * cfg.ambiguity)
                rival[r] = np.isfinite(best) & known[r] & worse
            by_iou = same & (iou >= cfg.iou_threshold) & ~rival
            by_look = look[: len(live)]
            score = np.where(by_iou | by_look, 1.0 + iou + np.where(known, s_live, 0.0), 0.0)
            placed = by_iou.copy()  # pairs that place alone (not the look) says are one object
            # the propagated mask drifted off but the detection is where the object's motion
            # since its last detection puts it (or under the mask still), and its look does
            # not say otherwise
            for r, i in enumerate(live):
                for j in range(n):
                    if score[r, j] or not same[r, j] or rival[r, j]:
                        continue
                    if raw[r, j] < other_below[r]:  # (False where unknown)
                        continue
                    m = self._motion_score(self.objects[i], frame_idx, boxes[j])
                    if m <= 0 and self._under(self.objects[i], frame_idx, boxes[j]):
                        m = 0.2  # the mask slid a little: the detection's centre is still on it
                    score[r, j] = 1.0 + 0.5 * m if m > 0 else 0.0
                    placed[r, j] = m > 0
            pairs = self._unswap(frame_idx, live, _assign(score, 1.0), s_live, dets)
            self._calibrate(pairs, placed, raw, cand, dets)
            for j, r in pairs.items():
                ids[j] = live[r]
                plan.reseed[live[r]] = j
                if on[r, j] or not on[r].any():  # a mask on another detection is a swap
                    self._measure_slide(self.objects[live[r]], frame_idx, boxes[j])

        # 2. a second detection of an already-claimed thing (another label, a duplicate box,
        #    a box mostly inside a tracked object's mask)
        claimed = [j for j in range(n) if ids[j] is not None]
        for j in range(n):
            if ids[j] is None:
                dup = self._duplicate_of(j, claimed, boxes, dup_iou)
                if dup is not None:
                    ids[j] = ids[dup]

        # 3. returning objects: look + place (unambiguous), else last position; same label
        open_dets = [j for j in range(n) if ids[j] is None]
        if open_dets and gone:
            score = np.zeros((len(gone), len(open_dets)), dtype=np.float32)
            for r, i in enumerate(gone):
                o = self.objects[i]
                rr = len(live) + r
                for c, j in enumerate(open_dets):
                    if o.label != dets.labels[j]:
                        continue
                    if not np.isnan(sim[rr, j]) and look[rr, j]:
                        score[r, c] = 1.0 + sim[rr, j]
                    elif raw[rr, j] < other_below[rr]:  # its look says another object
                        continue
                    elif np.isnan(sim[rr, j]) and o.box is not None:
                        score[r, c] = self._position_score(o.box, boxes[j])
                    elif sim[rr, j] >= other_below[rr] and o.box is not None:
                        score[r, c] = 0.5 * self._motion_score(o, frame_idx, boxes[j])
            for c, r in _assign(score, 1e-6).items():
                j, i = open_dets[c], gone[r]
                ids[j] = i
                plan.start[i] = j
                plan.revived.add(i)

        # 4. the rest are new objects (highest score first; duplicates of fresh starts and of
        #    objects being tracked merged)
        for j in sorted((j for j in range(n) if ids[j] is None), key=lambda j: -dets.scores[j]):
            dup = self._duplicate_of(j, list(plan.start.values()), boxes, dup_iou)
            if dup is not None:
                ids[j] = ids[dup]
                continue
            under = self._inside_track(j, visible, inside, dets.labels[j])
            if under is not None:
                ids[j] = under
                continue
            ids[j] = self._new(dets.labels[j])
            plan.start[ids[j]] = j

        # 5. missed objects: keep while their mask looks like them and not for too long;
        #    retire when gone, or when their mask now sits on another object's fresh
        #    detection (one object, one live track; ``moved`` remembers whose)
        keep = cfg.frames(cfg.keep_seconds)
        for i in live:
            if i in plan.reseed:
                continue
            o = self.objects[i]
            empty = i not in visible
            taken = None
            if not empty and n:
                r = live.index(i)
                hit = np.flatnonzero(on[r])
                if len(hit):
                    taken = ids[int(hit[np.argmax(iou[r, hit])])]
            if taken is not None:
                plan.moved[taken] = i
            bad = o.low_since is not None and frame_idx - o.low_since >= min(keep, cfg.fps / 2)
            bad = bad or (not empty and not self._outlasts(o, frame_idx))
            gone = empty or bad or frame_idx - o.last_detected > keep
            if gone or taken is not None:
                plan.retire.append(i)
        for i, r in list(plan.moved.items()):
            if i == r or i not in plan.prompted:
                del plan.moved[i]
        for r in live:  # swaps: an id re-seeded from a detection another live track sat on
            if r in plan.reseed:
                j = plan.reseed[r]
                for i in live:
                    if i != r and on[live.index(i), j]:
                        plan.moved.setdefault(r, i)
        for i in plan.retire:
            self.objects[i].live = False
            self.objects[i].low_since = None

        # 6. bookkeeping for the prompted ones
        for i, j in plan.prompted.items():
            o = self.objects[i]
            self._update_motion(o, boxes[j], frame_idx)
            o.live, o.taken_back = True, False
            o.hits += 1
            o.low_since = None
            clean = found is None or not (np.delete(dup_iou[j], j) > 0.1).any()
            self._remember(i, None if emb is None else emb[j], clean)
            if found is not None and found.area[j] > 0:
                a = float(found.area[j])  # full-resolution pixels
                o.area = a if o.area == 0 else 0.7 * o.area + 0.3 * a
        for j in range(n):
            o = self.objects[ids[j]]
            o.score = max(o.score, float(dets.scores[j]))
        plan.ids = [int(i) for i in ids]
        self._forget()
        return plan

    def _unswap(self, frame_idx, live, pairs: dict[int, int], sim, dets) -> dict[int, int]:
        """Exchange the detections of two same-label tracks when their looks say so together
        (the crossed pairing is more similar by ``4 * ambiguity`` in sum: an absolute
        threshold misses this when every view is noisy) or, where looks say nothing either
        way, when their motions do (each detection of the crossed pairing is where the other
        track's motion puts it, and together nearer by ``motion_swap`` motion scores:
        propagation exchanges objects where they cross); each must be plausible where the
        other was."""
        gain_min = 4 * self.config.ambiguity
        motion = {}  # (r, j) -> motion score, computed once

        def m(r, j) -> float:
            if (r, j) not in motion:
                motion[r, j] = self._motion_score(self.objects[live[r]], frame_idx, dets.boxes[j])
            return motion[r, j]

        for _ in range(len(pairs) ** 2 + 1):
            best, pick = 0.0, None
            items = list(pairs.items())
            for x, (j1, r1) in enumerate(items):
                for j2, r2 in items[x + 1 :]:
                    if self.objects[live[r1]].label != self.objects[live[r2]].label:
                        continue
                    g = sim[r1, j2] + sim[r2, j1] - sim[r1, j1] - sim[r2, j2]
                    if np.isfinite(g) and g > gain_min:
                        gain = 2 + g  # looks that say so come first
                    elif np.isfinite(g) and g < -gain_min:
                        continue  # looks say the pairs are right
                    elif m(r1, j2) > 0 and m(r2, j1) > 0:
                        gain = m(r1, j2) + m(r2, j1) - m(r1, j1) - m(r2, j2)
                        if gain < self.config.motion_swap:
                            continue
                    else:
                        continue
                    if gain > best:
                        best, pick = gain, (j1, r1, j2, r2)
            if pick is None:
                return pairs
            j1, r1, j2, r2 = pick
            ok1 = self.plausible(live[r1], frame_idx, dets.boxes[[j2]])[0]
            ok2 = self.plausible(live[r2], frame_idx, dets.boxes[[j1]])[0]
            if not (ok1 and ok2):
                return pairs
            pairs[j1], pairs[j2] = r2, r1
        return pairs

    def _update_motion(self, o: Identity, box: np.ndarray, frame_idx: int) -> None:
        box = np.asarray(box, np.float32)
        if o.det_box is not None and frame_idx > o.last_detected and o.live:
            v = (_centre(box) - _centre(o.det_box)) / (frame_idx - o.last_detected)
            o.velocity = v if o.velocity is None else 0.5 * o.velocity + 0.5 * v
            o.speed = max(o.speed, float(np.linalg.norm(o.velocity)))
        o.det_box, o.last_detected = box, frame_idx
        o.box, o.last_seen = box, frame_idx
        o.exited = self._at_edge(box)

    def _motion_score(self, o: Identity, frame_idx: int, box) -> float:
        """In (0, 1] when ``box`` is close to where ``o`` would be now (its last detected box,
        or last seen box once retired, moved on by its velocity: within half its size) and of
        a similar size, less than ``keep_seconds`` after that; else 0."""
        last, seen = (o.det_box, o.last_detected) if o.live else (o.box, o.last_seen)
        velocity = o.velocity
        if last is None:
            return 0.0
        dt = frame_idx - seen
        if dt > self.config.frames(self.config.keep_seconds) or velocity is None:
            return 0.0
        ref = o.det_box if o.det_box is not None else last
        pred = _centre(last) + velocity * dt
        d = float(np.linalg.norm(_centre(box) - pred))
        size, ratio = _size(ref), _size(box) / _size(ref)
        if d > 0.5 * size or not 0.5 <= ratio <= 2.0:
            return 0.0
        return 1.0 - d / (0.5 * size) + 1e-3

    def _measure_slide(self, o: Identity, frame_idx: int, box) -> None:
        """How propagation held this object since its previous detection: the offset of its
        propagated mask's box from the fresh detection ``box``, per frame, averaged over the
        latest keyframes with its sign. A mask sliding off its object moves one way; the
        detections' own noise points anywhere and averages out (``SLIDE_MEMORY``)."""
        span = frame_idx - o.last_detected
        if o.last_detected < 0 or span <= 0 or o.box is None or o.last_seen != frame_idx:
            return
        rate = (_centre(o.box) - _centre(box)) / span
        o.slide = rate if o.slide is None else (1 - SLIDE_MEMORY) * rate + SLIDE_MEMORY * o.slide
        o.span = int(span)
        if o.det_box is not None:  # sizes change slowly: a size change is the detector's noise
            sides = np.abs((box[2:] - box[:2]) - (o.det_box[2:] - o.det_box[:2])) / 1.6
            o.noise = sides if o.noise is None else 0.5 * o.noise + 0.5 * sides

    def _outlasts(self, o: Identity, frame_idx: int) -> bool:
        """Will a missed object's propagated mask still be on it (IoU >= ``iou_threshold``)
        halfway to the next detection it can get? Propagation errors grow with the time since
        the last prompt: at the rate ``_measure_slide`` saw (a box shifted by ``dx, dy`` keeps
        ``p = (1 - dx/w)(1 - dy/h)`` of itself, IoU ``p / (2 - p)``). Keeping a mask that is
        right for half the frames until the next look costs no more than dropping it; the next
        look comes at the next keyframe (about ``span`` frames) or, with keyframes on demand
        (``doubt``), once the slide shows, ``config.recheck_frames`` later at the soonest."""
        if o.slide is None or o.det_box is None:
            return True
        # less what the detections' noise alone would give the average (one standard error)
        noise = 0.0 if o.noise is None else o.noise * _EMA_SD / o.span
        rate = np.maximum(np.abs(o.slide) - noise, 0.0)
        soonest = o.span if self.config.recheck_frames is None else self.config.recheck_frames
        ahead = 0.5 * min(o.span, soonest)  # halfway to its next detection
        dx, dy = rate * (frame_idx - o.last_detected + ahead)
        w, h = np.maximum(o.det_box[2:] - o.det_box[:2], 1.0)
        p = max(1.0 - dx / w, 0.0) * max(1.0 - dy / h, 0.0)
        return p / (2 - p) >= self.config.iou_threshold

    def _under(self, o: Identity, frame_idx: int, box) -> bool:
        """The centre of ``box`` lies inside the box of ``o``'s propagated mask on this frame,
        or the mask's centre inside ``box`` (a mask that slid or shrank part-way off its
        object still overlaps where the object is; a box beside the object does not)."""
        if o.box is None or o.last_seen != frame_idx:
            return False

        def inside(c, b) -> bool:
            return bool(b[0] <= c[0] <= b[2] and b[1] <= c[1] <= b[3])

        return inside(_centre(box), o.box) or inside(_centre(o.box), box)

    def _position_score(self, last_box, box) -> float:
        b = float(box_iou(last_box[None], box[None])[0, 0])
        return b if b >= self.config.box_iou_threshold else 0.0

    def _inside_track(self, j, visible, inside, label: str) -> int | None:
        """A tracked object of this label whose propagated mask covers most of detection
        ``j``'s mask (a second box on it). ``inside`` [len(visible), n]: the share of each
        detection's mask under each visible tracked mask (None without masks)."""
        if inside is None:
            return None
        rows = [r for r, i in enumerate(visible) if self.objects[i].label == label]
        if not rows:
            return None
        cover = inside[rows, j]
        k = int(cover.argmax())
        return visible[rows[k]] if cover[k] >= 0.7 else None

    def _duplicate_of(self, j, others, boxes, mask_iou) -> int | None:
        """The detection among ``others`` that ``j`` duplicates (IoU >= ``iou_threshold``):
        ``mask_iou`` [n, n] between the detections' masks, else their boxes."""
        others = [k for k in others if k != j]
        if not others:
            return None
        if mask_iou is not None:
            iou = mask_iou[others, j]
        else:
            iou = box_iou(boxes[others], boxes[j : j + 1])[:, 0]
        k = int(iou.argmax())
        return others[k] if iou[k] >= self.config.iou_threshold else None
