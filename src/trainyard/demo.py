"""``trainyard demo``: sklearn digits with known label noise, repaired end to end.

Flips a share of the labels of the training and validation rows (symmetric noise, fixed seed; the
test rows keep their true labels), runs ``repair`` (baseline, diagnosis, repair rounds chosen on the
noisy validation rows), then shows how the flags compare with the flips it knows about and what the
repair did to test accuracy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TOP = 10


def run_demo(out: str | Path = "runs/demo", seed: int = 0, quiet: bool = False, noise: float = 0.2,
             **train_overrides: Any):
    """Run the demo and print its results; returns the RepairResult (with ``demo`` facts in ``report``).

    >>> run_demo("runs/demo", noise=0.2)   # doctest: +SKIP
    """
    from rich.console import Console
    from rich.table import Table

    from .data import inject_label_noise, load, make_splits
    from .errors import ConfigError
    from .repair import repair

    if not 0.0 <= float(noise) < 0.9:
        raise ConfigError(f"--noise must be a fraction in [0, 0.9), got {noise}")
    import torch

    # an 8x8-pixel MLP is too small to gain from several threads; on a busy machine they only spin
    torch.set_num_threads(1)
    console = Console()
    ds = load("sklearn:digits")
    splits = make_splits(ds.y, (0.7, 0.2, 0.1), seed=seed)
    labelled = np.concatenate([splits.train, splits.val])
    noisy_y, flipped = inject_label_noise(ds.y, noise, "symmetric", ds.n_classes, seed=seed, idx=labelled)
    noisy = ds.with_labels(noisy_y)
    noisy.source = f"sklearn:digits with {noise:.0%} of the training/validation labels flipped (seed {seed})"
    console.print(f"[bold]trainyard demo[/]: sklearn digits ({len(ds)} 8x8 images, {ds.n_classes} classes); flipped "
                  f"{int(flipped.sum())} of {len(labelled)} training/validation labels ({noise:.0%}, symmetric, seed "
                  f"{seed}); the {len(splits.test)} test rows keep their true labels.")

    # the MLP: a CNN fits digits a little better but takes minutes on two cores
    opts = {"model": "mlp", "seed": seed, **train_overrides}
    res = repair(noisy, splits=splits, out=out, policy="auto", rounds=2, quiet=quiet, **opts)
    r = res.report

    # -- flags of the baseline diagnosis against the flips we made --------------------------------
    s = res.diagnosis.samples.copy()
    row_of = {i: n for n, i in enumerate(ds.ids)}
    rows = np.array([row_of[str(i)] for i in s["id"]])
    s["truly_flipped"] = flipped[rows]
    s["true_label"] = np.asarray(ds.classes, dtype=object)[ds.y[rows]]
    flags = s["label_issue"].to_numpy(bool)
    truth = s["truly_flipped"].to_numpy(bool)
    precision = float(truth[flags].mean()) if flags.any() else float("nan")
    recall = float(flags[truth].mean()) if truth.any() else float("nan")

    top = s[flags].sort_values("label_score", ascending=False).head(TOP)
    t = Table(title=f"top {len(top)} flagged samples (of {int(flags.sum())})")
    for c in ("id", "given", "suggested", "label_score", "truly flipped"):
        t.add_column(c, justify="right" if c in ("id", "label_score") else "left")
    for _, row in top.iterrows():
        t.add_row(str(row["id"]), str(row["given_label"]), str(row["suggested_label"]), f"{row['label_score']:.3f}",
                  f"yes (was {row['true_label']})" if row["truly_flipped"] else "no")
    console.print(t)
    console.print(f"flags vs the known flips ({int(truth.sum())} flipped among the {len(s)} rows checked): "
                  f"precision [bold]{precision:.3f}[/], recall [bold]{recall:.3f}[/]")

    # -- what the repair changed, checked against the truth ----------------------------------------
    import pandas as pd

    rep = pd.read_csv(res.out / "repaired.csv", dtype={"id": str, "given_label": str, "label": str})
    changed = rep[rep["changed"].astype(bool)]
    true_of = dict(zip(ds.ids, np.asarray(ds.classes, dtype=object)[ds.y]))
    fixed = int(sum(true_of[i] == lab for i, lab in zip(changed["id"], changed["label"])))
    q = pd.read_csv(res.out / "quarantine.csv", dtype={"id": str})
    q_flipped = int(sum(flipped[row_of[i]] for i in q["id"]))
    console.print(f"repair ({r['policy']}, kept round {r['selected_round']}): relabelled {len(changed)} rows, "
                  f"{fixed} of them to their true class; quarantined {len(q)} rows, {q_flipped} of them truly flipped")
    for rd in r["rounds"]:
        how = ("; trained through the estimated noise (forward loss correction)" if rd.get("loss_correction")
               else "; trained with the robust loss" if rd.get("robust_loss") else "")
        console.print(f"  round {rd['round']}{' (' + rd['variant'] + ')' if rd.get('variant') else ''}: relabelled "
                      f"{rd['relabelled']}, quarantined {rd['dropped']}{how}, validation accuracy {rd['val_acc']:.4f} "
                      f"(noise-corrected {rd['val_acc_corrected']:.4f})")
    console.print(f"test accuracy [bold]{r['accuracy_before']:.4f} -> {r['accuracy_after']:.4f}[/] "
                  f"(macro F1 {r['macro_f1_before']:.4f} -> {r['macro_f1_after']:.4f})")
    report = res.out / "report.html"
    console.print(f"report: {report if report.exists() else res.out / 'repair.json'}")
    r["demo"] = {"noise": noise, "seed": seed, "flipped": int(flipped.sum()), "flag_precision": precision,
                 "flag_recall": recall, "relabelled": len(changed), "relabelled_correctly": fixed,
                 "quarantined": len(q), "quarantined_flipped": q_flipped}
    return res
