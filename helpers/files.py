"""Atomic file writes: a crash or a Colab disconnect never leaves a half-written file behind.

Every writer goes to a temporary file in the destination folder and then ``os.replace``s it
into place, which is atomic on POSIX and Windows file systems (Google Drive's FUSE mount too).

Temporary files are named ``.<name>.tmp-<pid>-<random><suffix>`` (e.g.
``.last.pt.tmp-4242-k3j9x1.pt``), so they are easy to recognise. One left behind by a writer
that was killed (``kill -9``, a crashed kernel) is removed the next time that file is written
(its process no longer runs); :func:`remove_stale_temporaries` cleans a whole folder.
Written files get the usual permissions (``0o666`` minus the umask), or keep those of the file
they replace.

:func:`check_output_dir` says, before any work starts, whether an output folder can be used.
:func:`output_set` makes several files one unit (all of them replace the old ones, or none);
:func:`make_temp_dir` names temporary folders so that those of a killed run are found again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.errors import InputError

TMP_MARK = ".tmp-"

# errno values that mean "this place cannot be written" (as opposed to a bug)
_WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "an input/output error occurred (disk or network drive)",
    errno.EFBIG: "the file is too large for this file system",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ENOENT: "that place does not accept new files",
}


# errno values that mean "this path cannot even be looked at" (stat, exists, is_dir, scandir)
_PATH_ERRNOS = (errno.ENAMETOOLONG, errno.ELOOP, errno.EACCES, errno.EPERM)
NAME_MAX_BYTES, PATH_MAX_BYTES = 255, 4096  # Linux, macOS and Google Drive's mount


class WriteError(InputError, OSError):
    """A file could not be written (disk full, read-only, permission denied, ...).

    Both an :class:`InputError` (the CLI prints its one-line message and exits 2) and an
    ``OSError`` (``errno`` is the original one)."""

    def __init__(
        self, message: str, err: int | None = None, filename: str | None = None, reason: str = ""
    ):
        OSError.__init__(self, message)
        self.errno, self.filename, self.message = err, filename, message
        self.reason = reason  # the plain cause alone ("the disk is full")

    def __str__(self) -> str:
        return self.message


def write_error_reason(e: BaseException) -> str | None:
    """A short, plain reason for an ``OSError`` raised by a write, or None when it is not one
    of the "cannot write here" kinds (then it is a bug and should surface as is)."""
    if isinstance(e, WriteError) and e.reason:
        return e.reason
    return _WRITE_ERRNOS.get(getattr(e, "errno", None)) if isinstance(e, OSError) else None


# ----------------------------------------------------------------------------- probing paths


def _short(path) -> str:
    text = str(path)
    return text if len(text) <= 80 else f"{text[:40]}...{text[-30:]} ({len(text)} characters)"


class PathError(InputError):
    """A path that cannot even be looked at: ``"{what} {path}: {reason}"``. ``reason`` alone
    lets a caller name the path in its own terms (``--data`` for a library's "dataset")."""

    def __init__(self, what: str, path, reason: str):
        super().__init__(f"{what} {_short(path)}: {reason}")
        self.path, self.reason = path, reason


def path_error(e: BaseException, what: str, path=None) -> PathError | None:
    """The one-line :class:`PathError` (an InputError) for an ``OSError`` raised while looking
    at a path a user gave (``exists()``, ``is_dir()``, ``stat``, ``scandir``: a name longer than
    the file system allows, a loop of symbolic links, no permission), or None when ``e`` is
    not one of those."""
    if not isinstance(e, OSError) or isinstance(e, InputError) or e.errno not in _PATH_ERRNOS:
        return None
    path = path if path is not None else (e.filename or "")
    if e.errno in (errno.EACCES, errno.EPERM):
        return PathError(what, path, "permission denied; give a path you can read.")
    if e.errno == errno.ELOOP:
        return PathError(what, path, "its symbolic links go round in a loop; fix them.")

    def size(text) -> int:
        return len(str(text).encode("utf-8", "surrogateescape"))

    longest = max((size(part) for part in Path(str(path)).parts), default=0)
    why = (
        f"a name in it is {longest} bytes, more than the {NAME_MAX_BYTES} a file system allows"
        if longest > NAME_MAX_BYTES
        else f"it is {size(path)} bytes, more than the {PATH_MAX_BYTES} a file system allows"
    )
    return PathError(what, path, f"{why}; use a shorter name or path.")


@contextlib.contextmanager
def probing(what: str, path=None) -> Iterator[None]:
    """Inside, an ``OSError`` from looking at ``path`` (the setting ``what`` names) becomes the
    one-line :class:`InputError` of :func:`path_error`; other errors pass unchanged."""
    try:
        yield
    except OSError as e:
        err = path_error(e, what, path)
        if err is None:
            raise
        raise err from None


# ----------------------------------------------------------------------------- permissions


def current_umask() -> int:
    """The process umask, read without changing it where possible (Linux ``/proc``)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back at once
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The mode a new version of ``path`` gets: that of the file it replaces, else 0o666 minus
    the umask (what ``open()`` would give; ``mkstemp`` alone gives 0o600)."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(path.stat().st_mode)
    return 0o666 & ~current_umask()


# ----------------------------------------------------------------------------- temporaries


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}{TMP_MARK}"


_TMP_PID = re.compile(r"^(\d+)-")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # cannot tell cheaply: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _stale_temporaries(path: Path) -> list[Path]:
    """Temporaries of ``path`` (same folder) whose writing process no longer runs."""
    prefix = _tmp_prefix(path)
    out = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if not entry.name.startswith(prefix):
                continue
            m = _TMP_PID.match(entry.name[len(prefix) :])
            if m and not _pid_alive(int(m.group(1))):
                out.append(Path(entry.path))
    return out


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files in ``folder`` left by writers that were killed mid-write
    (``.NAME.tmp-PID-XXXX``, PID no longer running). Returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if not entry.name.startswith(".") or TMP_MARK not in entry.name:
                continue
            target = Path(folder) / entry.name[1 : entry.name.index(TMP_MARK)]
            for p in _stale_temporaries(target):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


def _make_temporary(path: Path, suffix: str) -> Path:
    """Create an empty, unique temporary file next to ``path`` with its final mode."""
    mode = _mode_for(path)
    prefix = _tmp_prefix(path)
    for _ in range(100):
        tmp = path.parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, mode) if hasattr(os, "fchmod") else os.chmod(tmp, mode)
        finally:
            os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    Use it for writers that want a file name (``cv2.VideoWriter``, ``torch.save``,
    ``fig.savefig``). ``suffix`` defaults to the target's own suffix so libraries that pick
    a format from the extension still do. On an exception the temporary file is removed and
    ``path`` is left as it was. A write that fails because the place cannot be written (disk
    full, read-only, permission denied, ...) raises :class:`WriteError`, whose one-line
    message names the file and the reason.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in _stale_temporaries(path):  # left by a writer that was killed
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        tmp_path = _make_temporary(path, path.suffix if suffix is None else suffix)
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as e:
        reason = (
            _size_limit_reason(e) or write_error_reason(e) or _library_write_failure(e, tmp_path)
        )
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
        if reason is not None and not isinstance(e, WriteError):
            raise WriteError(
                f"could not write {path}: {reason}. Files written before are kept; "
                "fix that and run again.",
                getattr(e, "errno", None),
                str(path),
                reason,
            ) from e
        raise


def _library_write_failure(e: BaseException, tmp: Path | None) -> str | None:
    """Why a writer that is not plain ``open().write`` failed, when the place is to blame:
    ``torch.save`` raises ``RuntimeError`` ("unexpected pos", "file write failed") on a full
    disk or past ``ulimit -f``, other libraries wrap the ``OSError`` they met. None when
    nothing points at the disk (then it is a bug and surfaces as is)."""
    if not isinstance(e, Exception) or tmp is None or isinstance(e, WriteError):
        return None
    seen, cause = set(), e.__cause__ or e.__context__
    while cause is not None and id(cause) not in seen:  # an OSError the library met
        seen.add(id(cause))
        if write_error_reason(cause):
            return write_error_reason(cause)
        cause = cause.__cause__ or cause.__context__
    try:
        written = os.stat(tmp).st_size
        free = os.statvfs(tmp.parent)
        free_bytes = free.f_bavail * free.f_frsize
    except (OSError, AttributeError):
        written, free_bytes = 0, None
    if free_bytes is not None and free_bytes < 1 << 20:
        return _WRITE_ERRNOS[errno.ENOSPC]
    limit = _file_size_limit()
    if limit is not None and written >= limit:
        return f"the file size limit is reached ({limit:,} bytes, ulimit -f)"
    text = str(e).lower()
    if isinstance(e, RuntimeError) and any(w in text for w in ("write", "unexpected pos")):
        return f"the writer failed ({type(e).__name__}: {' '.join(str(e).split())[:160]})"
    return None


def _size_limit_reason(e: BaseException) -> str | None:
    """EFBIG past ``ulimit -f`` says so (rather than "too large for this file system")."""
    limit = _file_size_limit() if getattr(e, "errno", None) == errno.EFBIG else None
    return None if limit is None else f"the file size limit is reached ({limit:,} bytes, ulimit -f)"


def _file_size_limit() -> int | None:
    """The largest file this process may write (``ulimit -f``), or None without a limit."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json_text(obj, indent=indent) + "\n")


def atomic_write_many(contents: dict[str | os.PathLike, bytes]) -> list[Path]:
    """Write several files (in any folders) all or nothing: every new version is staged and
    synced beside its file first, then each replaces its file; when a replacement fails
    midway the files already replaced get their old versions back. Either every file has its
    new content or every file keeps its old one. A failure that the place is to blame for
    raises :class:`WriteError` ("nothing was changed")."""
    new = {Path(p): data for p, data in contents.items()}
    paths = list(new)
    staged: dict[Path, Path] = {}  # target -> its new version
    kept: dict[Path, Path] = {}  # target -> a second name of its old version
    replaced: list[Path] = []
    current: Path | None = None
    try:
        for path in paths:
            current = path
            for stale in _stale_temporaries(path):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            staged[path] = tmp = _make_temporary(path, path.suffix)
            with open(tmp, "wb") as f:
                f.write(new[path])
                f.flush()
                os.fsync(f.fileno())
            if path.exists():  # the old version kept under a second name until the end
                kept[path] = old = _make_temporary(path, path.suffix)
                old.unlink()
                try:
                    os.link(path, old)
                except OSError:  # no hard links here: a copy
                    with open(path, "rb") as src, open(old, "wb") as dst:
                        dst.write(src.read())
                        dst.flush()
                        os.fsync(dst.fileno())
        for path in paths:
            current = path
            os.replace(staged[path], path)
            del staged[path]
            replaced.append(path)
    except BaseException as e:
        for path in reversed(replaced):  # put the old versions back
            with contextlib.suppress(OSError):
                if path in kept:
                    os.replace(kept.pop(path), path)
                else:
                    path.unlink()
        for tmp in [*staged.values(), *kept.values()]:
            with contextlib.suppress(OSError):
                tmp.unlink()
        reason = _size_limit_reason(e) or write_error_reason(e)
        if reason is not None and not isinstance(e, WriteError):
            raise WriteError(
                f"could not write {current}: {reason}. Nothing was changed; fix that and run "
                "again.",
                getattr(e, "errno", None),
                str(current),
                reason,
            ) from e
        raise
    for old in kept.values():
        with contextlib.suppress(OSError):
            old.unlink()
    return paths


def json_text(obj: Any, indent: int | None = None, default=None) -> str:
    """``json.dumps`` that always gives valid JSON: NaN and infinities become ``null`` (bare
    ``NaN`` / ``Infinity`` are not JSON), numpy values and paths become plain ones."""
    return json.dumps(
        _finite(obj), indent=indent, default=default or _json_default, allow_nan=False
    )


def _finite(o: Any) -> Any:
    import math

    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if type(o).__module__ == "numpy" and hasattr(o, "tolist"):
        return _finite(o.tolist())
    return o


def atomic_save_image(path: str | os.PathLike, image) -> Path:
    """Save an RGB/L uint8 array (or PIL image) atomically; format from the suffix."""
    import numpy as np
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt)
    return Path(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


# ----------------------------------------------------------------------------- output sets


class OutputSet:
    """The files of one result (a video, its tracks, ...), written as a unit: each is written
    to a staging name in its own folder (``staged``), and only :meth:`commit` renames them
    into place, the ``last`` names last; a member that this result did not produce is removed
    then, so an old file never sits beside new ones. :meth:`discard` removes what was staged
    and leaves the folder as it was."""

    def __init__(self, folder: Path, members=(), last=()):
        self.folder = folder
        self.members: list[str] = []
        self.last: list[str] = []
        self.staged: dict[str, Path] = {}
        # run at the start of :meth:`commit`, once every member is written (e.g. a rotation
        # of the current file to a backup name, which must not happen if the set is discarded)
        self.before_commit: list = []
        self.add(members, last)

    def add(self, members=(), last=()) -> None:
        """Names of files that belong to the set (written or not); ``last`` ones commit last."""
        for name in [*members, *last]:
            if name not in self.members:
                self.members.append(name)
        self.last += [n for n in last if n not in self.last]

    def path(self, name: str) -> Path:
        """Where ``name`` of the folder is written until the commit (the same path each time
        it is asked for): a temporary name that the writers' own clean-up recognises."""
        if name not in self.staged:
            self.add([name])
            target = self.folder / name
            self.staged[name] = _make_temporary(target, target.suffix)
            self.staged[name].unlink()  # only the name is taken: the writer makes the file
        return self.staged[name]

    def commit(self) -> None:
        for hook in self.before_commit:
            hook()
        written = [n for n in self.staged if self.staged[n].exists()]
        order = [n for n in written if n not in self.last] + [n for n in self.last if n in written]
        for name in order:  # a file replaced keeps its permissions
            with contextlib.suppress(OSError):
                os.chmod(self.staged[name], stat.S_IMODE((self.folder / name).stat().st_mode))
        for name in order[:-1]:
            os.replace(self.staged[name], self.folder / name)
        for name in self.members:  # left from an earlier result: not part of this one
            if name not in written:
                with contextlib.suppress(OSError):
                    (self.folder / name).unlink()
        if order:
            os.replace(self.staged[order[-1]], self.folder / order[-1])
        self.staged.clear()

    def discard(self) -> None:
        for tmp in self.staged.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        self.staged.clear()


_OPEN_SETS: dict[Path, OutputSet] = {}


def _set_key(folder) -> Path:
    return Path(os.path.abspath(os.fspath(folder)))


@contextlib.contextmanager
def output_set(folder: str | os.PathLike, members=(), last=()) -> Iterator[OutputSet]:
    """Inside, the files of ``folder`` that writers reach through :func:`output_path` form one
    :class:`OutputSet`: leaving normally renames them all into place, leaving by an exception
    removes them and ``folder`` keeps the files it had. Opened again for the same folder
    inside, it joins the open set (the outermost one commits)."""
    key = _set_key(folder)
    if key in _OPEN_SETS:
        _OPEN_SETS[key].add(members, last)
        yield _OPEN_SETS[key]
        return
    key.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(key)  # staged by a process that was killed
    unit = _OPEN_SETS[key] = OutputSet(key, members, last)
    try:
        yield unit
        unit.commit()
    except BaseException:
        unit.discard()
        raise
    finally:
        _OPEN_SETS.pop(key, None)


def output_path(path: str | os.PathLike) -> Path:
    """Where a writer of ``path`` writes: its staging name while an :func:`output_set` of its
    folder is open, else ``path`` itself."""
    path = Path(path)
    unit = _OPEN_SETS.get(_set_key(path.parent))
    return path if unit is None else unit.path(path.name)


# ----------------------------------------------------------------------------- temporary folders


def make_temp_dir(prefix: str) -> Path:
    """A new folder in the system's temporary folder named ``<prefix><pid>_<random>``; those
    of the same ``prefix`` left by processes that no longer run (``kill -9``) are removed
    first."""
    import tempfile

    remove_stale_temp_dirs(prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}_"))


def remove_stale_temp_dirs(prefix: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the folders ``<prefix><pid>_*`` of ``root`` (the temporary folder) that this user
    owns and whose process no longer runs. Returns what was removed."""
    import shutil
    import tempfile

    root = Path(tempfile.gettempdir() if root is None else root)
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)_")
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            m = pattern.match(entry.name)
            if not m or not entry.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                if hasattr(os, "getuid") and entry.stat().st_uid != os.getuid():
                    continue
                if _pid_alive(int(m.group(1))):
                    continue
                shutil.rmtree(entry.path)
                removed.append(Path(entry.path))
    return removed


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):  # settings: their fields
        return dataclasses.asdict(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


# ----------------------------------------------------------------------------- output folders


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Check, before any work, that ``path`` can be an output folder; creates nothing.

    Raises :class:`InputError` with a one-line message when ``path`` is a file, lies below a
    file, or cannot be written (read-only place, no permission). ``what`` names the setting in
    the message (``--out``, ``out_dir``, ...). Returns ``path`` as a ``Path``.
    """
    p = Path(path).expanduser()
    if str(path).strip() == "":
        raise InputError(f"{what} is empty; give a folder path.")
    with probing(what, p):
        return _check_output_dir(p, what)


def _check_output_dir(p: Path, what: str) -> Path:
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} {p} is a file, not a folder; give a folder path.")
    # the nearest part of the path that exists must be a folder we can create things in
    probe = p
    while not probe.exists():
        if probe.is_symlink():  # a dangling link: creating through it would fail
            raise InputError(f"{what} {p}: {probe} is a broken link; give another folder.")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InputError(
            f"{what} {p} lies below {probe}, which is a file, not a folder; give another path."
        )
    reason = _not_writable(probe)
    if reason:
        where = "" if probe == p else f" (in {probe})"
        raise InputError(
            f"{what} {p} cannot be written{where}: {reason}; give a folder you can write to."
        )
    return p


def _not_writable(folder: Path) -> str | None:
    """Why nothing can be created in ``folder`` (None when something can): tried for real with
    a temporary file, which is removed at once (permission bits alone miss read-only mounts,
    and root ignores them)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied" if not _read_only_fs(folder) else "the file system is read-only"
    try:
        tmp = _make_temporary(folder / ".write-test", "")
    except OSError as e:
        return _WRITE_ERRNOS.get(e.errno, e.strerror or type(e).__name__)
    with contextlib.suppress(OSError):
        tmp.unlink()
    return None


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False
