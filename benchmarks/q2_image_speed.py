"""Q2 image speed: warm text -> masks latency per image, ours vs documented usage and a seed loop.

Models have random weights built from the real configs (Grounding DINO tiny, SAM 2.1
tiny/small/base_plus/large): the compute is the same as with the trained weights, and nothing
is downloaded. Both variants run in the same process on the same image, per SAM 2 size (long
side ``--image-px``, default 1024; ``--boxes`` boxes per image):

  ours   detect.detect + segment.segment_boxes: inference_mode, bf16 autocast and TF32 on
         Ampere+ GPUs, all boxes in one SAM 2 call; ``--compile`` also torch.compiles SAM 2's
         image encoder
  documented  each library as its README shows it: Grounding DINO as transformers documents
         it (fp32 under no_grad), SAM 2.1 as sam2's README does (``torch.inference_mode()`` and
         ``torch.autocast("cuda", dtype=torch.bfloat16)``; no autocast on a CPU), matmul and
         cuDNN settings as PyTorch leaves them (neither library changes them), no compile
  seed   the loop the earlier write-ups used: Grounding DINO and SAM 2 in fp32 (TF32 off) under
         no_grad, no compile

    python benchmarks/q2_image_speed.py --out q2_image.json        # GPU, all sizes
    python benchmarks/q2_image_speed.py --device cpu --quick       # sanity check on CPU
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import q2_common  # noqa: E402
from q2_common import PROMPT  # noqa: E402

from helpers.textseg import detect, segment  # noqa: E402


def _top(dets, k: int, h: int, w: int) -> np.ndarray:
    """The ``k`` most confident boxes, padded with fixed boxes when fewer were found."""
    boxes = np.asarray(dets.xyxy, np.float32).reshape(-1, 4)
    if len(boxes):
        boxes = boxes[np.argsort(-np.asarray(dets.confidence))][:k]
    pad = [[w * (0.1 + 0.2 * i), h * 0.3, w * (0.25 + 0.2 * i), h * 0.7] for i in range(k)]
    if len(boxes) < k:
        boxes = np.concatenate([boxes, np.asarray(pad[: k - len(boxes)], np.float32)])
    return boxes


# --------------------------------------------------------------------------- seed-style calls


def seed_detect(detector, image: np.ndarray, prompt: str, k: int):
    """Grounding DINO the way the earlier notebooks ran it: fp32, no_grad, per call."""
    import supervision as sv
    import torch

    text = detect.normalize_prompt(prompt)
    inputs = detector.processor(images=image, text=text, return_tensors="pt").to(detector.device)
    with torch.no_grad():
        outputs = detector.model(**inputs)
    res = detector.processor.post_process_grounded_object_detection(
        outputs,
        input_ids=inputs["input_ids"],
        threshold=0.0,
        text_threshold=0.0,
        target_sizes=[image.shape[:2]],
    )[0]
    boxes = res["boxes"].float().cpu().numpy().reshape(-1, 4)
    scores = res["scores"].float().cpu().numpy().reshape(-1)
    order = np.argsort(-scores)[:k]
    return sv.Detections(
        xyxy=boxes[order],
        confidence=scores[order],
        class_id=np.zeros(len(order), int),
        data={"class_name": np.array(["object"] * len(order))},
    )


def seed_segment(segmenter, image: np.ndarray, boxes: np.ndarray):
    """SAM 2 image predictor in fp32 under no_grad."""
    import torch

    pred = segmenter.predictor
    with torch.no_grad():
        pred.set_image(image)
        masks, scores, _ = pred.predict(box=boxes, multimask_output=False)
    return masks, scores


def documented_segment(segmenter, image: np.ndarray, boxes: np.ndarray, device):
    """SAM 2 image predictor as sam2's README shows it: ``torch.inference_mode()`` and bf16
    autocast on CUDA around ``set_image`` and ``predict`` (one mask per box, as ours)."""
    import torch

    pred = segmenter.predictor
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), amp:
        pred.set_image(image)
        masks, scores, _ = pred.predict(box=boxes, multimask_output=False)
    return masks, scores


# --------------------------------------------------------------------------- measurement


def bench_image(args, device, detector, work: Path | None = None) -> list[dict]:
    """Per size: median ms per image of the seed loop, the documented usage and ours (warm:
    the warm-up calls, where any compile happens, are not timed), with peak GPU memory."""
    import torch

    rows = []
    h, w = (args.image_px * 3) // 4, args.image_px
    image = q2_common.synthetic_image(h, w)
    for size in args.sizes:
        seg = segment.load_segmenter(
            size, random_weights=True, device=device, image_size=args.sam_image_size
        )
        encoder = seg.predictor.model.image_encoder
        compiled = None
        if args.compile:
            compiled = torch.compile(encoder)

        def ours(seg=seg):
            dets = detect.detect(
                detector, image, PROMPT, box_threshold=0.0, text_threshold=0.0, max_side=None
            )
            segment.segment_boxes(seg, image, _top(dets, args.boxes, h, w))

        def seed(seg=seg):
            with q2_common.tf32(False):
                dets = seed_detect(detector, image, PROMPT, args.boxes)
                seed_segment(seg, image, _top(dets, args.boxes, h, w))

        def documented(seg=seg):
            with q2_common.torch_defaults():
                dets = seed_detect(detector, image, PROMPT, args.boxes)
                documented_segment(seg, image, _top(dets, args.boxes, h, w), device)

        row = {"size": size, "image": f"{w}x{h}", "boxes": args.boxes}
        row["documented_autocast"] = "bfloat16" if device.type == "cuda" else None
        for name, fn in (("seed", seed), ("documented", documented), ("ours", ours)):
            if name == "ours" and compiled is not None:
                seg.predictor.model.image_encoder = compiled
            q2_common.reset_peak(device)
            med, times = q2_common.median_ms(fn, args.n, args.warmup, device)
            seg.predictor.model.image_encoder = encoder
            row[f"{name}_ms"] = round(med, 2)
            row[f"{name}_peak_mib"] = q2_common.peak_mib(device)
            row[f"{name}_all_ms"] = [round(t, 2) for t in times]
        row["speedup"] = round(row["seed_ms"] / row["ours_ms"], 2)
        row["speedup_vs_documented"] = round(row["documented_ms"] / row["ours_ms"], 2)
        rows.append(row)
        print(
            f"image {size:9s} seed {row['seed_ms']:9.1f} ms  documented "
            f"{row['documented_ms']:9.1f} ms  ours {row['ours_ms']:9.1f} ms  x{row['speedup']:.2f}"
            f" (x{row['speedup_vs_documented']:.2f} vs documented)",
            flush=True,
        )
        del seg, encoder, compiled
        q2_common.reset_peak(device)
    return rows


def print_rows(rows: list[dict]) -> None:
    print("\nimage: text -> masks, median ms per image (warm: warm-up calls not timed)")
    print(
        f"{'size':10s} {'seed ms':>10s} {'documented':>10s} {'ours ms':>10s} {'speedup':>8s} "
        f"{'peak MiB':>9s}"
    )
    for r in rows:
        peak = r["ours_peak_mib"] if r["ours_peak_mib"] is not None else "-"
        print(
            f"{r['size']:10s} {r['seed_ms']:10.1f} {r['documented_ms']:10.1f} "
            f"{r['ours_ms']:10.1f} {r['speedup']:7.2f}x {peak!s:>9s}"
        )


PART = ("image", bench_image, print_rows)


def main(argv=None) -> dict:
    args = q2_common.parse_args(argv, description=__doc__.split("\n")[0])
    return q2_common.run(args, [PART])


if __name__ == "__main__":
    main()
