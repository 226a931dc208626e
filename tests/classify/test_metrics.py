"""helpers.classify.metrics against scikit-learn on known arrays, flip TTA, and evaluate()'s files."""

import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from helpers.classify.metrics import (
    classification_metrics,
    confusion_matrix,
    evaluate,
    predict_logits,
    top_k_accuracy,
)
from helpers.errors import InputError


def _known(n=300, c=7, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, size=n)
    logits = rng.normal(size=(n, c)).astype(np.float32)
    logits[np.arange(n), y] += rng.normal(1.0, 1.0, size=n).astype(np.float32)  # better than chance
    return y, logits


def test_metrics_match_sklearn():
    y, logits = _known()
    classes = [f"c{i}" for i in range(7)]
    m = classification_metrics(y, torch.from_numpy(logits), classes)
    pred = logits.argmax(1)
    assert 0.3 < m["top1"] < 0.95
    assert m["top1"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["top5"] == pytest.approx(skm.top_k_accuracy_score(y, logits, k=5, labels=range(7)))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(7), zero_division=0)
    for i, name in enumerate(classes):
        pc = m["per_class"][name]
        assert pc["precision"] == pytest.approx(p[i])
        assert pc["recall"] == pytest.approx(r[i])
        assert pc["f1"] == pytest.approx(f[i])
        assert pc["support"] == s[i]
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert m[avg]["precision"] == pytest.approx(p)
        assert m[avg]["recall"] == pytest.approx(r)
        assert m[avg]["f1"] == pytest.approx(f)
    np.testing.assert_array_equal(
        m["confusion_matrix"], skm.confusion_matrix(y, pred, labels=range(7))
    )
    assert "macro avg" in m["report"] and "c6" in m["report"]
    json.dumps(m)  # JSON-serialisable


def test_top_k_and_confusion_helpers():
    y, logits = _known(200, 10, seed=1)
    for k in (1, 2, 3, 5):
        assert top_k_accuracy(y, logits, k) == pytest.approx(
            skm.top_k_accuracy_score(y, logits, k=k, labels=range(10))
        )
    pred = logits.argmax(1)
    np.testing.assert_array_equal(
        confusion_matrix(y, pred, 10), skm.confusion_matrix(y, pred, labels=range(10))
    )


def test_predictions_input_and_zero_division():
    # class 2 never predicted and never true: precision/recall/f1 0, no crash
    y = np.array([0, 0, 1, 1, 1])
    pred = np.array([0, 1, 1, 1, 0])
    m = classification_metrics(y, pred, ["a", "b", "c"])
    assert "top5" not in m
    assert m["top1"] == pytest.approx(0.6)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro"]["f1"] == pytest.approx(
        skm.f1_score(y, pred, labels=[0, 1, 2], average="macro", zero_division=0)
    )


def test_bad_inputs():
    with pytest.raises(InputError, match="labels must be in"):
        classification_metrics([0, 5], [0, 1], ["a", "b"])
    with pytest.raises(InputError, match="scores have shape"):
        classification_metrics([0, 1], np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(InputError, match="predictions for"):
        classification_metrics([0, 1, 1], [0, 1], ["a", "b"])


class _Asym(torch.nn.Module):
    """Logits depend on the left/right asymmetry of the image, so a flip changes them."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([3.0, -3.0, 0.5]))

    def forward(self, x):
        half = x.shape[-1] // 2
        d = x[..., :half].mean((1, 2, 3)) - x[..., half:].mean((1, 2, 3))
        return d[:, None] * self.w + torch.tensor([0.0, 0.0, 0.2])


def test_predict_logits_and_flip_tta():
    from helpers.classify.augment import eval_transform
    from helpers.classify.vit import InputSpec

    spec = InputSpec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), size=8)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=g)
    model = _Asym().train()
    plain = predict_logits(model, x, spec, batch_size=3)
    assert model.training  # mode restored
    assert plain.shape == (10, 3) and plain.device.type == "cpu"
    xn = eval_transform(x, spec)
    torch.testing.assert_close(plain, model(xn).detach())
    tta = predict_logits(model, x, spec, batch_size=4, tta_flip=True)
    expect = (model(xn).softmax(-1) + model(xn.flip(-1)).softmax(-1)).detach() / 2
    torch.testing.assert_close(tta.softmax(-1), expect)
    torch.testing.assert_close(tta.exp().sum(-1), torch.ones(10))
    assert not torch.allclose(tta.softmax(-1), plain.softmax(-1))
    with pytest.raises(InputError, match=r"\[N, 3, H, W\]"):
        predict_logits(model, x[:, :1], spec)


def test_evaluate_writes_files(tmp_path):
    from helpers.classify.data import DataSplits
    from helpers.classify.vit import InputSpec

    spec = InputSpec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), size=8)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.arange(12) % 3
    data = DataSplits(x, y, x, y, ["a", "b", "c"], "test")
    m = evaluate(_Asym(), data, spec, tta_flip=True, out_dir=tmp_path)
    assert m["tta_flip"] is True
    logits = np.load(tmp_path / "logits.npy")
    assert logits.shape == (12, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "predictions.npy"), logits.argmax(1))
    np.testing.assert_array_equal(np.load(tmp_path / "targets.npy"), y.numpy())
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["top1"] == pytest.approx(skm.accuracy_score(y.numpy(), logits.argmax(1)))
    assert "precision" in (tmp_path / "classification_report.txt").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    # flip TTA is said beside the numbers it changes, and the plain accuracy is there too
    plain = predict_logits(_Asym(), x, spec).argmax(1).numpy()
    assert saved["top1_plain"] == pytest.approx(skm.accuracy_score(y.numpy(), plain))
    assert saved["top1_flip_tta"] == saved["top1"] and saved["top1_plain"] != saved["top1"]
    assert saved["report"].startswith("scored with flip TTA")
    assert "top5" not in saved  # 3 classes: every label is in the top 5
    off = evaluate(_Asym(), data, spec, tta_flip=False)
    assert off["top1"] == off["top1_plain"] == saved["top1_plain"] and "top1_flip_tta" not in off
    assert "flip TTA" not in off["report"]


def test_top5_only_with_six_classes_or_more():
    from helpers.classify.metrics import logit_metrics, top5_accuracy

    for c, present in ((2, False), (5, False), (6, True), (10, True)):
        y, logits = _known(c=c)
        m = classification_metrics(y, logits, [f"c{i}" for i in range(c)])
        assert ("top5" in m) is present and ("top-5" in m["report"]) is present
        v = logit_metrics(torch.from_numpy(logits), torch.from_numpy(y))["val_top5"]
        assert (v is not None) is present and (top5_accuracy(y, logits) is not None) is present


def test_confused_pairs_ranked_with_rates():
    from helpers.classify.metrics import confused_pairs

    cm = np.array([[50, 9, 1], [2, 40, 8], [0, 0, 60]])
    pairs = confused_pairs(cm, ["cat", "dog", "emu"], k=3)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("cat", "dog", 9),
        ("dog", "emu", 8),
        ("dog", "cat", 2),
    ]
    assert pairs[0]["rate"] == pytest.approx(9 / 60) and pairs[1]["true_index"] == 1
    assert confused_pairs(np.eye(3, dtype=int) * 5, ["a", "b", "c"]) == []  # no mistakes
    with pytest.raises(InputError, match=r"\[C, C\]"):
        confused_pairs(np.zeros((2, 3)), ["a", "b"])
