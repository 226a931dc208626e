"""scripts/make_imagefolder.py: CIFAR-10 (torchvision, faked here) or a class folder -> a tree
that load_image_folder reads back with the same three splits."""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import make_imagefolder as M  # noqa: E402

from helpers.classify import data as D  # noqa: E402


def test_cifar10_tree_has_the_same_splits_as_data_cifar10(tmp_path, monkeypatch):
    import torchvision.datasets

    class Fake:
        def __init__(self, root, train=True, download=True):
            n = 100 if train else 20
            rng = np.random.default_rng(1 if train else 2)
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = [i % 10 for i in range(n)]
            self.classes = D.CIFAR10_CLASSES

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Fake)
    assert M.main([str(tmp_path / "tree")]) == 0
    tree = D.load_image_folder(tmp_path / "tree", cache=False)
    ref = D.load_cifar10("x")
    for split in ("train", "val", "test"):  # the same images and labels (PNG is lossless)
        (a, ya), (b, yb) = tree.split(split), ref.split(split)

        def rows(x, y):
            return sorted(zip(y.tolist(), (bytes(r) for r in x.reshape(len(x), -1).numpy())))

        assert rows(a, ya) == rows(b, yb), split
    assert tree.classes == sorted(D.CIFAR10_CLASSES)
    assert M.main([str(tmp_path / "tree")]) == 2  # never writes into a non-empty folder


def test_any_class_folder_is_split_80_10_10(tmp_path, capsys):
    src = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (src / c).mkdir(parents=True)
        for k in range(20):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
                src / c / f"{k}.png"
            )
    assert M.main([str(tmp_path / "out"), "--from-folder", str(src)]) == 0
    d = D.load_image_folder(tmp_path / "out", cache=False)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (32, 4, 4)
    assert torch.bincount(d.test_y).tolist() == [2, 2]
    assert M.main([str(tmp_path / "o2"), "--from-folder", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
