"""Write an ImageFolder tree (train/ val/ test/, one folder per class) that --data and the
benchmarks take, from torchvision's CIFAR-10 download or from any folder of class subfolders.

    python scripts/make_imagefolder.py data/cifar10_png                       # CIFAR-10 as PNG
    python scripts/make_imagefolder.py data/cifar10_jpeg --format jpg --quality 75
    python scripts/make_imagefolder.py data/flowers --from-folder photos/     # photos/<class>/*

CIFAR-10: 45,000 train, 5,000 val held out of the training set (stratified, always the same
images: those `--data cifar10` holds out) and the 10,000 test images. A folder of class
subfolders is split 80 / 10 / 10 per class (seeded). Images are written as they are (PNG is
lossless; JPEG at --quality). An existing, non-empty output folder is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.errors import InputError  # noqa: E402


def _write_split(out: Path, split: str, x, y, classes, fmt: str, quality: int) -> int:
    from PIL import Image
    from tqdm.auto import tqdm

    arr = x.permute(0, 2, 3, 1).numpy()
    for c in classes:
        (out / split / c).mkdir(parents=True, exist_ok=True)
    kw = {"quality": quality} if fmt == "jpg" else {}
    for i in tqdm(range(len(y)), desc=f"writing {split}", unit="img", mininterval=1):
        Image.fromarray(arr[i]).save(out / split / classes[int(y[i])] / f"{i:05d}.{fmt}", **kw)
    return len(y)


def _from_folder(src: Path):
    """Every image of ``src/<class>/`` as uint8 tensors, split 80/10/10 per class."""
    import torch

    from helpers.classify.data import HOLDOUT_SEED, IMAGE_EXTENSIONS, _decode_all, holdout

    classes = sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = [
        (str(f), k)
        for k, c in enumerate(classes)
        for f in sorted((src / c).iterdir())
        if f.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if len(classes) < 2 or not items:
        raise InputError(f"{src} needs at least two class subfolders with images in them.")
    x, y = (torch.from_numpy(a) for a in _decode_all(items, None, f"reading {src.name}"))
    keep, test = holdout(y, 0.1, HOLDOUT_SEED + 1)
    train, val = holdout(y[keep], 0.1 / 0.9)
    train, val = keep[train], keep[val]
    return classes, {
        "train": (x[train], y[train]),
        "val": (x[val], y[val]),
        "test": (x[test], y[test]),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("out", help="the folder to create")
    ap.add_argument("--from-folder", help="a folder of class subfolders instead of CIFAR-10")
    ap.add_argument("--root", default="data", help="where torchvision keeps CIFAR-10 (downloads)")
    ap.add_argument("--format", choices=["png", "jpg"], default="png")
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality (1-100)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out} exists and is not an empty folder; give a new folder.")
        if not 1 <= args.quality <= 100:
            raise InputError(f"--quality must be in 1..100, got {args.quality}.")
        if args.from_folder:
            src = Path(args.from_folder)
            if not src.is_dir():
                raise InputError(f"--from-folder {src} is not a folder.")
            classes, splits = _from_folder(src)
        else:
            from helpers.classify.data import load_cifar10

            data = load_cifar10(args.root, download=True)
            classes = data.classes
            splits = {s: data.split(s) for s in ("train", "val", "test")}
        counts = {
            s: _write_split(out, s, x, y, classes, args.format, args.quality)
            for s, (x, y) in splits.items()
        }
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {counts} images of {len(classes)} classes under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
