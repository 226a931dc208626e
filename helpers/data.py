"""Datasets as uint8 tensors [N, 3, H, W] that live on the training device, and index batching.

The whole dataset is kept on the GPU (CIFAR-10 is 150 MB as uint8) and batches are cut from it
by index, so no DataLoader workers or per-image Python work sit in the training loop. Sources:
CIFAR-10 (torchvision download), any ImageFolder tree (``train/`` + ``val/`` and/or ``test/``),
a learnable synthetic set for smoke runs, and scikit-learn's bundled 8x8 digits.

Three roles, never mixed: ``train`` is learned from, ``val`` picks the best epoch, ``test`` is
scored once at the end. When a source has no validation split of its own (CIFAR-10, a tree with
only ``test/``), a stratified, seeded part of the training images is held out as ``val``, so
the test images never influence training or the choice of checkpoint.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers.errors import InputError

HOLDOUT_SEED = 0  # fixed: the held-out validation images never depend on the training seed
HOLDOUT_FRACTION = 0.1  # of train/, when an ImageFolder tree has no val/
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


@dataclass
class DataSplits:
    """Train, validation and (optional) test images (uint8 [N, 3, H, W]), int64 labels, classes.

    ``val`` selects the best epoch; ``test`` (None when the source has none) is only scored at
    the end of training or by ``evaluate --split test``.
    """

    train_x: object  # torch.Tensor uint8 [N, 3, H, W]
    train_y: object  # torch.Tensor int64 [N]
    val_x: object
    val_y: object
    classes: list[str]
    source: str = ""
    test_x: object | None = None
    test_y: object | None = None

    def to(self, device) -> DataSplits:
        """A copy with the train and val tensors on ``device``; ``test`` stays where it is
        (it is scored once, in batches, so it need not take device memory while training)."""
        return DataSplits(
            self.train_x.to(device, non_blocking=True),
            self.train_y.to(device, non_blocking=True),
            self.val_x.to(device, non_blocking=True),
            self.val_y.to(device, non_blocking=True),
            list(self.classes),
            self.source,
            self.test_x,
            self.test_y,
        )

    @property
    def has_test(self) -> bool:
        return self.test_y is not None and len(self.test_y) > 0

    def split(self, name: str) -> tuple:
        """``(x, y)`` of split ``'train'``, ``'val'`` or ``'test'``."""
        if name not in ("train", "val", "test"):
            raise InputError(f"split must be train, val or test, got {name!r}.")
        if name == "test" and not self.has_test:
            raise InputError(
                f"{self.source or 'this dataset'} has no test split; use --split val, or give a "
                "folder with a test/<class>/ tree."
            )
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def __repr__(self) -> str:
        return (
            f"DataSplits(source={self.source!r}, train={tuple(self.train_x.shape)}, "
            f"val={tuple(self.val_x.shape)}, "
            + (f"test={tuple(self.test_x.shape)}, " if self.has_test else "")
            + f"classes={self.num_classes}, "
            f"device={self.train_x.device})"
        )


# --------------------------------------------------------------------------- CIFAR-10


def holdout(y, fraction: float, seed: int = HOLDOUT_SEED):
    """Indices ``(keep, held)`` that hold out ``fraction`` of every class (stratified, seeded;
    the same labels and seed always give the same split). Both sorted, int64 tensors."""
    import numpy as np
    import torch
    from sklearn.model_selection import train_test_split

    y = np.asarray(y.cpu() if hasattr(y, "cpu") else y)
    idx = np.arange(len(y))
    counts = np.bincount(y)
    if len(y) < 2 or counts[counts > 0].min() < 2:
        raise InputError(
            "every class needs at least 2 training images to hold some out for validation; "
            "add a val/<class>/ folder instead."
        )
    n_held = max(int(round(fraction * len(y))), int((counts > 0).sum()))
    keep, held = train_test_split(idx, test_size=n_held, stratify=y, random_state=seed)
    return torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(held))


def load_cifar10(
    root: str | os.PathLike = "data", download: bool = True, val_fraction: float = 0.1
) -> DataSplits:
    """CIFAR-10 via torchvision: 45,000 training images, a stratified, seeded 5,000 held out of
    the training set for validation (``val_fraction``), and the 10,000 test images as the
    untouched test split."""
    import numpy as np
    import torch
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=download)
    except Exception as e:  # URLError, RuntimeError("Dataset not found"), checksum errors
        raise InputError(
            f"CIFAR-10 could not be downloaded or found in {str(root)!r} ({type(e).__name__}: {e}). "
            "Check the internet connection, or pass a local ImageFolder path instead (a folder "
            "with train/<class>/ and val/<class>/ and/or test/<class>/ images; "
            "scripts/make_imagefolder.py writes one)."
        ) from e

    def conv(ds):
        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
        return x, y

    x, y = conv(train)
    keep, held = holdout(y, val_fraction)
    test_x, test_y = conv(test)
    return DataSplits(
        x[keep], y[keep], x[held], y[held], list(train.classes), "cifar10", test_x, test_y
    )


# --------------------------------------------------------------------------- ImageFolder


def _default_cache_dir() -> Path | None:
    """``$HELPERS_CACHE/imagefolder``, else ``~/.cache/cvkit/imagefolder``; None when there
    is no home folder to put it in (then nothing is cached)."""
    env = os.environ.get("HELPERS_CACHE")
    if env:
        return Path(env) / "imagefolder"
    try:
        return Path.home() / ".cache" / "cvkit" / "imagefolder"
    except (RuntimeError, KeyError, OSError):  # no HOME and no passwd entry
        _note("note: no home folder, so decoded datasets are not cached; set HELPERS_CACHE.")
        return None


def _note(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)  # stdout is kept for results


def _list_split(split_dir: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Class names (sorted) and the image files of each class folder (``os.scandir``: fast)."""
    with os.scandir(split_dir) as it:
        entries = list(it)
    classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not classes:
        loose = [e.name for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]
        hint = f" (found {len(loose)} loose images; put them in class subfolders)" if loose else ""
        raise InputError(
            f"{split_dir} has no class folders{hint}. Expected {split_dir}/<class name>/<image>."
        )
    files: dict[str, list[str]] = {}
    for c in classes:
        with os.scandir(split_dir / c) as it:
            names = sorted(
                e.name
                for e in it
                if not e.name.startswith(".")
                and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
                and e.is_file()
            )
        if not names:
            raise InputError(
                f"class folder {split_dir / c} has no images (looked for "
                f"{', '.join(IMAGE_EXTENSIONS)}). Add images or remove the folder."
            )
        folder = os.path.join(split_dir, c)
        files[c] = [os.path.join(folder, n) for n in names]  # str: 50k Path objects are slow
    return classes, files


def _cache_key(root: Path, items: list[tuple[str, int]], image_size: int | None) -> str:
    """Hash of the folder, ``image_size`` and every file's relative name, mtime and size."""
    paths = [p for p, _ in items]
    stats = [os.stat(p) for p in paths]
    n = len(str(root)) + 1
    h = hashlib.sha256(f"{root.resolve()}|{image_size}|v2".encode())  # v2: EXIF, 16-bit
    h.update(
        "|".join(f"{p[n:]}:{st.st_mtime_ns}:{st.st_size}" for p, st in zip(paths, stats)).encode()
    )
    return h.hexdigest()[:24]


def rgb_image(im):
    """A decoded PIL image as training, ``evaluate`` and ``predict`` all see it: EXIF
    orientation applied, 16-bit and float pixels scaled to 8 bits (not clipped at 255), then
    RGB. The one conversion both the dataset loader and ``predict`` use."""
    import numpy as np
    from PIL import Image, ImageOps

    try:
        im = ImageOps.exif_transpose(im) or im
    except Exception:  # a broken EXIF block: keep the pixels as stored
        pass
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        a = np.asarray(im).astype(np.float64)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if im.mode == "F" and lo >= 0 and hi <= 1:
            a = a * 255  # 0..1 floats
        elif im.mode != "F" and lo >= 0 and hi <= 65535:
            a = a / 257  # 16-bit: 65535 -> 255
        elif lo < 0 or hi > 255:
            a = (a - lo) / max(hi - lo, 1e-12) * 255  # any other range: stretched
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    return im if im.mode == "RGB" else im.convert("RGB")


def _decode_one(path: str, image_size: int | None):
    """Decode one file to an RGB uint8 HWC array (resized + center-cropped to a square if asked).

    torchvision's decoder (about 4x faster than PIL for small JPEG/PNG files, EXIF orientation
    applied) is tried first for 8-bit images; PIL handles everything else (BMP, TIFF, 16-bit
    PNG, ...) through :func:`rgb_image`, and the resize.
    """
    import numpy as np
    from PIL import Image

    if image_size is None:
        try:
            import torch
            from torchvision.io import ImageReadMode, decode_image

            with open(path, "rb") as f:
                raw = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
            t = decode_image(raw, mode=ImageReadMode.RGB, apply_exif_orientation=True)
            if t.dtype == torch.uint8 and t.ndim == 3 and t.shape[0] == 3:
                return t.permute(1, 2, 0).numpy()
        except Exception:
            pass  # let PIL try (and name the file if it cannot read it either)
    with Image.open(path) as im:
        im = rgb_image(im)
        if image_size is not None and im.size != (image_size, image_size):
            w, h = im.size
            scale = image_size / min(w, h)
            nw, nh = max(image_size, round(w * scale)), max(image_size, round(h * scale))
            im = im.resize((nw, nh), Image.Resampling.BICUBIC)
            left, top = (nw - image_size) // 2, (nh - image_size) // 2
            im = im.crop((left, top, left + image_size, top + image_size))
        return np.asarray(im, dtype=np.uint8)


def _decode_all(items: list[tuple[str, int]], image_size: int | None, desc: str):
    """Decode files with a thread pool (the decoders release the GIL while they work)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from tqdm.auto import tqdm

    paths = [p for p, _ in items]

    def work(p):
        try:
            return _decode_one(p, image_size)
        except Exception as e:  # truncated/corrupt/not an image
            return e

    workers = min(32, (os.cpu_count() or 2) * 2)
    arrays = []
    with ThreadPoolExecutor(workers) as pool:
        for p, a in tqdm(
            zip(paths, pool.map(work, paths, chunksize=256)),
            total=len(paths),
            desc=desc,
            unit="img",
            mininterval=0.5,
        ):
            if isinstance(a, Exception):
                raise InputError(
                    f"could not read image {p} ({type(a).__name__}: {a}). "
                    "Delete or replace the file and load again."
                )
            arrays.append(a)
    shape = arrays[0].shape
    for p, a in zip(paths, arrays):
        if a.shape != shape:
            raise InputError(
                f"images differ in size: {paths[0]} is {shape[1]}x{shape[0]} but {p} is "
                f"{a.shape[1]}x{a.shape[0]}. Pass image_size=N (--image-size N on the command "
                "line) to resize every image to NxN."
            )
    x = np.stack(arrays).transpose(0, 3, 1, 2)
    y = np.asarray([c for _, c in items], dtype=np.int64)
    return np.ascontiguousarray(x), y


def _load_split_cached(
    root: Path, split: str, items: list[tuple[str, int]], image_size, cache_dir
) -> tuple:
    """Decode one split's files, through an ``.npz`` cache keyed by every file's stat."""
    import numpy as np

    cache_file = None
    if cache_dir is not None:
        key = _cache_key(root, items, image_size)
        cache_file = Path(cache_dir) / f"{root.name}-{split}-{key}.npz"
        if cache_file.exists():
            try:
                with np.load(cache_file, allow_pickle=False) as d:
                    return d["x"], d["y"]
            except Exception:
                pass  # unreadable cache: decode again and overwrite it
    x, y = _decode_all(items, image_size, f"decoding {root.name}/{split}")
    if cache_file is not None:
        from helpers.files import atomic_path

        try:
            with atomic_path(cache_file) as tmp, open(tmp, "wb") as f:
                np.savez(f, x=x, y=y)
        except OSError as e:  # read-only home, full disk: loading still worked
            _note(
                f"note: could not write the dataset cache {cache_file} ({e}); set "
                "HELPERS_CACHE to a writable folder to skip decoding next time."
            )
    return x, y


def load_image_folder(
    path: str | os.PathLike,
    image_size: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    splits: tuple[str, ...] = ("train", "val", "test"),
) -> DataSplits:
    """Load ``path/train/<class>/*`` with ``path/val/<class>/*`` and/or ``path/test/<class>/*``.

    ``val/`` picks the best epoch and ``test/`` is only scored at the end. A tree without
    ``val/`` holds out a stratified, seeded 10 % of ``train/`` as validation. ``splits`` limits
    which splits are decoded (``evaluate`` reads only the one it scores); the others are empty.
    Class indices follow sorted folder names. All images must share one size unless
    ``image_size`` is given (then each is resized so its short side is ``image_size`` and
    center-cropped to a square). Decoded arrays are cached per split as ``.npz`` in ``cache_dir``
    (default ``$HELPERS_CACHE/imagefolder`` or ``~/.cache/cvkit/imagefolder``), keyed by the
    folder and every file's name, mtime and size, so a second load skips decoding.
    """
    import numpy as np
    import torch

    root = Path(path).expanduser()
    if not root.exists():
        raise InputError(
            f"dataset folder {root} does not exist. Give a folder with train/<class>/ images "
            "and val/<class>/ and/or test/<class>/, or use 'cifar10', 'synthetic' or 'digits'."
        )
    if not root.is_dir():
        raise InputError(f"{root} is a file, not a folder; give the dataset's top folder.")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise InputError(f"image_size must be a positive integer or None, got {image_size!r}.")
    present = [n for n in ("train", "val", "test") if (root / n).is_dir()]
    if "train" not in present or len(present) < 2:
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise InputError(
            f"{root} needs a train/ folder and a val/ and/or test/ folder, each with one "
            f"subfolder per class; found folders: {found or 'none'}."
        )
    listed = {n: _list_split(root / n) for n in present}
    classes = listed["train"][0]
    for n in present[1:]:
        other = listed[n][0]
        if other != classes:
            only_t = sorted(set(classes) - set(other))
            only_o = sorted(set(other) - set(classes))
            raise InputError(
                f"train and {n} have different classes: only in train: {only_t or 'none'}; "
                f"only in {n}: {only_o or 'none'}. Every split needs the same class folders."
            )
    items = {
        n: [(p, i) for i, c in enumerate(classes) for p in files[c]]
        for n, (_, files) in listed.items()
    }
    held_out = "val" not in present  # validation comes out of train/
    wanted = set(splits) | ({"train"} if held_out and "val" in splits else set())
    cache_dir = (cache_dir or _default_cache_dir()) if cache else None
    cache_dir = Path(cache_dir) if cache_dir is not None else None
    arrays = {
        n: _load_split_cached(root, n, items[n], image_size, cache_dir)
        for n in present
        if n in wanted
    }
    shapes = {n: a[0].shape[1:] for n, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        desc = ", ".join(f"{n} {s[2]}x{s[1]}" for n, s in shapes.items())
        raise InputError(
            f"the splits' images differ in size ({desc}). Pass image_size=N (--image-size N on the "
            "command line) to resize all to NxN."
        )
    shape = next(iter(shapes.values()), (3, image_size or 1, image_size or 1))
    empty = (np.zeros((0, *shape), np.uint8), np.zeros(0, np.int64))
    t = {n: tuple(torch.from_numpy(a) for a in arrays.get(n, empty)) for n in present}
    if held_out:
        if "train" in arrays:
            keep, held = holdout(t["train"][1], HOLDOUT_FRACTION)
            x, y = t["train"]
            t["train"], t["val"] = (x[keep], y[keep]), (x[held], y[held])
        else:
            t["val"] = tuple(torch.from_numpy(a) for a in empty)
    test = t.get("test", (None, None))
    return DataSplits(*t["train"], *t["val"], classes, str(root), *test)


# --------------------------------------------------------------------------- synthetic / digits


def synthetic_dataset(
    n_train: int = 512,
    n_val: int = 128,
    num_classes: int = 10,
    image_size: int = 32,
    seed: int = 0,
    n_test: int = 0,
) -> DataSplits:
    """A learnable toy set: each class has its own colour and stripe orientation/frequency;
    every image gets a random phase, brightness and noise. Deterministic from ``seed``.
    ``n_test`` > 0 adds a test split."""
    import math

    import torch

    if n_train < 1 or n_val < 1 or n_test < 0 or num_classes < 2 or image_size < 4:
        raise InputError(
            "synthetic_dataset needs n_train >= 1, n_val >= 1, n_test >= 0, num_classes >= 2, "
            "image_size >= 4."
        )
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(num_classes, 3, generator=g) * 0.7 + 0.3  # [C, 3]
    angles = torch.arange(num_classes) * (math.pi / num_classes)
    freqs = 2 * math.pi * (2.0 + (torch.arange(num_classes) % 3)) / image_size
    coords = torch.arange(image_size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")

    def make(n):
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        phase = torch.rand(n, generator=g) * 2 * math.pi
        gain = 0.7 + 0.3 * torch.rand(n, generator=g)
        a, f = angles[y][:, None, None], freqs[y][:, None, None]
        wave = torch.sin(f * (xx * torch.cos(a) + yy * torch.sin(a)) + phase[:, None, None])
        img = colours[y][:, :, None, None] * (0.5 + 0.4 * wave[:, None]) * gain[:, None, None, None]
        img = img + 0.08 * torch.randn(n, 3, image_size, image_size, generator=g)
        x = (img.clamp(0, 1) * 255).round().to(torch.uint8)
        return x, y.to(torch.int64)

    tx, ty = make(n_train)
    vx, vy = make(n_val)
    test = make(n_test) if n_test else (None, None)
    return DataSplits(tx, ty, vx, vy, [f"class{i}" for i in range(num_classes)], "synthetic", *test)


def load_digits(image_size: int = 16, seed: int = 0) -> DataSplits:
    """scikit-learn's bundled 8x8 digits (1,797 images, offline), upscaled to RGB uint8
    ``image_size`` squares, split 80/20 stratified by class."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    if image_size < 8:
        raise InputError(f"image_size must be >= 8 for the 8x8 digits, got {image_size}.")
    d = sk_digits()
    x = torch.from_numpy(d.images.astype(np.float32) * (255.0 / 16.0))[:, None]  # [N,1,8,8]
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.clamp(0, 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(d.target.astype(np.int64))
    idx = np.arange(len(y))
    tr, va = train_test_split(idx, test_size=0.2, stratify=d.target, random_state=seed)
    tr, va = torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(va))
    return DataSplits(x[tr], y[tr], x[va], y[va], [str(i) for i in range(10)], "digits")


def load_dataset(spec: str | os.PathLike, **kw) -> DataSplits:
    """``'cifar10'`` | ``'synthetic'`` | ``'digits'`` | a folder path (ImageFolder layout).
    Keyword arguments go to the matching loader."""
    from helpers.files import probing

    name = str(spec).strip()
    loaders = {"cifar10": load_cifar10, "synthetic": synthetic_dataset, "digits": load_digits}
    fn = loaders.get(name.lower())
    with probing("dataset", name):
        found = fn is not None or Path(name).expanduser().exists()
    if not found:
        raise InputError(
            f"unknown dataset {name!r}: use 'cifar10', 'synthetic', 'digits' or the path of an "
            "existing folder with train/<class>/ and val/<class>/ and/or test/<class>/ images."
        )
    try:
        return fn(**kw) if fn is not None else load_image_folder(name, **kw)
    except TypeError as e:
        raise InputError(f"bad option for dataset {name!r}: {e}") from e


# --------------------------------------------------------------------------- batching


def iterate_batches(
    n: int,
    batch_size: int,
    shuffle: bool = True,
    generator=None,
    device=None,
    drop_last: bool = True,
) -> Iterator:
    """Yield int64 index tensors on ``device`` covering ``range(n)`` in batches.

    Shuffling uses ``torch.randperm`` with ``generator`` (drawn on the generator's own device,
    then moved), so a run is reproducible from the generator state. With ``drop_last`` the last
    incomplete batch is skipped; a ``batch_size`` larger than ``n`` then raises ``InputError``
    (without ``drop_last`` it simply yields one smaller batch).
    """
    import torch

    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}.")
    if n < 1:
        raise InputError("the dataset is empty (0 images); nothing to iterate over.")
    if drop_last and batch_size > n:
        works = 1 << (n.bit_length() - 1)  # largest power of two <= n
        raise InputError(
            f"batch_size {batch_size} is larger than the dataset ({n} images), so no full "
            f"batch can be made; use batch_size <= {n} (e.g. {works})."
        )
    device = torch.device(device) if device is not None else None
    if shuffle:
        gdev = generator.device if generator is not None else (device or torch.device("cpu"))
        order = torch.randperm(n, generator=generator, device=gdev)
        if device is not None and order.device != device:
            order = order.to(device, non_blocking=True)
    else:
        order = torch.arange(n, device=device)
    stop = (n // batch_size) * batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


__all__ = [
    "CIFAR10_CLASSES",
    "DataSplits",
    "holdout",
    "iterate_batches",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "rgb_image",
    "synthetic_dataset",
]
