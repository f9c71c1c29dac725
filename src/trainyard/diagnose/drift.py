"""Drift: does the test split (or a new batch at inference time) look like the training data?

Per feature
-----------
* **PSI** (population stability index) ``sum (q - p) ln(q / p)`` over bins cut at the training
  deciles (a column with at most 10 distinct training values gets one bin per value, plus one
  bin for values never seen in training). Bin frequencies are smoothed by half a count per bin,
  so an empty bin in a small sample does not blow the index up. Chance alone gives a PSI of
  about ``(bins - 1) / n`` for a sample of n rows, so small samples get fewer bins (about 10 rows
  of the smaller side per bin, at least 2).
* **KS**: the two-sample Kolmogorov–Smirnov statistic and p-value (scipy).
* **KL**: ``KL(new || train)`` on the same smoothed bins.
* ``mean_shift``: difference of means in training standard deviations (evidence for the reader).

A feature is flagged (``drift``) when ``PSI >= 0.2`` **and** the KS p-value ``< 0.01``: 0.2 is the
usual "significant shift" line for PSI (a one-std mean shift of a normal feature gives PSI near
1), and the KS test keeps small samples, whose PSI is noisy, from being flagged by chance.

Whole-dataset
-------------
``classifier_two_sample`` trains a classifier (scikit-learn HistGradientBoosting, 5-fold
cross-validated) to tell training rows from test rows. Its out-of-fold AUC is 0.5 when the two
sets come from one distribution; the p-value is the Mann–Whitney test on the out-of-fold scores
(AUC is that test's statistic). ``shift`` is ``AUC >= 0.6 and p < 0.01``. Sets are subsampled to
``max_rows`` (10,000) per side.

Images
------
Pixels one by one are neither readable nor stable, so for ``(N, C, H, W)`` inputs the measures
run on a small summary per image: mean intensity, intensity std, and the first 8 principal
components of the pixels (PCA fit on the training images). Tables wider than 200 columns are
used as is for the per-feature table (on at most 20,000 rows per side) and reduced to 50
principal components for the classifier. Larger sets are subsampled to ``max_rows`` (200,000)
per side for the per-feature table.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

PSI_FLAG = 0.2
KS_ALPHA = 0.01
AUC_FLAG = 0.6
BINS = 10
SMOOTH = 0.5
IMAGE_PCS = 8


def image_summary(X_train: np.ndarray, X_test: np.ndarray, n_components: int = IMAGE_PCS,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-image mean intensity, intensity std and the first principal components of the pixels."""
    a = np.asarray(X_train, dtype=np.float32).reshape(len(X_train), -1)
    b = np.asarray(X_test, dtype=np.float32).reshape(len(X_test), -1)
    k = int(min(n_components, a.shape[1], max(len(a) - 1, 0)))
    cols_a = [a.mean(axis=1), a.std(axis=1)]
    cols_b = [b.mean(axis=1), b.std(axis=1)]
    names = ["mean_intensity", "std_intensity"]
    if k >= 1:
        rng = np.random.default_rng(seed)
        fit = a[rng.choice(len(a), min(len(a), 20_000), replace=False)]
        pca = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit(fit)
        cols_a += list(pca.transform(a).T)
        cols_b += list(pca.transform(b).T)
        names += [f"pixel_pc{i + 1}" for i in range(k)]
    return np.column_stack(cols_a), np.column_stack(cols_b), names


def _as_table(X_train: np.ndarray, X_test: np.ndarray, feature_names: Sequence[str] | None,
              seed: int) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    a, b = np.asarray(X_train), np.asarray(X_test)
    if a.ndim >= 3:
        a, b, names = image_summary(a, b, seed=seed)
        return a, b, names, f"image summary: mean and std intensity, {len(names) - 2} pixel principal components"
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(a.shape[1])]
    if len(names) != a.shape[1]:
        raise ValueError(f"{len(names)} feature names for {a.shape[1]} columns")
    return a, b, names, "per column"


def _subsample(X: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    return X if len(X) <= max_rows else X[np.sort(rng.choice(len(X), max_rows, replace=False))]


def _binned(a: np.ndarray, b: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of train ``a`` and new ``b`` in bins defined by ``a``."""
    values = np.unique(a)
    if len(values) <= BINS:
        # Few distinct values: one bin each, plus a last bin for values training never had.
        pos_a = np.searchsorted(values, a)
        pos_b = np.minimum(np.searchsorted(values, b), len(values) - 1)
        pos_b = np.where(values[pos_b] == b, pos_b, len(values))
        n_bins = len(values) + 1
    else:
        edges = np.unique(np.quantile(a, np.linspace(0, 1, bins + 1)[1:-1]))
        pos_a = np.searchsorted(edges, a, side="right")
        pos_b = np.searchsorted(edges, b, side="right")
        n_bins = len(edges) + 1
    return np.bincount(pos_a, minlength=n_bins), np.bincount(pos_b, minlength=n_bins)


def psi_kl(a: np.ndarray, b: np.ndarray, bins: int = BINS, smooth: float = SMOOTH) -> tuple[float, float]:
    """PSI and KL(b || a) of one feature on bins cut from ``a`` (see module docstring)."""
    ca, cb = _binned(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), bins)
    p = (ca + smooth) / (ca.sum() + smooth * len(ca))
    q = (cb + smooth) / (cb.sum() + smooth * len(cb))
    ratio = np.log(q / p)
    return float(np.sum((q - p) * ratio)), float(np.sum(q * ratio))


def feature_drift(X_train: np.ndarray, X_test: np.ndarray, feature_names: Sequence[str] | None = None,
                  bins: int = BINS, max_rows: int = 200_000, seed: int = 0) -> pd.DataFrame:
    """PSI, KS and KL of every feature between a training set and a test set (or new batch).

    Returns:
        A DataFrame ``[feature, psi, ks, ks_pvalue, kl, mean_shift, drift]`` sorted by PSI,
        highest first; ``df.attrs["summary"]`` holds the flag rule, the count flagged and what
        the features are (columns, or the image summary).

    Example:
        >>> feature_drift(X[train], X[test], names).head(3)
    """
    a, b, names, what = _as_table(X_train, X_test, feature_names, seed)
    rng = np.random.default_rng(seed)
    if len(names) > 200:  # wide tables (text vectors): keep the per-column tests to seconds
        max_rows = min(max_rows, 20_000)
    a, b = _subsample(a, max_rows, rng), _subsample(b, max_rows, rng)
    # Chance alone gives PSI about (bins - 1) / n_small: keep ~10 rows of the smaller side per bin.
    bins = int(min(bins, max(2, min(len(a), len(b)) // 10)))
    rows = []
    for j, name in enumerate(names):
        ca, cb = a[:, j].astype(np.float64), b[:, j].astype(np.float64)
        if len(ca) == 0 or len(cb) == 0:
            rows.append((name, np.nan, np.nan, np.nan, np.nan, np.nan))
            continue
        psi, kl = psi_kl(ca, cb, bins)
        ks = stats.ks_2samp(ca, cb)
        sd = ca.std()
        shift = (cb.mean() - ca.mean()) / sd if sd > 0 else (0.0 if cb.mean() == ca.mean() else np.inf)
        rows.append((name, psi, float(ks.statistic), float(ks.pvalue), kl, float(shift)))
    df = pd.DataFrame(rows, columns=["feature", "psi", "ks", "ks_pvalue", "kl", "mean_shift"])
    df["drift"] = (df["psi"] >= PSI_FLAG) & (df["ks_pvalue"] < KS_ALPHA)
    df = df.sort_values("psi", ascending=False, kind="stable", na_position="last").reset_index(drop=True)
    df.attrs["summary"] = {
        "n_features": len(names), "n_drifted": int(df["drift"].sum()),
        "rule": f"PSI >= {PSI_FLAG:g} and KS p-value < {KS_ALPHA:g}",
        "bins": f"{bins} training quantile bins (one bin per value when <= {BINS} distinct values)",
        "features": what, "n_train": int(len(a)), "n_test": int(len(b)),
    }
    return df


def _classifier_input(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    if a.ndim >= 3:
        a, b, names = image_summary(a, b, n_components=16, seed=seed)
        return a, b, f"image summary ({len(names)} columns)"
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    if a.shape[1] > 200:
        both = np.vstack([a, b])
        pca = PCA(n_components=50, svd_solver="randomized", random_state=seed).fit(both)
        return pca.transform(a), pca.transform(b), "50 principal components of the columns"
    return a, b, "all columns"


def classifier_two_sample(X_train: np.ndarray, X_test: np.ndarray, seed: int = 0, max_rows: int = 10_000,
                          folds: int = 5) -> dict[str, Any]:
    """Can a classifier tell training rows from test rows? AUC near 0.5 means no shift.

    Returns:
        ``{"auc", "auc_std", "pvalue", "shift", "n_train", "n_test", "folds", "model", "input"}``
        (plain types; ``auc`` is None when either side has fewer than 10 rows).
    """
    rng = np.random.default_rng(seed)
    a = _subsample(np.asarray(X_train), max_rows, rng)
    b = _subsample(np.asarray(X_test), max_rows, rng)
    base: dict[str, Any] = {"n_train": int(len(a)), "n_test": int(len(b)),
                            "model": "HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=15)"}
    if min(len(a), len(b)) < 10:
        return {**base, "auc": None, "auc_std": None, "pvalue": None, "shift": False, "folds": 0,
                "input": "too few rows (need 10 per side)"}
    a, b, what = _classifier_input(a, b, seed)
    Z = np.vstack([a, b]).astype(np.float32)
    side = np.r_[np.zeros(len(a), dtype=np.int64), np.ones(len(b), dtype=np.int64)]
    k = int(min(folds, len(a), len(b)))
    scores = np.zeros(len(Z))
    fold_auc = []
    for tr, te in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(Z, side):
        clf = HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=15, learning_rate=0.1,
                                             early_stopping=False, random_state=seed)
        # No class weights: AUC does not depend on the class balance, and weights would make the
        # histogram binning take weighted percentiles (tens of times slower).
        clf.fit(Z[tr], side[tr])
        scores[te] = clf.predict_proba(Z[te])[:, 1]
        fold_auc.append(roc_auc_score(side[te], scores[te]))
    auc = float(roc_auc_score(side, scores))
    p = float(stats.mannwhitneyu(scores[side == 1], scores[side == 0], alternative="greater").pvalue)
    return {**base, "auc": auc, "auc_std": float(np.std(fold_auc)), "pvalue": p,
            "shift": bool(auc >= AUC_FLAG and p < KS_ALPHA), "folds": k, "input": what,
            "rule": f"AUC >= {AUC_FLAG:g} and Mann-Whitney p < {KS_ALPHA:g}"}


def drift_table_records(df: pd.DataFrame, limit: int = 100) -> list[dict[str, Any]]:
    """The first ``limit`` rows of a ``feature_drift`` table as JSON-ready dicts."""
    out = []
    for rec in df.head(limit).to_dict(orient="records"):
        out.append({k: (bool(v) if isinstance(v, (bool, np.bool_)) else
                        str(v) if k == "feature" else
                        (None if v is None or not np.isfinite(v) else round(float(v), 6)))
                    for k, v in rec.items()})
    return out


def online_drift(X_ref: np.ndarray, X_new: np.ndarray, feature_names: Sequence[str] | None = None,
                 seed: int = 0, two_sample: bool = True, limit: int = 20) -> dict[str, Any]:
    """Drift of a new batch against the reference (training) data, for inference-time monitoring.

    The same measures as at training time: per-feature PSI/KS/KL and, when ``two_sample`` and
    the batch has at least 10 rows, the classifier two-sample AUC.

    Returns:
        A JSON-ready dict: ``drift`` (bool: any feature flagged or the classifier finds a shift),
        ``n_drifted``, ``share_drifted``, ``drifted_features``, ``features`` (top ``limit`` rows
        of the table), ``two_sample`` (or None), ``n_ref``, ``n_new``.
    """
    table = feature_drift(X_ref, X_new, feature_names, seed=seed)
    two = classifier_two_sample(X_ref, X_new, seed=seed) if two_sample else None
    drifted = table.loc[table["drift"], "feature"].astype(str).tolist()
    return {
        "drift": bool(drifted) or bool(two and two.get("shift")),
        "n_drifted": len(drifted),
        "share_drifted": len(drifted) / max(1, len(table)),
        "drifted_features": drifted,
        "features": drift_table_records(table, limit),
        "two_sample": two,
        "rule": table.attrs["summary"]["rule"],
        "n_ref": int(len(X_ref)), "n_new": int(len(X_new)),
    }
