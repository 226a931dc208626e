"""What a user sees in the Q1 figures, measured on the drawn figure (Agg renderer): no note over
tick labels, whole-number epoch ticks, no legend over bars, no labels on top of each other, an
accuracy axis that starts at 0, one colour map for the attention map and its overlay."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from helpers.classify import plots  # noqa: E402


def _boxes(fig, artists):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    return [a.get_window_extent(r) for a in artists if a.get_visible() and a.get_text()]


def _overlaps(a, b) -> bool:
    return a.overlaps(b) and a.width > 0 and b.width > 0


def _history(n, low_best: bool):
    """Rows whose best val accuracy sits at the bottom of the plot (``low_best``) or the top."""
    rows = []
    for e in range(1, n + 1):
        val = 0.30 + 0.01 * e if low_best else 0.30 + 0.1 * e
        rows.append(
            {"epoch": e, "lr": 1e-3, "train_loss": 1.0, "val_loss": 1.0,
             "train_acc": 0.9, "val_acc": val, "val_top5": 0.95}
        )  # fmt: skip
    return rows


@pytest.mark.parametrize("n", [1, 2, 3, 7])
@pytest.mark.parametrize("low_best", [True, False])
def test_history_best_note_clear_of_tick_labels_and_epochs_whole(n, low_best):
    fig = plots.plot_history(_history(n, low_best))
    ax = fig.axes[1]
    note = [t for t in ax.texts if t.get_text().startswith("best ")]
    assert len(note) == 1
    ticks = _boxes(fig, ax.get_xticklabels() + ax.get_yticklabels())
    (box,) = _boxes(fig, note)
    assert not [t for t in ticks if _overlaps(box, t)], "the best note covers tick labels"
    assert ax.get_window_extent().contains(box.x0 + 1, box.y0 + 1)  # inside the axes
    for a in fig.axes:
        labels = [t.get_text() for t in a.get_xticklabels() if t.get_text()]
        shown = [float(s.replace("−", "-")) for s in labels]
        assert all(v == int(v) for v in shown), labels  # no epoch 1.5
        lo, hi = a.get_xlim()
        drawn = [v for v in a.get_xticks() if lo <= v <= hi]
        assert 1 in drawn and all(1 <= v <= n for v in drawn), drawn  # epochs that were trained
    plt.close(fig)


def test_per_class_legend_covers_no_bar():
    names = [f"class{i}" for i in range(10)]
    per = {n: {"precision": 0.9, "recall": 0.95, "f1": 0.92} for n in names}
    per["class9"] = {"precision": 0.2, "recall": 0.3, "f1": 0.25}
    fig = plots.plot_per_class({"per_class": per, "top1": 0.8})
    ax = fig.axes[0]
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(r)
    bars = [p.get_window_extent(r) for p in ax.patches]
    assert bars and not [b for b in bars if _overlaps(legend, b)]
    plt.close(fig)


def test_patch_comparison_labels_do_not_collide():
    rows = [
        {"patch_size": p, "minutes": m, "val_acc": a}
        for p, pts in {2: [(1, 0.40), (2, 0.50)], 4: [(1, 0.45), (2, 0.551)], 8: [(1, 0.44), (2, 0.552)]}.items()
        for m, a in pts
    ]  # fmt: skip
    fig = plots.plot_patch_comparison(rows)
    ax = fig.axes[0]
    texts = _boxes(fig, ax.texts + ax.get_legend().get_texts())
    for i, a in enumerate(texts):
        for b in texts[i + 1 :]:
            assert not _overlaps(a, b)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["patch 2: 50.0%", "patch 4: 55.1%", "patch 8: 55.2%"]
    plt.close(fig)


def test_ablation_axis_starts_at_zero_and_tta_row_only_when_asked():
    rows = [
        {"variant": "recipe as is", "val_acc": 0.80, "val_acc_flip_tta": 0.81},
        {"variant": "no EMA", "val_acc": 0.79, "val_acc_flip_tta": 0.80},
    ]
    fig = plots.plot_ablation(rows)
    ax = fig.axes[0]
    assert ax.get_xlim()[0] == 0.0
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert "+ flip TTA (no retrain)" in names
    numbers = _boxes(fig, ax.texts)
    assert all(ax.get_window_extent().contains(b.x1 - 1, b.y0 + 1) for b in numbers)
    plt.close(fig)
    fig = plots.plot_ablation(rows, title="one setting at a time", flip_tta=False)
    assert "+ flip TTA (no retrain)" not in [t.get_text() for t in fig.axes[0].get_yticklabels()]
    plt.close(fig)


def test_ablation_bars_without_a_change_are_neutral():
    from matplotlib.colors import to_rgba

    rows = [
        {"variant": "base", "val_acc": 0.50},
        {"variant": "same", "val_acc": 0.50},
        {"variant": "a hair better", "val_acc": 0.50004},  # written +0.00: no change
        {"variant": "better", "val_acc": 0.52},
        {"variant": "worse", "val_acc": 0.47},
    ]
    fig = plots.plot_ablation(rows, flip_tta=False)
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    colour = {name: bar.get_facecolor() for name, bar in zip(names, ax.patches)}
    assert colour["better"] == to_rgba("tab:green") and colour["worse"] == to_rgba("tab:red")
    for name in ("same", "a hair better"):
        assert colour[name] not in (to_rgba("tab:green"), to_rgba("tab:red")), name
    assert "(+0.00)" in " ".join(t.get_text() for t in ax.texts)
    plt.close(fig)
    fig = plots.plot_f1_deltas({"cat": 0.0, "dog": 0.1, "car": -0.1}, "f1")
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    colour = {name: bar.get_facecolor() for name, bar in zip(names, ax.patches)}
    assert colour["dog"] == to_rgba("tab:green") and colour["car"] == to_rgba("tab:red")
    assert colour["cat"] not in (to_rgba("tab:green"), to_rgba("tab:red"))
    plt.close(fig)


def test_ablation_table_tta_row_only_when_asked():
    from helpers.classify.ablation import ablation_table

    row = {
        "variant": "base", "val_acc": 0.8, "val_acc_flip_tta": 0.81, "delta": 0.0,
        "test_acc": None, "parameters": 10, "images_per_second": 1.0, "seconds_per_epoch": 1.0,
        "peak_memory_mb": None,
    }  # fmt: skip
    assert "flip TTA" in ablation_table([row])
    assert "flip TTA" not in ablation_table([row], flip_tta=False)


def test_attention_overlay_and_colour_bar_share_one_colour_map():
    from helpers.classify.presets import ViTConfig
    from helpers.classify.vit import InputSpec, ViT

    torch.manual_seed(0)
    model = ViT(ViTConfig(image_size=16, patch_size=4, dim=32, depth=2, heads=2, num_classes=3))
    spec = InputSpec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), size=16)
    fig = plots.plot_attention(model, torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8), spec)
    rollout, overlay = fig.axes[1].images[0], fig.axes[2].images[1]
    bar_cmap = fig.axes[3]._colorbar.cmap  # the colour bar drawn beside the panels
    assert rollout.cmap.name == overlay.cmap.name == bar_cmap.name
    assert overlay.get_clim() == rollout.get_clim() == (0.0, 1.0)
    plt.close(fig)


def test_candidates_captions_stay_apart_and_the_title_reads():
    import numpy as np

    from helpers.textseg import render

    img = np.zeros((64, 64, 3), np.uint8)
    masks = np.zeros((3, 64, 64), bool)
    masks[:, 10:40, 10:40] = True
    info = {
        "weights": {"sam": 1.0, "compact": 0.25, "box": 0.25},
        "sam": [0.53, 0.50, 0.61], "compact": [0.9, 0.8, 0.7], "box": [0.7, 0.6, 0.5],
        "total": [0.93, 0.87, 0.91],
    }  # fmt: skip
    title = f"cat: weighted score ({render.weights_text(info['weights'])})"
    assert title == "cat: weighted score (sam ×1, compact ×0.25, box ×0.25)"
    fig = render.candidates_figure(
        img, masks, info["total"], title=title, best=0, details=render.choice_details(info)
    )
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # a bare Figure (no pyplot): draw it as the PNG would be
    canvas.draw()
    r = canvas.get_renderer()
    labels = [ax.xaxis.label.get_window_extent(r) for ax in fig.axes]
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            assert not a.overlaps(b), "captions run together"
    assert fig.axes[0].get_xlabel().splitlines()[-1] == "= 0.93"
