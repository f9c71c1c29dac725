"""Data detectors (outliers, duplicates, drift, data health) on data with a known answer."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import make_blobs, make_classification
from sklearn.metrics import average_precision_score

from trainyard.data.dataset import Dataset
from trainyard.diagnose.data_health import data_health
from trainyard.diagnose.drift import classifier_two_sample, feature_drift, online_drift
from trainyard.diagnose.duplicates import exact_groups, find_duplicates
from trainyard.diagnose.outliers import outlier_scores
from trainyard.diagnose.registry import available, get


def _with_planted_copies(n=1500, d=12, n_exact=20, n_near=40, jitter=0.01, seed=0):
    """Clean rows, then exact copies and jittered copies of known source rows appended after them."""
    rng = np.random.default_rng(seed)
    X, y = make_classification(n, d, n_informative=6, n_classes=3, random_state=seed)
    src = rng.choice(n, n_exact + n_near, replace=False)
    copies = X[src].copy()
    copies[n_exact:] += jitter * X.std(axis=0) * rng.standard_normal((n_near, d))
    Xall = np.vstack([X, copies]).astype(np.float32)
    yall = np.r_[y, y[src]]
    yall[n] = (yall[n] + 1) % 3  # the first exact copy carries a different label: a conflict
    ids = np.array([f"row{i}" for i in range(len(Xall))], dtype=object)
    return Xall, yall, ids, src, n


def test_planted_duplicates_found_with_their_kept_row():
    X, y, ids, src, n = _with_planted_copies()
    df = find_duplicates(X, y, ids)
    planted = np.arange(n, len(X))
    found = df["duplicate_of"].to_numpy()[planted] == ids[src]
    assert found.mean() >= 0.95
    assert not df["duplicate"].to_numpy()[:n].any(), "no clean row may be called a copy"
    assert (df["duplicate_kind"].to_numpy()[n:n + 20] == "exact").all()
    assert (df["duplicate_kind"].to_numpy()[n + 20:] == "near").all()
    assert df["duplicate_conflict"].to_numpy()[n] and df["duplicate_conflict"].sum() == 1
    assert (df.loc[:n - 1, "duplicate_of"] == "").all()
    s = df.attrs["summary"]
    assert (s["n_exact"], s["n_near"], s["n_conflicting_groups"]) == (20, 40, 1)
    assert ((df["duplicate_score"] > 0) == df["duplicate"]).all()
    assert df.loc[df["duplicate"], "duplicate_distance"].max() <= s["threshold"]


def test_blocked_search_matches_exact_search():
    X, y, ids, src, n = _with_planted_copies(n=3000, seed=1)
    exact = find_duplicates(X, y, ids)
    blocked = find_duplicates(X, y, ids, max_single_block=500, block_rows=250)
    assert "k-means blocks" in blocked.attrs["summary"]["method"]
    planted = np.arange(n, len(X))
    assert (blocked["duplicate_of"].to_numpy()[planted] == ids[src]).mean() >= 0.95
    assert (blocked["duplicate"] == exact["duplicate"]).mean() >= 0.999


def test_exact_groups_treats_negative_zero_as_zero():
    X = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 2.0]], dtype=np.float32)
    assert exact_groups(X).tolist() == [0, 0, 2]


def _blobs_with_outliers(n=1200, n_out=40, seed=0):
    rng = np.random.default_rng(seed)
    X, _ = make_blobs(n, 10, centers=4, cluster_std=1.0, random_state=seed)
    lo, hi = X.min(axis=0), X.max(axis=0)
    out = rng.uniform(lo - 2, hi + 2, size=(n_out, X.shape[1]))
    truth = np.r_[np.zeros(n), np.ones(n_out)]
    return np.vstack([X, out]).astype(np.float32), truth


def test_planted_outliers_rank_first_exact_and_sampled():
    X, truth = _blobs_with_outliers()
    df = outlier_scores(None, X)
    assert average_precision_score(truth, df["outlier_score"]) >= 0.9
    assert df["outlier"].to_numpy()[truth == 1].mean() >= 0.9
    assert df["outlier"].to_numpy()[truth == 0].mean() <= 0.02
    assert df["outlier_score"].between(0, 1).all()
    sampled = outlier_scores(None, X, max_exact=500, reference_size=400)
    assert "reference sample" in sampled.attrs["summary"]["method"]
    assert average_precision_score(truth, sampled["outlier_score"]) >= 0.9


def test_outliers_combine_views_and_contamination():
    X, truth = _blobs_with_outliers(seed=1)
    rng = np.random.default_rng(0)
    feats = X @ rng.standard_normal((X.shape[1], 6)).astype(np.float32)  # a linear "embedding"
    df = outlier_scores(feats, X, contamination=0.05)
    assert df["outlier"].sum() == round(0.05 * len(X))
    assert {"outlier_z_features", "outlier_z_input"} <= set(df.columns)
    per_view = df[[c for c in df.columns if c.startswith("outlier_z_")]].to_numpy()
    assert np.allclose(df["outlier_z"], per_view.max(axis=1))
    assert average_precision_score(truth, df["outlier_score"]) >= 0.9


def test_rows_breaking_linear_ties_are_outliers():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((1000, 6))
    X = np.column_stack([base, base[:, :4] + base[:, 1:5]])  # four columns are sums of two others
    bad = X[:30].copy()
    bad[:, 6:] = X[rng.choice(1000, 30), 6:]  # plausible values, wrong row: the sums no longer hold
    truth = np.r_[np.zeros(1000), np.ones(30)]
    df = outlier_scores(None, np.vstack([X, bad]).astype(np.float32))
    assert "input_residual" in df.attrs["summary"]["views"]
    assert average_precision_score(truth, df["outlier_score"]) >= 0.9


def test_clean_gaussian_flags_few_outliers():
    X = np.random.default_rng(3).standard_normal((2000, 20)).astype(np.float32)
    assert outlier_scores(None, X)["outlier"].mean() <= 0.01


def _shifted(seed=0, n_train=2000, n_test=1000):
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((n_train, 5))
    test = rng.standard_normal((n_test, 5))
    test[:, 2] += 1.0  # one training standard deviation
    return train, test, [f"f{i}" for i in range(5)]


def test_shifted_feature_ranked_first_and_flagged():
    train, test, names = _shifted()
    df = feature_drift(train, test, names)
    assert df.loc[0, "feature"] == "f2" and bool(df.loc[0, "drift"])
    assert 0.6 < df.loc[0, "psi"] < 1.6  # PSI of a one-std normal shift is about 1
    assert abs(df.loc[0, "mean_shift"] - 1.0) < 0.15
    assert not df.loc[df["feature"] != "f2", "drift"].any()
    assert df.attrs["summary"]["n_drifted"] == 1


def test_two_sample_auc_sees_shift_and_no_shift():
    train, test, _ = _shifted(n_train=600, n_test=600)
    shifted = classifier_two_sample(train, test, seed=0)
    assert shifted["auc"] > 0.7 and shifted["shift"]
    same = classifier_two_sample(train[:300], train[300:], seed=0)
    assert same["auc"] < 0.6 and not same["shift"]


def test_image_drift_uses_summary_features():
    rng = np.random.default_rng(0)
    train = rng.uniform(0, 0.8, (400, 1, 8, 8)).astype(np.float32)
    test = np.clip(rng.uniform(0, 0.8, (200, 1, 8, 8)) + 0.15, 0, 1).astype(np.float32)
    df = feature_drift(train, test)
    assert df.loc[0, "feature"] == "mean_intensity" and bool(df.loc[0, "drift"])


def test_online_drift_is_json_ready():
    train, test, names = _shifted(n_train=500, n_test=200)
    report = online_drift(train, test, names)
    json.dumps(report, allow_nan=False)
    assert report["drift"] and report["drifted_features"] == ["f2"]
    assert online_drift(train, train[:5], names)["two_sample"]["auc"] is None


def test_data_health_finds_leak_constant_imbalance_missing():
    rng = np.random.default_rng(0)
    counts = [300, 150, 50]
    y = np.repeat(np.arange(3), counts)
    n = len(y)
    honest = rng.standard_normal((n, 3)) + 0.7 * y[:, None]  # informative, but not a leak
    leak = y * 10.0 + rng.uniform(0, 1, n)                     # the label, thinly disguised
    const = np.full(n, 4.0)
    X = np.column_stack([honest, leak, const]).astype(np.float32)
    names = ["a", "b", "c", "leak", "const"]
    ds = Dataset(X, y, ["x", "y", "z"], np.arange(n), "tabular", names,
                 info={"missing": {"a": 0, "b": 7}})
    perm = rng.permutation(n)
    splits = SimpleNamespace(train=perm[:300], val=perm[300:400], test=perm[400:])
    health = data_health(ds, splits)
    json.dumps(health, allow_nan=False)
    assert health["leakage"]["columns"] == ["leak"]
    assert health["constant_columns"]["columns"] == ["const"]
    imb = health["imbalance"]
    assert imb["ratio"] == 6.0 and imb["minority_classes"] == ["z"]
    assert imb["counts"] == {"x": 300, "y": 150, "z": 50}
    assert health["missing"]["per_column"] == {"b": 7}
    assert health["duplicates"]["n_duplicate_rows"] == 0
    assert health["two_sample"]["auc"] < 0.65
    assert health["drift"]["n_drifted"] == 0


def test_registry_lists_data_detectors():
    assert {"outliers", "duplicates"} <= set(available())
    assert get("duplicates").flag == "duplicate" and get("outliers").score == "outlier_score"
    with pytest.raises(KeyError):
        get("nope")
