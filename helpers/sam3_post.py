"""SAM 3 video's mask post-processing, done here: mask NMS, hole filling, sprinkle removal.

transformers' ``Sam3VideoModel`` runs these three steps through a compiled kernel that the
``kernels`` package downloads from the hub at run time (``kernels-community/cv-utils``);
without it (not installed, offline, or a torch/CUDA build it has no binary for) they are
skipped with a warning and the masks keep their holes, specks and duplicates. ``install()``
gives the model an equivalent of that kernel's two functions instead, built on OpenCV's
connected components and a greedy NMS over the model's own IoU matrix: the same masks on every
machine, offline, with nothing downloaded.
"""

from __future__ import annotations

from typing import Any


class CvUtils:
    """The two functions transformers calls on its ``cv_utils`` kernel."""

    @staticmethod
    def cc_2d(mask, get_counts: bool = True):
        """8-connected components of each ``[N, 1, H, W]`` uint8 mask: ``(labels, counts)``,
        both ``[N, 1, H, W]`` int32 on the mask's device; ``labels`` 0 on the background and
        1.. per component, ``counts`` the area of the component a pixel belongs to (0 on the
        background)."""
        import cv2
        import numpy as np
        import torch

        masks = mask.detach().to("cpu", torch.uint8).numpy()
        labels = np.zeros(masks.shape, np.int32)
        counts = np.zeros(masks.shape, np.int32)
        for i in range(masks.shape[0]):
            n, lab, stats, _ = cv2.connectedComponentsWithStats(
                np.ascontiguousarray(masks[i, 0]), connectivity=8, ltype=cv2.CV_32S
            )
            areas = stats[:, cv2.CC_STAT_AREA].astype(np.int32)
            areas[0] = 0  # the background is no component
            labels[i, 0] = lab
            counts[i, 0] = areas[lab]
        out_labels = torch.from_numpy(labels).to(mask.device)
        if not get_counts:
            return out_labels
        return out_labels, torch.from_numpy(counts).to(mask.device)

    @staticmethod
    def generic_nms(ious, probs, iou_threshold: float, use_iou_matrix: bool = True):
        """Greedy NMS: the indices (into ``probs``) kept, best score first; a detection is
        dropped when its IoU with a kept, better one exceeds ``iou_threshold``."""
        import torch

        order = torch.argsort(probs.detach().float(), descending=True).tolist()
        iou = ious.detach().float().cpu()
        kept: list[int] = []
        for i in order:
            if all(float(iou[i, j]) <= iou_threshold for j in kept):
                kept.append(i)
        return torch.tensor(kept, dtype=torch.long, device=probs.device)


def install() -> bool:
    """Give transformers' SAM 3 video model this post-processing (once per process; a real
    kernel that transformers already loaded is kept). Returns whether SAM 3 video is there."""
    try:
        import transformers.models.sam3_video.modeling_sam3_video as m
    except ImportError:
        return False
    current: Any = getattr(m, "cv_utils_kernel", None)
    if current is None or current is False:
        m.cv_utils_kernel = CvUtils()
    return True


__all__ = ["CvUtils", "install"]
