"""The files a repair leaves for the user: ``repaired.csv`` (the clean data to take away),
``quarantine.csv`` (every dropped row with its reason) and ``samples.csv`` (the baseline findings).
All written atomically. Called after the final evaluation only (test rows are copied unchanged)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..run import SAMPLES_CSV, Run
from .selection import KEEP_MARGIN_SE

REPAIRED_CSV = "repaired.csv"
QUARANTINE_CSV = "quarantine.csv"


def write_outputs(run: Run, ds: Dataset, splits: Any, dev_idx: np.ndarray, labels: np.ndarray,
                  quarantined: np.ndarray, quarantine: dict[int, tuple[str, int]], exempt: np.ndarray,
                  samples: pd.DataFrame, target: str | None, separate_test: bool) -> Dataset:
    """Write repaired.csv and quarantine.csv; return the repaired Dataset (rows not quarantined).

    Args:
        dev_idx: dataset row of each development row; ``labels``/``quarantined``/``exempt`` are per
            development row; ``quarantine`` maps a development row to (reason, round).
        samples: the baseline findings aligned to development rows (label_score, suggested_code).
        separate_test: the test rows came from a separate file: leave them out of repaired.csv.
    """
    n = len(ds)
    classes = np.asarray(ds.classes, dtype=object)
    label_all = ds.y.copy()
    label_all[dev_idx] = labels
    split = np.full(n, "test", dtype=object)
    split[splits.train], split[splits.val] = "train", "val"
    out_rows = np.zeros(n, dtype=bool)
    out_rows[dev_idx[quarantined]] = True
    reviewed = np.zeros(n, dtype=bool)
    reviewed[dev_idx] = exempt
    keep = ~out_rows
    if separate_test:
        keep[splits.test] = False
    changed = label_all != ds.y

    raw = ds.raw
    if isinstance(raw, pd.DataFrame) and len(raw) == n and target is not None and target in raw.columns:
        table = raw.copy()
        table[target] = _as_column(classes[label_all], raw[target])
        table["changed"] = changed
        repaired = table[keep].reset_index(drop=True)
    else:
        repaired = pd.DataFrame({"id": ds.ids, "given_label": classes[ds.y], "label": classes[label_all],
                                 "changed": changed, "split": split, "reviewed": reviewed})[keep]
    run.write_csv(REPAIRED_CSV, repaired.reset_index(drop=True))

    rows = sorted(quarantine)
    code = samples["suggested_code"].to_numpy(np.int64)
    q = pd.DataFrame({
        "id": [ds.ids[dev_idx[i]] for i in rows],
        "label": [classes[ds.y[dev_idx[i]]] for i in rows],
        "suggested_label": [classes[code[i]] if code[i] >= 0 else "" for i in rows],
        "label_score": [samples["label_score"].iloc[i] for i in rows],
        "reason": [quarantine[i][0] for i in rows],
        "round": [quarantine[i][1] for i in rows],
    }, columns=["id", "label", "suggested_label", "label_score", "reason", "round"])
    run.write_csv(QUARANTINE_CSV, q)
    return ds.subset(np.flatnonzero(keep)).with_labels(label_all[keep])


def write_samples(run: Run, samples: pd.DataFrame) -> None:
    """The baseline findings, so ``trainyard report``/``review`` on the repair folder show them."""
    run.write_csv(SAMPLES_CSV, samples)


def _as_column(names: np.ndarray, original: pd.Series) -> pd.Series:
    """Class names back in the column's own type where they fit (a 0/1 column stays numeric)."""
    if pd.api.types.is_numeric_dtype(original.dtype) and not pd.api.types.is_bool_dtype(original.dtype):
        values = pd.to_numeric(pd.Series(names), errors="coerce")
        if values.notna().all():
            if pd.api.types.is_integer_dtype(original.dtype) and (values == values.round()).all():
                return values.astype(original.dtype).set_axis(original.index)
            return values.set_axis(original.index)
    return pd.Series(names, index=original.index, dtype=object)


def validation_review(flagged: np.ndarray, is_val: np.ndarray, exempt: np.ndarray) -> dict:
    """How many validation rows the baseline flagged and how many a reviewer labelled. The rounds are
    chosen on the validation labels; where those are wrong the way the training labels are (an
    annotator's plausible confusions), the noise correction cannot see it and validation prefers the
    model that learnt them. A reviewed validation split is what lifts that; reviewing only the flagged
    rows leaves the wrong labels the flags missed (B2, "reviewed validation labels", in BENCHMARKS.md)."""
    return {"flagged": int((flagged & is_val).sum()), "flagged_unreviewed": int((flagged & is_val & ~exempt).sum()),
            "reviewed": int((exempt & is_val).sum())}


def actions_of(records: list[dict]) -> list[str]:
    """Which repairs the kept rounds actually made."""
    used = []
    for name, hit in (("relabel", lambda r: r.get("relabelled", 0)), ("drop", lambda r: r.get("dropped", 0)),
                      ("reweight", lambda r: r.get("reweighted", 0)),
                      ("rebalance", lambda r: r.get("synthetic_rows", 0) or (r.get("config") or {}).get("class_weight")),
                      ("augment", lambda r: r.get("augmentation")), ("correct", lambda r: r.get("loss_correction")),
                      ("robust", lambda r: r.get("robust_loss"))):
        if any(hit(r) for r in records):
            used.append(name)
    return used


def build_report(policy, chosen, records, test_metrics, fits, quarantine, final, dev, is_val, review_summary,
            transition, splits, seconds) -> dict:
    before, after = test_metrics[0], test_metrics[chosen]
    used = actions_of(records[1:chosen + 1])
    changed = (final.labels != dev.y) & ~is_val
    if chosen == 0:
        name = "none (no round beat the baseline on validation)"
    else:
        name = f"{policy}: {'+'.join(used) or 'no change'}" if policy == "auto" else policy
    return {
        "policy": name,
        "policy_requested": policy,
        "selected_round": chosen,
        "selection": "validation accuracy on the given labels, corrected for the label noise estimated by the "
                     "baseline diagnosis (val_acc_corrected), compared row by row with the best round so far: a "
                     f"round is kept only if it scores higher by more than {KEEP_MARGIN_SE:g} standard error of the "
                     "paired difference, and the rounds stop at the first that does not (no "
                     "repair when no round beats the baseline); in repair rounds the final epoch's weights are "
                     "used unless they score worse than the best epoch's by more than one standard error; a "
                     "model that keeps its best epoch is scored by epochs chosen on the other half of the "
                     "validation rows (the score as chosen, val_acc_corrected_as_chosen, reads high), and a round "
                     "that trained several candidates by choosing among them on four fifths of the validation rows and "
                     "scoring the choice on the rest (val_acc_corrected_choice; the kept candidate's own "
                     "score reads high); the test split is not used",
        "accuracy_before": before.get("acc"), "accuracy_after": after.get("acc"),
        "macro_f1_before": before.get("macro_f1"), "macro_f1_after": after.get("macro_f1"),
        "relabelled": int((changed & final.in_train).sum()),
        "dropped": int(sum(1 for _, rd in quarantine.values() if rd <= chosen)),
        "reweighted": records[chosen].get("reweighted", 0),
        "rounds": records,
        "reviewed": review_summary,
        "estimated_noise_rate": float(1 - np.sum(np.diag(transition) * np.bincount(dev.y, minlength=len(transition)))
                                      / len(dev.y)),
        "n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test),
        "validation_labels": "given (validation rows are judged but never relabelled automatically)",
        "test_evaluated": bool(len(splits.test)),
        "round_dirs": [str(f.run.path) for f in fits],
        "actions": used,
        "seconds": round(seconds, 2),
    }
