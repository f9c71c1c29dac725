"""Model-health benchmark: planted pathologies found over 3 seeds, and the monitor's overhead (B3).

Part 1 plants each pathology on purpose (a ReLU layer with bias -100, a rank-2 bottleneck, learning
rate 10, learning rate 1e-7, a 30-layer sigmoid stack, a 30-row training set trained long) and two
healthy controls, trains with the real Trainer + ModelMonitor and checks that the expected issue is
found (and what else is reported).

Part 2 measures the monitor's cost beyond the ledger (B3): in each run the ledger is always on and
the monitor runs on every other epoch, so monitored and bare epochs alternate in one process; the
ratio of the monitored epochs' total time to the bare epochs' (wall and process CPU time; CPU time
is less disturbed by other processes on a shared machine), mean ± std over 3 runs (seeds). The monitor's own
timer (``overhead.fraction`` in model_health.json) is reported beside it.

    python benchmarks/model_health.py [--quick]

Writes ``benchmarks/results/model_health.json`` (atomically) and prints a table.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainyard.models import build_model  # noqa: E402
from trainyard.monitor.model_monitor import ModelMonitor  # noqa: E402
from trainyard.run import Run, versions, write_json  # noqa: E402
from trainyard.train import Callback, Trainer, TrainConfig, default_callbacks  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TMP = RESULTS / "tmp" / "model_health"


def split(name: str, seed: int, n_train: int | None = None):
    if name == "synthetic":
        X, y = make_classification(20000, 40, n_informative=20, n_redundant=10, n_classes=10, random_state=seed)
    else:
        d = load_digits() if name == "digits" else load_breast_cancer()
        X, y = d.data, d.target
    X = X.astype(np.float32)
    X = (X - X.min(0)) / np.maximum(X.max(0) - X.min(0), 1e-9)
    Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    if n_train:
        Xtr, ytr = Xtr[:n_train], ytr[:n_train]
    return Xtr, ytr, Xva, yva


def _dead_bias(model) -> None:
    with torch.no_grad():
        model.body[0].bias.fill_(-100.0)


# name -> (data, n_train, config overrides, plant, expected issue or None for a healthy control)
CASES = {
    "dead_relu_bias_-100": ("digits", None, {"epochs": 6}, _dead_bias, "dead_units"),
    "rank_2_bottleneck": ("digits", None, {"hidden": (128, 2, 128), "epochs": 12}, None, "collapsed_features"),
    "lr_10": ("digits", None, {"lr": 10.0, "epochs": 8}, None, "lr_too_high"),
    "lr_1e-7": ("digits", None, {"lr": 1e-7, "epochs": 8}, None, "lr_too_low"),
    "sigmoid_30_layers": ("digits", None, {"hidden": (32,) * 30, "activation": "sigmoid", "dropout": 0.0,
                                           "epochs": 4}, None, "vanishing_gradients"),
    "tiny_train_set_long": ("breast_cancer", 30, {"epochs": 60, "batch_size": 8, "dropout": 0.0,
                                                  "weight_decay": 0.0}, None, "overfitting"),
    "healthy_digits": ("digits", None, {"epochs": 20}, None, None),
    "healthy_breast_cancer": ("breast_cancer", None, {"epochs": 20}, None, None),
}


def train_case(data, over: dict, plant, seed: int, run=None, monitor: bool = True, extra=()):
    Xtr, ytr, Xva, yva = data
    cfg = TrainConfig(**{"seed": seed, "checkpoint": False, "ledger": run is not None, "monitor": monitor, **over})
    torch.manual_seed(seed)
    model = build_model("mlp", Xtr.shape[1:], int(ytr.max()) + 1, hidden=cfg.hidden, dropout=cfg.dropout,
                        activation=cfg.activation, norm=cfg.norm)
    model.standardize.fit(Xtr)
    if plant is not None:
        plant(model)
    cbs = default_callbacks(cfg, run=run) + list(extra)
    if run is None and monitor:
        cbs.append(ModelMonitor())
    return Trainer(model, cfg, cbs, run=run).fit(Xtr, ytr, Xva, yva)


def detection(seeds: list[int]) -> dict:
    out = {}
    for name, (data_name, n_train, over, plant, expected) in CASES.items():
        rows = []
        for seed in seeds:
            t = time.perf_counter()
            state = train_case(split(data_name, seed, n_train), over, plant, seed)
            rec = state.extra["model_health"]
            found = [f["issue"] for f in rec["findings"]]
            ok = (found == []) if expected is None else (expected in found)
            rows.append({"seed": seed, "found": found, "ok": ok, "primary": found[0] if found else None,
                         "seconds": time.perf_counter() - t})
            print(f"  {name:24s} seed {seed}: {'ok ' if ok else 'MISS'} {found}", flush=True)
        out[name] = {"expected": expected, "data": data_name, "config": {k: list(v) if isinstance(v, tuple) else v
                                                                          for k, v in over.items()},
                     "detected": sum(r["ok"] for r in rows), "runs": len(rows),
                     "false_alarms": sum(len([i for i in r["found"] if i != expected]) for r in rows), "rows": rows}
    return out


class _EpochClock(Callback):
    """Times whole epochs: started first in before_epoch, stopped last in after_epoch."""

    def __init__(self, order: int, clock: dict):
        self.order, self.clock = order, clock

    def before_epoch(self, state, control):
        if self.order < 0:
            self.clock["t0"], self.clock["c0"] = time.perf_counter(), time.process_time()

    def after_epoch(self, state, control):
        if self.order > 0:
            self.clock.setdefault("wall", []).append(time.perf_counter() - self.clock["t0"])
            self.clock.setdefault("cpu", []).append(time.process_time() - self.clock["c0"])


class _EveryOtherEpoch(Callback):
    """Runs the monitor on odd epochs only, so monitored and bare epochs alternate within one run
    and share whatever else the machine is doing at that moment."""

    order = ModelMonitor.order

    def __init__(self, monitor: ModelMonitor):
        self.monitor, self.on = monitor, False

    def before_fit(self, state, control):
        self.monitor.before_fit(state, control)

    def before_epoch(self, state, control):
        self.on = state.epoch % 2 == 1
        if self.on:
            self.monitor.before_epoch(state, control)

    def _forward(event):
        def hook(self, state, control):
            if self.on:
                getattr(self.monitor, event)(state, control)
        return hook

    before_batch, after_loss = _forward("before_batch"), _forward("after_loss")
    before_step, after_batch, after_epoch = _forward("before_step"), _forward("after_batch"), _forward("after_epoch")

    def after_fit(self, state, control):
        self.monitor.after_fit(state, control)


def overhead(data_name: str, seeds: list[int], epochs: int, batch_size: int) -> dict:
    """Epoch time with ledger + monitor over ledger only: epochs alternate within each run; the
    ratio of the monitored epochs' total time to the bare ones' per run, mean ± std over runs."""
    data = split(data_name, 0)
    over = {"epochs": epochs, "batch_size": batch_size, "monitor": False}
    runs = []
    for seed in seeds:
        path = TMP / f"{data_name}_{seed}"
        shutil.rmtree(path, ignore_errors=True)
        clock: dict = {}
        monitor = ModelMonitor()
        state = train_case(data, over, None, seed=seed, run=Run.create(path), monitor=False,
                           extra=[_EpochClock(-1000, clock), _EpochClock(1000, clock), _EveryOtherEpoch(monitor)])
        row = {"seed": seed}
        for kind in ("wall", "cpu"):
            t = np.array(clock[kind][2:])  # the first pair of epochs (warm-up) is dropped
            bare, monitored = t[0::2], t[1::2]
            n = min(len(bare), len(monitored))
            # total over total, not a median: the probe runs on some epochs only, and its cost counts
            row[f"ratio_{kind}"] = float(monitored[:n].sum() / bare[:n].sum())
            row[f"epoch_{kind}_ledger"] = float(np.median(bare))
        row["monitor_self_timed_fraction"] = state.extra["model_health"]["overhead"]["fraction"]
        row["probes"] = state.extra["model_health"]["overhead"]["probes"]
        runs.append(row)

    def ms(key: str) -> dict:
        v = np.array([r[key] for r in runs])
        return {"mean": float(v.mean()), "std": float(v.std())}

    return {"data": data_name, "n_train": len(data[1]), "epochs": epochs, "batch_size": batch_size,
            "runs": runs, "ratio_wall": ms("ratio_wall"), "ratio_cpu": ms("ratio_cpu"),
            "epoch_cpu_ledger": ms("epoch_cpu_ledger"), "epoch_wall_ledger": ms("epoch_wall_ledger"),
            "monitor_self_timed_fraction": ms("monitor_self_timed_fraction")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, fewer repeats (smoke run)")
    ap.add_argument("--out", default=str(RESULTS / "model_health.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [0] if args.quick else [0, 1, 2]
    t0 = time.perf_counter()
    print("Planted pathologies (found / runs):", flush=True)
    det = detection(seeds)
    print("Monitor overhead beyond the ledger:", flush=True)
    ovh = [overhead("digits", seeds, 22, 64), overhead("synthetic", seeds, 12, 128)]
    result = {"benchmark": "model_health", "seeds": seeds, "detection": det, "overhead": ovh,
              "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "device": "cpu", "processor": platform.processor() or platform.machine()},
              "versions": versions(), "seconds": time.perf_counter() - t0}
    write_json(args.out, result)
    shutil.rmtree(TMP, ignore_errors=True)

    print(f"\n{'pathology':26s} {'expected':22s} {'found':>7s} {'other findings':>15s}")
    for name, d in det.items():
        print(f"{name:26s} {str(d['expected'] or '(none: healthy)'):22s} {d['detected']:>3d} / {d['runs']:<1d} "
              f"{d['false_alarms']:>15d}")
    print(f"\n{'data':10s} {'n_train':>8s} {'epoch cpu s':>12s} {'ratio wall':>14s} {'ratio cpu':>14s} "
          f"{'self-timed':>11s}")
    for o in ovh:
        base = o["epoch_cpu_ledger"]["mean"]
        print(f"{o['data']:10s} {o['n_train']:>8d} {base:>12.3f} {o['ratio_wall']['mean']:>8.3f} ± "
              f"{o['ratio_wall']['std']:.3f} {o['ratio_cpu']['mean']:>8.3f} ± {o['ratio_cpu']['std']:.3f} "
              f"{o['monitor_self_timed_fraction']['mean']:>10.1%}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
