"""Classification metrics from predicted probabilities (plain numpy in, plain floats out)."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score


def classification_metrics(y: np.ndarray, probs: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Loss, accuracy, macro precision/recall/F1 and one-vs-rest AUC."""
    y = np.asarray(y)
    k = probs.shape[1]
    pred = probs.argmax(1)
    eps = 1e-12
    out = {
        "loss": float(-np.log(np.clip(probs[np.arange(len(y)), y], eps, 1)).mean()) if len(y) else float("nan"),
        "acc": float((pred == y).mean()) if len(y) else float("nan"),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, _ = precision_recall_fscore_support(y, pred, labels=np.arange(k), average="macro", zero_division=0)
        out.update(macro_precision=float(p), macro_recall=float(r), macro_f1=float(f))
        try:
            present = np.unique(y)
            if len(present) < 2:
                raise ValueError
            if k == 2:
                out["auc"] = float(roc_auc_score(y, probs[:, 1]))
            else:
                pr = probs[:, present] / np.clip(probs[:, present].sum(1, keepdims=True), eps, None)
                out["auc"] = float(roc_auc_score(y, pr, multi_class="ovr", labels=present))
        except ValueError:
            out["auc"] = float("nan")
    return {prefix + k_: v for k_, v in out.items()}


def confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> list[list[int]]:
    return confusion_matrix(y, pred, labels=np.arange(n_classes)).tolist()
