"""Predicted masks scored against ground truth: a folder of images and a folder of masks of
the same names, one prompt, IoU per image and over the folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from helpers.errors import InputError


def evaluate_folder(
    data_dir: str | os.PathLike, prompt: str, detector, segmenter, *, segment_fn=None, **kw
) -> dict:
    """Predict the union mask of ``prompt`` for each ``data_dir/images/X`` and score it against
    ``data_dir/masks/X.*`` (same stem) with ``mask_metrics.iou_summary``.

    Returns the summary (mean_iou, cumulative_iou, per_image) plus ``unmatched_images`` /
    ``unmatched_masks`` (stems without a partner) and ``prompt``.
    """
    from tqdm.auto import tqdm

    from helpers.textseg import pipeline
    from helpers.textseg.detect import normalize_prompt
    from helpers.textseg.folder_run import list_images
    from helpers.textseg.mask_metrics import MASK_SUFFIXES, iou_summary, read_mask

    norm = normalize_prompt(prompt)
    data_dir = Path(data_dir)
    img_dir, mask_dir = data_dir / "images", data_dir / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise InputError(
                f"{d} is missing: the data folder needs images/ and masks/ with matching names "
                "(images/cat1.jpg <-> masks/cat1.png)."
            )
    images = {p.stem: p for p in list_images(img_dir)}
    masks = {
        p.stem: p
        for p in sorted(mask_dir.iterdir())
        if p.is_file() and p.suffix.lower() in MASK_SUFFIXES
    }
    stems = sorted(set(images) & set(masks))
    if not stems:
        raise InputError(
            f"no image in {img_dir} has a mask with the same name in {mask_dir}; name them alike."
        )
    preds, gts = [], []
    for stem in tqdm(stems, desc="evaluate", unit="img"):
        res = (segment_fn or pipeline.segment_image)(images[stem], norm, detector, segmenter, **kw)
        H, W = res.image.shape[:2]
        pred = res.detections.mask.any(axis=0) if len(res.detections) else np.zeros((H, W), bool)
        preds.append(pred)
        gts.append(read_mask(masks[stem]))
    summary = iou_summary(preds, gts, names=stems)
    summary["unmatched_images"] = sorted(set(images) - set(masks))
    summary["unmatched_masks"] = sorted(set(masks) - set(images))
    summary["prompt"] = norm
    return summary
