"""helpers.plots: every figure builds, has the expected content and saves to a non-empty PNG."""

import numpy as np
import pytest
import torch

from helpers.errors import InputError
from helpers.plots import (
    plot_attention,
    plot_confusion,
    plot_history,
    plot_patch_comparison,
    plot_per_class,
    plot_samples,
    save_figure,
    spread_indices,
)


def _saved_png(fig, path):
    import matplotlib.pyplot as plt

    out = save_figure(fig, path)
    plt.close(fig)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 2000
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp left
    return out


def _history(n=5):
    return [
        {
            "epoch": e,
            "step": 10 * e,
            "lr": 1e-3 * (1 - e / (n + 1)),
            "train_loss": 2.0 / e,
            "train_acc": 0.2 + 0.1 * e,
            "val_loss": 2.1 / e,
            "val_acc": 0.15 + 0.1 * e,
            "val_top5": 0.6 + 0.05 * e,
            "elapsed_seconds": 3.0 * e,
        }
        for e in range(1, n + 1)
    ]


def test_history_plot(tmp_path):
    fig = plot_history(_history())
    assert len(fig.axes) == 3
    assert [len(ax.lines) for ax in fig.axes] == [2, 3, 1]
    np.testing.assert_allclose(fig.axes[1].lines[1].get_ydata(), [25, 35, 45, 55, 65])
    _saved_png(fig, tmp_path / "history.png")
    sparse = _history()
    sparse[0].update(val_loss=None, val_acc=None, val_top5=None)  # an epoch without validation
    fig = plot_history(sparse)
    assert np.isnan(fig.axes[1].lines[1].get_ydata()[0])
    _saved_png(fig, tmp_path / "history_sparse.png")
    with pytest.raises(InputError, match="empty"):
        plot_history([])


def test_confusion_and_per_class(tmp_path):
    from helpers.metrics import classification_metrics

    y = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0, 2])
    m = classification_metrics(y, pred, ["cat", "dog", "ship"])
    fig = plot_confusion(m["confusion_matrix"], m["classes"])
    mesh = fig.axes[0].collections[0].get_array().reshape(3, 3)
    np.testing.assert_allclose(mesh.sum(axis=1), 1.0)  # row-normalised
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["cat", "dog", "ship"]
    _saved_png(fig, tmp_path / "confusion.png")
    raw = plot_confusion(m["confusion_matrix"], m["classes"], normalize=False)
    assert raw.axes[0].collections[0].get_array().sum() == 7
    _saved_png(raw, tmp_path / "confusion_counts.png")
    with pytest.raises(InputError, match="classes"):
        plot_confusion(m["confusion_matrix"], ["a", "b"])
    fig = plot_per_class(m)
    assert len(fig.axes[0].patches) == 9  # 3 classes x (precision, recall, f1)
    _saved_png(fig, tmp_path / "per_class.png")


def test_samples_colours(tmp_path):
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    y_true, y_pred = [0, 1, 2, 0, 1, 2], [0, 1, 0, 0, 2, 2]
    fig = plot_samples(x, y_true, y_pred, ["a", "b", "c"], n=6, spread=False)
    colours = [ax.title.get_color() for ax in fig.axes if ax.get_title()]
    assert colours == ["green", "green", "red", "green", "red", "green"]
    _saved_png(fig, tmp_path / "samples.png")


def test_samples_spread_over_classes():
    y = [0, 0, 0, 0, 1, 1, 2]  # sorted by class, as an ImageFolder val split is
    assert spread_indices(y, 5) == [0, 4, 6, 1, 5]
    assert spread_indices(y, 100) == [0, 4, 6, 1, 5, 2, 3]
    x = torch.zeros((7, 3, 8, 8), dtype=torch.uint8)
    fig = plot_samples(x, y, [0, 1, 1, 0, 1, 1, 2], ["a", "b", "c"], n=3)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["a\n→ a", "b\n→ b", "c\n→ c"]
    assert fig._suptitle.get_text().startswith("3/3 right")


def test_attention_overlay(tmp_path):
    from helpers.presets import ViTConfig
    from helpers.vit import InputSpec, ViT

    torch.manual_seed(0)
    model = ViT(ViTConfig(image_size=16, patch_size=4, dim=32, depth=2, heads=2, num_classes=3))
    spec = InputSpec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), size=16)
    img = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    fig = plot_attention(model, img, spec)
    assert len(fig.axes) == 4  # image, rollout, overlay + the rollout's colour bar
    bar = fig.axes[3]
    assert bar.get_ylabel() == "attention (normalised)"
    assert fig.axes[1].images[0].get_clim() == (0.0, 1.0)
    assert fig.axes[1].images[0].get_array().shape == (4, 4)  # 16 px / patch 4
    assert fig.axes[2].images[1].get_array().shape == (16, 16)  # upsampled overlay
    _saved_png(fig, tmp_path / "attention.png")


def test_patch_comparison(tmp_path):
    rows = [
        {"patch_size": 4, "minutes": 1.0, "val_acc": 0.70},
        {"patch_size": 4, "minutes": 2.0, "val_acc": 0.80},
        {"patch_size": 2, "elapsed_seconds": 150.0, "val_acc": 0.82},
    ]
    fig = plot_patch_comparison(rows)
    lines = fig.axes[0].lines
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_xdata(), [2.5])  # patch 2, seconds -> minutes
    np.testing.assert_allclose(lines[1].get_ydata(), [70, 80])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "patch 2: 82.0%",
        "patch 4: 80.0%",
    ]
    _saved_png(fig, tmp_path / "patches.png")
    with pytest.raises(InputError, match="accuracy"):
        plot_patch_comparison([{"patch_size": 4, "minutes": 1}])


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("best_epoch", [1, 3, 5])
def test_history_best_label_clears_the_tick_labels(best_epoch):
    """The "best" label stays inside the axes, off the y tick labels, wherever the best is."""
    import matplotlib.pyplot as plt

    history = _history()
    for r in history:
        r["val_acc"] = 0.9 if r["epoch"] == best_epoch else 0.5 + 0.01 * r["epoch"]
    fig = plot_history(history)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[1]
    label = next(t for t in ax.texts if t.get_text().startswith("best"))
    box = label.get_window_extent(renderer)
    ticks = [t.get_window_extent(renderer) for t in ax.get_yticklabels() if t.get_text()]
    assert ticks and not any(_overlaps(box, t) for t in ticks)
    frame = ax.get_window_extent(renderer)
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1
    plt.close(fig)


def test_history_single_point_series_has_a_marker():
    """Raw (no-EMA) accuracy exists for the last epoch only: it must still be visible, and its
    legend entry shows the marker."""
    import matplotlib.pyplot as plt

    history = _history()
    history[-1]["val_acc_model"] = 0.6
    fig = plot_history(history)
    ax = fig.axes[1]
    raw = next(ln for ln in ax.lines if ln.get_label() == "val top-1 (raw, no EMA)")
    assert raw.get_marker() == "o"
    handles, labels = ax.get_legend_handles_labels()
    assert handles[labels.index("val top-1 (raw, no EMA)")].get_marker() == "o"
    assert all(ln.get_marker() in (None, "None", "") for ln in ax.lines if ln is not raw)
    plt.close(fig)


def test_confused_pairs_ablation_and_f1_delta_figures(tmp_path):
    from helpers import plots
    from helpers.metrics import confused_pairs

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
    y = np.arange(40) % 4
    pred = y.copy()
    pred[:6] = (y[:6] + 1) % 4  # classes 0,1 -> 1,2 mistaken
    cm = np.zeros((4, 4), int)
    np.add.at(cm, (y, pred), 1)
    pairs = confused_pairs(cm, ["a", "b", "c", "d"], k=2)
    fig = plots.plot_confused_pairs(x, y, pred, ["a", "b", "c", "d"], pairs, per_pair=3)
    assert len(fig.axes) == 2 * 4 and "a\n→ b" in fig.axes[0].texts[0].get_text()
    assert sum(1 for ax in fig.axes if ax.images) == 2 * 2  # 2 examples per pair exist
    rows = [
        {"variant": "recipe", "val_acc": 0.8, "val_acc_flip_tta": 0.82},
        {"variant": "no EMA", "val_acc": 0.78, "val_acc_flip_tta": 0.8},
    ]
    fig = plots.plot_ablation(rows)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert any("(-2.00)" in t for t in labels) and any("(+2.00)" in t for t in labels)
    fig = plots.plot_f1_deltas({"a": 0.1, "b": -0.2}, "patch 32 - patch 16")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["b", "a"]
    with pytest.raises(InputError):
        plots.plot_confused_pairs(x, y, y, ["a", "b", "c", "d"], [])
