"""What a second repair round should do after a cleaning round: repeat it on the retrained model's new
flags, or revisit the first round's own changes (``trainyard.repair.revisit``)? The probe behind the
``revisit`` candidate of the repair loop (issue 5, session 13).

    python benchmarks/second_round.py [--settings synthetic:symmetric:0.2:0,digits:symmetric:0.4:0]

Per setting (B2's data, split, noise and model options, from ``benchmarks/repair.py``): the baseline
on the noisy labels and its label diagnosis; a ``trust`` first round (every flagged training row
takes its suggested class) trained with the repair rounds' mixup; then two second rounds, each
trained the same way: **repeat** (the round-1 model's own diagnosis flags relabelled with its
suggestions, as repeating the round does) and **revisit** (each row round 1 relabelled takes the
round-1 model's class where the two disagree; the rest untouched). Simplified against the loop: no
outlier quarantine, no validation choice, the final epoch's model. Reported: wrong training labels
after each step (counted against the true labels) and test accuracy of each model (test labels read
by this script after the fact; nothing here chooses with them). Written to ``second_round.json``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_result  # noqa: E402

SETTINGS = ("synthetic:symmetric:0.2:0,synthetic:symmetric:0.4:0,synthetic:symmetric:0.4:1,"
            "synthetic:class_conditional:0.2:0,digits:symmetric:0.4:0")


def one(name: str, kind: str, rate: float, seed: int, workdir: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    from repair import noisy_setting
    from trainyard.data import Splits
    from trainyard.diagnose.labels import label_issues
    from trainyard.fitting import fit
    from trainyard.monitor import read_ledger
    from trainyard.repair.augment import Mixup
    from trainyard.repair.loop import MIXUP_ALPHA
    from trainyard.train.trainer import predict_proba

    ds, splits, opts, noisy_y, _ = noisy_setting(name, kind, rate, seed, False)
    n_tr = len(splits.train)
    dev_idx = np.concatenate([splits.train, splits.val])
    dev = ds.subset(dev_idx).with_labels(noisy_y[dev_idx])
    true = ds.y[dev_idx]
    train = np.arange(len(dev_idx)) < n_tr
    sp = Splits(np.arange(n_tr), np.arange(n_tr, len(dev_idx)), np.zeros(0, np.int64))
    tag = workdir / f"{name}-{kind}-{rate}-s{seed}"

    def fitted(labels: np.ndarray, step: str, mixup: bool = True):
        fr = fit(dev.with_labels(labels), splits=sp, out=tag / step, write_report=False, quiet=True,
                 callbacks=[Mixup(MIXUP_ALPHA)] if mixup else [], **opts)
        acc = float((predict_proba(fr.model, ds.X[splits.test]).argmax(1) == ds.y[splits.test]).mean())
        return fr, acc

    def diagnosis(fr, labels):
        table, _ = label_issues(read_ledger(fr.run.path), labels, ds.n_classes)
        return table["label_issue"].to_numpy(bool) & train, table["suggested_label"].to_numpy(int)

    def wrong(labels) -> int:
        return int((labels[train] != true[train]).sum())

    base, acc0 = fitted(dev.y, "baseline", mixup=False)
    flags0, suggested0 = diagnosis(base, dev.y)
    round1 = np.where(flags0, suggested0, dev.y)
    fr1, acc1 = fitted(round1, "round1")
    flags1, suggested1 = diagnosis(fr1, round1)
    pred1 = predict_proba(fr1.model, dev.X).argmax(1)
    changed = train & (round1 != dev.y)
    repeat = np.where(flags1, suggested1, round1)
    revisit = np.where(changed & (pred1 != round1), pred1, round1)
    _, acc_repeat = fitted(repeat, "repeat")
    _, acc_revisit = fitted(revisit, "revisit")
    return {"data": name, "noise": kind, "rate": rate, "seed": seed, "options": opts,
            "wrong_labels": {"given": wrong(dev.y), "round1_trust": wrong(round1), "repeat": wrong(repeat),
                             "revisit": wrong(revisit)},
            "rows_changed_in_round2": {"repeat": int((repeat != round1).sum()), "revisit": int((revisit != round1).sum())},
            "test_accuracy": {"noisy": acc0, "round1_trust": acc1, "repeat": acc_repeat, "revisit": acc_revisit}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default=SETTINGS, help="comma list of data:noise:rate:seed")
    p.add_argument("--out", default="second_round")
    a = p.parse_args(argv)
    rows, t0 = [], time.time()
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-second-round-") as wd:
        for s in a.settings.split(","):
            name, kind, rate, seed = s.split(":")
            r = one(name, kind, float(rate), int(seed), Path(wd))
            rows.append(r)
            w, t = r["wrong_labels"], r["test_accuracy"]
            print(f"{name} {kind} {rate} seed {seed}: wrong labels {w['given']} -> round 1 {w['round1_trust']} -> "
                  f"repeat {w['repeat']} / revisit {w['revisit']}; test {t['noisy']:.4f} -> {t['round1_trust']:.4f} -> "
                  f"repeat {t['repeat']:.4f} / revisit {t['revisit']:.4f}", flush=True)
    write_result(a.out, {"benchmark": "B2 probe: the second round after a cleaning round", "machine": machine(),
                         "protocol": __doc__, "seconds": time.time() - t0, "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
