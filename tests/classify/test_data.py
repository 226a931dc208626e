"""helpers/classify/data.py: loaders, the ImageFolder cache, bad-input messages, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.classify import data as D
from helpers.errors import InputError


def _write_tree(root, split_classes, size=(8, 8), fmt="png", n=3, seed=0):
    """root/<split>/<class>/<i>.<fmt> with random RGB images; returns {path: array}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, classes in split_classes.items():
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                p = folder / f"{i}.{fmt}"
                Image.fromarray(arr).save(p)
                written[p] = arr
    return written


# ----------------------------------------------------------------------------- synthetic / digits


def test_synthetic_is_deterministic_and_balanced():
    a = D.synthetic_dataset(200, 50, num_classes=5, image_size=16, seed=3)
    b = D.synthetic_dataset(200, 50, num_classes=5, image_size=16, seed=3)
    c = D.synthetic_dataset(200, 50, num_classes=5, image_size=16, seed=4)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert a.train_x.shape == (200, 3, 16, 16) and a.train_x.dtype == torch.uint8
    assert a.train_y.dtype == torch.int64 and a.val_x.shape == (50, 3, 16, 16)
    assert torch.bincount(a.train_y).tolist() == [40] * 5
    assert a.num_classes == 5 and a.image_size == 16 and a.source == "synthetic"


def test_synthetic_is_learnable():
    d = D.synthetic_dataset(400, 200, num_classes=10, image_size=16, seed=0)

    def feats(x):  # phase-invariant: colour means + spectrum magnitude
        x = x.float() / 255
        spec = torch.fft.fft2(x.mean(1)).abs().flatten(1)
        return torch.cat([x.mean((2, 3)) * 10, spec / 10], 1)

    ft, fv = feats(d.train_x), feats(d.val_x)
    centroids = torch.stack([ft[d.train_y == c].mean(0) for c in range(10)])
    acc = (torch.cdist(fv, centroids).argmin(1) == d.val_y).float().mean().item()
    assert acc > 0.8, acc  # a nearest-centroid classifier separates the classes
    assert (d.train_x.float().std((1, 2, 3)) > 5).all()  # not blank images


def test_digits_upscaled_rgb_stratified():
    d = D.load_digits(image_size=16, seed=0)
    assert d.train_x.shape[1:] == (3, 16, 16) and d.train_x.dtype == torch.uint8
    assert len(d.train_y) + len(d.val_y) == 1797
    assert abs(len(d.val_y) / 1797 - 0.2) < 0.01
    assert torch.equal(d.train_x[:, 0], d.train_x[:, 2])  # grey replicated to RGB
    assert d.train_x.max() > 200 and d.train_x.min() == 0
    frac = torch.bincount(d.val_y, minlength=10).float() / torch.bincount(d.train_y).float()
    assert (frac - 0.25).abs().max() < 0.03  # stratified: every class split ~80/20
    assert d.classes == [str(i) for i in range(10)]


# ----------------------------------------------------------------------------- CIFAR-10 wrapper


def _fake_cifar(n_train=200, n_test=40):
    class Fake:
        def __init__(self, root, train=True, download=True):
            n = n_train if train else n_test
            self.data = np.arange(n * 32 * 32 * 3, dtype=np.uint32).reshape(n, 32, 32, 3)
            self.data = ((self.data + (0 if train else 7)) % 251).astype(np.uint8)
            self.targets = [i % 10 for i in range(n)]
            self.classes = D.CIFAR10_CLASSES

    return Fake


def test_cifar10_holds_out_val_from_train_and_keeps_test_apart(monkeypatch):
    import torchvision.datasets

    Fake = _fake_cifar()
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Fake)
    d = D.load_cifar10("nowhere", val_fraction=0.25)
    ref = Fake(None)
    assert d.train_x.shape == (150, 3, 32, 32) and d.val_x.shape == (50, 3, 32, 32)
    assert d.test_x.shape == (40, 3, 32, 32) and d.has_test
    # the test split is torchvision's test set, untouched, HWC -> CHW
    assert torch.equal(d.test_x[3, 1], torch.from_numpy(Fake(None, train=False).data[3, :, :, 1]))
    # val is a stratified part of the training set (5 per class), disjoint from train
    assert torch.bincount(d.val_y, minlength=10).tolist() == [5] * 10
    all_x = torch.from_numpy(ref.data).permute(0, 3, 1, 2).reshape(200, -1)
    rows = {tuple(r.tolist()): i for i, r in enumerate(all_x)}
    train_ids = {rows[tuple(r.tolist())] for r in d.train_x.reshape(150, -1)}
    val_ids = {rows[tuple(r.tolist())] for r in d.val_x.reshape(50, -1)}
    assert len(train_ids) == 150 and len(val_ids) == 50 and not train_ids & val_ids
    # the held-out images are fixed: independent of anything but the labels
    again = D.load_cifar10("nowhere", val_fraction=0.25)
    assert torch.equal(again.val_x, d.val_x) and d.classes[0] == "airplane"
    assert D.load_cifar10("nowhere").val_x.shape[0] == 20  # 5,000 of 50,000 -> 10 %


def test_cifar10_offline_gives_input_error(monkeypatch, tmp_path):
    import urllib.error

    import torchvision.datasets

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(InputError, match="could not be downloaded.*ImageFolder"):
        D.load_cifar10(tmp_path)


def test_cifar10_missing_without_download(tmp_path):
    with pytest.raises(InputError, match="CIFAR-10"):
        D.load_cifar10(tmp_path, download=False)


# ----------------------------------------------------------------------------- ImageFolder


def test_image_folder_loads_png_and_jpeg_sorted_classes(tmp_path):
    root = tmp_path / "ds"
    written = _write_tree(root, {"train": ["zebra", "ant"]}, fmt="png", n=3)
    _write_tree(root, {"val": ["zebra", "ant"]}, fmt="jpg", n=2, seed=1)
    d = D.load_image_folder(root, cache=False)
    assert d.classes == ["ant", "zebra"]  # sorted folder names -> indices
    assert d.train_x.shape == (6, 3, 8, 8) and d.val_x.shape == (4, 3, 8, 8)
    assert d.train_y.tolist() == [0, 0, 0, 1, 1, 1] and d.val_y.tolist() == [0, 0, 1, 1]
    # PNG is lossless: pixels match exactly, channel-first
    assert torch.equal(
        d.train_x[3], torch.from_numpy(written[root / "train/zebra/0.png"]).permute(2, 0, 1)
    )
    assert d.source == str(root)


def test_image_folder_test_only_holds_out_val_and_resizes(tmp_path):
    root = tmp_path / "ds"
    _write_tree(root, {"train": ["a", "b"]}, size=(12, 10), n=10)
    _write_tree(root, {"test": ["a", "b"]}, size=(20, 16), n=1)
    with pytest.raises(InputError, match="differ in size|Pass image_size"):
        D.load_image_folder(root, cache=False)
    d = D.load_image_folder(root, image_size=8, cache=False)
    # no val/: 10 % of train/ (stratified) selects; test/ stays the test split
    assert d.train_x.shape == (18, 3, 8, 8) and d.val_x.shape == (2, 3, 8, 8)
    assert sorted(d.val_y.tolist()) == [0, 1] and d.test_x.shape == (2, 3, 8, 8)


def test_image_folder_with_val_and_test_keeps_three_splits(tmp_path):
    root = tmp_path / "ds"
    _write_tree(root, {"train": ["a", "b"], "val": ["a", "b"]}, n=2)
    written = _write_tree(root, {"test": ["a", "b"]}, n=3, seed=5)
    d = D.load_image_folder(root, cache=False)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (4, 4, 6)
    assert torch.equal(
        d.test_x[3], torch.from_numpy(written[root / "test/b/0.png"]).permute(2, 0, 1)
    )
    assert "test=(6, 3, 8, 8)" in repr(d)
    # moving to a device leaves test where it is: it is scored once, in batches
    assert d.to("cpu").test_x is d.test_x
    # evaluate reads only the split it scores
    only = D.load_image_folder(root, cache=False, splits=("test",))
    assert len(only.test_y) == 6 and len(only.train_y) == 0 and len(only.val_y) == 0
    assert torch.equal(only.split("test")[0], d.test_x)
    with pytest.raises(InputError, match="split must be train, val or test"):
        d.split("nope")
    plain = tmp_path / "plain"
    _write_tree(plain, {"train": ["a", "b"], "val": ["a", "b"]}, n=2)
    with pytest.raises(InputError, match="has no test split.*--split val"):
        D.load_image_folder(plain, cache=False).split("test")


def test_image_folder_odd_size_names_the_file(tmp_path):
    root = tmp_path / "ds"
    _write_tree(root, {"train": ["a", "b"], "val": ["a", "b"]}, n=2)
    Image.new("RGB", (9, 8)).save(root / "train/b/odd.png")
    with pytest.raises(InputError, match=r"odd\.png.*image_size"):
        D.load_image_folder(root, cache=False)


def test_image_folder_grayscale_and_rgba_become_rgb(tmp_path):
    root = tmp_path / "ds"
    _write_tree(root, {"train": ["a"], "val": ["a"]}, n=1)
    Image.new("L", (8, 8), 77).save(root / "train/a/gray.png")
    Image.new("RGBA", (8, 8), (1, 2, 3, 4)).save(root / "val/a/rgba.png")
    d = D.load_image_folder(root, cache=False)
    assert d.train_x.shape == (2, 3, 8, 8)
    assert (d.train_x[1] == 77).all()  # files sorted: 0.png, gray.png
    assert d.val_x[1, :, 0, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda r: None, "does not exist"),
        (lambda r: r.write_text("x"), "is a file"),
        (lambda r: r.mkdir(), "needs a train/ folder"),
        (lambda r: (r / "train").mkdir(parents=True) or (r / "val").mkdir(), "no class folders"),
        (
            lambda r: (r / "train/a").mkdir(parents=True) or (r / "val/a").mkdir(parents=True),
            "has no images",
        ),
    ],
    ids=["missing", "file", "empty", "no-classes", "empty-class"],
)
def test_image_folder_bad_layouts(tmp_path, make, match):
    root = tmp_path / "ds"
    make(root)
    with pytest.raises(InputError, match=match):
        D.load_image_folder(root, cache=False)


def test_image_folder_class_mismatch_names_differences(tmp_path):
    root = tmp_path / "ds"
    _write_tree(root, {"train": ["cat", "dog", "emu"], "val": ["cat", "dog", "fox"]}, n=1)
    with pytest.raises(InputError) as e:
        D.load_image_folder(root, cache=False)
    msg = str(e.value)
    assert "only in train: ['emu']" in msg and "only in val: ['fox']" in msg


def test_image_folder_corrupt_image_names_the_file(tmp_path):
    root = tmp_path / "ds"
    _write_tree(root, {"train": ["a", "b"], "val": ["a", "b"]}, n=2)
    (root / "train/b/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError, match=r"could not read image .*broken\.jpg"):
        D.load_image_folder(root, cache=False)


def test_image_folder_cache_hit_and_invalidation(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    _write_tree(root, {"train": ["a", "b"], "val": ["a", "b"]}, n=2)
    cache_dir = tmp_path / "cache"
    first = D.load_image_folder(root, cache_dir=cache_dir)
    assert len(list(cache_dir.glob("*.npz"))) == 2  # one per split
    assert not list(cache_dir.glob(".*"))  # no temporary leftovers (atomic write)

    def boom(*a, **k):
        raise AssertionError("decoder called although the cache should have been used")

    monkeypatch.setattr(D, "_decode_one", boom)
    second = D.load_image_folder(root, cache_dir=cache_dir)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.val_y, second.val_y)
    assert second.classes == first.classes

    # a changed file (new size/mtime) misses the cache and decodes again
    Image.new("RGB", (8, 8), (9, 9, 9)).save(root / "train/a/0.png", compress_level=0)
    with pytest.raises(InputError, match="could not read image"):
        D.load_image_folder(root, cache_dir=cache_dir)


# ----------------------------------------------------------------------------- load_dataset


def test_load_dataset_dispatch(tmp_path):
    d = D.load_dataset("synthetic", n_train=20, n_val=10, image_size=8)
    assert d.train_x.shape == (20, 3, 8, 8)
    root = tmp_path / "folder"
    _write_tree(root, {"train": ["a", "b"], "val": ["a", "b"]}, n=1)
    assert D.load_dataset(str(root), cache=False).classes == ["a", "b"]
    with pytest.raises(InputError, match="unknown dataset"):
        D.load_dataset("imagenet-please")
    with pytest.raises(InputError, match="bad option"):
        D.load_dataset("synthetic", colour="red")


def test_datasplits_to_and_properties():
    d = D.synthetic_dataset(10, 5, num_classes=2, image_size=8).to("cpu")
    assert d.num_classes == 2 and d.image_size == 8 and d.train_x.device.type == "cpu"
    assert "synthetic" in repr(d)


# ----------------------------------------------------------------------------- batching


def test_iterate_batches_shuffle_reproducible_and_complete():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = list(D.iterate_batches(10, 3, True, g1, "cpu", drop_last=True))
    b = list(D.iterate_batches(10, 3, True, g2, "cpu", drop_last=True))
    assert len(a) == 3 and all(len(x) == 3 for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    full = torch.cat(list(D.iterate_batches(10, 3, True, g1, "cpu", drop_last=False)))
    assert sorted(full.tolist()) == list(range(10)) and full.dtype == torch.int64
    plain = torch.cat(list(D.iterate_batches(7, 4, False, None, "cpu", drop_last=False)))
    assert plain.tolist() == list(range(7))
    c = torch.cat(
        list(D.iterate_batches(10, 3, True, torch.Generator().manual_seed(6), None, True))
    )
    assert not torch.equal(c, torch.cat(a))


def test_iterate_batches_batch_larger_than_dataset():
    with pytest.raises(InputError, match=r"larger than the dataset \(100 images\).*e\.g\. 64"):
        list(D.iterate_batches(100, 128, True, None, "cpu", drop_last=True))
    # without drop_last one smaller batch is fine (evaluation of small val sets)
    (only,) = D.iterate_batches(100, 128, False, None, "cpu", drop_last=False)
    assert len(only) == 100
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        list(D.iterate_batches(10, 0, True, None, "cpu", True))


@pytest.mark.gpu
def test_iterate_batches_cuda_generator():
    g = torch.Generator(device="cuda").manual_seed(0)
    (idx,) = D.iterate_batches(8, 8, True, g, "cuda", drop_last=True)
    assert idx.device.type == "cuda" and sorted(idx.tolist()) == list(range(8))
    # a CPU generator with a CUDA device works too
    (idx,) = D.iterate_batches(8, 8, True, torch.Generator().manual_seed(0), "cuda", True)
    assert idx.device.type == "cuda"
