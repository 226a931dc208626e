"""Q2: text-prompted segmentation of images, folders and videos.

Media in and out, detectors, mask routes (Grounding DINO / OWLv2 + SAM 2.1, CLIPSeg, SAM 3), the
image pipeline, video tracking and identity, rendering, mask metrics, the notebook forms and the
``segment`` / ``track`` / ``eval-masks`` commands. Uses the shared ground in :mod:`helpers` only,
never :mod:`helpers.classify`.
"""
