"""Resume keys of a folder run: what identifies an image's outputs (its bytes, the prompt,
the models, every setting) as a short fingerprint, and whether outputs made with it are there.

Everything is keyed by content, never by a file's size and time or by where it lies: an
input's digest is a hash of its bytes (a frame folder's: its frames' names and bytes), and a
result whose recorded input is gone from its recorded place but had the same bytes belongs to
the input now being run (a renamed or moved folder resumes instead of redoing everything
beside the old outputs).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def settings_fingerprint(settings: dict) -> str:
    """A short, stable hash of the settings that produce an image's outputs (prompt, models,
    thresholds, ...): a folder run re-does an image whose stored fingerprint differs."""
    import hashlib
    import json

    blob = json.dumps(settings, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """A short hash of the file's bytes."""
    import hashlib

    h = hashlib.sha256()
    _hash_file(h, path)
    return h.hexdigest()[:16]


def _hash_file(h, path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def input_digest(path: str | os.PathLike) -> str:
    """A short hash of an input's content: a file's bytes, or a folder's (a video given as a
    folder of frames) files -- each name and its bytes, in name order, hidden files left out.
    The same content anywhere, under any time stamp, gives the same digest."""
    import hashlib

    path = Path(path)
    if not path.is_dir():
        return file_digest(path)
    h = hashlib.sha256(b"folder\0")
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        h.update(os.fsencode(entry.name) + b"\0")
        part = hashlib.sha256()
        _hash_file(part, entry.path)
        h.update(part.digest())
    return h.hexdigest()[:16]


def moved_here(doc, digest: str, fingerprint_of: Callable[[str], str] | None = None) -> bool:
    """True when the result ``doc`` (an image's JSON, a video's ``job.json``) was made from an
    input that is no longer at its recorded ``source_path`` and had the content ``digest``: the
    input was renamed or moved (its folder too), so the result is the moved input's.

    A result records its input's digest as ``input_digest``; one written before that is
    matched by its ``fingerprint``, which ``fingerprint_of(digest)`` recomputes (the same
    settings and content give the same fingerprint)."""
    if not isinstance(doc, dict) or not digest:
        return False
    recorded = doc.get("source_path")
    if not isinstance(recorded, str) or not recorded or "://" in recorded:
        return False
    try:
        if os.path.lexists(recorded):  # still there: another input's result
            return False
    except (OSError, ValueError):
        return False
    if doc.get("input_digest"):
        return doc["input_digest"] == digest
    return fingerprint_of is not None and doc.get("fingerprint") == fingerprint_of(digest)


def read_result(path: Path):
    """The JSON document at ``path``, or None when it is missing or unreadable."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def video_job(video: str | os.PathLike, settings: dict) -> dict:
    """What defines one video's result in a run of several: its content (the file's bytes, a
    frame folder's frames), the prompt and every setting in ``settings`` -- never its path,
    size or time stamp, so a video moved elsewhere still matches and new bytes under the old
    size and time do not -- and which video it was (``source_path``). A path that cannot be
    read (no permission, a named pipe) is keyed by its place and is refused when tracked."""
    import stat

    from helpers.textseg.naming import source_key

    try:
        mode = os.stat(video).st_mode
        readable = stat.S_ISREG(mode) or stat.S_ISDIR(mode)  # a named pipe would block
        digest = input_digest(video) if readable else ""
    except OSError:  # refused with its own message when it is tracked
        digest = ""
    if not digest:  # nothing to key by content: never matches a result, never resumes
        digest = "unread:" + source_key(video)
    return {
        "fingerprint": settings_fingerprint({**settings, "input": digest}),
        "input_digest": digest,
        "source_path": source_key(video),
    }


def model_settings(detector, segmenter, clip=None) -> dict:
    """What identifies the models of a run (for the resume fingerprint)."""
    out = {}
    if detector is not None:
        out["detector"] = str(getattr(detector, "name", type(detector).__name__))
    kind = getattr(segmenter, "kind", None) or getattr(segmenter, "backend", None)
    out["segmenter"] = ":".join(
        str(v)
        for v in (
            kind or type(segmenter).__name__,
            getattr(segmenter, "size", None) or getattr(segmenter, "name", ""),
            getattr(segmenter, "image_size", ""),
        )
    )
    if clip is not None:
        out["rescore"] = f"clip:{getattr(clip, 'name', '')}"
    return out


def done_before(out: Path, stem: str, fingerprint: str) -> bool:
    """True when ``stem``'s outputs are all there and were made by these settings."""
    import json

    doc_path = out / f"{stem}.json"
    if not doc_path.is_file():
        return False
    if not (out / f"{stem}_mask.png").is_file() or not (out / f"{stem}_overlay.png").is_file():
        return False
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("fingerprint") == fingerprint
