"""The ``track`` command after its route is chosen, the same for every route that tracks: the
route's ``track`` verb timed, the JSON summary of the tracked video (frames, fps, ids, per-id
label / score / frames seen) and its side-by-side video."""

from __future__ import annotations

from pathlib import Path

from helpers.errors import InputError

SIDE_BY_SIDE = "side_by_side.mp4"


def _one_unit(run):
    """``run(args, ...)`` with every file it writes into ``args.out`` (the annotated video,
    ``tracks.json``, ``masks.json.xz``, the side-by-side video) one unit
    (``files.output_set``): renamed into place together once all are written; a failure
    leaves ``--out``'s earlier set, or nothing new."""
    import functools

    @functools.wraps(run)
    def unit(args, *rest, **kw):
        from helpers import files

        with files.output_set(args.out, members=[SIDE_BY_SIDE]):
            return run(args, *rest, **kw)

    return unit


@_one_unit
def run_track(args, prompt: str, route, settings, tags: dict | None = None) -> dict:
    """Track ``args.video`` into ``args.out`` with ``route`` (``routes.DetectSam2`` /
    ``routes.Sam3``, its tracker loaded) and ``settings`` (``routes.TrackSettings``); the
    command's result: the summary, the processing FPS, ``--side-by-side``'s video."""
    import time

    from helpers.textseg.detect import prompt_phrases

    t0 = time.perf_counter()
    result = route.track(
        args.video, prompt_phrases(prompt), settings, Path(args.out), prompt=prompt
    )
    elapsed = time.perf_counter() - t0
    compile_s = float(result.timings.get("compile_s", 0.0))
    working = elapsed - compile_s  # a first run's one-off compile is not the tracking speed
    processing_fps = round(result.num_frames / working, 3) if working > 0 else None
    summary = {
        "command": "track",
        **(tags or {}),
        "video": args.video,
        "prompt": prompt,
        **track_summary(result),
        "elapsed_s": round(elapsed, 3),
        "compile_s": round(compile_s, 3),
        "processing_fps": processing_fps,  # frames / (elapsed_s - compile_s)
    }
    if getattr(args, "side_by_side", False):
        note = " (compile excluded)" if compile_s else ""
        summary["side_by_side_path"] = side_by_side(args, result, processing_fps, note)
    return summary


def track_summary(result) -> dict:
    """Frames, fps, ids and per-id (label, score, frames seen) of a ``track.TrackResult``."""
    import numpy as np

    frames_per_id: dict[int, int] = {}
    rles = getattr(result.masks, "rles", None)  # track.MaskStore: count without decoding
    if rles is not None:
        from helpers.textseg.render import rle_area

        seen = ((oid, rle_area(r) > 0) for per in rles.values() for oid, r in per.items())
    else:
        seen = (
            (oid, m is not None and bool(np.asarray(m).any()))
            for per in result.masks.values()
            for oid, m in per.items()
        )
    for oid, visible in seen:
        if visible:
            frames_per_id[int(oid)] = frames_per_id.get(int(oid), 0) + 1
    ids = sorted(set(frames_per_id) | {int(i) for i in result.labels})
    return {
        "frames": int(result.num_frames),
        "fps": float(result.fps),
        "ids": ids,
        "per_id": {
            str(i): {
                "label": str(result.labels.get(i, "")),
                "score": round(float(result.scores.get(i, float("nan"))), 4),
                "frames_seen": frames_per_id.get(i, 0),
            }
            for i in ids
        },
        "video_path": str(result.video_path) if result.video_path else None,
        "json_path": str(result.json_path) if result.json_path else None,
    }


def side_by_side(args, result, processing_fps: float | None, note: str = "") -> str:
    """Write ``--out/side_by_side.mp4`` (the input | the annotated video, the processing FPS
    drawn on it) for ``--side-by-side``; its path."""
    if result.video_path is None:
        raise InputError("--side-by-side needs the annotated MP4: leave out --no-render.")
    from helpers.files import output_path
    from helpers.textseg import media

    target = Path(args.out) / SIDE_BY_SIDE
    media.side_by_side_video(
        args.video,
        output_path(result.video_path),  # still staged: the unit commits after this
        output_path(target),
        fps=result.fps,
        processing_fps=processing_fps,
        note=note,
    )
    return str(target)
