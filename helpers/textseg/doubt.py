"""Keyframes on demand: when a tracked object's own signals say propagation is failing.

Between two fixed keyframes (``detect_every``) SAM 2 propagates masks with nothing to correct
them; a mask that slides off its object, shrinks away, is lost or latches onto something else
stays wrong until the next detection. ``Doubt`` watches what the loop already reads on every
frame (each live object's box and area, SAM 2's object score) against the object's state on
the latest keyframe that detected it (a keyframe that missed it did not check its mask: a
blank keyframe does not hide a slide), and asks for a detection now when one of them breaks:

- *lost*: the object had a mask on the keyframe and now has none (or SAM 2's object score
  says it is not there);
- *reappeared*: it had no mask on the keyframe and now has one (propagation re-acquired
  something: the right object or another one);
- *area*: its mask is under half or over twice its area on the keyframe;
- *place*: its box has left where the object should be: the keyframe box moved on by the
  object's velocity (measured between its detections, so a mask that slides off a moving
  object is seen) overlaps the box by less than ``MIN_BOX_IOU``.

Cost stays bounded: an extra keyframe comes at least ``gap`` frames after the previous
keyframe and at least ``gap`` frames before the next fixed one, so at most one extra detection
per ``gap`` frames. Only confirmed objects (detected on two keyframes while tracked: their
velocity is known) raise doubts: a track started by one detection that fades is most likely a
false box, and detecting again for it only brings more of them. The check is O(objects) on
numbers already computed.
"""

from __future__ import annotations

import numpy as np

from helpers.textseg.identity import RECHECK_FRAMES, IdBook, box_iou

MIN_BOX_IOU = 0.6  # box vs where the object should be: below this the mask is near its
# identity match threshold (IoU 0.5) and a detection is asked for
AREA_RATIO = 2.0  # the mask's area changed by this factor since the keyframe
DEFAULT_GAP = RECHECK_FRAMES  # frames between an extra keyframe and any other (10: a third
# of a second at 30 fps; identity keeps a missed object by the same horizon)


class Doubt:
    """Per-chunk state of the on-demand trigger (see the module docstring)."""

    def __init__(self, gap: int = DEFAULT_GAP):
        self.gap = max(1, int(gap))
        self.key = -(10**9)  # the latest keyframe
        # id -> (box, area, frame) on the latest keyframe that detected it
        self.ref: dict[int, tuple[np.ndarray, float, int]] = {}
        self.seen: tuple[dict, dict] = ({}, {})  # boxes, areas on the latest frame
        self.extra = 0  # extra keyframes asked for

    def observed(self, boxes: dict, areas: dict) -> None:
        """The live objects' boxes and areas on the frame just produced."""
        self.seen = (boxes, areas)

    def keyframe(self, k: int, live, detected) -> None:
        """Frame ``k`` was a keyframe: the state there of the objects it ``detected`` is their
        reference. A live object the detector missed keeps its older reference: its
        propagated mask was not checked, so a slide since then still counts."""
        boxes, areas = self.seen
        self.key = k
        self.ref = {
            i: (boxes[i], areas[i], k) if i in detected or i not in self.ref else self.ref[i]
            for i in live
            if i in boxes or (i in self.ref and i not in detected)
        }

    def wants(self, t: int, book: IdBook, next_key: int | None, scores=None) -> bool:
        """Should frame ``t`` (just observed) become a keyframe?"""
        if t - self.key < self.gap or (next_key is not None and next_key - t < self.gap):
            return False
        boxes, areas = self.seen
        scores = scores or {}
        for i in book.live:
            if self._doubtful(i, t, book, boxes.get(i), areas.get(i), scores.get(i)):
                self.extra += 1
                return True
        return False

    def _doubtful(self, i, t, book, box, area, score) -> bool:
        v = book.objects[i].velocity
        if v is None:  # not yet confirmed (one detection): likely a false box, nothing to save
            return False
        ref = self.ref.get(i)
        there = box is not None and (score is None or score > 0)
        if ref is None or not there:
            return (ref is None) == there  # reappeared, or lost
        ref_box, ref_area, ref_t = ref
        if not ref_area / AREA_RATIO <= area <= ref_area * AREA_RATIO:
            return True
        pred = np.asarray(ref_box, np.float32) + np.tile(v * (t - ref_t), 2)
        return float(box_iou(pred[None], np.asarray(box, np.float32)[None])[0, 0]) < MIN_BOX_IOU
