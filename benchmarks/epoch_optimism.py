"""How high the best epoch's validation score reads, and whether ``selection.cross_fitted_rows`` removes it.

    python benchmarks/epoch_optimism.py [--datasets digits,breast_cancer] [--seeds 3] [--jobs 2]

``fit`` keeps the epoch with the best validation accuracy, so that accuracy is the largest of one
noisy estimate per epoch. The repair loop compares rounds on validation, so a model that kept its best
epoch (always the baseline) would be compared on an optimistic score. Per data set, noise (B2's
settings: symmetric, class-conditional and instance-dependent, 20 and 40 %, in training and validation
rows) and seed: the noisy baseline as ``repair`` trains it (B2's splits and options, the ledger on),
then on its validation rows (noisy labels)

* the best epoch's accuracy, as ``fit`` chose it (what the loop compared before session 17),
* the cross-fitted score: the epoch chosen on one half of the rows and scored on the other, both ways,
  20 random halvings (``cross_fitted_rows``, what the loop compares now),
* and, as the truth both estimate, the best epoch's accuracy on *fresh* rows with the same kind of
  noise: the test rows, given noisy labels drawn like the validation rows' (read only here).

Writes ``results/epoch_optimism.json``.
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

NOISES = [("symmetric", 0.2), ("symmetric", 0.4), ("class_conditional", 0.2), ("class_conditional", 0.4),
          ("instance", 0.2), ("instance", 0.4)]


def one(name: str, kind: str, rate: float, seed: int, workdir: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from _common import clean_probs
    from repair import noisy_setting

    from trainyard.data import inject_label_noise
    from trainyard.fitting import fit
    from trainyard.monitor import read_ledger
    from trainyard.repair.selection import cross_fitted_rows
    from trainyard.train.trainer import predict_proba

    ds, splits, opts, noisy_y, _ = noisy_setting(name, kind, rate, seed, quick=False)
    res = fit(ds.with_labels(noisy_y), splits=splits, out=Path(workdir) / f"{name}-{kind}-{rate}-{seed}",
              write_report=False, quiet=True, **opts)
    val_y = noisy_y[splits.val]
    heldout = read_ledger(res.run.path).heldout_probs[:, : len(splits.val)]
    per_epoch = (heldout.argmax(-1) == val_y[None]).mean(1)
    best = float(np.mean(predict_proba(res.model, ds.X[splits.val]).argmax(1) == val_y))
    fair = float(cross_fitted_rows(heldout, val_y, lambda p: (p == val_y).astype(float)).mean())
    probs = clean_probs(ds, splits.test, seed) if kind == "instance" else None
    fresh_y, _ = inject_label_noise(ds.y, rate, kind, ds.n_classes, seed=seed + 1000, idx=splits.test, probs=probs)
    fresh = float(np.mean(predict_proba(res.model, ds.X[splits.test]).argmax(1) == fresh_y[splits.test]))
    return {"data": name, "noise": kind, "rate": rate, "seed": seed, "n_val": len(splits.val),
            "epochs": len(per_epoch), "best_epoch": res.state.best_epoch, "val_best_epoch": best,
            "val_cross_fitted": fair, "val_mean_epoch": float(per_epoch.mean()), "fresh_noisy_rows": fresh,
            "optimism": best - fresh, "cross_fitted_error": fair - fresh}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="digits,breast_cancer")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args(argv)
    tasks = [(d, k, r, s) for d in a.datasets.split(",") for s in range(a.seeds) for k, r in NOISES]
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-optimism-") as work, \
            ProcessPoolExecutor(a.jobs) as pool:
        runs = list(pool.map(one, *zip(*tasks), [work] * len(tasks)))
    summary = []
    for d in dict.fromkeys(r["data"] for r in runs):
        rows = [r for r in runs if r["data"] == d]
        summary.append({"data": d, "runs": len(rows), "n_val": rows[0]["n_val"],
                        "optimism": mean_std([r["optimism"] for r in rows]),
                        "cross_fitted_error": mean_std([r["cross_fitted_error"] for r in rows]),
                        "best_minus_cross_fitted": mean_std([r["val_best_epoch"] - r["val_cross_fitted"]
                                                             for r in rows])})
    for s in summary:
        print(f"{s['data']:<14} {s['runs']} runs, {s['n_val']} validation rows: best epoch's validation accuracy minus "
              f"fresh noisy rows {fmt(s['optimism'], 4)}; cross-fitted minus fresh {fmt(s['cross_fitted_error'], 4)}; "
              f"best minus cross-fitted {fmt(s['best_minus_cross_fitted'], 4)}")
    path = write_result("epoch_optimism", {"benchmark": "epoch_optimism", "machine": machine(), "runs": runs,
                                           "summary": summary, "seconds": time.time() - t0})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
