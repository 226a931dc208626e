"""Output names: safe on every file system, cut by bytes, unique per input and stable.

An input's outputs are named after its file stem (``photo.jpg`` -> ``photo_mask.png``, ...).
A name already used in the output folder by another input (another folder's ``photo.jpg``,
``photo.png`` beside ``photo.jpg``) is not taken over: that input gets ``photo_png``, then
``photo_<hash of its path>``. Which input owns a name is read from what the folder holds (each
result records its ``source_path``), so a name once given never changes: adding ``b.png``
beside a done ``b.jpg`` leaves ``b.jpg``'s outputs where they are.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

# bytes (UTF-8) a stem may have: its longest output name, ``{stem}_overlay.png`` plus a
# ``_<ext>`` / ``_<hash>`` suffix, and that name's temporary ``.NAME.tmp-PID-RANDOM.png``
# stay well under the 255 bytes a file name may have
MAX_STEM_BYTES = 120
UNKNOWN_OWNER = "\0unknown"  # a result file that does not say which input made it
LEGACY = "legacy:"  # a result that records only its input's file name


def _utf8_size(text: str) -> int:
    """Bytes of ``text`` in a file name (an undecodable byte of a name, which Python holds as
    a lone surrogate, is one byte)."""
    return len(text.encode("utf-8", "surrogateescape"))


def cut_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    if _utf8_size(text) <= limit:
        return text
    total = 0
    for i, ch in enumerate(text):
        total += _utf8_size(ch)
        if total > limit:
            return text[:i]
    return text


def safe_stem(name: str, fallback: str = "image") -> str:
    """A file stem that keeps Unicode (``猫`` stays ``猫``), NFC-normalised, with only the
    characters no file system accepts (``/ \\ : * ? " < > |``, control characters) and bytes
    that are not UTF-8 (a name from another system's encoding) replaced, cut to
    :data:`MAX_STEM_BYTES` bytes."""
    name = re.sub(r"[\udc80-\udcff]+", "_", str(name))  # undecodable bytes of a file name
    name = unicodedata.normalize("NFC", name)
    name = re.sub(r'[\x00-\x1f\x7f/\\:*?"<>|]+', "_", name).strip(" ._")
    return cut_bytes(name, MAX_STEM_BYTES).rstrip(" ._") or fallback


def source_key(source) -> str:
    """What identifies an input: its absolute path (a URL as it is)."""
    text = os.fsdecode(source) if isinstance(source, (os.PathLike, bytes)) else str(source)
    if "://" in text:
        return text
    return str(Path(text).expanduser().absolute())


def _short_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def candidates(stem: str, suffix: str, key: str) -> list[str]:
    """The names an input may get, in order of preference."""
    names = [stem]
    ext = re.sub(r"[^0-9A-Za-z]+", "", suffix.lower())
    if ext:
        names.append(f"{stem}_{ext}")
    names.append(f"{stem}_{_short_hash(key)}")
    return names


def claim_names(
    sources: Sequence,
    owner: Callable[[str], str | None],
    stem_of: Callable[[object], str] | None = None,
    adopt: Callable[[str, object], bool] | None = None,
) -> list[str]:
    """One output name per source, unique (case-insensitively too) and stable.

    ``owner(name)`` returns the :func:`source_key` recorded by the result already named
    ``name`` in the output folder (:data:`UNKNOWN_OWNER` for a result that records none),
    or None when the name is free. A source keeps a name it owns; a name owned by another
    source, or given to an earlier source of this run, is skipped (see :func:`candidates`).
    ``stem_of(source)`` gives the preferred stem (default: the file stem made safe).
    ``adopt(name, source)``, when given, may hand ``source`` a name another path owns: True
    when that result is of this very input, moved (see
    :func:`helpers.textseg.resume_keys.moved_here`).
    """
    taken: dict[str, str] = {}
    out = []
    for src in sources:
        key = source_key(src)
        stem = stem_of(src) if stem_of else safe_stem(Path(os.fsdecode(src)).stem)
        options = candidates(stem, Path(os.fsdecode(src)).suffix, key)
        name = options[-1]
        for option in options:
            if taken.get(option.casefold(), key) != key:
                continue
            recorded = owner(option)
            if _owned_by(recorded, key) or (adopt is not None and adopt(option, src)):
                name = option
                break
        k = 2
        while taken.get(name.casefold(), key) != key:  # a hash clash: practically never
            name, k = f"{options[-1]}_{k}", k + 1
        taken[name.casefold()] = key
        out.append(name)
    return out


def _owned_by(recorded: str | None, key: str) -> bool:
    """The name is free or already ``key``'s (a result written before ``source_path`` was
    recorded names only the file: ``legacy:NAME``)."""
    if recorded is None or recorded == key:
        return True
    return recorded.startswith(LEGACY) and recorded[len(LEGACY) :] == Path(key).name


def json_owner(path: Path) -> str | None:
    """The ``source_path`` recorded in the result JSON ``path``; None when there is none."""
    import json

    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return UNKNOWN_OWNER
    if not isinstance(doc, dict):
        return UNKNOWN_OWNER
    if doc.get("source_path"):
        return str(doc["source_path"])
    if doc.get("source") and "://" not in str(doc["source"]):
        return LEGACY + Path(str(doc["source"])).name
    return UNKNOWN_OWNER
