"""B5: `trainyard diagnose` on make_classification data (40 features, 10 classes, 20 % symmetric noise)
at 10^4, 10^5, 10^6 rows: wall time, peak resident memory, time per sample; and peak memory at E vs
3E epochs (it must not grow with epochs). Each size runs in a fresh child process, measured there.

    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--epochs 5] [--memory-n 100000]

Wall times are absolute (the issue's target is "under 10 minutes on 2 cores"), so they only mean
something on an otherwise idle machine: the load average before and after each size is recorded
next to it. Run it alone.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_result  # noqa: E402


def child(n: int, epochs: int, workdir: str) -> None:
    """Runs in the child: make data, diagnose through the public API, print measurements as JSON."""
    from trainyard.data import inject_label_noise, make_synthetic

    ds = make_synthetic(n, n_features=40, n_classes=10, seed=0)
    noisy, flipped = inject_label_noise(ds.y, 0.2, "symmetric", 10, seed=0)
    path = Path(workdir) / f"synthetic_{n}.npz"
    np.savez(path, X=ds.X, y=noisy)
    del ds
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "trainyard", "diagnose", str(path), "--epochs", str(epochs),
                          "--out", str(Path(workdir) / f"run_{n}_{epochs}"), "--quiet", "--top", "0"],
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the diagnose process (Linux: KiB)
    import pandas as pd

    s = pd.read_csv(Path(workdir) / f"run_{n}_{epochs}" / "samples.csv", usecols=["label_issue", "split"])
    meta = json.loads((Path(workdir) / f"run_{n}_{epochs}" / "run.json").read_text())
    tr = (s["split"] == "train").to_numpy()
    flagged = s["label_issue"].to_numpy(bool)
    tp = int((flagged & flipped).sum())
    prec = tp / max(flagged.sum(), 1)
    rec = tp / max(flipped.sum(), 1)
    print(json.dumps({"n": n, "epochs": epochs, "wall_s": wall, "peak_rss_mib": peak_kib / 1024,
                      "us_per_sample": wall / n * 1e6, "batch_size": meta.get("batch_size"),
                      "label_f1_all_rows": 2 * prec * rec / max(prec + rec, 1e-9), "n_train": int(tr.sum()),
                      "methods": {k: v.get("method") for k, v in json.loads(
                          (Path(workdir) / f"run_{n}_{epochs}" / "data_health.json").read_text()).items()
                          if isinstance(v, dict) and "method" in v}}))


def run_child(n: int, epochs: int, workdir: str) -> dict:
    load_before = os.getloadavg()[0]
    out = subprocess.run([sys.executable, __file__, "--child", str(n), str(epochs), workdir],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"size {n} failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
    return r


def targets(by_n: dict, mem: list[dict]) -> dict:
    """Issue 9's B5 targets, each None when its size was not run."""
    big, mid = by_n.get(1000000), by_n.get(100000)
    return {"1e6_under_600_s": None if big is None else big["wall_s"] < 600,
            "1e6_peak_under_4_GiB": None if big is None else big["peak_rss_mib"] < 4096,
            "per_sample_1e6_within_1.5x_of_1e5": None if big is None or mid is None
            else big["us_per_sample"] <= 1.5 * mid["us_per_sample"],
            # flat: 3x the epochs may not add more than 5 % to the peak
            "memory_flat_in_epochs": mem[1]["peak_rss_mib"] <= 1.05 * mem[0]["peak_rss_mib"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--memory-n", type=int, default=100000, help="size for the E-vs-3E-epochs memory check")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(int(a.child[0]), int(a.child[1]), a.child[2])
        return
    work = tempfile.mkdtemp(prefix="trainyard-scale-")
    rows = []
    for n in [int(x) for x in a.sizes.split(",")]:
        r = run_child(n, a.epochs, work)
        rows.append(r)
        write_result("scale", {"machine": machine(), "partial": True, "epochs": a.epochs, "sizes": rows})
        print(f"n={n:>8}  wall {r['wall_s']:7.1f} s  peak {r['peak_rss_mib']:7.0f} MiB  "
              f"{r['us_per_sample']:7.1f} us/sample  label F1 {r['label_f1_all_rows']:.3f}", flush=True)
    # the size run at --epochs already measured the first point; only 3x the epochs is new
    first = next((r for r in rows if r["n"] == a.memory_n), None) or run_child(a.memory_n, a.epochs, work)
    mem = [first, run_child(a.memory_n, 3 * a.epochs, work)]
    for r in mem:
        print(f"n={r['n']} epochs={r['epochs']}: peak {r['peak_rss_mib']:.0f} MiB, wall {r['wall_s']:.1f} s")
    by_n = {r["n"]: r for r in rows}
    ratio = by_n[1000000]["us_per_sample"] / by_n[100000]["us_per_sample"] if {100000, 1000000} <= set(by_n) else None
    res = {"machine": machine(), "protocol": "B5: `trainyard diagnose` (fit + every detector) in a fresh process per "
           "size; make_classification 40 features, 10 classes, 20 % symmetric noise on all rows; peak RSS of that "
           "process", "epochs": a.epochs, "sizes": rows, "per_sample_ratio_1e6_vs_1e5": ratio,
           "memory_vs_epochs": mem, "targets": targets(by_n, mem)}
    print(write_result("scale", res))


if __name__ == "__main__":
    main()
