"""A folder run of the image pipeline: every image of a folder into its outputs, resumable
(keys in ``resume_keys``), failures recorded, shared between processes under torchrun."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from helpers.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

# formats PIL lists but cannot decode without outside help (stubs, Ghostscript, Windows)
_NOT_PHOTOS = {".bufr", ".grib", ".h5", ".hdf", ".eps", ".ps", ".emf", ".wmf", ".mpeg", ".mpg"}
_NOT_PHOTOS |= {".fit", ".fits"}


def image_suffixes() -> tuple[str, ...]:
    """Every suffix single-image mode reads (PIL's decoders, AVIF and, with pillow-heif
    registered, HEIC included), so a folder run takes the same files."""
    from PIL import Image

    Image.init()
    readable = {e for e, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return tuple(sorted((set(IMAGE_SUFFIXES) | readable) - _NOT_PHOTOS))


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"the folder {folder} does not exist or is not a folder.")
    suffixes = set(image_suffixes())
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def not_images(folder: str | os.PathLike) -> list[str]:
    """Names of the files in ``folder`` a folder run leaves out (not a format it reads), so
    the summary can say so (a ``.heic`` without pillow-heif, a ``.txt``)."""
    suffixes = set(image_suffixes())
    return sorted(
        p.name
        for p in Path(folder).iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in suffixes
    )


def in_subfolders(folder: str | os.PathLike, skip: str | os.PathLike | None = None) -> list[Path]:
    """Images in the subfolders of ``folder`` (hidden folders and ``skip``, e.g. the output
    folder, left out), which a folder run does not take: the summary says how many."""
    folder = Path(folder)
    skipped = Path(skip).resolve() if skip is not None else None
    suffixes = set(image_suffixes())
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (here / d).resolve() != skipped
        )
        if here == folder:
            continue
        found += [here / n for n in sorted(names)
                  if not n.startswith(".") and Path(n).suffix.lower() in suffixes]  # fmt: skip
    return found


def _subfolder_note(folder: Path, nested: list[Path]) -> str:
    example = nested[0].relative_to(folder)
    return (
        f"{len(nested)} image(s) in subfolders were left out (e.g. {example}): a folder run "
        "takes the images directly in --folder; run each subfolder as its own --folder."
    )


def output_stems(paths: list[Path], owner=None, adopt=None) -> list[str]:
    """Output stems, unique even on case-insensitive drives, that never take a name ``owner``
    (name -> the source recorded there, or None) says another input holds: the file stem,
    else stem_ext, else stem_<hash of the path> (see :func:`helpers.textseg.naming.claim_names`).
    ``adopt(name, path)``: True where that other input is this one, moved (same bytes)."""
    from helpers.textseg.naming import claim_names

    return claim_names(paths, owner or (lambda name: None), adopt=adopt)


def segment_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    prompt: str,
    detector,
    segmenter,
    *,
    overwrite: bool = False,
    segment_fn=None,
    dist=None,
    overlay: dict | None = None,
    **kw,
) -> dict:
    """Segment every image of ``in_dir`` into ``out_dir`` (``{stem}_mask.png``,
    ``{stem}_overlay.png``, ``{stem}.json`` each).

    Resuming is keyed on the input's content and the settings: each image's JSON stores a
    ``fingerprint`` of its bytes, the prompt, the models and every setting in ``kw``; an image
    is skipped only when its three outputs exist with the same fingerprint, so a new prompt or
    threshold -- or new bytes under the same size and time -- re-does it (``overwrite``
    re-does everything). Outputs recorded for a path that is gone, of the same bytes, are the
    moved image's (a renamed folder resumes; its JSON then names the new path). A file that fails is recorded and
    the run goes on; a write that fails because of the place (disk full, read-only) stops the
    run (``files.WriteError``): the summary's ``stopped`` says where, and it is still returned. ``kw`` go to ``pipeline.segment_image``
    (or ``segment_fn``, same signature, e.g. SAM 3's in ``helpers.textseg.sam3``).
    Returns ``{"status": "ok"|"partial"|"failed", "done", "redone", "skipped", "empty",
    "failed": [{"file", "error"}], "files": [{"file", "status", ...}], "out_dir"}``.

    ``overlay`` (``{"color": ..., "opacity": ...}``) goes to ``render.annotate`` for the
    overlay PNGs. Each JSON says which step produced the masks (``produced_by``, ``attempts``:
    see :func:`helpers.textseg.pipeline.segment_image`'s fallback); the summary counts images
    per step in ``produced_by``.

    ``dist`` (a :class:`helpers.distributed.Dist`, under ``torchrun``): process k of N takes
    images k, k+N, ... of the sorted list (names are made unique over the whole folder first),
    and the first process returns the merged summary of all of them (the others return None).
    """
    from tqdm.auto import tqdm

    from helpers.files import WriteError
    from helpers.textseg import pipeline
    from helpers.textseg.detect import normalize_prompt
    from helpers.textseg.render import save_image_outputs
    from helpers.textseg.resume_keys import (
        done_before,
        file_digest,
        model_settings,
        moved_here,
        read_result,
        settings_fingerprint,
    )

    norm = normalize_prompt(prompt)
    paths = list_images(in_dir)
    nested = in_subfolders(in_dir, skip=out_dir)
    if not paths and nested:
        raise InputError(
            f"no images directly in {in_dir}, but {len(nested)} in its subfolders (e.g. "
            f"{nested[0].relative_to(in_dir)}); give --folder one of those folders."
        )
    if not paths:
        raise InputError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}, ...) found in {in_dir}; put the images there."
        )
    out = Path(out_dir)
    if out.exists() and out.resolve() == Path(in_dir).resolve():
        raise InputError(
            f"the output folder {out} is the input folder; outputs would be read as new inputs "
            "on the next run. Give another output folder."
        )
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "prompt": norm,
        **model_settings(detector, segmenter, kw.get("clip")),
        **{k: v for k, v in sorted(kw.items()) if k not in ("clip", "clipseg")},
    }
    if kw.get("clipseg") is not None:
        settings["fallback_clipseg"] = str(getattr(kw["clipseg"], "name", "clipseg"))
    if overlay:
        settings["overlay"] = dict(sorted(overlay.items()))
    summary: dict[str, Any] = {"status": "ok", "done": 0, "redone": 0, "skipped": 0, "empty": 0}
    summary.update({"produced_by": {}, "failed": [], "files": [], "out_dir": str(out)})
    left_out = not_images(in_dir)
    if left_out:  # named, never skipped without a word
        summary["not_images"] = left_out
        summary["note"] = (
            f"{len(left_out)} file(s) are not images this run reads and were left out (e.g. "
            f"{left_out[0]}); convert them to JPEG or PNG (HEIC: pip install pillow-heif)."
        )
    if nested:  # named in one line, never ignored without a word
        import sys

        summary["in_subfolders"] = len(nested)
        note = _subfolder_note(Path(in_dir), nested)
        summary["note"] = f"{summary['note']} {note}" if "note" in summary else note
        print(f"note: {note}", file=sys.stderr, flush=True)
    from helpers.textseg.naming import json_owner, source_key

    digests: dict[Path, str | OSError] = {}  # each file hashed once

    def digest_of(path: Path) -> str | OSError:
        if path not in digests:
            try:
                digests[path] = file_digest(path)
            except OSError as e:
                digests[path] = e
        return digests[path]

    def fingerprint_of(digest: str) -> str:
        return settings_fingerprint({**settings, "input": digest})

    def adopt(name: str, path: Path) -> bool:  # a result of this image before it was moved
        digest = digest_of(path)
        doc = read_result(out / f"{name}.json")
        return isinstance(digest, str) and moved_here(doc, digest, fingerprint_of)

    def owner(name: str) -> str | None:
        return json_owner(out / f"{name}.json")

    work = list(zip(paths, output_stems(paths, owner, adopt)))
    if dist is not None and dist.on:
        work = work[dist.rank :: dist.world]
    quiet = {} if dist is None or dist.main else {"disable": True}  # one progress bar per job
    for path, stem in tqdm(work, desc="images", unit="img", **quiet):
        digest = digest_of(path)
        fingerprint = fingerprint_of(digest) if isinstance(digest, str) else None
        if fingerprint is None:
            digest_error = f"could not read {path.name} ({digest.strerror or digest})"
        if fingerprint is not None and not overwrite and done_before(out, stem, fingerprint):
            _follow_move(out / f"{stem}.json", path, source_key(path))
            summary["skipped"] += 1
            summary["files"].append({"file": path.name, "status": "skipped", "stem": stem})
            continue
        redo = (out / f"{stem}.json").exists()
        try:
            if fingerprint is None:
                raise InputError(digest_error)
            res = (segment_fn or pipeline.segment_image)(path, norm, detector, segmenter, **kw)
            info = pipeline.result_info(res)
            save_image_outputs(
                res.image,
                res.detections,
                out,
                stem,
                prompt=norm,
                extra={
                    "source": path.name,
                    "source_path": source_key(path),
                    "timings_ms": res.timings,
                    **info,
                    "fingerprint": fingerprint,
                    "input_digest": digest,
                    "settings": settings,
                },
                **(overlay or {}),
            )
        except WriteError as e:  # the disk is full / read-only: every later image would fail
            summary["failed"].append({"file": path.name, "error": str(e)})
            summary["files"].append({"file": path.name, "status": "failed", "error": str(e)})
            summary["stopped"] = f"stopped at {path.name}: {e}"  # the rest are left to resume
            break
        except Exception as e:  # a bad file must not stop the folder
            msg = str(e) if isinstance(e, InputError) else f"{type(e).__name__}: {e}"
            summary["failed"].append({"file": path.name, "error": msg})
            summary["files"].append({"file": path.name, "status": "failed", "error": msg})
            continue
        n = len(res.detections)
        summary["done"] += 1
        summary["redone"] += int(redo)
        summary["empty"] += int(n == 0)
        by = info["produced_by"]
        summary["produced_by"][by] = summary["produced_by"].get(by, 0) + 1
        summary["files"].append(
            {
                "file": path.name,
                "status": "done",
                "stem": stem,
                "instances": n,
                "produced_by": by,
                "ms": res.timings["total"],
            }
        )
    if summary.get("stopped"):
        listed = {f["file"] for f in summary["files"]}
        summary["files"] += [
            {"file": p.name, "status": "not started"} for p, _ in work if p.name not in listed
        ]
    if dist is not None and dist.on:
        parts = dist.gather(summary)  # every process waits here for the others
        if not dist.main:
            return None
        summary = merge_summaries(parts)
    if summary["failed"]:
        ok = summary["done"] + summary["skipped"]
        summary["status"] = "partial" if ok else "failed"
    return summary


def _follow_move(doc_path: Path, path: Path, key: str) -> None:
    """A result kept for a moved image names the image's new place (so the name stays its)."""
    import json

    from helpers.files import atomic_write_text
    from helpers.textseg.resume_keys import read_result

    doc = read_result(doc_path)
    if not isinstance(doc, dict) or doc.get("source_path") in (None, key):
        return
    doc.update(source=path.name, source_path=key)
    try:
        atomic_write_text(doc_path, json.dumps(doc) + "\n")
    except OSError:  # not written: the next run finds the move again
        pass


def merge_summaries(parts: list[dict]) -> dict:
    """One folder summary from the summaries of the processes that shared the folder."""
    merged = dict(parts[0])
    for key in ("done", "redone", "skipped", "empty"):
        merged[key] = sum(p[key] for p in parts)
    merged["produced_by"] = {}
    for p in parts:
        for k, v in p.get("produced_by", {}).items():
            merged["produced_by"][k] = merged["produced_by"].get(k, 0) + v
    for key in ("failed", "files"):
        merged[key] = sorted((x for p in parts for x in p[key]), key=lambda x: x["file"])
    stopped = [p["stopped"] for p in parts if p.get("stopped")]
    if stopped:
        merged["stopped"] = stopped[0]
    merged["status"] = "ok"
    merged["processes"] = len(parts)
    return merged
