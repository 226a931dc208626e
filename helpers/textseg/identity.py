"""Who is who in a video: ids for detections, kept across misses, exits and occlusions.

No model lives here: masks are bool arrays, appearance embeddings are plain float vectors
(the tracker pools SAM 2 image-encoder features under each detection's mask; the tracking
benchmark scripts them). Every number and rule is named in ``identity_config``; how far looks
are trusted is learnt per video and label (``look_evidence.LookEvidence``): a look says "same
object" only where this video's confirmed observations show that it separates one object's
views from other objects', "another object" only far below an object's own views; in between
place, motion and size decide, as they do without embeddings.

``IdBook.keyframe`` decides, for one keyframe's detections, in named stages:

1. **match** the objects being tracked (``_match_live``): mask IoU with the propagated mask
   and the same label (refused when another id explains the detection clearly better by
   look), or look alone where the object could plausibly be, or, when the mask slid part-way
   off, where its motion puts it or overlapping the slid mask's centre;
2. **repair** swaps (``_repair_swaps``): two tracks whose detections look crossed, or, where
   looks say nothing, lie crossed where their motions put them, are exchanged; the matched
   ones re-prompt their objects (``_reseed``);
3. **revive** (``_revive``): a detection that matches no tracked object gets a retired id back
   when the label agrees, the look says "same" and the place is plausible (near where it was
   hidden, where it could have walked since, where the camera's motion took it, anywhere for
   an object that left at an edge); a recently retired object whose look is merely unsure
   comes back where its motion predicts; without a look that says anything, by where it was
   last seen (box IoU). Two candidates within ``ambiguity`` give a new id rather than possibly
   the wrong old one;
4. **start** (``_start``): everything else gets a new id; two detections of one thing never
   get two ids (a second box, or a box mostly inside a tracked object's mask, is that object);
5. **retire** (``_retire_missed``): a missed object stays in the propagation for
   ``keep_seconds`` while its propagated mask keeps its usual area, SAM 2's object score stays
   positive and its propagation is expected to hold it still (the slide measured at its
   re-seeds); a tracked object whose mask sits on another object's fresh detection is retired,
   so one object never has two tracks (``Plan.moved`` says whose, so the frames since the
   previous keyframe can be repaired).

A track's state is one ``State``. A track retired without a second detection was most likely a
false box: the loop takes its masks back (``track.Unconfirmed``, ``IdBook.take_back``) unless it
left the view through an edge it moved towards (``IdBook.left_view``).

Memory stays bounded: an id keeps a few small arrays (look, boxes, velocity), never a mask,
and only the ``max_retired`` most recent retired ids are compared with new detections. A
keyframe costs the same at any resolution: its masks are reduced once to at most
``COMPARE_SIDE`` cells a side (``LowRes``) and compared there; areas and boxes stay in
full-resolution pixels, and the detections keep their full-resolution masks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

import numpy as np

from helpers.errors import InputError
from helpers.textseg.identity_config import RECHECK_FRAMES, RULES, IdentityConfig
from helpers.textseg.look_evidence import LookEvidence
from helpers.textseg.mask_geometry import (
    COMPARE_SIDE,
    LowRes,
    assign,
    box_iou,
    covered_share,
    mask_box,
    masks_iou,
    match_ids,
    normalize_rows,
    overlap_iou,
)

__all__ = [
    "COMPARE_SIDE", "RECHECK_FRAMES", "RULES", "Detections", "IdBook", "Identity",
    "IdentityConfig", "LookEvidence", "LowRes", "Plan", "State", "box_iou", "mask_box",
    "masks_iou", "match_ids", "normalize_rows",
]  # fmt: skip

HALF_NORMAL = 2 * np.sqrt(2 / np.pi)  # mean |difference| of two edges per edge's noise sd


class State(enum.Enum):
    """Where a track stands."""

    TRACKED = "tracked"  # in the propagation state now
    RETIRED = "retired"  # out of it; comes back when a detection re-identifies it
    FORGOTTEN = "forgotten"  # beyond ``max_retired``: reported, never re-identified
    TAKEN_BACK = "taken back"  # its one detection's masks were taken back: not reported
    # unless a later detection brings it back (forgotten, it is dropped)


@dataclass
class Identity:
    """What the book keeps about one id: a few numbers, never a mask (memory stays bounded)."""

    label: str
    state: State = State.RETIRED
    score: float = 0.0
    embedding: np.ndarray | None = None  # unit vector, or None
    box: np.ndarray | None = None  # last non-empty box (xyxy), detected or propagated
    last_seen: int = -1  # frame of ``box``
    det_box: np.ndarray | None = None  # box of the last matching detection
    last_detected: int = -1  # its frame
    camera_detected: np.ndarray | None = None  # where the camera looked then (``IdBook.camera``)
    camera_seen: np.ndarray | None = None  # ... and when ``box`` was seen
    velocity: np.ndarray | None = None  # px per frame, from detections
    steps: tuple[float, ...] = ()  # its propagated mask's latest per-frame moves (px)
    speed: float = 0.0  # the fastest it was seen moving: px per frame (``speed_steps``)
    area: float = 0.0  # usual mask area (from detections)
    at_edge: bool = False  # last seen touching the frame's edge
    hits: int = 0  # keyframes with a matching detection
    low_since: int | None = None  # first frame of the current run of bad masks (quality)
    slide: np.ndarray | None = None  # how fast its propagated mask slides off it (px per
    # frame, x and y), measured against its detections (``_outlasts``)
    span: int = 0  # frames that measure covered
    noise: np.ndarray | None = None  # the detector's noise on its box edges (px, x and y)

    @property
    def live(self) -> bool:
        return self.state is State.TRACKED


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


@dataclass
class Keyframe:
    """What one keyframe's stages compare, computed once (``IdBook._compare``). Rows of
    ``iou``/``on`` are ``live``; rows of ``raw``/``sim``/``look`` are ``cand`` (``live``, then
    ``gone``); columns are the detections."""

    t: int
    dets: Detections
    live: list[int]
    gone: list[int]  # retired ids that may be re-identified
    visible: list[int]  # live ids with a non-empty propagated mask
    found: LowRes | None  # the detections' masks
    iou: np.ndarray  # [live, n] IoU of propagated masks with detections
    on: np.ndarray  # [live, n] the track's mask lies on the detection
    inside: np.ndarray | None  # [visible, n] share of each detection under each tracked mask
    dup_iou: np.ndarray | None  # [n, n] mask IoU between detections
    raw: np.ndarray  # [cand, n] cosines (NaN: unknown)
    sim: np.ndarray  # ... NaN too where the id's label's looks do not separate
    same_at: np.ndarray  # [cand] cosine at or above which a look says "same"
    other_below: np.ndarray  # [cand] cosine below which it says "another object"
    look: np.ndarray  # [cand, n] a look match: same label, plausible, unambiguous
    ids: list[int | None]  # detection -> id, filled by the stages

    @property
    def cand(self) -> list[int]:
        return self.live + self.gone

    @property
    def n(self) -> int:
        return len(self.dets)


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
    # where the camera has moved the view since the first frame: the median per-frame move
    # of the tracked objects' masks, summed (px, x and y)
    camera: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))

    def __post_init__(self) -> None:
        self.config.check()

    # -- views
    @property
    def labels(self) -> dict[int, str]:
        return {i: o.label for i, o in self.objects.items() if o.state is not State.TAKEN_BACK}

    @property
    def scores(self) -> dict[int, float]:
        return {i: o.score for i, o in self.objects.items() if o.state is not State.TAKEN_BACK}

    def label_of(self, i: int, default: str = "object") -> str:
        """``labels.get(i, default)`` without building ``labels`` (cost independent of how
        many ids the video has seen)."""
        o = self.objects.get(i)
        return default if o is None or o.state is State.TAKEN_BACK else o.label

    def score_of(self, i: int, default: float = 0.0) -> float:
        """``scores.get(i, default)`` without building ``scores``."""
        o = self.objects.get(i)
        return default if o is None or o.state is State.TAKEN_BACK else o.score

    @property
    def live(self) -> list[int]:
        return [i for i, o in self.objects.items() if o.state is State.TRACKED]

    def copy(self) -> IdBook:
        objs = {i: replace(o) for i, o in self.objects.items()}
        looks = {k: list(v) for k, v in self.looks.items()}
        evidence = {k: v.copy() for k, v in self.evidence.items()}
        return type(self)(
            self.config, objs, self.next_id, self.frame_hw, looks, evidence, self.camera.copy()
        )

    @property
    def reid_threshold(self) -> float:
        """A video-wide summary of the cosine that says "same object", for reports:
        ``config.reid_threshold`` until this video has shown enough confirmed looks
        (``calibrate_samples`` of each), then halfway between its same-object and
        other-object similarities (never below ``veto_threshold``). Decisions use each
        label's own evidence instead (``look_cuts``)."""
        (same, n_same), (other, n_other) = self.looks["same"], self.looks["other"]
        if min(n_same, n_other) < self.config.calibrate_samples:
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

    # -- state changes the loop asks for
    def retire(self, ids) -> None:
        """Mark ids as out of the propagation state (their identity is kept); beyond
        ``max_retired`` the oldest retired ids are forgotten for re-identification."""
        for i in ids:
            if i in self.objects:
                self._set_retired(self.objects[i])
        self._forget()

    def take_back(self, i: int) -> None:
        """Id ``i``'s only detection was a false box: out of the propagation and of reports
        (until a later detection brings it back)."""
        o = self.objects[i]
        o.state, o.low_since = State.TAKEN_BACK, None

    def _set_retired(self, o: Identity) -> None:
        if o.state is State.TRACKED:
            o.state = State.RETIRED
        o.low_since = None

    def _forget(self) -> None:
        """Beyond ``max_retired`` retired ids, the oldest lose what re-identification needs
        (taken-back ones, which no frame shows, are dropped)."""
        gone = [i for i, o in self.objects.items() if o.state in (State.RETIRED, State.TAKEN_BACK)]
        extra = len(gone) - int(self.config.max_retired)
        for i in sorted(gone, key=lambda i: self.objects[i].last_seen)[: max(extra, 0)]:
            o = self.objects[i]
            if o.state is State.TAKEN_BACK:
                del self.objects[i]
                continue
            o.state, o.embedding, o.box, o.det_box, o.velocity = (
                State.FORGOTTEN, None, None, None, None
            )  # fmt: skip
            o.camera_seen = o.camera_detected = None

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
        score logit when known): a bad run starts ``low_since``. The tracked objects' median
        move from the previous frame is the camera's (``camera_min_tracks`` of them)."""
        cfg = self.config
        areas, object_scores = areas or {}, object_scores or {}
        moves = []
        for i in self.live:
            o = self.objects[i]
            b = boxes.get(i)
            good = b is not None
            if good:
                b = np.asarray(b, np.float32)
                if o.box is not None and o.last_seen == frame_idx - 1:
                    move = _centre(b) - _centre(o.box)
                    step = float(np.linalg.norm(move))
                    if step <= _size(o.box):  # a jump is another object, not its motion
                        moves.append(move)
                        o.steps = (*o.steps, step)[-cfg.speed_steps :]
                        if len(o.steps) == cfg.speed_steps:  # one bad mask is not a speed
                            o.speed = max(o.speed, sorted(o.steps)[cfg.speed_steps // 2])
                o.box, o.last_seen = b, frame_idx

                o.at_edge = self._at_edge(o.box)
                a = areas.get(i)
                if a is not None and o.area > 0:
                    good = cfg.min_area * o.area <= a <= o.area / cfg.min_area
                if object_scores.get(i, 1.0) <= 0:
                    good = False
            if good:
                o.low_since = None
            elif o.low_since is None:
                o.low_since = frame_idx
        if len(moves) >= cfg.camera_min_tracks:
            moves = np.stack(moves)
            common = np.median(moves, axis=0)
            spread = np.median(np.linalg.norm(moves - common, axis=1))
            if spread <= cfg.camera_agreement * np.linalg.norm(common):  # they move together
                self.camera = self.camera + common.astype(np.float32)
        for i in boxes:
            if i in self.objects and self.objects[i].live:
                self.objects[i].camera_seen = self.camera

    def observe_masks(self, frame_idx: int, masks: dict[int, np.ndarray], scores=None) -> None:
        """``observe`` from bool masks."""
        boxes = {i: mask_box(m) for i, m in masks.items() if m.any()}
        self.observe(frame_idx, boxes, {i: float(masks[i].sum()) for i in boxes}, scores)

    def _at_edge(self, box: np.ndarray) -> bool:
        if self.frame_hw is None:
            return False
        h, w = self.frame_hw
        m = self.config.edge_margin * max(h, w)
        return bool(box[0] <= m or box[1] <= m or box[2] >= w - m or box[3] >= h - m)

    def left_view(self, o: Identity) -> bool:
        """Did ``o``'s mask leave the view through an edge? Its last box touches an edge that
        it moved towards since its last detection, by ``exit_move`` of its extent across that
        edge at least (a box leaving shrinks against the edge, so its centre moves at most
        half its extent): a box that only sits at the edge, like a person whose feet the frame
        cuts, did not leave."""
        if not self.config.uses("left_view_keeps"):
            return False
        if not o.at_edge or o.box is None or o.det_box is None or self.frame_hw is None:
            return False
        h, w = self.frame_hw
        m, b = self.config.edge_margin * max(h, w), o.box
        dx, dy = _centre(b) - _centre(o.det_box)
        sx, sy = self.config.exit_move * np.maximum(o.det_box[2:] - o.det_box[:2], 1.0)
        return bool(
            (b[0] <= m and dx <= -sx) or (b[2] >= w - m and dx >= sx)
            or (b[1] <= m and dy <= -sy) or (b[3] >= h - m and dy >= sy)
        )  # fmt: skip

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

    # -- where an object can be
    def _camera_boxes(self, o: Identity) -> list[np.ndarray]:
        """Where a retired ``o`` would be now had it stood still while the camera moved: its
        last seen box and its last detected box (whole, where the frame's edge cut its mask)
        moved as the view moved since. Only those the camera moved by ``motion_reach`` of its
        size at least (less, its last box and its motion say as much)."""
        if o.live or not self.config.uses("camera_motion"):
            return []
        out = []
        for box, cam in ((o.box, o.camera_seen), (o.det_box, o.camera_detected)):
            if box is None or cam is None:
                continue
            shift = self.camera - cam
            if np.linalg.norm(shift) >= self.config.motion_reach * _size(box):
                out.append(box + np.concatenate([shift, shift]).astype(np.float32))
        return out

    def plausible(self, i: int, frame_idx: int, boxes: np.ndarray) -> np.ndarray:
        """[M] bool: could object ``i`` be at each of ``boxes`` on ``frame_idx``?

        Within reach of where it was last seen, where its motion would have taken it, or
        where the camera's motion since took it: its size, plus per frame since then
        ``max_speed`` sizes per second and the fastest it was seen moving (its propagated
        mask's steps, its detections' velocity: it may have turned or sped up again, and a
        small fast object covers many of its sizes in a second). The size is the larger of
        its last seen and last detected box (a mask clipped by an occluder is not the
        object's size). An object that left at an edge may come back anywhere."""
        o = self.objects[i]
        ref, seen = (o.det_box, o.last_detected) if o.live else (o.box, o.last_seen)
        if ref is None:
            ref, seen = o.box, o.last_seen
        if ref is None or len(boxes) == 0:
            return np.ones(len(boxes), bool)
        if not o.live and o.at_edge:
            return np.ones(len(boxes), bool)
        dt = max(frame_idx - seen, 0)
        size = max(_size(ref), _size(o.det_box) if o.det_box is not None else 0.0)
        v = o.velocity if o.velocity is not None else np.zeros(2, np.float32)
        reach = size + (self.config.max_speed * size / self.config.fps + o.speed) * dt
        c = _centre(ref)
        anchors = [c, c + v * dt]
        anchors += [_centre(b) for b in self._camera_boxes(o)]
        cb = (boxes[:, :2] + boxes[:, 2:]) / 2
        d = np.min([np.linalg.norm(cb - a, axis=1) for a in anchors], axis=0)
        return d <= reach

    def _motion_score(self, o: Identity, frame_idx: int, box) -> float:
        """In (0, 1] when ``box`` is close to where ``o`` would be now (its last detected box,
        or last seen box once retired, moved on by its velocity, or by the camera's motion
        since: within ``motion_reach`` of its size) and of a similar size, less than
        ``keep_seconds`` after that; else 0."""
        cfg = self.config
        last, seen = (o.det_box, o.last_detected) if o.live else (o.box, o.last_seen)
        if last is None:
            return 0.0
        dt = frame_idx - seen
        if dt > cfg.frames(cfg.keep_seconds):
            return 0.0
        preds = [] if o.velocity is None else [_centre(last) + o.velocity * dt]
        preds += [_centre(b) for b in self._camera_boxes(o)]
        if not preds:
            return 0.0
        ref = o.det_box if o.det_box is not None else last
        d = min(float(np.linalg.norm(_centre(box) - p)) for p in preds)
        size, ratio = _size(ref), _size(box) / _size(ref)
        reach = cfg.motion_reach * size
        if d > reach or not 1 / cfg.motion_size_ratio <= ratio <= cfg.motion_size_ratio:
            return 0.0
        return 1.0 - d / reach + 1e-3

    def _position_score(self, o: Identity, box) -> float:
        """Box IoU of ``box`` with where a retired ``o`` was last seen (or where the camera's
        motion since moved that box), when at least ``box_iou_threshold``; else 0."""
        lasts = [o.box, *self._camera_boxes(o)]
        b = float(box_iou(np.stack(lasts), box[None]).max())
        return b if b >= self.config.box_iou_threshold else 0.0

    # -- the keyframe decision
    def keyframe(
        self, frame_idx: int, track_masks: dict[int, np.ndarray], dets: Detections
    ) -> Plan:
        """Ids for a keyframe's detections and what to re-seed, start and retire.

        ``track_masks``: id -> propagated mask on this frame for the objects being tracked
        (ids marked live that are missing count as empty).
        """
        kf = self._compare(frame_idx, track_masks, dets)
        plan = Plan(ids=[0] * kf.n)
        if kf.live and kf.n:
            pairs, placed = self._match_live(kf)
            pairs = self._repair_swaps(kf, pairs)
            self._reseed(kf, plan, pairs, placed)
        self._merge_duplicates(kf)
        self._revive(kf, plan)
        self._start(kf, plan)
        self._retire_missed(kf, plan)
        self._record(kf, plan)
        return plan

    def _compare(self, frame_idx: int, track_masks, dets: Detections) -> Keyframe:
        """Every comparison the stages need, made once: masks reduced once (``LowRes``), at
        one frame size (the detections', else the first tracked mask's; others count as
        missing), and looks against what this video showed of them (``look_cuts``)."""
        cfg = self.config
        n, masks, emb = len(dets), dets.masks, dets.embeddings
        if masks is not None and n:
            self.frame_hw = tuple(masks.shape[1:])
        live = self.live
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
        on = np.zeros((len(live), n), dtype=bool)
        inside = dup_iou = None
        if found is not None:
            dup_iou = overlap_iou(found.overlaps(found), found.size, found.size)
        if visible and n:
            rows = [live.index(i) for i in visible]
            if found is not None:
                inter = tracked.overlaps(found)
                iou[rows] = overlap_iou(inter, tracked.size, found.size)
                on[rows] = covered_share(inter.T, tracked.size).T >= cfg.on_share
                inside = covered_share(inter, found.size)
            else:
                iou[rows] = box_iou(np.stack([mask_box(cur[i]) for i in visible]), dets.boxes)
            on[rows] |= iou[rows] >= cfg.iou_threshold
            on &= iou >= cfg.on_min_iou
        gone = [i for i, o in self.objects.items() if o.state in (State.RETIRED, State.TAKEN_BACK)]
        cand = live + gone
        # a look says "same" only for labels whose looks separate their objects in this
        # video; for the others every stage sees no look (NaN), as without embeddings,
        # except that a look far below the object's own still says "another object"
        raw = self.similarity(cand, emb, n)
        same_at, other_below = self.look_cuts(cand)
        sim = np.where(np.isnan(same_at)[:, None], np.nan, raw)
        look = self._look_candidates(frame_idx, cand, dets, sim, same_at)
        if cfg.uses("ambiguity_new_id"):
            look = self._unambiguous(sim, look)
        return Keyframe(
            frame_idx, dets, live, gone, visible, found, iou, on, inside, dup_iou, raw, sim,
            same_at, other_below, look, [None] * n,
        )  # fmt: skip

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

    def _match_live(self, kf: Keyframe) -> tuple[dict[int, int], np.ndarray]:
        """Stage 1: detections of the objects being tracked. Returns (detection -> row of
        ``kf.live``, [live, n] the pairs that place alone says are one object)."""
        cfg, dets, live = self.config, kf.dets, kf.live
        n = kf.n
        s_live, known = kf.sim[: len(live)], ~np.isnan(kf.sim[: len(live)])
        same = np.array([[self.objects[i].label == lab for lab in dets.labels] for i in live])
        rival = np.zeros((len(live), n), bool)
        if cfg.uses("look_refuses_iou"):
            for r in range(len(live)):
                others = np.delete(np.where(kf.look, kf.sim, -np.inf), r, axis=0)
                best = others.max(0) if len(others) else np.full(n, -np.inf)
                worse = (s_live[r] < kf.other_below[r]) | (
                    best - s_live[r] >= cfg.look_rival_margin
                )
                rival[r] = np.isfinite(best) & known[r] & worse
        by_iou = same & (kf.iou >= cfg.iou_threshold) & ~rival
        by_look = kf.look[: len(live)] if cfg.uses("look_match_live") else np.zeros_like(by_iou)
        # 1 for any allowed pair, more for more overlap and a closer look
        score = np.where(by_iou | by_look, 1.0 + kf.iou + np.where(known, s_live, 0.0), 0.0)
        placed = by_iou.copy()
        # the propagated mask drifted off but the detection is where the object's motion
        # since its last detection puts it (or under the mask still), and its look does
        # not say otherwise
        if cfg.uses("motion_reseed"):
            for r, i in enumerate(live):
                for j in range(n):
                    if score[r, j] or not same[r, j] or rival[r, j]:
                        continue
                    if kf.raw[r, j] < kf.other_below[r]:  # (False where unknown)
                        continue
                    m = self._motion_score(self.objects[i], kf.t, dets.boxes[j])
                    if m <= 0 and cfg.uses("slid_under"):
                        if self._under(self.objects[i], kf.t, dets.boxes[j]):
                            m = cfg.slid_score  # the mask slid: the detection's centre is on it
                    score[r, j] = 1.0 + cfg.motion_weight * m if m > 0 else 0.0
                    placed[r, j] = m > 0
        return assign(score, 1.0), placed

    def _repair_swaps(self, kf: Keyframe, pairs: dict[int, int]) -> dict[int, int]:
        """Stage 2: exchange the detections of two same-label tracks when their looks say so
        together (the crossed pairing is more similar by ``swap_look_gain`` in sum: an
        absolute threshold misses this when every view is noisy) or, where looks say nothing
        either way, when their motions do (each detection of the crossed pairing is where
        the other track's motion puts it, and together nearer by ``motion_swap`` motion
        scores: propagation exchanges objects where they cross); each must be plausible
        where the other was."""
        cfg, live, dets = self.config, kf.live, kf.dets
        sim = kf.sim[: len(live)]
        by_look, by_motion = cfg.uses("swap_by_look"), cfg.uses("swap_by_motion")
        motion = {}  # (r, j) -> motion score, computed once

        def m(r, j) -> float:
            if (r, j) not in motion:
                motion[r, j] = self._motion_score(self.objects[live[r]], kf.t, dets.boxes[j])
            return motion[r, j]

        for _ in range(len(pairs) ** 2 + 1):
            best, pick = 0.0, None
            items = list(pairs.items())
            for x, (j1, r1) in enumerate(items):
                for j2, r2 in items[x + 1 :]:
                    if self.objects[live[r1]].label != self.objects[live[r2]].label:
                        continue
                    g = sim[r1, j2] + sim[r2, j1] - sim[r1, j1] - sim[r2, j2]
                    if np.isfinite(g) and g > cfg.swap_look_gain:
                        if not by_look:
                            continue
                        gain = 2 + g  # looks that say so come first
                    elif np.isfinite(g) and g < -cfg.swap_look_gain:
                        continue  # looks say the pairs are right
                    elif by_motion and m(r1, j2) > 0 and m(r2, j1) > 0:
                        gain = m(r1, j2) + m(r2, j1) - m(r1, j1) - m(r2, j2)
                        if gain < cfg.motion_swap:
                            continue
                    else:
                        continue
                    if gain > best:
                        best, pick = gain, (j1, r1, j2, r2)
            if pick is None:
                return pairs
            j1, r1, j2, r2 = pick
            ok1 = self.plausible(live[r1], kf.t, dets.boxes[[j2]])[0]
            ok2 = self.plausible(live[r2], kf.t, dets.boxes[[j1]])[0]
            if not (ok1 and ok2):
                return pairs
            pairs[j1], pairs[j2] = r2, r1
        return pairs

    def _reseed(self, kf: Keyframe, plan: Plan, pairs: dict[int, int], placed) -> None:
        """The matched detections re-prompt their objects; what place alone confirmed
        teaches this video's looks (``_calibrate``), and how each mask slid (``_measure_slide``)."""
        self._calibrate(kf, pairs, placed)
        for j, r in pairs.items():
            i = kf.live[r]
            kf.ids[j] = i
            plan.reseed[i] = j
            if kf.on[r, j] or not kf.on[r].any():  # a mask on another detection is a swap
                self._measure_slide(self.objects[i], kf.t, kf.dets.boxes[j])

    def _calibrate(self, kf: Keyframe, pairs: dict[int, int], placed) -> None:
        """Learn this video's looks from re-seeds that place alone confirms (mask IoU, or
        where the object's motion puts it): a track against its own detection (same), and
        the look a wrong match would have (other): the track against the most similar other
        detection of its label on the same keyframe, and the detection against the most
        similar other confirmed id of its label."""
        sim, cand, dets, window = kf.raw, kf.cand, kf.dets, self.config.look_window
        for j, r in pairs.items():
            if not placed[r, j] or not np.isfinite(sim[r, j]):
                continue
            self._look_sample("same", float(sim[r, j]))
            label = dets.labels[j]
            ev = self.evidence.setdefault(label, LookEvidence())
            ev.add("same", float(sim[r, j]), window)
            others = [  # the other detections of its label: other things, the closest counts
                sim[r, k] for k in range(len(dets))
                if k != j and dets.labels[k] == label and np.isfinite(sim[r, k])
            ]  # fmt: skip
            if others:
                self._look_sample("other", float(max(others)))
                ev.add("other", float(max(others)), window)
            rivals = [  # other confirmed ids of its label, the closest counts
                sim[q, j] for q, i in enumerate(cand)
                if q != r and self.objects[i].label == label and self.objects[i].hits > 1
                and np.isfinite(sim[q, j])
            ]  # fmt: skip
            if rivals:
                ev.add("other", float(max(rivals)), window)

    def _look_sample(self, kind: str, value: float) -> None:
        mean, n = self.looks[kind]
        n += 1
        self.looks[kind] = [mean + (value - mean) / min(n, self.config.look_window), n]

    def _merge_duplicates(self, kf: Keyframe) -> None:
        """A second detection of an already-claimed thing (another label, a duplicate box)
        gets the claimed one's id."""
        if not self.config.uses("merge_duplicates"):
            return
        claimed = [j for j in range(kf.n) if kf.ids[j] is not None]
        for j in range(kf.n):
            if kf.ids[j] is None:
                dup = self._duplicate_of(kf, j, claimed)
                if dup is not None:
                    kf.ids[j] = kf.ids[dup]

    def _revive(self, kf: Keyframe, plan: Plan) -> None:
        """Stage 3: returning objects: look + place (unambiguous), else where the motion (the
        object's, the camera's) or the last position puts them; same label."""
        cfg, dets, gone = self.config, kf.dets, kf.gone
        open_dets = [j for j in range(kf.n) if kf.ids[j] is None]
        if not (open_dets and gone):
            return
        sim, raw, look, other_below = kf.sim, kf.raw, kf.look, kf.other_below
        score = np.zeros((len(gone), len(open_dets)), dtype=np.float32)
        for r, i in enumerate(gone):
            o = self.objects[i]
            rr = len(kf.live) + r
            for c, j in enumerate(open_dets):
                if o.label != dets.labels[j]:
                    continue
                if not np.isnan(sim[rr, j]) and look[rr, j]:
                    if cfg.uses("revive_by_look"):
                        score[r, c] = 1.0 + sim[rr, j]
                elif raw[rr, j] < other_below[rr]:  # its look says another object
                    continue
                elif np.isnan(sim[rr, j]) and o.box is not None:
                    if cfg.uses("revive_by_place"):
                        score[r, c] = self._position_score(o, dets.boxes[j])
                    if cfg.uses("revive_by_motion"):  # no look: where its motion puts it
                        m = self._motion_score(o, kf.t, dets.boxes[j])
                        score[r, c] = max(score[r, c], cfg.motion_weight * m)
                elif sim[rr, j] >= other_below[rr] and o.box is not None:
                    if cfg.uses("revive_by_motion"):
                        m = self._motion_score(o, kf.t, dets.boxes[j])
                        score[r, c] = cfg.motion_weight * m
        for c, r in assign(score, 1e-6).items():
            j, i = open_dets[c], gone[r]
            kf.ids[j] = i
            plan.start[i] = j
            plan.revived.add(i)

    def _start(self, kf: Keyframe, plan: Plan) -> None:
        """Stage 4: the rest are new objects (highest score first), but duplicates of fresh
        starts and boxes on objects being tracked take those ids."""
        dets = kf.dets
        for j in sorted(
            (j for j in range(kf.n) if kf.ids[j] is None), key=lambda j: -dets.scores[j]
        ):
            if self.config.uses("merge_duplicates"):
                dup = self._duplicate_of(kf, j, list(plan.start.values()))
                if dup is not None:
                    kf.ids[j] = kf.ids[dup]
                    continue
            under = self._inside_track(kf, j)
            if under is not None:
                kf.ids[j] = under
                continue
            kf.ids[j] = self._new(dets.labels[j])
            plan.start[kf.ids[j]] = j

    def _retire_missed(self, kf: Keyframe, plan: Plan) -> None:
        """Stage 5: missed objects stay while their mask looks like them and not for too
        long; retire when gone, or when their mask now sits on another object's fresh
        detection (one object, one live track; ``moved`` remembers whose)."""
        cfg, live = self.config, kf.live
        keep = cfg.frames(cfg.keep_seconds) if cfg.uses("keep_missed") else -1.0
        bad_for = min(keep, cfg.frames(cfg.bad_mask_seconds))
        for i in live:
            if i in plan.reseed:
                continue
            o = self.objects[i]
            empty = i not in kf.visible
            taken = None
            if not empty and kf.n and cfg.uses("mask_on_other_retire"):
                r = live.index(i)
                hit = np.flatnonzero(kf.on[r])
                if len(hit):
                    taken = kf.ids[int(hit[np.argmax(kf.iou[r, hit])])]
            if taken is not None:
                plan.moved[taken] = i
            bad = cfg.uses("bad_mask_retire") and (
                o.low_since is not None and kf.t - o.low_since >= bad_for
            )
            if cfg.uses("slide_retire"):
                bad = bad or (not empty and not self._outlasts(o, kf.t))
            if empty or bad or kf.t - o.last_detected > keep or taken is not None:
                plan.retire.append(i)
        for i, r in list(plan.moved.items()):
            if i == r or i not in plan.prompted:
                del plan.moved[i]
        for r in live:  # swaps: an id re-seeded from a detection another live track sat on
            if r in plan.reseed:
                j = plan.reseed[r]
                for i in live:
                    if i != r and kf.on[live.index(i), j]:
                        plan.moved.setdefault(r, i)
        if not cfg.uses("repair_backwards"):
            plan.moved.clear()
        for i in plan.retire:
            self._set_retired(self.objects[i])

    def _record(self, kf: Keyframe, plan: Plan) -> None:
        """What the prompted objects' detections teach: motion, look, area, score."""
        cfg, dets, emb = self.config, kf.dets, kf.dets.embeddings
        for i, j in plan.prompted.items():
            o = self.objects[i]
            self._update_motion(o, dets.boxes[j], kf.t)
            o.state, o.low_since = State.TRACKED, None
            o.hits += 1
            mixed = (
                kf.dup_iou is not None and (np.delete(kf.dup_iou[j], j) > cfg.look_clean_iou).any()
            )
            self._remember(i, None if emb is None else emb[j], not mixed)
            if kf.found is not None and kf.found.area[j] > 0:
                a = float(kf.found.area[j])  # full-resolution pixels
                o.area = a if o.area == 0 else cfg.area_memory * o.area + (1 - cfg.area_memory) * a
        for j in range(kf.n):
            o = self.objects[kf.ids[j]]
            o.score = max(o.score, float(dets.scores[j]))
        plan.ids = [int(i) for i in kf.ids]
        self._forget()

    # -- what each object's motion says
    def _update_motion(self, o: Identity, box: np.ndarray, frame_idx: int) -> None:
        box = np.asarray(box, np.float32)
        if o.det_box is not None and frame_idx > o.last_detected and o.live:
            v = (_centre(box) - _centre(o.det_box)) / (frame_idx - o.last_detected)
            keep = self.config.velocity_memory
            o.velocity = v if o.velocity is None else keep * o.velocity + (1 - keep) * v
            o.speed = max(o.speed, float(np.linalg.norm(o.velocity)))
        o.det_box, o.last_detected, o.camera_detected = box, frame_idx, self.camera
        o.box, o.last_seen, o.camera_seen = box, frame_idx, self.camera
        o.at_edge = self._at_edge(box)

    def _measure_slide(self, o: Identity, frame_idx: int, box) -> None:
        """How propagation held this object since its previous detection: the offset of its
        propagated mask's box from the fresh detection ``box``, per frame, averaged over the
        latest keyframes with its sign. A mask sliding off its object moves one way; the
        detections' own noise points anywhere and averages out (``slide_memory``)."""
        cfg = self.config
        span = frame_idx - o.last_detected
        if o.last_detected < 0 or span <= 0 or o.box is None or o.last_seen != frame_idx:
            return
        rate = (_centre(o.box) - _centre(box)) / span
        keep = cfg.slide_memory
        o.slide = rate if o.slide is None else (1 - keep) * rate + keep * o.slide
        o.span = int(span)
        if o.det_box is not None:  # sizes change slowly: a size change is the detector's noise
            sides = np.abs((box[2:] - box[:2]) - (o.det_box[2:] - o.det_box[:2])) / HALF_NORMAL
            keep = cfg.noise_memory
            o.noise = sides if o.noise is None else keep * o.noise + (1 - keep) * sides

    def _outlasts(self, o: Identity, frame_idx: int) -> bool:
        """Will a missed object's propagated mask still be on it (IoU >= ``iou_threshold``)
        ``outlast_ahead`` of the way (half) to the next detection it can get? Propagation errors grow with the time since
        the last prompt: at the rate ``_measure_slide`` saw (a box shifted by ``dx, dy`` keeps
        ``p = (1 - dx/w)(1 - dy/h)`` of itself, IoU ``p / (2 - p)``). Keeping a mask that is
        right for half the frames until the next look costs no more than dropping it; the next
        look comes at the next keyframe (about ``span`` frames) or, with keyframes on demand
        (``doubt``), once the slide shows, ``config.recheck_frames`` later at the soonest."""
        if o.slide is None or o.det_box is None:
            return True
        m = self.config.slide_memory
        ema_sd = float(np.sqrt((1 - m) / (1 + m)))  # the slide average's noise / one sample's
        # less what the detections' noise alone would give the average (one standard error)
        noise = 0.0 if o.noise is None else o.noise * ema_sd / o.span
        rate = np.maximum(np.abs(o.slide) - noise, 0.0)
        soonest = o.span if self.config.recheck_frames is None else self.config.recheck_frames
        ahead = self.config.outlast_ahead * min(o.span, soonest)
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

    def _inside_track(self, kf: Keyframe, j: int) -> int | None:
        """A tracked object of detection ``j``'s label whose propagated mask covers at least
        ``inside_share`` of the detection's mask (a second box on it)."""
        if kf.inside is None or not self.config.uses("box_inside_track"):
            return None
        label = kf.dets.labels[j]
        rows = [r for r, i in enumerate(kf.visible) if self.objects[i].label == label]
        if not rows:
            return None
        cover = kf.inside[rows, j]
        k = int(cover.argmax())
        return kf.visible[rows[k]] if cover[k] >= self.config.inside_share else None

    def _duplicate_of(self, kf: Keyframe, j: int, others) -> int | None:
        """The detection among ``others`` that ``j`` duplicates (IoU >= ``iou_threshold``,
        of masks, else boxes)."""
        others = [k for k in others if k != j]
        if not others:
            return None
        if kf.dup_iou is not None:
            iou = kf.dup_iou[others, j]
        else:
            iou = box_iou(kf.dets.boxes[others], kf.dets.boxes[j : j + 1])[:, 0]
        k = int(iou.argmax())
        return others[k] if iou[k] >= self.config.iou_threshold else None
