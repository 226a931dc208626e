"""Resume keys of a folder run: what identifies an image's outputs (its bytes, the prompt,
the models, every setting) as a short fingerprint, and whether outputs made with it are there."""

from __future__ import annotations

from pathlib import Path


def settings_fingerprint(settings: dict) -> str:
    """A short, stable hash of the settings that produce an image's outputs (prompt, models,
    thresholds, ...): a folder run re-does an image whose stored fingerprint differs."""
    import hashlib
    import json

    blob = json.dumps(settings, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


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
