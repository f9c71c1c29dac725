"""Classification metrics from predicted probabilities (plain numpy in, plain floats out).

Computed here from a confusion count and from ranks rather than through scikit-learn's scorers, which give
the same values: the trainer scores the validation rows after every epoch, and scikit-learn's input checks
made those calls cost more than the training on small data (423 calls, 14 of the 45 seconds of a digits
repair).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import confusion_matrix


def classification_metrics(y: np.ndarray, probs: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Loss, accuracy, macro precision/recall/F1 (every class of ``probs`` counts, an empty one as 0) and
    the macro one-vs-rest ROC AUC over the classes present in ``y`` (NaN with fewer than two)."""
    y = np.asarray(y)
    probs = np.asarray(probs)
    k = probs.shape[1]
    pred = probs.argmax(1)
    eps = 1e-12
    n = len(y)
    out = {
        "loss": float(-np.log(np.clip(probs[np.arange(n), y], eps, 1)).mean()) if n else float("nan"),
        "acc": float((pred == y).mean()) if n else float("nan"),
    }
    p, r, f = _macro_prf(y, pred, k)
    out.update(macro_precision=p, macro_recall=r, macro_f1=f, auc=_macro_auc(y, probs))
    return {prefix + k_: v for k_, v in out.items()}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def _macro_prf(y: np.ndarray, pred: np.ndarray, k: int) -> tuple[float, float, float]:
    tp = np.bincount(y[pred == y], minlength=k)[:k].astype(float)
    n_pred = np.bincount(pred, minlength=k)[:k].astype(float)
    n_true = np.bincount(y, minlength=k)[:k].astype(float)
    precision, recall = _ratio(tp, n_pred), _ratio(tp, n_true)
    f1 = _ratio(2 * tp, n_pred + n_true)  # 2tp / (2tp + fp + fn)
    return float(precision.mean()), float(recall.mean()), float(f1.mean())


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: the chance a positive row scores above a negative one,
    ties counting half (the trapezoidal area scikit-learn computes). NaN without both kinds of row."""
    return float(_auc_columns(np.asarray(positive, bool)[:, None], np.asarray(score)[:, None])[0])


def _auc_columns(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``binary_auc`` of every column of ``positive`` (rows x columns, bool) against the same column of
    ``scores``, ranked all at once."""
    n_pos = positive.sum(0).astype(float)
    n_neg = len(positive) - n_pos
    rank_sum = (rankdata(scores, axis=0) * positive).sum(0)
    both = (n_pos > 0) & (n_neg > 0)
    return np.where(both, (rank_sum - n_pos * (n_pos + 1) / 2) / np.where(both, n_pos * n_neg, 1), np.nan)


def _macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return binary_auc(y == 1, probs[:, 1])
    # each present class against the others, on the probabilities renormalised over the present classes
    pr = probs[:, present] / np.clip(probs[:, present].sum(1, keepdims=True), 1e-12, None)
    return float(_auc_columns(y[:, None] == present[None, :], pr).mean())


def confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> list[list[int]]:
    return confusion_matrix(y, pred, labels=np.arange(n_classes)).tolist()
