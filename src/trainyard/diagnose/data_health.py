"""Dataset-level findings for ``data_health.json``: imbalance, missing values, constant and leaking
columns, duplicates, and drift between the training and test splits.

Rules (no tuning needed)
------------------------
* **Imbalance**: counts per class, ``ratio = max / min`` over the classes that occur; a class is a
  *minority* class when it has fewer than half the mean count per class.
* **Missing values**: read from ``dataset.info["missing"]`` (``{column: count}``, written by the
  loader, which imputes them); reported as counts and fractions.
* **Constant columns**: one value on every row (tables and text; for images only the number of
  constant pixels is given, since blank borders are normal).
* **Leakage**: each column alone is turned into a classifier (its training values cut at up to
  32 quantiles, each bin predicting its majority label, the histogram form of a shallow decision
  tree) and scored on held-out rows (the validation split, else the test split, else a random
  30 %). A column leaks when it closes at least 95 % of the gap from the majority-class baseline
  to perfect accuracy, ``(acc - base) / (1 - base) >= 0.95`` -- a single honest feature almost
  never does that, a label copied into a column does. Images are skipped.
* **Duplicates**: ``find_duplicates`` summary, plus the count of validation/test rows that
  duplicate a training row (their scores are inflated).
* **Drift**: ``feature_drift`` and ``classifier_two_sample`` between the train and test splits.

Everything returned is plain JSON types.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .drift import classifier_two_sample, drift_table_records, feature_drift
from .duplicates import find_duplicates

LEAK_GAIN = 0.95
LEAK_BINS = 32
LEAK_ROWS = 5_000
MINORITY_FRACTION = 0.5


def class_imbalance(y: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Counts per class, max/min ratio, minority classes (< half the mean count)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(classes))[:len(classes)]
    present = counts[counts > 0]
    mean = counts.mean() if len(counts) else 0.0
    minority = [classes[i] for i in range(len(classes)) if counts[i] < MINORITY_FRACTION * mean]
    return {
        "counts": {classes[i]: int(counts[i]) for i in range(len(classes))},
        "ratio": float(present.max() / present.min()) if len(present) else None,
        "minority_classes": minority,
        "empty_classes": [classes[i] for i in range(len(classes)) if counts[i] == 0],
        "imbalanced": bool(minority),
        "rule": f"minority = fewer than {MINORITY_FRACTION:g} x the mean count per class",
    }


def missing_values(info: dict[str, Any], n_rows: int) -> dict[str, Any]:
    """Missing values per column as reported by the loader (``info["missing"]``)."""
    raw = info.get("missing") or {}
    per = {str(k): int(v) for k, v in dict(raw).items() if int(v) > 0}
    out = {
        "per_column": per,
        "fraction": {k: v / n_rows for k, v in per.items()} if n_rows else {},
        "total": int(sum(per.values())),
        "columns_with_missing": len(per),
        "source": "loader (imputed before training)" if "missing" in info else "not reported by the loader",
    }
    # Other cells the loader had to replace (inf/nan, text in a number column), when it reports them.
    for key in ("nonfinite", "unparsed"):
        extra = {str(k): int(v) for k, v in dict(info.get(key) or {}).items() if int(v) > 0}
        if extra:
            out[key] = extra
    return out


def constant_columns(X: np.ndarray, names: list[str] | None) -> list[str]:
    """Names of the columns that hold a single value on every row."""
    flat = X.reshape(len(X), -1)
    if len(flat) == 0:
        return []
    const = np.flatnonzero(np.all(flat == flat[:1], axis=0))
    names = names if names is not None and len(names) == flat.shape[1] else [f"x{i}" for i in range(flat.shape[1])]
    return [names[i] for i in const]


def _bin_majority_accuracy(a: np.ndarray, ya: np.ndarray, b: np.ndarray, yb: np.ndarray, k: int) -> float:
    """Held-out accuracy of 'bin the column on train quantiles, predict each bin's majority label'."""
    edges = np.unique(np.quantile(a, np.linspace(0, 1, LEAK_BINS + 1)[1:-1]))
    ba = np.searchsorted(edges, a, side="right")
    bb = np.searchsorted(edges, b, side="right")
    n_bins = len(edges) + 1
    table = np.zeros((n_bins, k), dtype=np.int64)
    np.add.at(table, (ba, ya), 1)
    overall = np.bincount(ya, minlength=k).argmax()
    pred_of_bin = np.where(table.sum(axis=1) > 0, table.argmax(axis=1), overall)
    return float(np.mean(pred_of_bin[bb] == yb))


def leakage(X: np.ndarray, y: np.ndarray, names: list[str] | None, train: np.ndarray, heldout: np.ndarray,
            seed: int = 0) -> dict[str, Any]:
    """Columns that alone predict the label on held-out rows (see module docstring)."""
    rng = np.random.default_rng(seed)
    tr = train if len(train) <= LEAK_ROWS else rng.choice(train, LEAK_ROWS, replace=False)
    ho = heldout if len(heldout) <= LEAK_ROWS else rng.choice(heldout, LEAK_ROWS, replace=False)
    flat = X.reshape(len(X), -1)
    names = names if names is not None and len(names) == flat.shape[1] else [f"x{i}" for i in range(flat.shape[1])]
    y = np.asarray(y, dtype=np.int64)
    k = int(y.max()) + 1 if len(y) else 1
    majority = np.bincount(y[tr], minlength=k).argmax()
    base = float(np.mean(y[ho] == majority))
    acc = np.array([_bin_majority_accuracy(flat[tr, j], y[tr], flat[ho, j], y[ho], k)
                    for j in range(flat.shape[1])])
    gain = (acc - base) / (1 - base) if base < 1 else np.zeros_like(acc)
    leaks = np.flatnonzero(gain >= LEAK_GAIN)
    top = np.argsort(-acc, kind="stable")[:5]
    return {
        "columns": [names[i] for i in leaks],
        "accuracy": {names[i]: round(float(acc[i]), 4) for i in leaks},
        "strongest_single_columns": {names[i]: round(float(acc[i]), 4) for i in top},
        "majority_baseline": round(base, 4),
        "n_train_rows": int(len(tr)), "n_heldout_rows": int(len(ho)),
        "rule": f"(held-out accuracy of the column alone - baseline) / (1 - baseline) >= {LEAK_GAIN:g}",
    }


def _split(splits: Any, name: str) -> np.ndarray:
    idx = getattr(splits, name, None) if splits is not None else None
    return np.asarray(idx, dtype=np.int64) if idx is not None else np.zeros(0, dtype=np.int64)


def data_health(dataset: Any, splits: Any = None, *, duplicates: pd.DataFrame | None = None,
                seed: int = 0, drift_limit: int = 100) -> dict[str, Any]:
    """Dataset-level findings as a JSON-ready dict (written to ``data_health.json``).

    Args:
        dataset: a ``trainyard.data.Dataset`` (uses X, y, classes, ids, kind, feature_names, info).
        splits: an object with ``.train``, ``.val``, ``.test`` index arrays, or None (then the
            drift checks are skipped and leakage uses a random 70/30 split).
        duplicates: the ``find_duplicates`` table if already computed (avoids a second search).
        seed: seed for subsampling.
        drift_limit: at most this many rows of the drift table go into the dict.

    Example:
        >>> health = data_health(ds, fit_result.splits)
        >>> health["leakage"]["columns"], health["imbalance"]["ratio"]
    """
    X, y, n = dataset.X, np.asarray(dataset.y), len(dataset)
    kind = getattr(dataset, "kind", "tabular")
    names = list(dataset.feature_names) if getattr(dataset, "feature_names", None) is not None else None
    train, val, test = _split(splits, "train"), _split(splits, "val"), _split(splits, "test")
    health: dict[str, Any] = {"n_rows": int(n), "n_features": int(np.prod(X.shape[1:])) if n else 0,
                              "kind": kind, "n_classes": int(len(dataset.classes))}

    health["imbalance"] = class_imbalance(y, dataset.classes)
    if len(train):
        health["imbalance"]["train_counts"] = class_imbalance(y[train], dataset.classes)["counts"]
    health["missing"] = missing_values(getattr(dataset, "info", {}) or {}, n)
    if kind == "image":
        flat = X.reshape(n, -1)
        health["constant_columns"] = {"n_constant_pixels": int(np.all(flat == flat[:1], axis=0).sum()) if n else 0}
    else:
        health["constant_columns"] = {"columns": constant_columns(X, names)}

    if kind == "image":
        health["leakage"] = {"columns": [], "skipped": "images: single pixels are not checked"}
    else:
        heldout = val if len(val) else test
        tr = train
        if not len(tr) or not len(heldout):
            perm = np.random.default_rng(seed).permutation(n)
            cut = int(0.7 * n)
            tr, heldout = perm[:cut], perm[cut:]
        health["leakage"] = leakage(X, y, names, tr, heldout, seed) if len(tr) and len(heldout) else {"columns": []}

    if duplicates is None:
        duplicates = find_duplicates(X, y, dataset.ids, standardize=(kind == "tabular"), seed=seed)
    dup_summary = dict(duplicates.attrs.get("summary", {}))
    if len(train) and "duplicate_group" in duplicates:
        group = duplicates["duplicate_group"].to_numpy()
        train_groups = np.unique(group[train][group[train] >= 0])
        for name, idx in (("val", val), ("test", test)):
            dup_summary[f"{name}_rows_duplicating_train"] = int(np.isin(group[idx], train_groups).sum()) if len(idx) else 0
    health["duplicates"] = dup_summary

    if len(train) and len(test):
        table = feature_drift(X[train], X[test], names if kind != "image" else None, seed=seed)
        health["drift"] = {**table.attrs["summary"], "compared": "train vs test split",
                           "table": drift_table_records(table, drift_limit)}
        health["two_sample"] = classifier_two_sample(X[train], X[test], seed=seed)
    else:
        health["drift"] = {"skipped": "no train/test splits given"}
        health["two_sample"] = None
    return health
