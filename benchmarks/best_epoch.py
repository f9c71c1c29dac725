"""Which epoch ``fit`` keeps when several share the best validation accuracy: the first of them (the
rule before session 16) or the one with the lowest validation loss among them (``train/checkpoint.py``).

    python benchmarks/best_epoch.py [--datasets iris,wine,breast_cancer,digits] [--seeds 10] [--jobs 2]

Per data set, seed and noise rate (none, and 20 % symmetric noise in the training and validation rows):
one ``fit`` of trainyard's MLP with its default options, the test accuracy of every epoch recorded by
a callback (read here only to compare the two rules afterwards; nothing chooses with it), and the test
accuracy of the epoch each rule keeps. Splits: 60/20/20 on iris and wine, 50/20/30 on breast_cancer
and digits (B2's), stratified, seeded. Writes ``results/best_epoch.json``.
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

RATES = (0.0, 0.2)


def one(name: str, rate: float, seed: int, workdir: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from trainyard.data import inject_label_noise, load, make_splits
    from trainyard.fitting import fit
    from trainyard.train import Callback
    from trainyard.train.trainer import predict_proba

    class TestEachEpoch(Callback):
        order = 99

        def __init__(self, X, y):
            self.X, self.y, self.acc = X, y, []

        def after_epoch(self, state, control):
            state.model.eval()
            self.acc.append(float((predict_proba(state.model, self.X).argmax(1) == self.y).mean()))
            state.model.train()

    ds = load(f"sklearn:{name}")
    splits = make_splits(ds.y, (0.5, 0.2, 0.3) if name in ("digits", "breast_cancer") else (0.6, 0.2, 0.2), seed=seed)
    labels = ds.y
    if rate:
        dev = np.concatenate([splits.train, splits.val])
        labels, _ = inject_label_noise(ds.y, rate, "symmetric", ds.n_classes, seed=seed, idx=dev)
    test = TestEachEpoch(ds.X[splits.test], ds.y[splits.test])
    res = fit(ds.with_labels(labels), splits=splits, out=Path(workdir) / f"{name}-{rate}-{seed}", write_report=False,
              quiet=True, ledger=False, monitor=False, seed=seed, model="mlp", callbacks=[test])
    acc = np.array([h["val_acc"] for h in res.history])
    loss = np.array([h["val_loss"] for h in res.history])
    first = int(np.argmax(acc))
    tied = np.flatnonzero(acc == acc.max())
    lowest_loss = int(tied[np.argmin(loss[tied])])
    assert lowest_loss == res.state.best_epoch, "fit's rule is the lowest loss among the tied epochs"
    return {"data": name, "rate": rate, "seed": seed, "epochs": len(acc), "tied_epochs": len(tied),
            "first_epoch": first, "lowest_loss_epoch": lowest_loss,
            "test_first": test.acc[first], "test_lowest_loss": test.acc[lowest_loss]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="iris,wine,breast_cancer,digits")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args(argv)
    from repair import code_version

    tasks = [(n, r, s) for n in a.datasets.split(",") for r in RATES for s in range(a.seeds)]
    t0, runs = time.time(), []
    with tempfile.TemporaryDirectory() as work, ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        runs = [f.result() for f in [pool.submit(one, *t, work) for t in tasks]]
    summary = []
    for n in a.datasets.split(","):
        for r in RATES:
            rs = [x for x in runs if x["data"] == n and x["rate"] == r]
            diff = [x["test_lowest_loss"] - x["test_first"] for x in rs]
            row = {"data": n, "rate": r, "seeds": len(rs), "test_first": mean_std(x["test_first"] for x in rs),
                   "test_lowest_loss": mean_std(x["test_lowest_loss"] for x in rs), "difference": mean_std(diff),
                   "moved": sum(x["first_epoch"] != x["lowest_loss_epoch"] for x in rs),
                   "better": sum(d > 0 for d in diff), "worse": sum(d < 0 for d in diff)}
            summary.append(row)
            print(f"{n:<14} noise {r:.0%}: first of the tied epochs {fmt(row['test_first'], 4)}  lowest loss among "
                  f"them {fmt(row['test_lowest_loss'], 4)}  (moved on {row['moved']} of {len(rs)} seeds; better "
                  f"{row['better']}, worse {row['worse']})", flush=True)
    write_result("best_epoch", {"benchmark": "best-epoch tie rule: first of the tied epochs vs lowest validation loss",
                                "machine": machine(), "code": code_version(), "protocol": __doc__,
                                "seconds": time.time() - t0, "runs": runs, "summary": summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
