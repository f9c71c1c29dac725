"""What ``repair`` does to data with nothing to repair: labels it cannot learn, or no injected noise.

    python benchmarks/null_data.py [--seeds 5] [--jobs 2] [--out null_data]     # data it cannot learn
    python benchmarks/null_data.py --clean [--out null_data_clean]               # bundled sets, no noise added

A user who points Trainyard at the wrong target column, or at a table with far more columns than rows,
gets a model that learnt nothing. Its diagnosis then disagrees with about as many labels as chance
does, and every disagreement looks like a wrong label. A repair that acts on those flags quarantines
or relabels a large share of perfectly good rows, and with a small validation split one of its
candidates can beat the baseline by luck. Per data set and seed, ``repair`` with its defaults (policy
auto, 2 rounds, the default 70/20/10 split) on:

* ``random_table``: 600 rows x 8 Gaussian columns, 3 classes drawn independently of the rows;
* ``random_wide``: 200 rows x 600 Gaussian columns, 2 classes drawn independently;
* ``wide_sign``: 300 rows x 2,000 Gaussian columns, the class is the sign of the first column
  (learnable in principle, not by an MLP from 210 rows);
* ``digits_shuffled``: sklearn's digits with its labels shuffled across rows (real features, labels
  unrelated to them).

``--clean``: sklearn's breast_cancer, wine, iris and digits as they come (no noise injected; real
data sets may hold a few wrong labels of their own). A repair should change little and cost no
accuracy.

Reported per run: the round kept, the training rows it relabelled or quarantined (share of the training
split), the test accuracy before and after, and the cross-fit's agreement check. The seed sets the data
(or the shuffle) and the training seed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, machine, mean_std, write_result  # noqa: E402

DATASETS = ("random_table", "random_wide", "wide_sign", "digits_shuffled")
CLEAN = ("breast_cancer", "wine", "iris", "digits")


def null_dataset(name: str, seed: int):
    """A Dataset whose labels the features cannot teach a model (see the module docstring)."""
    from trainyard.data import Dataset, load

    rng = np.random.default_rng(seed)
    if name in CLEAN:
        return load(f"sklearn:{name}")
    if name == "random_table":
        X, y, classes = rng.normal(size=(600, 8)), rng.integers(0, 3, 600), ["a", "b", "c"]
    elif name == "random_wide":
        X, y, classes = rng.normal(size=(200, 600)), rng.integers(0, 2, 200), ["a", "b"]
    elif name == "wide_sign":
        X = rng.normal(size=(300, 2000))
        y, classes = (X[:, 0] > 0).astype(int), ["neg", "pos"]
    elif name == "digits_shuffled":
        d = load("sklearn:digits")
        return Dataset(d.X.reshape(len(d), -1), rng.permutation(d.y), d.classes, np.arange(len(d)), "tabular")
    else:
        raise ValueError(name)
    return Dataset(X.astype(np.float32), y, classes, np.arange(len(y)), "tabular")


def one(name: str, seed: int, workdir: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from trainyard.repair import repair

    ds = null_dataset(name, seed)
    t0 = time.perf_counter()
    rep = repair(ds, out=Path(workdir) / f"{name}-s{seed}", seed=seed).report
    n_train = rep["n_train"]
    changed = rep["relabelled"] + rep["dropped"]
    cf = rep.get("crossfit") or {}
    return {"data": name, "seed": seed, "n_rows": len(ds), "n_train": n_train, "selected_round": rep["selected_round"],
            "policy": rep["policy"], "relabelled": rep["relabelled"], "dropped": rep["dropped"],
            "changed_share": changed / n_train, "accuracy_before": rep["accuracy_before"],
            "accuracy_after": rep["accuracy_after"], "crossfit_z": cf.get("z_over_chance"),
            "crossfit_flags_used": cf.get("flags_used"),
            "evidence_z": (rep.get("label_evidence") or {}).get("z_over_chance"), "stopped": rep.get("stopped"),
            "candidates": [{"variant": c.get("variant"), "relabelled": c.get("relabelled"), "dropped": c.get("dropped")}
                           for r in rep["rounds"][1:] for c in r.get("candidates", [])],
            "seconds": time.perf_counter() - t0}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for name in dict.fromkeys(r["data"] for r in rows):
        rs = [r for r in rows if r["data"] == name]
        out.append({"data": name, "runs": len(rs), "kept_a_round": sum(r["selected_round"] > 0 for r in rs),
                    "changed_share": mean_std(r["changed_share"] for r in rs),
                    "max_changed_share": max(r["changed_share"] for r in rs),
                    "accuracy_before": mean_std(r["accuracy_before"] for r in rs),
                    "accuracy_after": mean_std(r["accuracy_after"] for r in rs)})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clean", action="store_true", help="the bundled sets with no noise injected")
    p.add_argument("--datasets", default=None)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    a.datasets = a.datasets or ",".join(CLEAN if a.clean else DATASETS)
    a.out = a.out or ("null_data_clean" if a.clean else "null_data")
    tasks = [(d, s) for d in a.datasets.split(",") for s in range(a.seeds)]
    t0 = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as work, ProcessPoolExecutor(a.jobs) as pool:
        for row in pool.map(one, *zip(*tasks), [work] * len(tasks)):
            rows.append(row)
            print(f"{row['data']:16s} seed {row['seed']}: round {row['selected_round']} ({row['policy']}), "
                  f"relabelled {row['relabelled']}, dropped {row['dropped']} of {row['n_train']}; test "
                  f"{row['accuracy_before']:.3f} -> {row['accuracy_after']:.3f}; z over chance: cross-fit "
                  f"{row['crossfit_z']}, pooled {row['evidence_z']}",
                  flush=True)
    summary = summarise(rows)
    print(f"\n{'data':16s} {'kept a round':>12s} {'rows changed (share of training)':>34s} {'max':>6s}  test before -> after")
    for s in summary:
        print(f"{s['data']:16s} {s['kept_a_round']:>5d} of {s['runs']:<4d} {fmt(s['changed_share']):>34s} "
              f"{s['max_changed_share']:6.3f}  {fmt(s['accuracy_before'])} -> {fmt(s['accuracy_after'])}")
    write_result(a.out, {"benchmark": "repair on data with no injected noise" if a.clean else
                         "repair on data it cannot learn", "machine": machine(), "protocol": __doc__,
                         "seconds": time.time() - t0, "runs": rows, "summary": summary})
    print(f"\n{len(rows)} runs in {time.time() - t0:.0f}s; results: benchmarks/results/{a.out}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
