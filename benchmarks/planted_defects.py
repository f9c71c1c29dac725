"""Planted defects: do the data detectors find what we put in?

On sklearn digits (8x8 images, pixels / 16) and a make_classification table (5,000 x 40,
10 classes), for 3 seeds:

* duplicates: 2 % exact copies and 3 % near copies (copy + Gaussian jitter whose norm is a
  given fraction of the median nearest-neighbour distance: 0.02, 0.05, 0.1, and 0.2, which is
  beyond the 0.13 threshold and so should mostly be missed), 10 % of the copies
  with a different label. Reports near/exact recall (copy linked to its source), precision
  (a flagged row and its kept row come from the same planted pair), conflict recall/precision,
  and rows flagged on the clean data (false positives).
* outliers: 3 % rows from another distribution -- ``uniform`` (uniform over each feature's range;
  for digits uniform pixel noise), ``other`` (digits: each image's pixels shuffled; table: a
  make_classification with another random state), and the known hard case ``marginals`` (each
  feature drawn independently from its own marginal: only the correlations are wrong). Reports
  PR-AUC of ``outlier_score`` in input space (and in the model's penultimate features with
  ``--features``), flag precision/recall and the flag rate on clean data.
* drift: a random 70/30 train/test split, one random non-constant feature (a pixel for digits)
  moved by one training std in the test part. Reports whether it is ranked first by PSI, whether
  it is flagged, how many other features are flagged, and the two-sample AUC with and without
  the shift.
* scale: outliers + duplicates on ``--scale`` rows x 40 (make_classification), wall and CPU
  seconds (the shared machine makes wall time noisy; CPU seconds are the steadier figure).

    python benchmarks/planted_defects.py [--seeds 0,1,2] [--scale 200000] [--features]

Writes benchmarks/results/planted_defects.json and prints a table.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, machine, mean_std, write_result  # noqa: E402

from sklearn.datasets import make_classification  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402

from trainyard.diagnose.drift import classifier_two_sample, feature_drift  # noqa: E402
from trainyard.diagnose.duplicates import find_duplicates  # noqa: E402
from trainyard.diagnose.outliers import feature_matrix, outlier_scores  # noqa: E402

JITTERS = (0.02, 0.05, 0.1, 0.2)  # threshold is 0.13: the last one is beyond it on purpose
OUTLIER_KINDS = ("uniform", "other", "marginals")


def load_digits_images() -> tuple[np.ndarray, np.ndarray, str]:
    """Digits as (N, 1, 8, 8) in 0..1, through trainyard's loader when it is there."""
    try:
        from trainyard import load

        ds = load("sklearn:digits")
        return ds.X.reshape(len(ds), 1, 8, 8).astype(np.float32), ds.y, "trainyard.load('sklearn:digits')"
    except Exception:  # the loader is optional here: the numbers do not depend on it
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images / 16.0).reshape(-1, 1, 8, 8).astype(np.float32), d.target, "sklearn.datasets.load_digits"


def load_table(seed: int, n: int = 5000, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n, 40, n_informative=20, n_redundant=10, n_classes=10,
                               random_state=random_state + 1000 * seed)
    return X.astype(np.float32), y


def _space(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The detector's distance space (standardised tables, raw images) and the per-column scale."""
    Z, notes = feature_matrix(X)
    flat = X.reshape(len(X), -1)
    scale = flat.std(axis=0) if notes["standardized"] else np.ones(flat.shape[1])
    scale[scale == 0] = 1.0
    return Z, scale


def median_nn(Z: np.ndarray) -> float:
    d, _ = NearestNeighbors(n_neighbors=2).fit(Z).kneighbors(Z)
    return float(np.median(d[:, 1]))


def bench_duplicates(X: np.ndarray, y: np.ndarray, seed: int, jitter: float) -> dict:
    rng = np.random.default_rng(seed)
    n = len(X)
    n_exact, n_near = int(0.02 * n), int(0.03 * n)
    Z, scale = _space(X)
    med = median_nn(Z)
    flat = X.reshape(n, -1)
    src = rng.choice(n, n_exact + n_near, replace=False)
    copies = flat[src].copy()
    noise = rng.standard_normal((n_near, flat.shape[1]))
    noise *= jitter * med / np.linalg.norm(noise, axis=1, keepdims=True)
    copies[n_exact:] += (noise * scale).astype(np.float32)
    y_copies = y[src].copy()
    conflict = rng.random(len(src)) < 0.10
    k = int(y.max()) + 1
    y_copies[conflict] = (y_copies[conflict] + rng.integers(1, k, conflict.sum())) % k
    Xall = np.vstack([flat, copies]).reshape((-1,) + X.shape[1:])
    yall = np.r_[y, y_copies]
    family = np.r_[np.arange(n), src]
    is_copy = np.r_[np.zeros(n, bool), np.ones(len(src), bool)]
    near_copy = np.r_[np.zeros(n, bool), np.arange(len(src)) >= n_exact]
    exact_copy = is_copy & ~near_copy
    conflict_all = np.r_[np.zeros(n, bool), conflict]
    order = rng.permutation(len(Xall))  # copies may come before their source
    Xall, yall, family = Xall[order], yall[order], family[order]
    near_copy, exact_copy, conflict_all = near_copy[order], exact_copy[order], conflict_all[order]
    ids = np.arange(len(Xall)).astype(str)
    pos = np.empty(len(order), dtype=np.int64)
    pos[order] = np.arange(len(order))
    source_pos = pos[np.r_[np.arange(n), src]][order]  # where each row's source sits now

    t0 = time.perf_counter()
    df = find_duplicates(Xall, yall, ids)
    seconds = time.perf_counter() - t0
    group = df["duplicate_group"].to_numpy()
    linked = (group >= 0) & (group == group[source_pos])
    flagged = df["duplicate"].to_numpy()
    kept = np.array([int(i) if i else -1 for i in df["duplicate_of"]])
    tp = flagged & (family == family[np.maximum(kept, 0)])
    flagged_conflict = df["duplicate_conflict"].to_numpy()
    # A conflicting pair is found when either member is flagged as conflicting with the other.
    conflict_found = np.array([flagged_conflict[i] or flagged_conflict[source_pos[i]]
                               for i in np.flatnonzero(conflict_all)])
    clean = find_duplicates(X, y, np.arange(n).astype(str))
    return {
        "near_recall": float(linked[near_copy].mean()),
        "exact_recall": float(linked[exact_copy].mean()),
        "precision": float(tp.sum() / max(flagged.sum(), 1)),
        "conflict_recall": float(conflict_found.mean()) if len(conflict_found) else None,
        "conflict_precision": float((flagged_conflict & tp).sum() / max(flagged_conflict.sum(), 1)),
        "clean_flagged_rows": int(clean["duplicate"].sum()),
        "threshold_over_median_nn": float(df.attrs["summary"]["threshold"] / med),
        "seconds": seconds,
    }


def plant_outliers(X: np.ndarray, seed: int, kind: str, table_seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 17)
    n = len(X)
    m = int(0.03 * n)
    flat = X.reshape(n, -1)
    if kind == "uniform":
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        if X.ndim > 2:
            lo, hi = np.zeros_like(lo), np.ones_like(hi)
        out = rng.uniform(lo, hi, size=(m, flat.shape[1]))
    elif kind == "marginals":
        out = np.column_stack([rng.choice(flat[:, j], m) for j in range(flat.shape[1])])
    elif X.ndim > 2:  # "other" for images: a real digit's pixels in random places
        out = np.array([rng.permutation(flat[i]) for i in rng.choice(n, m, replace=False)])
    else:  # "other" for tables: another make_classification draw (other cluster centres)
        other, _ = load_table(table_seed, n=m, random_state=99)
        out = other
    Xall = np.vstack([flat, out.astype(np.float32)]).reshape((-1,) + X.shape[1:])
    truth = np.r_[np.zeros(n), np.ones(m)]
    return Xall, truth


def penultimate_features(X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray | None:
    """Penultimate features of a short trainyard fit (None if trainyard.fit is unavailable)."""
    import tempfile

    import torch

    torch.set_num_threads(1)
    try:
        from trainyard import fit
        from trainyard.data.dataset import Dataset
        from trainyard.train.trainer import embed

        kind = "image" if X.ndim > 2 else "tabular"
        ds = Dataset(X, y, [str(c) for c in range(int(y.max()) + 1)], np.arange(len(X)), kind)
        with tempfile.TemporaryDirectory() as tmp:
            res = fit(ds, out=Path(tmp) / "run", epochs=15, seed=seed, quiet=True, write_report=False)
            return embed(res.model, X)
    except Exception as e:  # optional view: report why it is missing instead of failing the benchmark
        print(f"  (penultimate features skipped: {type(e).__name__}: {e})")
        return None


def bench_outliers(X: np.ndarray, y: np.ndarray, seed: int, kind: str, with_features: bool) -> dict:
    Xall, truth = plant_outliers(X, seed, kind, seed)
    t0 = time.perf_counter()
    df = outlier_scores(None, Xall, seed=seed)
    seconds = time.perf_counter() - t0
    flag = df["outlier"].to_numpy()
    res = {"pr_auc_input": float(average_precision_score(truth, df["outlier_score"])),
           "flag_precision": float(truth[flag].mean()) if flag.any() else None,
           "flag_recall": float(flag[truth == 1].mean()), "seconds": seconds}
    if with_features:
        # The outliers get random labels from the real classes, as they would in a real file.
        rng = np.random.default_rng(seed)
        yall = np.r_[y, rng.integers(0, int(y.max()) + 1, int(truth.sum()))]
        feats = penultimate_features(Xall, yall, seed)
        if feats is not None:
            f = outlier_scores(feats, None, seed=seed)
            both = outlier_scores(feats, Xall, seed=seed)
            res["pr_auc_features"] = float(average_precision_score(truth, f["outlier_score"]))
            res["pr_auc_both"] = float(average_precision_score(truth, both["outlier_score"]))
    return res


def bench_drift(X: np.ndarray, seed: int) -> dict:
    rng = np.random.default_rng(seed + 5)
    flat = X.reshape(len(X), -1).astype(np.float64)
    perm = rng.permutation(len(flat))
    cut = int(0.7 * len(flat))
    train, test = flat[perm[:cut]], flat[perm[cut:]].copy()
    varying = np.flatnonzero(train.std(axis=0) > 0)
    j = int(rng.choice(varying))
    names = [f"f{i}" for i in range(flat.shape[1])]
    t_no = classifier_two_sample(train, test, seed=seed)
    test[:, j] += train[:, j].std()
    t0 = time.perf_counter()
    table = feature_drift(train, test, names, seed=seed)
    seconds = time.perf_counter() - t0
    t_yes = classifier_two_sample(train, test, seed=seed)
    others = table[table["feature"] != names[j]]
    return {"shifted_ranked_first": bool(table.loc[0, "feature"] == names[j]),
            "shifted_flagged": bool(table.loc[table["feature"] == names[j], "drift"].iloc[0]),
            "shifted_psi": float(table.loc[table["feature"] == names[j], "psi"].iloc[0]),
            "other_features_flagged": int(others["drift"].sum()),
            "two_sample_auc_shifted": t_yes["auc"], "two_sample_auc_unshifted": t_no["auc"],
            "seconds": seconds}


def bench_clean_outlier_rate(X: np.ndarray, seed: int) -> float:
    return float(outlier_scores(None, X, seed=seed)["outlier"].mean())


def bench_scale(n: int) -> dict:
    X, y = make_classification(n, 40, n_informative=20, n_redundant=10, n_classes=10, random_state=0)
    X = X.astype(np.float32)
    rng = np.random.default_rng(0)
    src = rng.choice(n, 2000, replace=False)
    copies = X[src].copy()
    copies[1000:] += 0.01 * X.std(axis=0) * rng.standard_normal((1000, 40)).astype(np.float32)
    X, y = np.vstack([X, copies]), np.r_[y, y[src]]

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    out = {"n": int(len(X)), "d": 40}
    w, c = time.perf_counter(), cpu()
    o = outlier_scores(None, X)
    out.update(outliers_wall_s=time.perf_counter() - w, outliers_cpu_s=cpu() - c,
               outliers_method=o.attrs["summary"]["method"])
    w, c = time.perf_counter(), cpu()
    d = find_duplicates(X, y)
    s = d.attrs["summary"]
    out.update(duplicates_wall_s=time.perf_counter() - w, duplicates_cpu_s=cpu() - c,
               duplicates_method=s["method"], exact_search_fraction=s["exact_search_fraction"],
               guaranteed_radius_p10_over_threshold=s["guaranteed_radius_p10"] / s["threshold"],
               planted_copies_found=float((d["duplicate_group"].to_numpy()[-2000:] >= 0).mean()))
    out["total_wall_s"] = out["outliers_wall_s"] + out["duplicates_wall_s"]
    out["total_cpu_s"] = out["outliers_cpu_s"] + out["duplicates_cpu_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--scale", type=int, default=200_000, help="rows for the timing run (0 = skip)")
    ap.add_argument("--features", action="store_true", help="also score outliers in penultimate features (trains)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    digits_X, digits_y, digits_source = load_digits_images()
    per: dict[str, dict[str, list]] = {}

    def add(key: str, rec: dict) -> None:
        bucket = per.setdefault(key, {})
        for k, v in rec.items():
            if isinstance(v, (bool, int, float)) or v is None:
                bucket.setdefault(k, []).append(float(v) if v is not None else None)

    for seed in seeds:
        data = {"digits": (digits_X, digits_y), "table": load_table(seed)}
        for name, (X, y) in data.items():
            print(f"seed {seed}: {name}", flush=True)
            for jitter in JITTERS:
                add(f"{name}/duplicates/jitter={jitter}", bench_duplicates(X, y, seed, jitter))
            for kind in OUTLIER_KINDS:
                add(f"{name}/outliers/{kind}", bench_outliers(X, y, seed, kind, args.features))
            add(f"{name}/outliers/clean", {"flag_rate": bench_clean_outlier_rate(X, seed)})
            add(f"{name}/drift", bench_drift(X, seed))

    summary = {key: {k: mean_std(v) for k, v in vals.items()} for key, vals in per.items()}
    result = {"benchmark": "planted_defects", "machine": machine(), "seeds": seeds,
              "data": {"digits": f"{digits_source}, {len(digits_X)} images 8x8, pixels / 16",
                       "table": "make_classification(5000, 40, n_informative=20, n_redundant=10, n_classes=10)"},
              "results": summary, "per_seed": per}
    if args.scale:
        print(f"scale: {args.scale} x 40", flush=True)
        result["scale"] = bench_scale(args.scale)
    path = write_result("planted_defects", result)

    print(f"\n{'check':52s} {'metric':28s} mean ± std over {len(seeds)} seeds")
    show = {"duplicates": ("near_recall", "exact_recall", "precision", "conflict_recall", "clean_flagged_rows"),
            "outliers": ("pr_auc_input", "pr_auc_features", "pr_auc_both", "flag_precision", "flag_recall", "flag_rate"),
            "drift": ("shifted_ranked_first", "shifted_flagged", "other_features_flagged",
                      "two_sample_auc_shifted", "two_sample_auc_unshifted")}
    for key, vals in summary.items():
        for metric in show[key.split("/")[1]]:
            if metric in vals:
                print(f"{key:52s} {metric:28s} {fmt(vals[metric])}")
    if "scale" in result:
        s = result["scale"]
        print(f"scale {s['n']} x 40: outliers {s['outliers_wall_s']:.1f} s wall / {s['outliers_cpu_s']:.1f} s cpu, "
              f"duplicates {s['duplicates_wall_s']:.1f} s wall / {s['duplicates_cpu_s']:.1f} s cpu, "
              f"planted copies found {s['planted_copies_found']:.3f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
