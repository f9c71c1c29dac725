"""The numpy metrics the trainer logs every epoch give scikit-learn's values."""
import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from trainyard.train.metrics import binary_auc, classification_metrics


def _probs(rng, n, k, ties):
    logits = rng.normal(size=(n, k)) * 2
    if ties:
        logits = np.round(logits)  # many tied scores: ties must count half
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("k", [2, 3, 10])
@pytest.mark.parametrize("ties", [False, True])
def test_matches_sklearn(k, ties):
    rng = np.random.default_rng(k)
    for _ in range(20):
        y = rng.integers(0, k, 150)
        p = _probs(rng, 150, k, ties)
        m = classification_metrics(y, p, prefix="val_")
        pr, rc, f1, _ = precision_recall_fscore_support(y, p.argmax(1), labels=np.arange(k), average="macro",
                                                        zero_division=0)
        # the multiclass AUC is taken on probabilities renormalised over the present classes (here all:
        # the division by a sum of 1 moves the last bits, and with them which rounded scores tie)
        present = np.unique(y)
        pn = p[:, present] / p[:, present].sum(1, keepdims=True)
        auc = roc_auc_score(y, p[:, 1]) if k == 2 else roc_auc_score(y, pn, multi_class="ovr", labels=present)
        assert m["val_acc"] == pytest.approx((p.argmax(1) == y).mean())
        assert m["val_loss"] == pytest.approx(-np.log(p[np.arange(150), y]).mean())
        assert (m["val_macro_precision"], m["val_macro_recall"], m["val_macro_f1"]) == pytest.approx((pr, rc, f1))
        assert m["val_auc"] == pytest.approx(auc, abs=1e-12)


def test_absent_classes():
    rng = np.random.default_rng(0)
    y = np.array([0, 2] * 20)
    p = _probs(rng, 40, 5, False)
    m = classification_metrics(y, p)
    # classes 1, 3, 4 are never true: they count as 0 in the macro F1, as in scikit-learn's macro average
    f1 = precision_recall_fscore_support(y, p.argmax(1), labels=np.arange(5), average="macro", zero_division=0)[2]
    assert m["macro_f1"] == pytest.approx(f1)
    # two present classes of five: the AUC of the two, renormalised (scikit-learn refuses this shape)
    pr = p[:, [0, 2]] / p[:, [0, 2]].sum(1, keepdims=True)
    assert m["auc"] == pytest.approx(roc_auc_score(y == 2, pr[:, 1]))
    assert np.isnan(classification_metrics(np.zeros(10, int), p[:10])["auc"])


def test_binary_auc_known_values():
    assert binary_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert binary_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert binary_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert np.isnan(binary_auc([1, 1], [0.2, 0.3]))
