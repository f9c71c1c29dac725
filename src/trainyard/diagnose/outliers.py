"""Outliers: rows far from every other row, in input space and in the model's feature space.

Method
------
For each view of the data (the inputs, and the model's penultimate features when given) we
take the mean Euclidean distance from a row to its ``k`` nearest other rows (scikit-learn
``NearestNeighbors``). Inputs are standardised column by column (tabular) or used as raw pixel
intensities (images, which already share one scale); views wider than 64 columns are first
reduced with PCA so the neighbour search stays cheap. The features view is used as it is (one
learned space; standardising would blow up nearly-dead units).

For tables (standardised columns) a second input signal is added: the distance of the row from
the PCA subspace that holds 99 % of the variance. Real tables have correlated columns (a total
and its parts, a price and its tax); a row that breaks those linear ties can sit at an ordinary
distance from its neighbours and still be impossible. The signal is used only when that
subspace is narrower than 3/4 of the columns (otherwise the residual is just noise); images
skip it, since their residual mostly measures fine detail.

Each signal (log kNN distance per view, log residual) is turned into a *robust z-score*
``(log d - median) / (1.4826 MAD)``; the log makes the distance distribution close to symmetric,
the median/MAD keep the planted or real outliers from inflating the scale they are judged by.
The signals are combined by the maximum z (an outlier in any view is an outlier).

Threshold (no tuning): a row is flagged when its combined z exceeds 3, i.e. its kNN distance is
more than three robust standard deviations above the typical one on a log scale (on clean
Gaussian data in 40 dimensions this flags about 0.5 % of rows). The robust standard deviation is
floored at 0.1 (log units), so a flagged row is always at least exp(0.3) = 1.35 x farther from
its neighbours than the median row, even on grid-like data where nearly all distances are equal. ``contamination`` replaces this
by "flag the top fraction". ``outlier_score = sigmoid(z - 3)`` lies in 0..1, is monotone in z (so
it ranks exactly as z does) and equals 0.5 at the flag threshold.

Scale
-----
Up to ``max_exact`` rows (50,000) every row's neighbours are searched among all rows. Above it,
neighbours are searched in a uniform reference sample of ``reference_size`` rows (10,000):
the kNN distance to a sample measures the same density at a coarser scale, and the cost becomes
linear in N. The summary's ``method`` says which was used.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from .registry import register

FLAG_Z = 3.0
MAX_EXACT = 50_000
REFERENCE_SIZE = 10_000
MAX_DIMS = 64
RESIDUAL_VARIANCE = 0.99
MIN_LOG_SCALE = 0.1


def feature_matrix(X: np.ndarray, standardize: bool | None = None, max_dims: int | None = None,
                   seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Rows of ``X`` as a float32 matrix fit for Euclidean distances.

    Args:
        X: ``(N, D)`` table or ``(N, C, H, W)`` images (anything with N rows; flattened).
        standardize: z-score each column. ``None`` = yes for 2-D tables, no for images
            (pixels share one scale, and near-constant border pixels would dominate).
        max_dims: when the row is wider, project onto this many PCA components.
        seed: PCA's random state.

    Returns:
        The matrix and a dict describing what was done (for the summary).
    """
    X = np.asarray(X)
    was_2d = X.ndim == 2
    Z = np.ascontiguousarray(X.reshape(len(X), -1), dtype=np.float32)
    if standardize is None:
        standardize = was_2d
    notes: dict[str, Any] = {"standardized": bool(standardize), "dims": int(Z.shape[1])}
    if standardize and len(Z):
        mean = Z.mean(axis=0, dtype=np.float64)
        std = Z.std(axis=0, dtype=np.float64)
        # A constant column carries no distance information; dividing by 1 keeps it at zero.
        std[std == 0] = 1.0
        # float32 arithmetic: one new matrix, not a float64 temporary twice its size (10^6 rows)
        Z = Z - mean.astype(np.float32)
        Z /= std.astype(np.float32)
    if max_dims is not None and Z.shape[1] > max_dims and len(Z) > max_dims:
        rng = np.random.default_rng(seed)
        fit_rows = rng.choice(len(Z), min(len(Z), 20_000), replace=False)
        pca = PCA(n_components=max_dims, svd_solver="randomized", random_state=seed).fit(Z[fit_rows])
        Z = pca.transform(Z).astype(np.float32)
        notes["pca_dims"] = int(max_dims)
        notes["pca_variance_kept"] = round(float(pca.explained_variance_ratio_.sum()), 4)
    return Z, notes


def knn_distance(Z: np.ndarray, k: int = 10, max_exact: int = MAX_EXACT,
                 reference_size: int = REFERENCE_SIZE, seed: int = 0) -> tuple[np.ndarray, str]:
    """Mean distance from each row to its ``k`` nearest *other* rows.

    Exact over all rows up to ``max_exact`` rows, else against a uniform reference sample.
    Returns the distances and the method used.
    """
    n = len(Z)
    if n <= max_exact:
        ref_idx = np.arange(n)
        method = f"exact kNN over all {n} rows"
    else:
        rng = np.random.default_rng(seed)
        ref_idx = np.sort(rng.choice(n, reference_size, replace=False))
        method = f"kNN against a uniform reference sample of {reference_size} rows"
    k = int(min(k, len(ref_idx) - 1))
    if k < 1:
        return np.zeros(n, dtype=np.float64), method
    algorithm = "brute" if Z.shape[1] > 15 else "auto"
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm=algorithm).fit(Z[ref_idx])
    out = np.empty(n, dtype=np.float64)
    chunk = 100_000
    in_ref = np.full(n, -1, dtype=np.int64)
    in_ref[ref_idx] = np.arange(len(ref_idx))
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        dist, ind = nn.kneighbors(Z[rows])
        # A reference row finds itself; drop that column (not just the first: exact copies tie at 0).
        is_self = ind == in_ref[rows][:, None]
        has_self = is_self.any(axis=1)
        keep = np.where(has_self[:, None], ~is_self, np.arange(k + 1)[None, :] < k)
        out[rows] = (dist * keep).sum(axis=1) / k
    return out, method


def robust_z(values: np.ndarray, min_scale: float = 0.0) -> np.ndarray:
    """``(v - median) / (1.4826 MAD)``; falls back to the IQR or std when the MAD is zero, and
    never divides by less than ``min_scale``."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return v
    med = np.median(v)
    scale = 1.4826 * np.median(np.abs(v - med))
    if scale <= 1e-12:
        q75, q25 = np.percentile(v, [75, 25])
        scale = (q75 - q25) / 1.349
    if scale <= 1e-12:
        scale = float(v.std())
    scale = max(scale, min_scale)
    if scale <= 1e-12:
        return np.zeros_like(v)
    return (v - med) / scale


def _log_z(values: np.ndarray) -> np.ndarray:
    """Robust z of log values; zeros (exact copies) are floored so the log stays finite."""
    positive = values[values > 0]
    floor = positive.min() * 0.5 if len(positive) else 1.0
    # Scale floor 0.1: on data where nearly all rows have the same neighbour distance (a grid,
    # many copies) the MAD is tiny and a distance 10 % above typical would otherwise be "3 sigma".
    return robust_z(np.log(np.maximum(values, floor)), min_scale=MIN_LOG_SCALE)


def pca_residual(Z: np.ndarray, variance: float = RESIDUAL_VARIANCE, seed: int = 0
                 ) -> tuple[np.ndarray | None, str]:
    """Distance of each row from the PCA subspace holding ``variance`` of the variance.

    None when that subspace is wider than 3/4 of the columns: the columns are then not tied by
    linear relations that a row could break, and the residual is noise.
    """
    n, d = Z.shape
    if n < 10 or d < 4 or not np.any(Z.std(axis=0) > 0):
        return None, "skipped: too few rows, columns or distinct values"
    rng = np.random.default_rng(seed)
    fit_rows = rng.choice(n, min(n, 20_000), replace=False)
    pca = PCA(n_components=variance, svd_solver="full").fit(Z[fit_rows])
    if pca.n_components_ > 0.75 * d:
        return None, f"skipped: {pca.n_components_} of {d} components needed for {variance:.0%} variance"
    residual = np.empty(n, dtype=np.float64)
    for start in range(0, n, 100_000):
        block = Z[start:start + 100_000]
        back = pca.inverse_transform(pca.transform(block))
        residual[start:start + 100_000] = np.sqrt(((block - back) ** 2).sum(axis=1, dtype=np.float64))
    return residual, f"{pca.n_components_} of {d} components ({variance:.0%} variance)"


@register("outliers", score="outlier_score", flag="outlier")
def outlier_scores(features: np.ndarray | None, X_input: np.ndarray | None = None, k: int = 10,
                   contamination: float | None = None, *, standardize: bool | None = None, seed: int = 0,
                   max_exact: int = MAX_EXACT, reference_size: int = REFERENCE_SIZE) -> pd.DataFrame:
    """Score every row for being far from the rest of the data.

    Args:
        features: the model's penultimate features ``(N, F)``, or None.
        X_input: the inputs ``(N, D)`` or ``(N, C, H, W)``, or None (at least one view is needed).
        k: neighbours averaged.
        contamination: if given, flag exactly this fraction of rows (highest scores) instead of z > 3.
        standardize: z-score the input columns (default: yes for 2-D tables, no for images; pass
            False for flattened images or text vectors, whose columns share one scale). The
            features view is used as is: the network's units are one learned space.
        seed: sampling / PCA seed.

    Returns:
        One row per sample: ``outlier_score`` (0..1, higher = more isolated), ``outlier`` (bool),
        ``outlier_z`` (combined robust z) and per view ``outlier_knn_distance_<view>``,
        ``outlier_z_<view>`` (plus ``outlier_residual_input`` / ``outlier_z_input_residual`` when
        the table's columns are linearly tied, see the module docstring). ``df.attrs["summary"]`` holds the counts, threshold and method.

    Example:
        >>> df = outlier_scores(None, X)          # input space only
        >>> df.sort_values("outlier_score").tail()
    """
    views = {name: arr for name, arr in (("features", features), ("input", X_input)) if arr is not None}
    if not views:
        raise ValueError("outlier_scores needs features, X_input or both")
    sizes = {len(a) for a in views.values()}
    if len(sizes) != 1:
        raise ValueError(f"features and X_input have different numbers of rows: {sorted(sizes)}")
    n = sizes.pop()
    if n == 0:
        df = pd.DataFrame({"outlier_score": np.zeros(0), "outlier": np.zeros(0, dtype=bool),
                           "outlier_z": np.zeros(0)})
        df.attrs["summary"] = {"n_outliers": 0, "fraction": 0.0, "method": "no rows"}
        return df
    cols: dict[str, np.ndarray] = {}
    zs = []
    notes: dict[str, Any] = {}
    method = ""
    used: list[str] = []
    for name, arr in views.items():
        Z, note = feature_matrix(arr, standardize=standardize if name == "input" else False,
                                 max_dims=MAX_DIMS, seed=seed)
        dist, method = knn_distance(Z, k=k, max_exact=max_exact, reference_size=reference_size, seed=seed)
        cols[f"outlier_knn_distance_{name}"] = dist
        cols[f"outlier_z_{name}"] = z = _log_z(dist)
        zs.append(z)
        used.append(name)
        if name == "input" and note["standardized"]:
            residual, note["residual"] = pca_residual(Z, seed=seed)
            if residual is not None:
                cols["outlier_residual_input"] = residual
                cols["outlier_z_input_residual"] = z = _log_z(residual)
                zs.append(z)
                used.append("input_residual")
        notes[name] = note
    z = np.max(np.vstack(zs), axis=0) if n else np.zeros(0)
    score = expit(z - FLAG_Z)
    if contamination is not None:
        if not 0 <= contamination < 1:
            raise ValueError(f"contamination must be in [0, 1), got {contamination}")
        n_flag = int(round(contamination * n))
        flag = np.zeros(n, dtype=bool)
        if n_flag:
            flag[np.argsort(-z, kind="stable")[:n_flag]] = True
        rule = f"top {contamination:.3g} fraction by combined z"
    else:
        flag = z > FLAG_Z
        rule = f"combined robust z (log kNN distance, log PCA residual) > {FLAG_Z:g}"
    df = pd.DataFrame({"outlier_score": score, "outlier": flag, "outlier_z": z, **cols})
    df.attrs["summary"] = {
        "n_outliers": int(flag.sum()),
        "fraction": float(flag.mean()) if n else 0.0,
        "k": int(k),
        "views": used,
        "combine": "max of per-view robust z",
        "threshold": rule,
        "method": method,
        "preprocessing": notes,
    }
    return df
