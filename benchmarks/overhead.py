"""B3 / issue 2: epoch time with the ledger on vs off (same model, data, process; alternating),
plus digits test accuracy over 3 seeds.

    python benchmarks/overhead.py [--quick]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, machine, mean_std, write_result  # noqa: E402

from trainyard.models import build_model  # noqa: E402
from trainyard.monitor.ledger import Ledger  # noqa: E402
from trainyard.train import TrainConfig, Trainer  # noqa: E402


def epoch_seconds(X, y, model_name, callbacks_fn, epochs, seed=0) -> list[float]:
    """Seconds of each epoch of a fresh model trained with ``callbacks_fn()``; the first is dropped (warm-up)."""
    torch.manual_seed(seed)
    m = build_model(model_name, X.shape[1:], int(y.max()) + 1)
    m.standardize.fit(X)
    cfg = TrainConfig(epochs=epochs, seed=seed, batch_size=64)
    st = Trainer(m, cfg, callbacks_fn()).fit(X, y)
    return [h["seconds"] for h in st.history[1:]]


def measure(X, y, model_name, repeats, epochs, with_monitor: bool = False) -> dict:
    tmp = Path(tempfile.mkdtemp())

    def on():
        cbs = [Ledger(tmp / "ledger")]
        if with_monitor:
            from trainyard.monitor.model_monitor import ModelMonitor

            cbs.append(ModelMonitor())
        return cbs

    bare, led = [], []
    for r in range(repeats):  # alternate so drift of the machine's speed hits both alike
        bare += epoch_seconds(X, y, model_name, lambda: [], epochs, r)
        led += epoch_seconds(X, y, model_name, on, epochs, r)
    ratio = float(np.median(led) / np.median(bare))
    return {"bare_epoch_s_median": float(np.median(bare)), "ledger_epoch_s_median": float(np.median(led)),
            "ratio": ratio, "epochs_per_arm": len(bare)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from sklearn.datasets import load_digits, make_classification

    rng_rep = 3 if a.quick else 5
    d = load_digits()
    Xd = (d.data / 16).reshape(-1, 1, 8, 8).astype(np.float32)
    Xs, ys = make_classification(20000, 40, n_informative=20, n_redundant=10, n_classes=10, random_state=0)
    cases = {
        "digits_cnn": (Xd, d.target, "cnn"),
        "digits_mlp": (Xd, d.target, "mlp"),
        "synthetic20k_mlp": (Xs.astype(np.float32), ys, "mlp"),
    }
    out = {"machine": machine(), "protocol": "B3: median epoch seconds, ledger on vs off, alternating runs in one "
           "process, first epoch of each run dropped, torch threads=1", "cases": {}}
    for name, (X, y, mname) in cases.items():
        out["cases"][name] = measure(X, y, mname, rng_rep, 4 if a.quick else 6)
        print(f"{name:20s} ledger/bare = {out['cases'][name]['ratio']:.3f}")
    # digits accuracy with defaults, 3 seeds
    from trainyard.fitting import fit

    accs = []
    for seed in (0, 1, 2):
        from trainyard.data import load

        res = fit(load("sklearn:digits"), out=tempfile.mkdtemp(), seed=seed, write_report=False)
        accs.append(res.test_metrics["acc"])
    out["digits_test_acc"] = mean_std(accs)
    out["digits_test_acc"]["values"] = accs
    print(f"digits test accuracy (default config, 3 seeds): {fmt(out['digits_test_acc'])}")
    print(write_result("overhead", out))


if __name__ == "__main__":
    main()
