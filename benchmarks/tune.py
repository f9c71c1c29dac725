"""B4: search efficiency. Trials to reach a target validation accuracy: Trainyard's tuner vs random
search (no pruning) with the same budget, on digits and a Fashion-MNIST subset, median over seeds;
then a study warm-started from earlier studies on a related data set.

The tuner as shipped starts (when it has no history) from the training config itself and three
generic recipes, then runs TPE with staged median pruning; "tpe-only" is the same without those first
trials, to show what the sampler adds on its own. Wall time is compared per seed (runs of one seed ran back to back, in alternating order).

    python benchmarks/tune.py [--quick] [--seeds 5] [--budget 20]

The target is fixed before the tuner's runs are scored, from random search alone: the median over
seeds of the best validation accuracy random search reaches within the whole budget ("what random
search gets with the full budget, half the time"). A run that never reaches it counts as budget + 1
(censored); the table says how many seeds reached it. Other targets (quantiles of all random
trials' scores) are reported too, so the result does not hang on one choice.

Warm start: the "related data set" is a digits variant: 1,200 rows drawn at random from digits, with
Gaussian pixel noise (sigma 0.15) - the same task at another size and quality, as when new data of
a known kind arrives. Its studies start from a registry holding the part-one studies (digits and
Fashion-MNIST, all methods); ``--warm-start auto`` must pick the nearest ones itself. Each warm run
gets its own copy of that registry, so seeds never learn from each other.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_result  # noqa: E402

from trainyard.data.dataset import Dataset  # noqa: E402
from trainyard.data.split import make_splits  # noqa: E402
from trainyard.tune import tune  # noqa: E402


def digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Dataset((d.data / 16).reshape(-1, 1, 8, 8), d.target, [str(i) for i in range(10)],
                   np.arange(len(d.target)), "image", source="sklearn:digits")


def digits_variant(n: int = 1200, sigma: float = 0.15, seed: int = 7) -> Dataset:
    ds = digits()
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(ds), n, replace=False))
    X = np.clip(ds.X[rows] + rng.normal(0, sigma, ds.X[rows].shape), 0, 1)
    return Dataset(X, ds.y[rows], ds.classes, ds.ids[rows], "image", source="digits-noisy-subset")


def fashion(n: int) -> Dataset:
    from trainyard.data import load

    return load(f"fashion-mnist:{n}")


def search(ds: Dataset, splits, name: str, method: str, seed: int, budget: int, epochs: int, work: Path,
           registry: Path, overrides: dict) -> dict:
    """One study; returns per-trial (state, value) in trial order, seconds and epochs trained."""
    sampler, pruner, first = ARMS[method]
    study = f"{name}-{method}-{seed}"
    t0 = time.perf_counter()
    res = tune(ds, splits=splits, trials=budget, out=work / study, study=study, sampler=sampler, pruner=pruner,
               warm_start="auto" if method == "warm" else "off", registry=registry, retrain=False, quiet=True,
               defaults_first=first, seed=seed, epochs=epochs, **overrides)
    seconds = time.perf_counter() - t0
    trials = [(h["state"], h["value"]) for h in res.history if h["state"] in ("COMPLETE", "PRUNED")]
    shutil.rmtree(work / study / "trials", ignore_errors=True)
    return {"seed": seed, "seconds": seconds, "trials": trials, "best": res.best_value,
            "epochs_trained": int(sum(h["epochs_run"] or 0 for h in res.history)),
            "warm_started": res.warm_started}


def trials_to(trials: list, target: float) -> int | None:
    """1-based index of the first complete trial scoring >= target (pruned trials never count)."""
    for i, (state, value) in enumerate(trials, 1):
        if state == "COMPLETE" and value is not None and value >= target - 1e-12:
            return i
    return None


def summarise(runs: dict[str, list[dict]], target: float, budget: int) -> dict:
    out = {}
    for method, rs in runs.items():
        hits = [trials_to(r["trials"], target) for r in rs]
        censored = [h if h is not None else budget + 1 for h in hits]
        out[method] = {"trials_to_target": hits, "median_trials": float(np.median(censored)),
                       "reached": sum(h is not None for h in hits), "runs": len(hits),
                       "seconds": [r["seconds"] for r in rs], "total_seconds": float(sum(r["seconds"] for r in rs)),
                       "epochs_trained": [r["epochs_trained"] for r in rs], "best": [r["best"] for r in rs]}
    return out


def ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def paired_time_ratio(num: list[dict], den: list[dict]) -> float:
    """Median over seeds of seconds(num) / seconds(den): runs of one seed ran back to back."""
    return float(np.median([n["seconds"] / d["seconds"] for n, d in zip(num, den)]))


def compare(name: str, ds: Dataset, splits, methods: list[str], seeds: list[int], budget: int, epochs: int,
            work: Path, registry_for, overrides: dict, log) -> dict:
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for s in seeds:
        order = methods if s % 2 == 0 else methods[::-1]  # alternate who runs first: machine load drifts
        for m in order:
            r = search(ds, splits, name, m, s, budget, epochs, work, registry_for(m, s), overrides)
            runs[m].append(r)
            log(f"{name:8s} {m:6s} seed {s}: best {r['best']:.4f}  {r['seconds']:6.1f}s  "
                f"epochs {r['epochs_trained']}")
    for m in methods:
        runs[m].sort(key=lambda r: r["seed"])
    random_best = [r["best"] for r in runs["random"]]
    target = float(np.median(random_best))
    pooled = [v for r in runs["random"] for st, v in r["trials"] if st == "COMPLETE" and v is not None]
    sensitivity = {}
    for q in (0.8, 0.9):
        t = float(np.quantile(pooled, q))
        sensitivity[f"random_trial_q{int(q * 100)}"] = {"target": t, **{
            m: summarise({m: runs[m]}, t, budget)[m]["median_trials"] for m in methods}}
    return {"target": target, "target_rule": "median over seeds of random search's best val_acc within the budget",
            "methods": summarise(runs, target, budget), "sensitivity": sensitivity, "runs": runs}


# method -> (sampler, pruner, first trials = the training config (+ recipes for TPE))
ARMS = {"random": ("random", "none", True), "random-plain": ("random", "none", False),
        "tuner": ("tpe", "median", True), "tuner-no-prune": ("tpe", "none", True),
        "tpe-only": ("tpe", "median", False), "warm": ("tpe", "median", True)}
PART1 = ["random", "random-plain", "tuner", "tuner-no-prune", "tpe-only"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 seeds, tiny budget: a smoke run")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=20, help="trials per study (part one)")
    ap.add_argument("--warm-budget", type=int, default=12, help="trials per study (warm start part)")
    ap.add_argument("--fashion-n", type=int, default=2000)
    ap.add_argument("--methods", default=",".join(PART1),
                    help="part-one arms (random is required: it fixes the target)")
    a = ap.parse_args()
    part1 = [m.strip() for m in a.methods.split(",") if m.strip()]
    if "random" not in part1 or "tuner" not in part1 or any(m not in ARMS for m in part1):
        raise SystemExit(f"--methods must include random and tuner, from {', '.join(PART1)}")
    torch.set_num_threads(1)
    seeds = list(range(2 if a.quick else a.seeds))
    budget, warm_budget = (6, 5) if a.quick else (a.budget, a.warm_budget)
    fashion_n = 600 if a.quick else a.fashion_n
    ep_digits, ep_fashion = (3, 2) if a.quick else (5, 4)
    work = Path(tempfile.mkdtemp(prefix="trainyard-b4-"))
    part1_registry = work / "registry-part1.json"
    t_start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:7.0f}s] {msg}", flush=True)

    def fixed_splits(ds: Dataset):
        return make_splits(ds.y, fractions=(0.7, 0.2, 0.1), seed=0)  # one validation split for every run

    result: dict = {"benchmark": "B4 search efficiency", "machine": machine(), "seeds": seeds,
                    "budget": budget, "warm_budget": warm_budget, "quick": a.quick,
                    "setup": {"digits": f"sklearn digits 1797 rows, 8x8 images, model auto (CNN; searched "
                                        f"depth/width of conv blocks), {ep_digits} epochs per trial",
                              "fashion": f"Fashion-MNIST stratified subset of {fashion_n} training images, "
                                         f"model mlp (searched depth/width), {ep_fashion} epochs per trial",
                              "variant": "digits variant: 1200 random rows, Gaussian pixel noise sigma 0.15",
                              "tuner": "Trainyard's tuner as shipped: first trials = the default training config, "
                                       "then 3 generic recipes (trainyard.tune.space.RECIPES), then TPE "
                                       "(multivariate, seeded, top-half split while few trials have run) + "
                                       "staged median pruning on per-epoch val_acc",
                              "tpe-only": "the tuner without its first trials (no default config, no recipes; "
                                          "ablation)",
                              "warm": "the tuner with --warm-start auto (its first trials come from the registry)",
                              "baseline": "random search, no pruning, same space and budget (its first trial "
                                          "is the default training config, as the tuner's); it fixes the target",
                              "random-plain": "random search as Optuna's RandomSampler runs it: every trial drawn, "
                                              "no default config first, no pruning",
                              "tuner-no-prune": "the tuner with --pruner none (ablation: what pruning saves)",
                              "space": "default space: lr, weight_decay, batch_size, optimizer, schedule, dropout, "
                                       "label_smoothing, clip, depth, width",
                              "split": "stratified 70/20/10, seed 0, same for every run; test split never read"}}
    parts = {}
    dsd = digits()
    parts["digits"] = compare("digits", dsd, fixed_splits(dsd), part1, seeds, budget, ep_digits, work,
                              lambda m, s: part1_registry, {}, log)
    dsf = fashion(fashion_n)
    parts["fashion"] = compare("fashion", dsf, fixed_splits(dsf), part1, seeds, budget, ep_fashion,
                               work, lambda m, s: part1_registry, {"model": "mlp"}, log)

    def warm_registry(m: str, s: int) -> Path:
        if m != "warm":
            return work / "registry-unused.json"
        own = work / f"registry-warm-{s}.json"
        shutil.copy(part1_registry, own)
        return own

    dsv = digits_variant()
    parts["variant"] = compare("variant", dsv, fixed_splits(dsv), ["random", "tuner", "warm"], seeds, warm_budget,
                               ep_digits, work, warm_registry, {}, log)

    headline = {}
    for name in ("digits", "fashion"):
        m, rr = parts[name]["methods"], parts[name]["runs"]
        h = {"target": parts[name]["target"],
             **{f"trials_{k.replace('-', '_')}": m[k]["median_trials"] for k in part1},
             "reached": {k: f"{m[k]['reached']}/{m[k]['runs']}" for k in part1}}
        for k in part1:
            if k != "tuner":  # how many times fewer trials the tuner needs than each other arm
                h[f"fewer_trials_x_vs_{k.replace('-', '_')}"] = ratio(m[k]["median_trials"], m["tuner"]["median_trials"])
        h["fewer_trials_x"] = h["fewer_trials_x_vs_random"]
        h["time_ratio_tuner_over_random"] = paired_time_ratio(rr["tuner"], rr["random"])
        if "tuner-no-prune" in rr:  # pruning on vs off, same sampler and first trials: what pruning saves
            h["time_ratio_pruned_over_unpruned"] = paired_time_ratio(rr["tuner"], rr["tuner-no-prune"])
            h["total_time_ratio_pruned_over_unpruned"] = ratio(m["tuner"]["total_seconds"],
                                                               m["tuner-no-prune"]["total_seconds"])
            h["epoch_ratio_pruned_over_unpruned"] = ratio(sum(m["tuner"]["epochs_trained"]),
                                                          sum(m["tuner-no-prune"]["epochs_trained"]))
        if "tpe-only" in rr:
            h["time_ratio_tpe_over_random"] = paired_time_ratio(rr["tpe-only"], rr["random"])
        headline[name] = h
    mv = parts["variant"]["methods"]
    headline["warm_start"] = {
        "target": parts["variant"]["target"], "trials_random": mv["random"]["median_trials"],
        "trials_tuner_cold": mv["tuner"]["median_trials"], "trials_tuner_warm": mv["warm"]["median_trials"],
        "fewer_trials_x_vs_cold": ratio(mv["tuner"]["median_trials"], mv["warm"]["median_trials"]),
        "time_ratio_warm_over_cold": paired_time_ratio(parts["variant"]["runs"]["warm"],
                                                       parts["variant"]["runs"]["tuner"]),
        "reached": {k: f"{mv[k]['reached']}/{mv[k]['runs']}" for k in ("random", "tuner", "warm")},
        "warm_started_from": parts["variant"]["runs"]["warm"][0]["warm_started"]}
    result["headline"] = headline
    both = ("digits", "fashion")
    result["targets_met"] = {
        "tuner_2x_fewer_trials_than_random_default_first": {n: headline[n]["fewer_trials_x"] >= 2 for n in both},
        "warm_1.5x_fewer_trials": headline["warm_start"]["fewer_trials_x_vs_cold"] >= 1.5,
        "tuner_time_below_random": {n: headline[n]["time_ratio_tuner_over_random"] < 1 for n in both}}
    if "random-plain" in part1:
        result["targets_met"]["tuner_2x_fewer_trials_than_plain_random"] = {
            n: headline[n]["fewer_trials_x_vs_random_plain"] >= 2 for n in both}
    if "tuner-no-prune" in part1:
        result["targets_met"]["pruning_cuts_time"] = {
            n: headline[n]["time_ratio_pruned_over_unpruned"] < 1 for n in both}
    for p in parts.values():  # keep per-trial scores, drop bulky duplicates
        for rs in p["runs"].values():
            for r in rs:
                r["trials"] = [[st, v] for st, v in r["trials"]]
    result["parts"] = parts
    result["seconds"] = time.time() - t_start
    path = write_result("tune-quick" if a.quick else "tune", result)
    shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"B4 search efficiency ({len(seeds)} seeds; median trials to target, censored at budget + 1)")
    for name in ("digits", "fashion"):
        h = headline[name]
        print(f"{name:8s} target {h['target']:.4f}  median trials: "
              + ", ".join(f"{k} {h['trials_' + k.replace('-', '_')]:.0f}" for k in part1)
              + f"  reached {h['reached']}")
        if "time_ratio_pruned_over_unpruned" in h:
            print(f"{'':8s} pruning: time pruned/unpruned {h['time_ratio_pruned_over_unpruned']:.2f} (paired median), "
                  f"epochs {h['epoch_ratio_pruned_over_unpruned']:.2f}")
    h = headline["warm_start"]
    print(f"variant  target {h['target']:.4f}  random {h['trials_random']:.0f}, cold {h['trials_tuner_cold']:.0f}, "
          f"warm {h['trials_tuner_warm']:.0f} ({h['fewer_trials_x_vs_cold']:.2f}x); time warm/cold "
          f"{h['time_ratio_warm_over_cold']:.2f}  {h['reached']}")
    print(f"targets met: {result['targets_met']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
