"""How much of the repair's shortfall is the noisy validation split it chooses with? B2's runs repeated
with a reviewer's labels on the validation rows (``trainyard repair --reviewed``), issue 5.

    python benchmarks/trusted_validation.py [--datasets digits,breast_cancer]
        [--noise instance:0.2,instance:0.4,class_conditional:0.2] [--seeds 3] [--jobs 2] [--out NAME]

Per setting and seed (B2's data, split, noise and model options, from ``benchmarks/repair.py``), three
repairs (policy auto, 2 rounds) that differ only in what the validation rows say:

* **given**: the noisy labels, as in B2;
* **reviewed flagged**: a reviewer corrected the validation rows the baseline diagnosis flagged (the
  rows the review page lists; here the "reviewer" writes the true class), every other validation
  row keeps its noisy label;
* **reviewed all**: every validation row carries its true label (a reviewed validation split).

The reviewed rows go in through ``--reviewed`` as ``id,class`` decisions, exactly as a person's would;
the repair then scores those rows as they are (no noise correction) and never changes them. No
training row is reviewed. Also per run: the oracle (true labels, same model) for the gap, and for each
model the "given" repair trained, its accuracy on the validation rows' true labels next to its test
accuracy: whether even a perfectly labelled validation split of this size would have picked the model
the test split prefers. Test labels are read by this script after each repair has chosen. Written to
``trusted_validation.json``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, machine, mean_std, write_result  # noqa: E402

NOISES = "instance:0.2,instance:0.4,class_conditional:0.2"
MODES = ("given", "reviewed_flagged", "reviewed_all")


def _write_reviewed(path: Path, ids: np.ndarray, labels: np.ndarray, classes: list[str]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,decision\n")
        for i, y in zip(ids, labels):
            f.write(f"{i},{classes[int(y)]}\n")
    return path


def run_setting(name: str, kind: str, rate: float, seed: int, workdir: str, modes: tuple = MODES) -> dict:
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    from repair import candidate_tests, noisy_setting

    from trainyard.fitting import fit
    from trainyard.repair import repair

    ds, splits, opts, noisy_y, flipped = noisy_setting(name, kind, rate, seed, False)
    noisy = ds.with_labels(noisy_y)
    tag = Path(workdir) / f"{name}-{kind}-{rate}-s{seed}"
    tag.mkdir(parents=True, exist_ok=True)
    val = splits.val
    out: dict = {"data": name, "noise": kind, "rate": rate, "seed": seed, "options": opts,
                 "n_train": len(splits.train), "n_val": len(val), "n_test": len(splits.test),
                 "val_wrong_labels": int(flipped[val].sum())}
    y_test, X_val = ds.y[splits.test], ds.X[val]

    reports = {}
    for mode in modes:
        reviewed = None
        if mode == "reviewed_flagged":
            s0 = pd.read_csv(tag / "given" / "samples.csv", dtype={"id": str})
            flagged = set(s0.loc[s0["label_issue"].astype(bool) & (s0["split"] == "val"), "id"])
            rows = np.array([r for r in val if str(ds.ids[r]) in flagged], dtype=np.int64)
            reviewed = _write_reviewed(tag / "reviewed_flagged.csv", ds.ids[rows], ds.y[rows], ds.classes)
            out["reviewed_flagged_rows"] = len(rows)
            out["reviewed_flagged_wrong"] = int(flipped[rows].sum())
        elif mode == "reviewed_all":
            reviewed = _write_reviewed(tag / "reviewed_all.csv", ds.ids[val], ds.y[val], ds.classes)
        t0 = time.perf_counter()
        res = repair(noisy, splits=splits, out=tag / mode, policy="auto", rounds=2, reviewed=reviewed, **opts)
        rep = res.report
        reports[mode] = rep
        out[mode] = rep["accuracy_after"]
        out[f"{mode}_policy"] = rep["policy"]
        out[f"{mode}_round"] = rep["selected_round"]
        out[f"{mode}_seconds"] = round(time.perf_counter() - t0, 1)
    out["noisy"] = reports["given"]["accuracy_before"]
    oracle = fit(ds, splits=splits, out=tag / "oracle", write_report=False, quiet=True, **opts)
    out["oracle"] = oracle.test_metrics["acc"]
    gap = out["oracle"] - out["noisy"]
    for mode in modes:
        out[f"gap_{mode}"] = (out[mode] - out["noisy"]) / gap if abs(gap) > 1e-12 else None
    # the given repair's models on the validation rows' TRUE labels, beside their test accuracy
    cands = candidate_tests(reports["given"], ds.X[splits.test], y_test, also=("val_true", X_val, ds.y[val]))
    out["candidates"] = cands
    best_test = max(cands, key=lambda c: c["test_acc"]) if cands else None
    best_val_true = max(cands, key=lambda c: c["val_true"]) if cands else None
    out["best_candidate_by_test"] = best_test and best_test["test_acc"]
    out["best_candidate_by_true_val"] = best_val_true and best_val_true["test_acc"]
    shutil.rmtree(tag, ignore_errors=True)
    return out


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for key in sorted({(r["data"], r["noise"], r["rate"]) for r in rows}):
        rs = [r for r in rows if (r["data"], r["noise"], r["rate"]) == key]
        s = {"data": key[0], "noise": key[1], "rate": key[2], "seeds": [r["seed"] for r in rs]}
        for k in ("noisy", "oracle", *MODES, *(f"gap_{m}" for m in MODES), "reviewed_flagged_rows",
                  "reviewed_flagged_wrong", "val_wrong_labels", "n_val"):
            s[k] = mean_std([r.get(k) for r in rs])
        s["kept"] = {m: sum(r[f"{m}_round"] > 0 for r in rs) for m in MODES if all(f"{m}_round" in r for r in rs)}
        out.append(s)
    return out


def markdown(files: list[str]) -> str:
    """BENCHMARKS.md's table from result files: one row per setting, the gap recovered per mode; where
    several files measured a mode of a setting, the later file's figure is shown, and the last column
    names the file of each mode."""
    import json

    rows: dict = {}
    for f in files:
        for s in json.loads(Path(f).read_text())["summary"]:
            row = rows.setdefault((s["data"], s["noise"], s["rate"]), {"base": s, "mode": {}})
            for m in MODES:
                if s[f"gap_{m}"]["mean"] is not None:
                    row["mode"][m] = (s, Path(f).name)
    head = ("| data | noise | rate | seeds | validation rows (wrong labels) | flagged validation rows (wrong) | noisy "
            "| oracle | gap recovered: given labels | flagged rows reviewed | all rows reviewed "
            "| rounds kept (given / flagged / all) | files (given / flagged / all) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (data, noise, rate), row in rows.items():
        b, md = row["base"], row["mode"]
        cell = {m: fmt(md[m][0][f"gap_{m}"]) if m in md else "—" for m in MODES}
        kept = " / ".join(str(md[m][0]["kept"][m]) if m in md else "—" for m in MODES)
        names = " / ".join(f"`{md[m][1]}`" if m in md else "—" for m in MODES)
        fl = md.get("reviewed_flagged", (b, None))[0]
        flagged = (f"{fl['reviewed_flagged_rows']['mean']:.0f} ({fl['reviewed_flagged_wrong']['mean']:.0f})"
                   if fl["reviewed_flagged_rows"]["mean"] is not None else "—")
        lines.append(f"| {data} | {noise} | {rate:.0%} | {len(b['seeds'])} | {b['n_val']['mean']:.0f} "
                     f"({b['val_wrong_labels']['mean']:.0f}) | {flagged} | {fmt(b['noisy'])} | {fmt(b['oracle'])} "
                     f"| {cell['given']} | {cell['reviewed_flagged']} | {cell['reviewed_all']} | {kept} | {names} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="digits,breast_cancer")
    p.add_argument("--noise", default=NOISES, help="comma list of kind:rate")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--out", default="trusted_validation")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)} (given is required)")
    p.add_argument("--table", nargs="+", metavar="JSON", help="print BENCHMARKS.md's table from result files and stop")
    a = p.parse_args(argv)
    if a.table:
        print(markdown(a.table))
        return 0
    modes = tuple(m for m in MODES if m in a.modes.split(","))
    if "given" not in modes:
        p.error("--modes must include given")
    noises = [(k, float(r)) for k, r in (x.split(":") for x in a.noise.split(","))]
    tasks = [(n, k, r, s) for s in range(a.seeds) for n in a.datasets.split(",") for (k, r) in noises]
    workdir = tempfile.mkdtemp(prefix="trainyard-bench-trusted-")
    from repair import code_version

    version, t0, rows = code_version(), time.time(), []
    try:
        with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            for f in [pool.submit(run_setting, *t, workdir, modes) for t in tasks]:
                r = f.result()
                rows.append(r)
                print(f"{r['data']:<14}{r['noise']:<18}{r['rate']:<5} seed {r['seed']}: noisy {r['noisy']:.4f} "
                      + " ".join(f"{m} {r[m]:.4f} (round {r[m + '_round']})" for m in modes)
                      + f" oracle {r['oracle']:.4f}", flush=True)
                write_result(a.out, {"benchmark": "B2 with reviewed validation labels", "machine": machine(),
                                     "code": version, "protocol": __doc__, "complete": len(rows) == len(tasks),
                                     "seconds": time.time() - t0, "summary": summarise(rows), "runs": rows})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    for s in summarise(rows):
        print(f"{s['data']:<14}{s['noise']:<18}{s['rate']:<5} gap recovered: "
              + "  ".join(f"{m} {fmt(s['gap_' + m])} (kept {s['kept'][m]})" for m in s["kept"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
