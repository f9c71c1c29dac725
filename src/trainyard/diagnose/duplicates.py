"""Duplicates: rows that are byte-for-byte copies, or copies with a little jitter, of an earlier row.

Method
------
*Exact* duplicates share the same bytes (``-0.0`` counted as ``0.0``): ``np.unique`` over each
row's bytes, no hashing collisions to worry about.

*Near* duplicates are searched among the distinct rows, in the same space as the outlier
detector (columns standardised for tables, raw intensities for images): two rows are linked
when one is the other's nearest neighbour (scikit-learn ``NearestNeighbors``, brute force) and
their distance is at most the threshold. Linked rows (and exact copies) form groups (connected
components); in each group the first row in data order is **kept** and every other row gets
``duplicate_of = <id of the kept row>``, ``duplicate_distance`` (its distance to the kept row),
and ``duplicate_conflict`` (its label differs from the kept row's label).

Threshold
---------
``threshold = 0.13 x median nearest-neighbour distance`` between distinct rows (0.13 is also
cleanlab Datalab's default fraction). Measured on clean data, the smallest nearest-neighbour
distance is 0.27 x the median on sklearn digits, 0.48 x on breast cancer, 0.57 x on
make_classification, so clean rows stay well clear of it, while copies with a small jitter fall
far below it. Data whose intrinsic dimension is 1 or 2 has a much wider spread of neighbour
distances (a few % of rows fall under 0.13 x the median by chance): pass ``threshold`` there.

Scale
-----
Up to ``max_single_block`` distinct rows (20,000) every row's nearest neighbour is searched
among all rows (exact). Above it, rows are split into blocks of about ``block_rows`` (1,000) by
mini-batch k-means and searched within their own block plus up to ``probes`` (2) neighbouring
blocks whose centroid is at most ``2 x threshold`` farther than their own (an inverted-file
search, as faiss's IVF with ``nprobe``). By the triangle inequality (``d(a, B) <= d(a, A) + 2t``
when ``|a - b| <= t`` and ``b`` is closest to centroid ``B``) the search is provably exact for every
row whose next unprobed block lies beyond that margin; the summary reports that fraction
(``exact_search_fraction``) and the radius within which neighbours are certainly found for 90 %
of rows (``guaranteed_radius_p10``). Copies with small jitter sit almost on top of each other, so a miss
needs three centroids nearly equidistant from the pair: recall stays near 1 (see
benchmarks/planted_defects.py). The median distance is taken over within-block nearest
neighbours (an upper bound of the true ones for rows whose neighbour lies in another block).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.neighbors import NearestNeighbors

from .outliers import feature_matrix
from .registry import register

THRESHOLD_FRACTION = 0.13
BLOCK_ROWS = 1_000
PROBES = 2
MAX_SINGLE_BLOCK = 20_000


def exact_groups(X: np.ndarray) -> np.ndarray:
    """For each row, the index of the first row with exactly the same bytes (itself if none)."""
    n = len(X)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.ascontiguousarray(X.reshape(n, -1))
    if rows.dtype.kind == "f":
        rows = rows + rows.dtype.type(0)  # turns -0.0 into 0.0 so they hash alike
    rows = np.ascontiguousarray(rows)
    as_bytes = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, inverse = np.unique(as_bytes, return_index=True, return_inverse=True)
    return first[inverse.ravel()].astype(np.int64)


def _nn_links(nn: NearestNeighbors, query: np.ndarray | None, n_fit: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of the (up to) 2 nearest fitted rows; ``query=None`` excludes self."""
    k = min(2, n_fit - 1 if query is None else n_fit)
    if k < 1:
        m = n_fit if query is None else len(query)
        return np.full((m, 1), np.inf), np.zeros((m, 1), dtype=np.int64)
    return nn.kneighbors(query, n_neighbors=k)


def near_links(Z: np.ndarray, threshold: float | None = None, fraction: float = THRESHOLD_FRACTION,
               block_rows: int = BLOCK_ROWS, max_single_block: int = MAX_SINGLE_BLOCK,
               probes: int = PROBES, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Pairs ``(i, j)`` of rows of ``Z`` where ``j`` is one of ``i``'s 2 nearest neighbours and
    ``|Z_i - Z_j| <= threshold``. Returns the pairs and a dict with the threshold, the median
    nearest-neighbour distance and the method."""
    n = len(Z)
    info: dict[str, Any] = {}
    if n < 2:
        info.update(threshold=float(threshold or 0.0), median_nn_distance=None, method="fewer than 2 distinct rows")
        return np.zeros(0, np.int64), np.zeros(0, np.int64), info
    if n <= max_single_block:
        nn = NearestNeighbors(algorithm="brute").fit(Z)
        dist, ind = _nn_links(nn, None, n)
        median = float(np.median(dist[:, 0]))
        t = float(threshold) if threshold is not None else fraction * median
        rows = np.repeat(np.arange(n), dist.shape[1])
        keep = dist.ravel() <= t
        info.update(threshold=t, median_nn_distance=median,
                    method=f"exact nearest neighbour (brute force) among all {n} distinct rows")
        return rows[keep], ind.ravel()[keep], info

    n_blocks = math.ceil(n / block_rows)
    rng = np.random.default_rng(seed)
    fit_rows = rng.choice(n, min(n, max(50_000, 20 * n_blocks)), replace=False)
    km = MiniBatchKMeans(n_clusters=n_blocks, n_init=1, batch_size=4096, max_iter=20,
                         random_state=seed).fit(Z[fit_rows])
    centers = km.cluster_centers_.astype(np.float32)
    # The nearest (probes + 2) centroids of every row: the first is its home block, the next ones
    # are candidate extra blocks, the last tells how far the search is guaranteed to be exact.
    width = min(n_blocks, probes + 2)
    near_c = np.empty((n, width), dtype=np.int64)
    near_d = np.empty((n, width), dtype=np.float64)
    chunk = max(1, 20_000_000 // n_blocks)  # keeps the (rows x blocks) distance table near 80 MB
    for s in range(0, n, chunk):
        d = euclidean_distances(Z[s:s + chunk], centers)
        part = np.argpartition(d, width - 1, axis=1)[:, :width] if width < n_blocks else np.tile(
            np.arange(n_blocks), (len(d), 1))
        pd_ = np.take_along_axis(d, part, axis=1)
        o = np.argsort(pd_, axis=1)
        near_c[s:s + chunk] = np.take_along_axis(part, o, axis=1)
        near_d[s:s + chunk] = np.take_along_axis(pd_, o, axis=1)
    home = near_c[:, 0]

    # Phase A: nearest neighbour inside the row's own block.
    order = np.argsort(home, kind="stable")
    bounds = np.searchsorted(home[order], np.arange(n_blocks + 1))
    members = [order[bounds[b]:bounds[b + 1]] for b in range(n_blocks)]
    best = np.full(n, np.inf)
    pair_i, pair_j, pair_d = [], [], []
    for rows in members:
        if len(rows) == 0:
            continue
        nn = NearestNeighbors(algorithm="brute").fit(Z[rows])
        dist, ind = _nn_links(nn, None, len(rows))
        best[rows] = dist[:, 0]
        pair_i.append(np.repeat(rows, dist.shape[1]))
        pair_j.append(rows[ind.ravel()] if len(rows) > 1 else np.repeat(rows, dist.shape[1]))
        pair_d.append(dist.ravel())
    finite = best[np.isfinite(best)]
    median = float(np.median(finite)) if len(finite) else 0.0
    t = float(threshold) if threshold is not None else fraction * median

    # Phase B: other blocks that could hold a neighbour within t. If a and b are within t and b is
    # closest to centroid B, then d(a, B) <= d(a, home(a)) + 2t (triangle inequality), so probing
    # every block within that margin is exact; we probe at most `probes` of them per row.
    margin = near_d[:, 1:] - near_d[:, :1]
    probe = margin[:, :probes] <= 2 * t
    er = np.repeat(np.arange(n), probe.sum(axis=1))
    eb = near_c[:, 1:probes + 1][probe]
    # Exact for a row when the first block it did not probe is beyond the margin.
    guaranteed = np.minimum(margin[:, probes] / 2, t) if margin.shape[1] > probes else np.full(n, t)
    exact_rows = guaranteed >= t
    o = np.argsort(eb, kind="stable")
    er, eb = er[o], eb[o]
    cuts = np.searchsorted(eb, np.arange(n_blocks + 1))
    for b in range(n_blocks):
        q = er[cuts[b]:cuts[b + 1]]
        if len(q) == 0 or len(members[b]) == 0:
            continue
        # refitted rather than kept from phase A: the kept indexes would hold a second copy of Z
        nn = NearestNeighbors(algorithm="brute").fit(Z[members[b]])
        dist, ind = _nn_links(nn, Z[q], len(members[b]))
        pair_i.append(np.repeat(q, dist.shape[1]))
        pair_j.append(members[b][ind.ravel()])
        pair_d.append(dist.ravel())
    i, j, d = np.concatenate(pair_i), np.concatenate(pair_j), np.concatenate(pair_d)
    keep = (d <= t) & (i != j)
    info.update(threshold=t, median_nn_distance=median, n_blocks=n_blocks, probes=probes,
                extra_block_searches=int(len(er)), exact_fraction=float(exact_rows.mean()),
                guaranteed_radius_p10=float(np.quantile(guaranteed, 0.1)),
                method=(f"nearest neighbour within {n_blocks} mini-batch k-means blocks of {n} distinct rows, "
                        f"each row also searched in up to {probes} neighbouring blocks within 2 x threshold "
                        f"of its own; the search is provably exact for {exact_rows.mean():.1%} of rows"))
    return i[keep], j[keep], info


@register("duplicates", score="duplicate_score", flag="duplicate")
def find_duplicates(X: np.ndarray, y: np.ndarray | None = None, ids: np.ndarray | None = None,
                    threshold: float | None = None, *, standardize: bool | None = None,
                    fraction: float = THRESHOLD_FRACTION, block_rows: int = BLOCK_ROWS,
                    max_single_block: int = MAX_SINGLE_BLOCK, probes: int = PROBES,
                    seed: int = 0) -> pd.DataFrame:
    """Find exact and near-duplicate rows.

    Args:
        X: ``(N, D)`` table or ``(N, C, H, W)`` images.
        y: integer labels (for ``duplicate_conflict``), or None.
        ids: the user's row ids (default: row numbers).
        threshold: largest distance (in the standardised space) still called a near duplicate;
            default ``fraction`` x the median nearest-neighbour distance.
        standardize: z-score columns before measuring distances (default: tables yes, images no).

    Returns:
        One row per sample: ``duplicate`` (bool: a later copy of a kept row), ``duplicate_score``
        (0..1: 1 exact copy, 0.5 at the threshold, 0 not a duplicate), ``duplicate_of`` (id of the
        kept row, or ""), ``duplicate_distance`` (NaN when not a duplicate), ``duplicate_conflict``,
        ``duplicate_kind`` ("exact", "near" or ""), ``duplicate_group`` (-1 when alone; kept rows
        carry their group too). ``df.attrs["summary"]`` holds counts, threshold and method.

    Example:
        >>> df = find_duplicates(X, y, ids)
        >>> df[df.duplicate_conflict]      # copies whose label disagrees with the kept row
    """
    X = np.asarray(X)
    n = len(X)
    ids = np.arange(n).astype(str).astype(object) if ids is None else np.asarray(ids).astype(str).astype(object)
    if len(ids) != n or (y is not None and len(y) != n):
        raise ValueError(f"X has {n} rows but ids has {len(ids)} and y {None if y is None else len(y)}")
    if n == 0:
        df = pd.DataFrame({"duplicate": np.zeros(0, bool), "duplicate_score": np.zeros(0),
                           "duplicate_of": np.zeros(0, object), "duplicate_distance": np.zeros(0),
                           "duplicate_conflict": np.zeros(0, bool), "duplicate_kind": np.zeros(0, object),
                           "duplicate_group": np.zeros(0, np.int64)})
        df.attrs["summary"] = {"n_duplicate_rows": 0, "n_exact": 0, "n_near": 0, "n_groups": 0,
                               "n_conflicting_groups": 0, "method": "no rows"}
        return df
    first = exact_groups(X)
    distinct = np.flatnonzero(first == np.arange(n))
    Z_all, notes = feature_matrix(X, standardize=standardize)
    li, lj, info = near_links(Z_all if len(distinct) == n else Z_all[distinct], threshold, fraction, block_rows, max_single_block, probes, seed)

    # Groups: exact copies join their first occurrence, near links join distinct rows.
    src = np.concatenate([np.arange(n), distinct[li]])
    dst = np.concatenate([first, distinct[lj]])
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    kept_of_comp = np.full(comp.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(kept_of_comp, comp, np.arange(n))
    kept = kept_of_comp[comp]
    sizes = np.bincount(comp) if n else np.zeros(0, dtype=np.int64)
    in_group = sizes[comp] > 1 if n else np.zeros(0, dtype=bool)
    is_dup = kept != np.arange(n)

    dup_rows = np.flatnonzero(is_dup)
    distance = np.full(n, np.nan)
    distance[dup_rows] = np.sqrt(((Z_all[dup_rows].astype(np.float64) - Z_all[kept[dup_rows]]) ** 2).sum(axis=1))
    exact = is_dup & (first == first[kept])
    distance[exact] = 0.0
    t = float(info["threshold"])
    score = np.zeros(n)
    if t > 0:
        score[dup_rows] = np.clip(1.0 - distance[dup_rows] / (2 * t), 0.0, 1.0)
    score[exact] = 1.0
    conflict = np.zeros(n, dtype=bool)
    if y is not None:
        y = np.asarray(y)
        conflict[dup_rows] = y[dup_rows] != y[kept[dup_rows]]
    kind = np.full(n, "", dtype=object)
    kind[is_dup] = "near"
    kind[exact] = "exact"
    group = np.full(n, -1, dtype=np.int64)
    group_comps = np.unique(comp[in_group])
    # Groups are numbered in the order of their kept row, which is the order a reader scans the data.
    group_comps = group_comps[np.argsort(kept_of_comp[group_comps], kind="stable")]
    renumber = np.full(len(kept_of_comp), -1, dtype=np.int64)
    renumber[group_comps] = np.arange(len(group_comps))
    group[in_group] = renumber[comp[in_group]]
    duplicate_of = np.full(n, "", dtype=object)
    duplicate_of[dup_rows] = ids[kept[dup_rows]]

    df = pd.DataFrame({"duplicate": is_dup, "duplicate_score": score, "duplicate_of": duplicate_of,
                       "duplicate_distance": distance, "duplicate_conflict": conflict,
                       "duplicate_kind": kind, "duplicate_group": group})
    conflicting_groups = np.unique(group[conflict]) if conflict.any() else np.zeros(0)
    exact_group_ids = np.unique(group[exact])
    near_group_ids = np.unique(group[is_dup & ~exact])
    df.attrs["summary"] = {
        "n_duplicate_rows": int(is_dup.sum()),
        "n_exact": int(exact.sum()),
        "n_near": int((is_dup & ~exact).sum()),
        "n_groups": int(len(group_comps)),
        "n_exact_groups": int(len(exact_group_ids)),
        "n_near_groups": int(len(near_group_ids)),
        "n_conflicting_groups": int(len(conflicting_groups)),
        "n_conflicting_rows": int(conflict.sum()),
        "threshold": t,
        "threshold_rule": ("given" if threshold is not None
                           else f"{fraction:g} x median nearest-neighbour distance"),
        "median_nn_distance": info.get("median_nn_distance"),
        "space": "standardized columns" if notes["standardized"] else "raw values",
        "method": "exact: byte equality of rows; near: " + info["method"],
        "exact_search_fraction": info.get("exact_fraction", 1.0),
        # 90 % of rows have every neighbour closer than this found for certain (= threshold when exact).
        "guaranteed_radius_p10": info.get("guaranteed_radius_p10", t),
    }
    return df
