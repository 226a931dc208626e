"""Where code runs: device, precision, Colab detection, output folders, smoke mode, seeding."""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path

SMOKE_ENV = "HELPERS_SMOKE"


def smoke_mode() -> bool:
    """True when ``HELPERS_SMOKE=1``: notebooks run on tiny synthetic data and random weights."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0", "false", "False")


def in_colab() -> bool:
    """True inside Google Colab (``google.colab`` is importable only there)."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except ModuleNotFoundError:  # no ``google`` package at all
        return False


def short_input_errors(shell=None) -> bool:
    """In a notebook: an ``InputError`` raised by a cell shows as its one-line message (in red)
    instead of a traceback. The cell still fails, so Run all stops there. Returns False (and
    does nothing) outside IPython."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False
    from helpers.errors import InputError

    def one_line(shell, etype, value, tb, tb_offset=None):
        shown = [f"\x1b[0;31m{etype.__name__}: {value}\x1b[0m"]
        shell._showtraceback(etype, value, shown)  # the cell's error output: this line alone
        return shown

    shell.set_custom_exc((InputError,), one_line)
    return True


def pick_device(prefer: str | None = None):
    """``torch.device`` to use: ``prefer`` if given, else CUDA, then Apple MPS, then CPU.

    ``prefer`` must name a device that exists here (``cpu``, ``cuda``, ``cuda:N``, ``mps``);
    anything else raises ``InputError`` with one line saying what can be used."""
    import torch

    from helpers.errors import InputError

    if prefer is not None and str(prefer).strip():
        name = str(prefer).strip()
        usable = available_devices()
        try:
            dev = torch.device(name)
        except (RuntimeError, ValueError, TypeError):
            raise InputError(
                f"device {name!r} is not a device name; use one of: {', '.join(usable)}."
            ) from None
        if dev.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise InputError(
                    f"device {name!r} was asked for but no CUDA GPU is visible; use 'cpu'."
                )
            if dev.index is not None and dev.index >= count:
                raise InputError(
                    f"device {name!r}: there are only {count} CUDA GPU(s) (cuda:0"
                    f"{f'..cuda:{count - 1}' if count > 1 else ''}); use one of them."
                )
        elif dev.type == "mps":
            if "mps" not in usable:
                raise InputError(
                    f"device {name!r}: Apple's MPS is not available here; use one of: "
                    f"{', '.join(usable)}."
                )
        elif dev.type != "cpu":
            raise InputError(
                f"device {name!r} cannot run this code; use one of: {', '.join(usable)}."
            )
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    import torch

    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def available_devices() -> list[str]:
    """Device names that work here, best first (e.g. ``['cuda', 'cuda:0', 'cpu']``)."""
    import torch

    names = []
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if _mps_available():
        names.append("mps")
    return [*names, "cpu"]


def autocast_dtype(device, precision: str = "auto"):
    """Mixed-precision dtype for ``device``: bf16 on Ampere and newer, fp16 on older GPUs (T4),
    ``None`` (full fp32) on CPU or when ``precision='fp32'``."""
    import torch

    from helpers.errors import InputError

    device = torch.device(device)
    choices = {"auto", "fp32", "fp16", "bf16"}
    if precision not in choices:
        raise InputError(f"precision must be one of {sorted(choices)}, got {precision!r}.")
    if precision == "fp32" or device.type != "cuda":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    return (
        torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    )


def enable_fast_matmul() -> None:
    """TF32 matmuls/convolutions on Ampere and newer (no effect elsewhere)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def output_dir(
    name: str, root: str | os.PathLike | None = None, use_drive: bool = True, create: bool = True
) -> Path:
    """Folder for a run's outputs and checkpoints.

    ``root`` wins when given. Otherwise, inside Colab, Google Drive is mounted and
    ``MyDrive/cv-notebooks/<name>`` is used so checkpoints survive a disconnect; if mounting
    fails (or ``use_drive=False``) it falls back to ``./runs/<name>``. ``create=False`` only
    names the folder (check it with ``helpers.files.check_output_dir`` first).
    """
    if root is not None:
        path = Path(root) / name
    elif use_drive and in_colab() and not smoke_mode():
        path = _drive_root() / name
    else:
        path = Path("runs") / name
    if create:
        from helpers.files import check_output_dir

        check_output_dir(path, "the output folder")
        path.mkdir(parents=True, exist_ok=True)
    return path


def _drive_root() -> Path:
    mount = Path("/content/drive")
    try:
        if not (mount / "MyDrive").exists():
            from google.colab import drive  # only importable inside Colab

            drive.mount(str(mount))
        return mount / "MyDrive" / "cv-notebooks"
    except Exception as e:  # user declined the Drive prompt, or no Drive
        import sys

        print(f"Google Drive not mounted ({e}); writing to ./runs instead.", file=sys.stderr)
        return Path("runs")


# --------------------------------------------------------------------------- model cache

DRIVE = Path("/content/drive/MyDrive")  # where Colab mounts Google Drive
DRIVE_CACHE_FOLDER = "cv-notebooks/model-cache"


def cache_models_on_drive(
    folder: str = DRIVE_CACHE_FOLDER, *, drive: str | os.PathLike | None = None, mount: bool = False
) -> dict:
    """Keep downloaded model weights on Google Drive, so a new Colab session does not fetch
    them again: points the Hugging Face hub cache (``HF_HUB_CACHE``) at ``<Drive>/<folder>/hf``
    and torch hub (``TORCH_HOME``) at ``<Drive>/<folder>/torch``.

    Only inside Colab with Drive mounted (``mount=True`` mounts it; otherwise nothing is
    asked) and not in smoke mode; elsewhere the caches stay where they are. Call it before
    any model is loaded: libraries read these variables when they are imported (the ones
    already imported are pointed at the new folders too, as far as they allow). ``HF_HOME``
    is left alone, so a hub token never lands on Drive. Returns ``{"enabled", "reason" |
    "hf_hub_cache", "torch_home", "imported_before"}``.
    """
    import sys

    if smoke_mode():
        return {"enabled": False, "reason": "smoke mode: the local caches are used"}
    if not in_colab():
        return {"enabled": False, "reason": "not in Colab: the local caches are used"}
    drive = Path(drive) if drive is not None else DRIVE
    if not drive.is_dir() and mount and drive == DRIVE:
        _drive_root()  # mounts Drive (or prints why not)
    if not drive.is_dir():
        return {
            "enabled": False,
            "reason": "Google Drive is not mounted: the local caches are used",
        }
    root = drive / folder
    hf, torch_home = root / "hf", root / "torch"
    for d in (hf, torch_home / "hub"):
        d.mkdir(parents=True, exist_ok=True)
    os.environ["HF_HUB_CACHE"] = str(hf)
    os.environ["HUGGINGFACE_HUB_CACHE"] = str(hf)  # older huggingface_hub / transformers
    os.environ["TORCH_HOME"] = str(torch_home)
    early = [m for m in ("huggingface_hub", "transformers", "torch") if m in sys.modules]
    if "huggingface_hub" in sys.modules:
        constants = getattr(sys.modules["huggingface_hub"], "constants", None)
        for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
            if constants is not None and hasattr(constants, name):
                setattr(constants, name, str(hf))
    if "torch" in sys.modules:
        sys.modules["torch"].hub.set_dir(str(torch_home / "hub"))
    return {
        "enabled": True,
        "hf_hub_cache": str(hf),
        "torch_home": str(torch_home),
        "imported_before": early,
    }


HF_TOKEN_SECRET = "HF_TOKEN"  # the Colab secret (and environment variable) with a hub token


def hf_token_once(read: bool) -> dict:
    """Settle the Hugging Face hub token at the start of a notebook, so no download asks later.

    Inside Colab the hub libraries read the Colab secret ``HF_TOKEN`` at their first download:
    without notebook access granted Colab opens a dialog there (in the middle of a Run all),
    and without the secret they warn. ``read=True`` (a gated model such as SAM 3 is wanted)
    reads the secret now, once, into the environment variable ``HF_TOKEN``; ``read=False``
    never touches the secrets. Either way the hub is told the secrets were checked, so it never
    asks again. Outside Colab (or in smoke mode) nothing is done and ``google.colab`` is not
    imported. Returns ``{"token": bool, "message": str}``: whether a token is set, and one line
    saying what happened (or what to do)."""
    present = bool(os.environ.get(HF_TOKEN_SECRET, "").strip())
    if smoke_mode() or not in_colab():
        where = "from the environment" if present else "none (public models only)"
        return {"token": present, "message": f"hub token: {where}"}
    if not read or present:
        _hub_secrets_checked(None)
        if present:
            return {"token": True, "message": "hub token: from the environment variable HF_TOKEN"}
        return {"token": False, "message": "hub token: not read (public models only)"}
    from google.colab import userdata  # only importable inside Colab

    how = (
        "add a Colab secret HF_TOKEN (a read token from huggingface.co/settings/tokens) "
        "with notebook access on, then run this cell again"
    )
    token = None
    try:
        token = (userdata.get(HF_TOKEN_SECRET) or "").strip() or None
    except userdata.SecretNotFoundError:
        message = f"hub token: no Colab secret HF_TOKEN; {how}"
    except userdata.NotebookAccessError:
        message = f"hub token: notebook access to HF_TOKEN was not granted; {how}"
    except Exception as e:  # any other failure of the secrets store: go on without a token
        message = f"hub token: the Colab secrets could not be read ({e}); {how}"
    else:
        message = "hub token: read from the Colab secret HF_TOKEN"
        if not token:
            message = f"hub token: the Colab secret HF_TOKEN is empty; {how}"
    if token:
        os.environ[HF_TOKEN_SECRET] = token
    _hub_secrets_checked(token)
    return {"token": token is not None, "message": message}


def _hub_secrets_checked(token: str | None) -> None:
    """Tell ``huggingface_hub`` (when installed) that Colab's secrets were read already, with
    ``token`` as the result, so it never asks for access to them itself."""
    try:
        from huggingface_hub.utils import _auth
    except ImportError:
        return
    if hasattr(_auth, "_IS_GOOGLE_COLAB_CHECKED"):
        _auth._GOOGLE_COLAB_SECRET = token
        _auth._IS_GOOGLE_COLAB_CHECKED = True


def cache_dirs() -> dict[str, Path]:
    """The Hugging Face hub cache and torch hub folders in use (from the environment)."""
    home = Path(os.path.expanduser("~")) / ".cache"
    hf = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if not hf:
        hf_home = os.environ.get("HF_HOME") or str(
            Path(os.environ.get("XDG_CACHE_HOME") or home) / "huggingface"
        )
        hf = str(Path(hf_home) / "hub")
    torch_home = os.environ.get("TORCH_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or home) / "torch"
    )
    return {"hf": Path(hf), "torch": Path(torch_home) / "hub"}


def _tree_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed or counted, so a hub
    snapshot's links to its blobs are not counted twice)."""
    if path.is_file() and not path.is_symlink():
        return path.stat().st_size
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            f = os.path.join(dirpath, name)
            if not os.path.islink(f):
                try:
                    total += os.stat(f).st_size
                except OSError:
                    pass
    return total


def model_cache_sizes(hf_cache=None, torch_hub=None) -> list[dict]:
    """Disk space per cached model: ``[{"model", "kind", "bytes", "path"}]``, largest first.

    Hugging Face hub entries (``models--org--name`` -> ``org/name``; datasets and spaces too)
    and torch hub checkpoints / repositories. Folders default to :func:`cache_dirs`; missing
    folders count as empty."""
    dirs = cache_dirs()
    hf = Path(hf_cache) if hf_cache is not None else dirs["hf"]
    th = Path(torch_hub) if torch_hub is not None else dirs["torch"]
    rows = []
    if hf.is_dir():
        for entry in sorted(hf.iterdir()):
            kind, sep, name = entry.name.partition("--")
            if not sep or not entry.is_dir() or kind not in ("models", "datasets", "spaces"):
                continue
            rows.append(
                {"model": name.replace("--", "/"), "kind": f"hf {kind[:-1]}",
                 "bytes": _tree_bytes(entry), "path": str(entry)}
            )  # fmt: skip
    if th.is_dir():
        ckpts = th / "checkpoints"
        for entry in sorted(ckpts.iterdir()) if ckpts.is_dir() else []:
            rows.append({"model": entry.name, "kind": "torch checkpoint",
                         "bytes": _tree_bytes(entry), "path": str(entry)})  # fmt: skip
        for entry in sorted(th.iterdir()):
            if entry.is_dir() and entry.name != "checkpoints":
                rows.append({"model": entry.name, "kind": "torch hub repo",
                             "bytes": _tree_bytes(entry), "path": str(entry)})  # fmt: skip
    return sorted(rows, key=lambda r: (-r["bytes"], r["model"]))


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def cache_report(rows: list[dict] | None = None) -> str:
    """A text table of :func:`model_cache_sizes` with the total."""
    rows = model_cache_sizes() if rows is None else rows
    if not rows:
        return "model cache: empty (nothing downloaded yet)"
    width = max(len(r["model"]) for r in rows)
    lines = [f"  {r['model']:<{width}}  {format_bytes(r['bytes']):>10}  {r['kind']}" for r in rows]
    total = sum(r["bytes"] for r in rows)
    return "\n".join([f"model cache: {len(rows)} model(s), {format_bytes(total)}", *lines])


def oom_message(batch_size: int | None = None, what: str = "training") -> str:
    """A clear message for CUDA out-of-memory, with a batch size to try next."""
    hint = ""
    if batch_size:
        hint = f" Try batch_size={max(1, batch_size // 2)} (was {batch_size})"
        hint += ", or turn on mixed precision / a smaller model."
    else:
        hint = " Try a smaller model size, fewer frames in memory, or a smaller input."
    return f"CUDA ran out of memory during {what}.{hint}"


def gpu_summary() -> str:
    """One line naming the accelerator (or the CPU) for logs and reports."""
    import torch

    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB), torch {torch.__version__}"
    return f"CPU only, torch {torch.__version__}"
