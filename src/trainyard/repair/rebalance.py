"""Rebalance: class weights (``class_weight='balanced'``), or SMOTE oversampling for tabular data."""
from __future__ import annotations

import numpy as np

from .plan import Plan, RoundInput

IMBALANCE_RATIO = 3.0  # largest / smallest training class above which ``auto`` rebalances


def class_counts(inp: RoundInput) -> np.ndarray:
    return np.bincount(inp.labels[inp.in_train], minlength=inp.n_classes)


def imbalance_ratio(inp: RoundInput) -> float:
    """Largest over smallest class count of the training rows as given (inf when a class has none)."""
    c = np.bincount(inp.given[~inp.is_val], minlength=inp.n_classes)
    return float(c.max() / c.min()) if c.min() > 0 else float("inf")


def rebalance(inp: RoundInput, method: str = "auto", seed: int = 0) -> Plan:
    """Balance the classes the model trains on.

    Args:
        method: ``smote`` (synthesise minority rows between neighbours, imbalanced-learn),
            ``class_weight`` (weight each class's loss by n / (K * count)), or ``auto``: SMOTE for
            tabular data, class weights for images and text (interpolating pixels or TF-IDF rows
            makes implausible samples).
    """
    plan = Plan.unchanged(inp)
    counts = class_counts(inp)
    present = counts[counts > 0]
    use_smote = method == "smote" or (method == "auto" and inp.kind == "tabular")
    if use_smote and len(present) >= 2 and present.min() >= 2 and present.max() > present.min():
        from imblearn.over_sampling import SMOTE

        rows = np.flatnonzero(inp.in_train)
        X = inp.X[rows].reshape(len(rows), -1)
        k = int(min(5, present.min() - 1))
        Xr, yr = SMOTE(k_neighbors=k, random_state=seed).fit_resample(X, inp.labels[rows])
        # imbalanced-learn returns the original rows first, then the synthetic ones
        Xs, ys = Xr[len(rows):].astype(np.float32), yr[len(rows):].astype(np.int64)
        plan.synthetic = (Xs.reshape((len(Xs),) + inp.X.shape[1:]), ys)
        plan.notes.append(f"SMOTE added {len(ys)} synthetic training rows (classes were {counts.min()}..{counts.max()} rows)")
    else:
        plan.config["class_weight"] = "balanced"
        plan.notes.append(f"class_weight='balanced' (training classes have {counts.min()}..{counts.max()} rows)")
    return plan
