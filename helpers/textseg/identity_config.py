"""Every number and every rule of the video identity policy (``identity.IdBook``), in one place.

Each setting says its unit, then why it has this value. Durations are in seconds and become
frames through ``fps``, so they do not change with the detection cadence. ``RULES`` names each
rule that a keyframe or the loop applies; ``IdentityConfig.off`` switches rules off by name
(the tracking benchmark's ``--rules`` measures each rule's gain that way)."""

from __future__ import annotations

from dataclasses import dataclass, field

from helpers.errors import InputError

RECHECK_FRAMES = 10  # frames: the soonest the loop detects again after a keyframe (``doubt``)

# each rule: (the stage that applies it, what it does)
RULES: dict[str, tuple[str, str]] = {
    "look_refuses_iou": (
        "match",
        "an IoU match is refused when another id explains the detection clearly better by look",
    ),
    "look_match_live": ("match", "a tracked object is matched by look and place alone"),
    "motion_reseed": (
        "match",
        "a tracked object whose mask drifted off is matched where its motion puts it",
    ),
    "slid_under": ("match", "... or where its slid mask still overlaps the detection's centre"),
    "swap_by_look": ("repair", "two tracks' detections are exchanged when their looks say so"),
    "swap_by_motion": (
        "repair",
        "two tracks' detections are exchanged where looks say "
        "nothing and their motions say they crossed",
    ),
    "camera_motion": (
        "revive",
        "the motion common to the tracked objects (the camera's) "
        "moves where an unseen object is expected",
    ),
    "revive_by_look": (
        "revive",
        "a retired id comes back where its look says so and the place is plausible",
    ),
    "revive_by_place": (
        "revive",
        "without looks, a retired id comes back where it was last seen (box IoU)",
    ),
    "revive_by_motion": (
        "revive",
        "where its look is unsure, a retired id comes back where its motion predicts",
    ),
    "ambiguity_new_id": (
        "revive",
        "two look candidates within ``ambiguity`` give a new id, not possibly the wrong old one",
    ),
    "merge_duplicates": ("start", "a second box on a detection already given an id gets that id"),
    "box_inside_track": ("start", "a box mostly inside a tracked object's mask is that object"),
    "keep_missed": ("retire", "a missed object stays in the propagation up to ``keep_seconds``"),
    "bad_mask_retire": (
        "retire",
        "... unless its mask lost its usual area or SAM 2's object score went negative",
    ),
    "slide_retire": (
        "retire",
        "... or its mask is expected to slide off it before the next detection",
    ),
    "mask_on_other_retire": (
        "retire",
        "a track whose mask sits on another object's fresh "
        "detection is retired (one object, one track)",
    ),
    "repair_backwards": (
        "loop",
        "frames since the previous keyframe are relabelled when a keyframe shows a swap",
    ),
    "calibrate_looks": (
        "loop",
        "how far looks are trusted is learnt from this video's confirmed observations",
    ),
    "take_back": (
        "loop",
        "a track that one detection started and no second confirmed is taken back as a false box",
    ),
    "left_view_keeps": ("loop", "... unless its mask left the view through an edge"),
    "closing_detection": (
        "loop",
        "a detection on a clip's last frame judges tracks still unconfirmed",
    ),
}


@dataclass
class IdentityConfig:
    """Settings of ``identity.IdBook`` (the rules: ``RULES``; how they combine: the
    ``identity`` module's docstring)."""

    # -- matching a detection to an object
    iou_threshold: float = 0.5  # IoU (mask, else box): "same object"; the MOT matching rule
    box_iou_threshold: float = 0.3  # IoU of boxes: a returning object without looks is where
    # it was last seen (lower than ``iou_threshold``: it moved a little while unseen)
    on_share: float = 0.8  # share of a tracked mask lying on a detection: the track sits on
    # that object (a mask that covers a fifth of something else is still its own)
    on_min_iou: float = 0.3  # IoU: ... as long as the two overlap at least this much
    inside_share: float = 0.7  # share of a detection's mask under a tracked mask: a second
    # box on that object (a neighbour's box overlaps it far less)
    motion_reach: float = 0.5  # object sizes: a detection this close to where an object's
    # motion puts it is there (a detector's jitter is a few percent of a size)
    motion_size_ratio: float = 2.0  # factor: ... and no more than this larger or smaller
    motion_weight: float = 0.5  # score: a match by motion counts half one by IoU or look
    slid_score: float = 0.2  # motion score of a detection under a mask that slid part-way
    # off (it is the object, but less surely than one where its motion puts it)
    # -- looks (how far they are trusted: ``look_evidence.LookEvidence``)
    reid_threshold: float = 0.8  # cosine: "same object" by look before the video shows its
    # own looks (the prior's decision point)
    veto_threshold: float = 0.5  # cosine: below it a look says "another object" before the
    # video shows its own looks
    ambiguity: float = 0.05  # cosine: two candidates closer than this give a new id (a new
    # id costs one fragment; the wrong old one costs a swap)
    look_rival_margin: float = 0.1  # cosine: an IoU match is refused when another id's look
    # is this much better (twice ``ambiguity``: clearly, not by noise)
    swap_look_gain: float = 0.2  # cosine, summed over two pairs: their looks say two tracks
    # crossed (four times ``ambiguity``: every view is noisy, so the sum decides)
    motion_swap: float = 0.5  # motion scores (each in (0, 1]), summed: two tracks crossed by
    # motion (a quarter of an object's size closer: above a detector's jitter)
    momentum: float = 0.9  # share of the stored look kept at each detection: a look follows
    # about the latest ten views, so one odd view (occluded, blurred) does not replace it
    look_clean_iou: float = 0.1  # mask IoU with another detection above which a view mixes
    # two objects and does not update the stored look
    look_prior_n: float = 2.0  # samples the prior weighs as before any of the video's own
    # (fading as they come): two or three of them already move the estimate most of the way
    look_prior_sd: float = 0.2  # cosine spread of the prior (cosines of unrelated features
    # spread about this much; it puts the prior's means at 0.4 "other" and 0.9 "same")
    look_z: float = 2.0  # a look says "same" only this many spreads above the other-object
    # mean (and "other" this many below the same-object mean): about 2 % wrong either way
    look_separation: float = 2.0  # a label's looks decide at all only when its same- and
    # other-object means lie this many pooled spreads apart; else place, motion, size decide
    look_window: int = 50  # samples: the look statistics follow about the latest this many
    calibrate_samples: int = 5  # samples of each kind before the video-wide summary
    # (``IdBook.reid_threshold``, for reports) leaves ``reid_threshold``
    # -- keeping, retiring and bringing back
    keep_seconds: float = 2.0  # seconds a missed object may stay in the propagation: long
    # enough for one or two missed keyframes at the default cadence (1 s)
    bad_mask_seconds: float = 0.5  # seconds of a bad mask (area or object score) before a
    # missed object is retired (one bad frame is noise; half a second is not)
    min_area: float = 0.25  # share of its usual area: a missed object's mask below it (or
    # above its inverse) is no longer the object
    area_memory: float = 0.7  # share of the usual area kept at each detection
    max_speed: float = 1.0  # object sizes per second an unseen object may move (walking
    # people cover about their width per second)
    speed_steps: int = 9  # frames: an object's speed is the median of this many per-frame
    # moves of its mask (odd; one bad mask is not a speed)
    velocity_memory: float = 0.5  # share of the velocity kept at each detection
    slide_memory: float = 0.5  # share of a mask's measured slide kept at each keyframe
    outlast_ahead: float = 0.5  # share of the way to a missed object's next detection its
    # mask must still hold it: right for half the frames until then costs no more than none
    noise_memory: float = 0.5  # share of the detector's measured box noise kept
    camera_min_tracks: int = 3  # tracks moving together on a frame before their common
    # motion counts as the camera's (one or two objects may walk together; three that move
    # as one are more likely the view moving)
    camera_agreement: float = 0.5  # share of that common move: the tracks' moves differ from
    # it by at most this much (median) when the camera moves them (objects going their own
    # ways do not move the camera)
    edge_margin: float = 0.02  # share of the frame's longer side: a box this close to an
    # edge touches it (exits and entries)
    exit_move: float = 0.25  # share of its extent: a box that moved this far towards the
    # edge it touches left the view (one that only sits there, like cut-off feet, did not)
    max_retired: int = 200  # ids: retired ids compared with new detections (bounded cost)
    fps: float = 30.0  # frames per second of the video (durations -> frames)
    # frames: the soonest the loop looks at a missed object again (keyframes on demand; None:
    # only on the next fixed keyframe)
    recheck_frames: int | None = RECHECK_FRAMES
    off: frozenset[str] = field(default_factory=frozenset)  # rules switched off (``RULES``)

    def check(self) -> IdentityConfig:
        unit = ("iou_threshold", "box_iou_threshold", "reid_threshold", "on_share",
                "on_min_iou", "inside_share", "look_clean_iou")  # fmt: skip
        for name in unit:
            v = getattr(self, name)
            if not 0 < float(v) <= 1:
                raise InputError(f"{name} must be in (0, 1], got {v}.")
        if not -1 <= float(self.veto_threshold) <= 1:
            raise InputError(f"veto_threshold must be in [-1, 1], got {self.veto_threshold}.")
        for name in ("keep_seconds", "bad_mask_seconds"):
            if float(getattr(self, name)) < 0:
                raise InputError(f"{name} must be >= 0 s, got {getattr(self, name)}.")
        memories = ("momentum", "area_memory", "velocity_memory", "slide_memory",
                    "noise_memory")  # fmt: skip
        for name in memories:
            if not 0 <= float(getattr(self, name)) < 1:
                raise InputError(f"{name} must be in [0, 1), got {getattr(self, name)}.")
        if not float(self.fps) > 0:
            raise InputError(f"fps must be > 0, got {self.fps}.")
        if int(self.max_retired) < 0:
            raise InputError(f"max_retired must be >= 0, got {self.max_retired}.")
        if self.recheck_frames is not None and int(self.recheck_frames) < 1:
            raise InputError(f"recheck_frames must be >= 1 or None, got {self.recheck_frames}.")
        positive = ("look_prior_n", "look_prior_sd", "look_z", "look_separation",
                    "motion_reach", "max_speed")  # fmt: skip
        for name in positive:
            if not float(getattr(self, name)) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}.")
        for name in ("look_window", "calibrate_samples", "speed_steps", "camera_min_tracks"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}.")
        unknown = sorted(set(self.off) - set(RULES))
        if unknown:
            raise InputError(
                f"unknown identity rule(s) {', '.join(unknown)}; choose from {', '.join(RULES)}."
            )
        return self

    def frames(self, seconds: float) -> float:
        return float(seconds) * float(self.fps)

    def uses(self, rule: str) -> bool:
        """Is ``rule`` (a name in ``RULES``) switched on?"""
        if rule not in RULES:
            raise KeyError(f"no identity rule {rule!r}")
        return rule not in self.off
