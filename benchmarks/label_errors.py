"""B1. Label-error detection: Trainyard (one training run + ledger) vs cleanlab on 5-fold out-of-sample
probabilities, and plain loss ranking, in the same run.

For each data set, noise kind, rate and seed: split 70/20/10 (stratified), flip labels in the training
split only (``inject_label_noise``), then score the flagged training rows against the truly flipped ones
(precision, recall, F1) and the ranking (average precision = PR-AUC). Wall time of each method is a ratio
to one plain training run (``trainyard.fit`` with the ledger and monitor off) measured in the same run.

Methods:
  trainyard      ``trainyard.fit`` with the default config, then ``diagnose.labels.label_issues``.
  loss_rank      mean training loss over all epochs from the same ledger; F1 at the TRUE number of flips
                 (an oracle threshold: an upper bound for plain loss ranking).
  cleanlab_lr    ``cleanlab.filter.find_label_issues`` on 5-fold probabilities of LogisticRegression.
  cleanlab_gb    ... of HistGradientBoostingClassifier.
  cleanlab_model ... of Trainyard's own default model and config (same family as ours; MLP for tables,
                 CNN for images), each fold trained without the ledger.

Usage:
  python benchmarks/label_errors.py                 # the full protocol (hours on 2 CPU cores)
  python benchmarks/label_errors.py --quick         # digits + synthetic:10000, 20 %, seed 0
  python benchmarks/label_errors.py --datasets digits --noise symmetric --rates 0.2 --seeds 0,1,2
  python benchmarks/label_errors.py --datasets digits --noise instance --rates 0.2,0.4
        # instance-dependent noise (no issue names it): rows drawn with weight 1 - p(true class) under an
        # out-of-fold logistic regression on the true labels, each flipped to its likeliest other class
  python benchmarks/label_errors.py --datasets topics --noise symmetric,class_conditional --rates 0.2,0.4
        # short generated texts (TF-IDF), not named by the issue: a data kind beyond the grid
  python benchmarks/label_errors.py --merge a.json b.json   # runs made in parallel, into one file
        # (where two files hold the same setting and seed, the later file's run is kept)
  python benchmarks/label_errors.py --datasets digits --keep-runs runs/b1 \
      --methods trainyard,loss_rank --baselines benchmarks/results/label_errors_digits.json
        # our method only; the cleanlab entries are copied from an earlier file for the same setting and
        # seed (same split, same flipped rows, same folds: their inputs do not depend on our method),
        # marked "from": that file; our training runs are kept for --rescore
  python benchmarks/label_errors.py --datasets fashion --seeds 1 --skip symmetric:0.1,symmetric:0.2
        # resume a grid: the listed noise-kind:rate settings (already measured elsewhere) are left out
  python benchmarks/label_errors.py --rescore benchmarks/results/label_errors_digits.json
        # re-run only the diagnosis (a pure function of the ledger) on the kept runs with the current
        # code, keeping the measured fit and plain-fit times; marks the file "rescored"
Writes benchmarks/results/label_errors.json (atomically, after every setting) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

METHODS = ("trainyard", "loss_rank", "cleanlab_lr", "cleanlab_gb", "cleanlab_model")


def load_dataset(name: str, synthetic_n: int, fashion_n: int):
    from trainyard.data import load, make_synthetic

    if name == "digits":
        return load("sklearn:digits")
    if name == "synthetic":
        return make_synthetic(synthetic_n, n_features=40, n_classes=10, seed=0)
    if name == "fashion":
        return load(f"fashion-mnist:{fashion_n}")
    if name == "topics":  # 6,000 generated short texts of four topics, TF-IDF features (as in B2)
        from _common import topic_dataset

        return topic_dataset(6_000, 0)
    raise SystemExit(f"unknown data set {name!r}: use digits, synthetic, fashion, topics")


def prf(flag: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = float(np.sum(flag & truth))
    p = tp / max(flag.sum(), 1)
    r = tp / max(truth.sum(), 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-12), "n_flagged": int(flag.sum())}


def pr_auc(score: np.ndarray, truth: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(truth, score))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def fit_quiet(ds, splits, out, **over):
    import trainyard as ty

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ty.fit(ds, splits=splits, out=out, quiet=True, write_report=False, **over)


def warm_up(ds) -> None:
    """One short fit first, so one-time costs (imports, allocator, kernels) do not land on a timed run."""
    from trainyard.data import Splits

    rows = np.arange(min(len(ds), 256))
    with tempfile.TemporaryDirectory(prefix="ty-b1-warm-") as tmp:
        fit_quiet(ds, Splits(rows[:200], rows[200:], np.zeros(0, np.int64)), tmp, epochs=1)


def cleanlab_sklearn(make, X, y, folds, n_classes):
    probs = np.zeros((len(y), n_classes), dtype=np.float64)
    for tr, ho in folds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = make().fit(X[tr], y[tr])
        p = np.zeros((len(ho), n_classes))
        p[:, est.classes_] = est.predict_proba(X[ho])
        probs[ho] = p
    return probs


def cleanlab_trainyard(ds, rows, folds, seed, tmp):
    from trainyard.data import Splits
    from trainyard.train.trainer import predict_proba

    probs = np.zeros((len(rows), ds.n_classes), dtype=np.float64)
    for f, (tr, ho) in enumerate(folds):
        res = fit_quiet(ds, Splits(rows[tr], np.zeros(0, np.int64), rows[ho]), os.path.join(tmp, f"fold{f}"),
                        seed=seed, ledger=False, monitor=False)
        probs[ho] = predict_proba(res.model, ds.X[rows[ho]])
    return probs


def cleanlab_scores(y, probs):
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    flag = find_label_issues(y, probs)
    return flag, 1.0 - get_label_quality_scores(y, probs)


def score_ours(ledger, y_noisy, y_true, rows, heldout, truth, k, t_fit, t_plain) -> dict:
    """Our diagnosis of one kept or fresh run, scored against the flipped rows."""
    from trainyard.diagnose.labels import label_issues

    (table, summary), t_diag = timed(lambda: label_issues(ledger, y_noisy, k))
    flag = table["label_issue"].to_numpy()[rows]
    score = table["label_score"].to_numpy()[rows]
    hit = flag & truth
    return {**prf(flag, truth), "pr_auc": pr_auc(score, truth), "time_ratio": (t_fit + t_diag) / t_plain,
            "fit_seconds": t_fit, "diagnose_seconds": t_diag,
            "heldout_flag_rate": float(table["label_issue"].to_numpy()[heldout].mean()),
            "suggested_is_true": float(np.mean(table["suggested_label"].to_numpy()[rows][hit] == y_true[rows][hit]))
            if hit.any() else None, "summary": summary}


def rescore(path: Path) -> int:
    """Re-run our diagnosis on the runs kept by an earlier ``--keep-runs`` benchmark (see the docstring)."""
    from trainyard.monitor import read_ledger

    d = json.loads(path.read_text())
    n = 0
    for r in d["results"]:
        ours = r["methods"].get("trainyard", {})
        run_dir = ours.get("run_dir")
        if not run_dir or not os.path.exists(os.path.join(run_dir, "b1_setting.npz")):
            print(f"{r['dataset']} {r['noise']} {r['rate']} seed {r['seed']}: no kept run, left as it was")
            continue
        z = np.load(os.path.join(run_dir, "b1_setting.npz"))
        ledger = read_ledger(run_dir, mmap=False)
        new = score_ours(ledger, z["y_noisy"], z["y_true"], z["rows"], z["heldout"], z["truth"],
                         int(z["n_classes"]), ours["fit_seconds"], r["plain_fit_seconds"])
        new.update(test_accuracy=ours.get("test_accuracy"), run_dir=run_dir,
                   rescored=time.strftime("%Y-%m-%d %H:%M:%S"))
        r["methods"]["trainyard"] = new
        if "loss_rank" in r["methods"]:  # ranks the same run: its time is ours
            r["methods"]["loss_rank"]["time_ratio"] = new["time_ratio"]
        n += 1
        print(f"{r['dataset']} {r['noise']} {r['rate']} seed {r['seed']}: trainyard f1 {new['f1']:.3f} "
              f"({new['n_flagged']} flagged, {r['n_flipped']} flipped)", flush=True)
    d["rescored"] = {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "results": n}
    d["table"] = aggregate(d["results"])
    write_json(path, d)
    print_table(d["table"])
    return 0


def copy_baselines(result: dict, files: list[str]) -> None:
    """Copy the cleanlab entries of the same setting and seed from earlier result files (same split,
    flips and folds: they are seeded and do not depend on our method), each marked with its file."""
    for f in files:
        for old in json.loads(Path(f).read_text())["results"]:
            same = all(old[key] == result[key] for key in ("dataset", "noise", "rate", "seed", "n_train", "n_flipped"))
            if not same:
                continue
            for m, v in old["methods"].items():
                if m.startswith("cleanlab") and m not in result["methods"]:
                    result["methods"][m] = {**v, "from": os.path.basename(f)}
            return


def one_setting(ds, name, kind, rate, seed, methods, plain_cache, tmp, keep=None):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from _common import clean_probs

    from trainyard.data import inject_label_noise, kfold, make_splits
    from trainyard.monitor import read_ledger

    k = ds.n_classes
    splits = make_splits(ds.y, (0.7, 0.2, 0.1), seed=seed)
    # instance-dependent noise copies the confusions of a logistic regression fitted out of fold on the true labels
    probs = clean_probs(ds, splits.train, seed) if kind == "instance" else None
    y_noisy, flipped = inject_label_noise(ds.y, rate, kind, k, seed=seed, idx=splits.train, probs=probs)
    noisy = ds.with_labels(y_noisy)
    rows = splits.train
    truth = flipped[rows]
    y_rows = y_noisy[rows]
    out: dict = {"dataset": name, "noise": kind, "rate": rate, "seed": seed, "n_train": int(len(rows)),
                 "n_flipped": int(truth.sum()), "methods": {}}
    key = (name, seed)
    if key not in plain_cache:  # one plain run per data set and seed is the time unit
        _, plain_cache[key] = timed(lambda: fit_quiet(noisy, splits, os.path.join(tmp, "plain"), seed=seed,
                                                      ledger=False, monitor=False))
    t_plain = plain_cache[key]
    out["plain_fit_seconds"] = t_plain

    run_dir = os.path.join(keep or tmp, f"{name}{len(ds)}_{kind}_{rate}_s{seed}" if keep else "ours")
    res, t_fit = timed(lambda: fit_quiet(noisy, splits, run_dir, seed=seed))
    if keep:  # what --rescore needs besides the ledger
        np.savez(os.path.join(run_dir, "b1_setting.npz"), y_noisy=y_noisy, y_true=ds.y, rows=rows,
                 heldout=splits.heldout, truth=truth, n_classes=k)
    ledger = read_ledger(res.run.path, mmap=False)
    out["methods"]["trainyard"] = score_ours(ledger, y_noisy, ds.y, rows, splits.heldout, truth, k, t_fit, t_plain)
    out["methods"]["trainyard"]["test_accuracy"] = res.test_metrics.get("acc")
    if keep:
        out["methods"]["trainyard"]["run_dir"] = os.path.abspath(run_dir)
    if "loss_rank" in methods:
        loss = np.asarray(ledger.loss, dtype=np.float32).mean(0)
        top = np.zeros(len(rows), bool)
        top[np.argsort(-loss)[:int(truth.sum())]] = True
        out["methods"]["loss_rank"] = {**prf(top, truth), "pr_auc": pr_auc(loss, truth),
                                       "time_ratio": out["methods"]["trainyard"]["time_ratio"], "threshold": "oracle count"}

    folds = kfold(y_rows, 5, seed=seed)
    flat = ds.X[rows].reshape(len(rows), -1)
    sk = {"cleanlab_lr": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
          "cleanlab_gb": lambda: HistGradientBoostingClassifier(random_state=seed)}
    for m in ("cleanlab_lr", "cleanlab_gb", "cleanlab_model"):
        if m not in methods:
            continue
        if m == "cleanlab_model":
            run = lambda: cleanlab_scores(y_rows, cleanlab_trainyard(noisy, rows, folds, seed, os.path.join(tmp, "cv")))
        else:
            run = lambda m=m: cleanlab_scores(y_rows, cleanlab_sklearn(sk[m], flat, y_rows, folds, k))
        (cl_flag, cl_score), t = timed(run)
        out["methods"][m] = {**prf(cl_flag, truth), "pr_auc": pr_auc(cl_score, truth), "time_ratio": t / t_plain}
    return out


def aggregate(results: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        # the size is part of the setting: make_classification at 10,000 and at 50,000 rows are two
        groups.setdefault((r["dataset"], r["n_train"], r["noise"], r["rate"]), []).append(r)
    rows = []
    for (d, n_train, kind, rate), rs in groups.items():
        row = {"dataset": d, "n_train": n_train, "noise": kind, "rate": rate, "seeds": [r["seed"] for r in rs]}
        for m in METHODS:
            vals = [r["methods"][m] for r in rs if m in r["methods"]]
            if not vals:
                continue
            row[m] = {s: [float(np.mean([v[s] for v in vals])), float(np.std([v[s] for v in vals]))]
                      for s in ("precision", "recall", "f1", "pr_auc", "time_ratio")}
        rows.append(row)
    return rows


def print_table(agg: list[dict]) -> None:
    methods = [m for m in METHODS if any(m in r for r in agg)]
    head = f"{'setting':<34}" + "".join(f"{m:>22}" for m in methods)
    print("\nF1 (mean ± std over seeds) | PR-AUC | time / plain fit")
    print(head)
    for r in agg:
        name = f"{r['dataset']}{r.get('n_train', '')} {r['noise'][:9]} {int(r['rate'] * 100)}% (n={len(r['seeds'])})"
        cells = []
        for m in methods:
            if m in r:
                f, a, t = r[m]["f1"], r[m]["pr_auc"], r[m]["time_ratio"]
                cells.append(f"{f[0]:.3f}±{f[1]:.3f} {a[0]:.2f} {t[0]:.1f}x")
            else:
                cells.append("-")
        print(f"{name:<34}" + "".join(f"{c:>22}" for c in cells))
    for m in methods:
        f = [r[m]["f1"][0] for r in agg if m in r]
        print(f"mean F1 {m}: {np.mean(f):.3f} over {len(f)} settings")


def write_json(path: Path, payload: dict) -> None:
    from trainyard.run import atomic_write

    atomic_write(path, json.dumps(payload, indent=1, default=float))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="digits,synthetic,fashion")
    ap.add_argument("--noise", default="symmetric,class_conditional")
    ap.add_argument("--rates", default="0.1,0.2,0.4")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--synthetic-n", type=int, default=50000)
    ap.add_argument("--fashion-n", type=int, default=20000)
    ap.add_argument("--quick", action="store_true", help="digits and synthetic:10000, 20%% noise, seed 0")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "label_errors.json"))
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="combine earlier result files into --out and print the table")
    ap.add_argument("--keep-runs", metavar="DIR", help="keep our training runs (ledger + setting) under DIR for --rescore")
    ap.add_argument("--baselines", nargs="+", metavar="JSON", default=[],
                    help="copy cleanlab entries not run now from these earlier files (same setting and seed)")
    ap.add_argument("--rescore", metavar="JSON", help="re-run our diagnosis on the runs kept for this result file")
    ap.add_argument("--skip", default="", metavar="KIND:RATE,...",
                    help="settings already measured for these seeds, e.g. symmetric:0.1 (resume a long grid)")
    a = ap.parse_args(argv)
    if a.rescore:
        return rescore(Path(a.rescore))
    if a.merge:
        parts = [json.loads(Path(f).read_text()) for f in a.merge]
        # a later file's run of the same setting and seed replaces an earlier one (a re-measure)
        keyed = {(r["dataset"], r["noise"], r["rate"], r["seed"], r["n_train"]): r
                 for part in parts for r in part["results"]}
        results = list(keyed.values())
        write_json(Path(a.out), {**{k: v for k, v in parts[0].items() if k not in ("results", "table", "args")},
                                 # a merged file brings the list of the files it was merged from
                                 "merged_from": [m for f, part in zip(a.merge, parts) for m in
                                                 part.get("merged_from") or [{"file": f, "args": part.get("args")}]],
                                 "results": results, "table": aggregate(results)})
        print_table(aggregate(results))
        return 0
    if a.quick:
        a.datasets, a.rates, a.seeds, a.synthetic_n = "digits,synthetic", "0.2", "0", 10000
    import torch

    torch.set_num_threads(1)
    methods = a.methods.split(",")
    import cleanlab
    import sklearn

    meta = {"benchmark": "B1 label-error detection", "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
            "device": "cpu"}, "versions": {"python": platform.python_version(), "torch": torch.__version__,
            "cleanlab": cleanlab.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__},
            "args": vars(a), "split": "stratified 70/20/10, noise in the training split only"}
    results: list[dict] = []
    plain: dict = {}
    skip = {f"{k}:{float(r):g}" for k, r in (s.split(":") for s in a.skip.split(",") if s)}
    for name in a.datasets.split(","):
        ds = load_dataset(name, a.synthetic_n, a.fashion_n)
        warm_up(ds)
        for seed in [int(s) for s in a.seeds.split(",")]:
            # rate outer, noise kind inner: with --rates 0.2,... both kinds at 20 % come first, so a long
            # run stopped early has whole rates done
            for rate in [float(r) for r in a.rates.split(",")]:
                for kind in a.noise.split(","):
                    if f"{kind}:{rate:g}" in skip:
                        continue
                    with tempfile.TemporaryDirectory(prefix="ty-b1-") as tmp:
                        r = one_setting(ds, name, kind, rate, seed, methods, plain, tmp, a.keep_runs)
                    copy_baselines(r, a.baselines)
                    results.append(r)
                    line = "  ".join(f"{m}={v['f1']:.3f}" for m, v in r["methods"].items())
                    print(f"{name} {kind} {rate} seed {seed}: {line}", flush=True)
                    write_json(Path(a.out), {**meta, "results": results, "table": aggregate(results)})
    print_table(aggregate(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
