"""Checks the Q2 commands make before any model loads, and their shared pieces: thresholds,
the prompt, the device, the output folder, an image's output stem, and the report of a folder
run with failures. Used by every route's command (``commands``, ``sam3_commands``)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from helpers.errors import InputError


def stop_if_failed(result: dict, total: int, noun: str, out, advice: str, status="") -> dict:
    """``result`` when its ``failed`` list is empty; else print it as the JSON line (nothing
    lost) and raise an InputError (a non-zero exit) that counts and names the first failure:
    "2 of 15 images failed (first: a.jpg: ...); the others were written to OUT. ADVICE"."""
    failed = result["failed"]
    if not failed:
        return result
    from helpers.result_line import print_result

    print_result(result)  # on stdout, where the JSON line goes
    first = failed[0]
    raise InputError(
        f"{len(failed)} of {total} {noun} failed ({status + '; ' if status else ''}first: "
        f"{first['file']}: {first['error']}); the others were written to {out}. {advice}"
    )


def check_threshold(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise InputError(f"--{name} must be between 0 and 1, got {value}.")
    return float(value)


def check_prompt(prompt: str | None) -> str:
    from helpers.textseg import detect

    if prompt is None or not prompt.strip():
        raise InputError("--prompt is empty: say what to segment, e.g. --prompt 'dog. ball'.")
    detect.prompt_phrases(prompt)  # raises InputError for prompts with no words
    return prompt


def check_device(args) -> None:
    """A bad --device (``banana``, ``cuda`` without a GPU) is an error before any work."""
    if args.device is None:
        return
    import torch

    from helpers import runtime

    try:
        args.device = str(runtime.pick_device(args.device))
    except (RuntimeError, ValueError, TypeError) as e:  # an older pick_device
        if isinstance(e, InputError):
            raise
        raise InputError(
            f"--device {args.device!r} is not a device; use cpu, cuda or mps"
            f"{'' if torch.cuda.is_available() else ' (no CUDA GPU is visible here: cpu)'}."
        ) from None


def check_out(path, flag: str = "--out") -> Path:
    """The output folder can be written (not a file, not below a file, not read-only):
    checked before any model is loaded or any image is segmented."""
    from helpers import files

    check = getattr(files, "check_output_dir", None)
    if check is not None:
        return check(path, flag)
    p = Path(path)
    probe = p
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {p} is a file, not a folder; give a folder path.")
    if not probe.is_dir():
        raise InputError(f"{flag} {p} lies below {probe}, which is a file; give another path.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {p} cannot be written (in {probe}); give a writable folder.")
    return p


def stem_for(source: str) -> str:
    """A file stem for an image path or URL that keeps Unicode (``猫.jpg`` -> ``猫``); names
    that leave nothing usable get ``image_<hash>``, so different sources never share a stem."""
    import hashlib

    from helpers.textseg.naming import safe_stem

    name = Path(unquote(urlparse(source).path)).stem if "://" in source else Path(source).stem
    fallback = "image_" + hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return safe_stem(name, fallback=fallback)


def image_stem(source: str, out) -> str:
    """The output stem of one image: :func:`stem_for`, unless another input's result already
    has that name in ``out`` (then ``stem_ext`` / ``stem_<hash>``: nothing is overwritten)."""
    from helpers.textseg.naming import claim_names, json_owner

    owner = lambda name: json_owner(Path(out) / f"{name}.json")  # noqa: E731
    return claim_names([source], owner, stem_of=stem_for)[0]


def check_overlay(args) -> dict:
    """``{"color", "opacity"}`` for the overlays of every route; a bad colour or opacity fails
    before any work."""
    from helpers.textseg import render

    check_threshold("opacity", args.opacity)
    render.parse_color(args.color)
    return {"color": args.color, "opacity": float(args.opacity)}


def check_cleanup(args) -> dict:
    """The cleanup settings of every route (``clean``, ``clean_fraction``, the floors): holes and
    specks below ``--clean-fraction`` of each mask's area, at least ``--clean-floor`` px."""
    if not 0.0 <= args.clean_fraction <= 1.0:
        raise InputError(f"--clean-fraction must be between 0 and 1, got {args.clean_fraction}.")
    if args.clean_floor < 0:
        raise InputError(f"--clean-floor must be >= 0 px, got {args.clean_floor}.")
    return {
        "clean": not getattr(args, "no_clean", False),
        "clean_fraction": float(args.clean_fraction),
        "min_hole_area": int(args.clean_floor),
        "min_sprinkle_area": int(args.clean_floor),
    }
