"""What the repair loop reads from a round's run: its diagnosis (all detectors for the baseline, the
label detector alone for a repair round), the evidence aligned to the development rows (flags,
suggestions, early-epoch consensus probabilities), the reliability of its suggestions, its model's
probabilities on the training rows and its model-health findings.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from .evidence import consensus_probs


def diagnose_round(fr, quiet: bool, resume: bool = False):
    """Every detector on a round's run (the baseline's full diagnosis), without a report. With
    ``resume``, a diagnosis that finished on this run before the repair was killed is read back: on
    large data the detectors cost several training runs."""
    from ..diagnose import diagnose_run

    done = _finished_diagnosis(fr) if resume else None
    if done is not None:
        return done
    return diagnose_run(fr.run.path, model=fr.model, dataset=fr.dataset, splits=fr.splits, quiet=quiet,
                        write_report=False)


_BOOL_COLUMNS = ("label_issue", "outlier", "ambiguous", "duplicate_conflict")
_FLOAT_COLUMNS = ("label_score", "outlier_score", "confidence", "variability", "aum", "forgetting", "ambiguity_score")


def _finished_diagnosis(fr):
    """The Diagnosis ``diagnose_run`` wrote on this run, or None where it did not finish (its summary in
    run.json is written last) or describes other rows."""
    from ..diagnose.core import Diagnosis
    from ..run import DATA_HEALTH, MODEL_HEALTH, SAMPLES_CSV

    run = fr.run
    summary = run.meta.get("diagnosis")
    if not summary or not run.file(SAMPLES_CSV).exists() or not run.file(DATA_HEALTH).exists():
        return None
    # every column as its text, so labels such as "007" or "NA" come back as written
    s = pd.read_csv(run.file(SAMPLES_CSV), dtype=str, keep_default_na=False)
    if len(s) != len(fr.dataset) or not np.array_equal(s["id"].to_numpy(str), np.asarray(fr.dataset.ids, str)):
        return None
    for c in _BOOL_COLUMNS:
        if c in s.columns:
            s[c] = s[c].to_numpy(str) == "True"
    for c in _FLOAT_COLUMNS:
        if c in s.columns:
            s[c] = pd.to_numeric(s[c].replace("", np.nan))
    health = run.read_json(DATA_HEALTH)
    model_health = run.read_json(MODEL_HEALTH) if run.file(MODEL_HEALTH).exists() else None
    return Diagnosis(run, s, health, model_health, summary)


def diagnose_labels(fr, baseline: pd.DataFrame):
    """The label detector alone, for a repair round whose only use is to drive the next round.

    The other detectors look at the features, which a repair does not change, and on large data they
    cost several times a training run; the baseline's outlier flags are carried over. The round's
    samples.csv says so in its ``issue_source`` column.
    """
    from types import SimpleNamespace

    from ..diagnose.labels import label_issues
    from ..monitor import read_ledger
    from ..run import SAMPLES_CSV

    ds = fr.dataset
    table, summary = label_issues(read_ledger(fr.run.path), ds.y, ds.n_classes)
    classes = np.asarray(ds.classes, dtype=object)
    n, m = len(ds), len(baseline)  # synthetic rows (SMOTE) come after the m real rows
    outlier = np.zeros(n, bool)
    outlier[:m] = baseline["outlier"].to_numpy(bool)
    outlier_score = np.full(n, np.nan)
    outlier_score[:m] = baseline["outlier_score"].to_numpy(float)
    issue = table["label_issue"].to_numpy(bool)
    samples = pd.DataFrame({
        "id": ds.ids, "given_label": classes[ds.y], "label_issue": issue,
        "label_score": table["label_score"].to_numpy(float).round(6),
        "suggested_label": classes[table["suggested_label"].to_numpy(int)], "outlier": outlier,
        "outlier_score": outlier_score, "duplicate_of": "", "ambiguous": False,
        "issue": np.where(issue, "label", np.where(outlier, "outlier", "")),
        "issue_source": "label detector of this round; outliers from round 0"})
    fr.run.write_csv(SAMPLES_CSV, samples)
    fr.run.update_meta(diagnosis={"labels": summary, "note": "repair round: label detector only"})
    return SimpleNamespace(run=fr.run, samples=samples, summary={"labels": summary})


def round_evidence(fr, diag, dev: Dataset, n_dev: int, k: int, rows: np.ndarray | None = None) -> dict:
    """The diagnosis and consensus probabilities of a round, aligned to the development rows."""
    rows = np.arange(n_dev) if rows is None else rows
    m = len(rows)
    s = diag.samples.iloc[:m]
    code_of = {c: i for i, c in enumerate(dev.classes)}
    aligned = pd.DataFrame({"id": dev.ids, "label_issue": False, "label_score": np.nan, "suggested_code": -1,
                            "outlier": False, "outlier_score": np.nan, "ambiguous": False, "issue": ""})
    aligned.loc[rows, "label_issue"] = s["label_issue"].to_numpy(bool)
    aligned.loc[rows, "label_score"] = s["label_score"].to_numpy(float)
    aligned.loc[rows, "suggested_code"] = [code_of.get(str(v), -1) for v in s["suggested_label"]]
    aligned.loc[rows, "outlier"] = s["outlier"].to_numpy(bool)
    aligned.loc[rows, "outlier_score"] = s["outlier_score"].to_numpy(float)
    aligned.loc[rows, "ambiguous"] = s["ambiguous"].to_numpy(bool)
    aligned.loc[rows, "issue"] = s["issue"].astype(str).to_numpy()
    aligned = aligned.astype({"label_issue": bool, "outlier": bool, "ambiguous": bool, "suggested_code": np.int64})
    cons = np.full((n_dev, k), np.nan, dtype=np.float32)
    window = ((getattr(diag, "summary", None) or {}).get("labels") or {}).get("window") or {}
    cons[rows] = consensus_probs(fr.run.path, len(fr.dataset), window.get("start"), window.get("stop"))[:m]
    return {"samples": aligned, "consensus": cons}


def reliability_of(consensus: np.ndarray, is_val: np.ndarray, val_labels: np.ndarray, transition: np.ndarray):
    """The model's top-class reliability by confidence, from its out-of-sample validation predictions."""
    from .evidence import reliability_curve

    cv = consensus[is_val]
    ok = np.isfinite(cv).all(1)
    if not ok.any():
        return None
    return reliability_curve(cv[ok].max(1), cv[ok].argmax(1) == val_labels[ok], transition)


def model_probs(fr, dev: Dataset, is_val: np.ndarray) -> np.ndarray:
    """A round's model's class probabilities for every training row, quarantined ones included (out
    of sample for those); NaN for validation rows."""
    from ..train.trainer import predict_proba

    out = np.full((len(dev), dev.n_classes), np.nan, dtype=np.float32)
    rows = np.flatnonzero(~is_val)
    if len(rows):
        out[rows] = predict_proba(fr.model, dev.X[rows])
    return out


def model_health(fr) -> dict | None:
    """A round's model-health findings (None when its model monitor was off)."""
    p = fr.run.file("model_health.json")
    return fr.run.read_json("model_health.json") if p.exists() else None
