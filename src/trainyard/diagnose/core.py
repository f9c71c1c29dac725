"""``diagnose``: run every detector on a trained run and write the findings contract.

One row per row of the user's data goes into ``samples.csv`` (training rows judged from the ledger,
validation/test rows from their out-of-sample predictions), dataset-level findings into
``data_health.json``, model-level findings into ``model_health.json``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..run import DATA_HEALTH, MODEL_HEALTH, SAMPLES_CSV, Run

SAMPLE_COLUMNS = ["id", "given_label", "label_issue", "label_score", "suggested_label", "outlier", "outlier_score",
                  "duplicate_of", "ambiguous", "issue"]


@dataclass
class Diagnosis:
    """What ``diagnose`` returns: the run, the per-row findings, dataset and model health."""

    run: Run
    samples: pd.DataFrame
    data_health: dict[str, Any]
    model_health: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def label_issues(self) -> pd.DataFrame:
        return self.samples[self.samples["label_issue"]]


def _is_run(path: Any) -> bool:
    return isinstance(path, (str, Path)) and (Path(path) / "run.json").exists()


def diagnose(data, *, target: str | None = None, text: str | None = None, test: str | None = None,
             out: str | Path | None = None, config=None, split: Sequence[float] = (0.7, 0.2, 0.1),
             quiet: bool = True, top: int = 15, splits: Any = None, **overrides: Any) -> Diagnosis:
    """Fit with the ledger on (or read an existing run directory) and diagnose it.

    >>> d = diagnose("sklearn:digits", out="runs/diag")   # doctest: +SKIP
    >>> d.label_issues.head()                              # doctest: +SKIP
    """
    if _is_run(data):
        return diagnose_run(data, quiet=quiet)
    from ..fitting import default_out, fit

    out = Path(out) if out is not None else default_out("diagnose")
    res = fit(data, target=target, text=text, test=test, out=out, config=config, split=split, splits=splits,
              quiet=quiet, write_report=False, **overrides)
    run_dir, model, dataset, splits = res.run.path, res.model, res.dataset, res.splits
    # The training state (tensor copies of the data, the ledger's epoch buffers) is not needed by
    # the detectors; on 10^6 rows it is a gigabyte, so it goes before they start.
    del res
    release_memory()
    return diagnose_run(run_dir, model=model, dataset=dataset, splits=splits, quiet=quiet)


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise, and the
    resident size of a long diagnosis then grows with every large temporary)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def diagnose_run(run_dir: str | Path, *, model=None, dataset=None, splits=None, quiet: bool = True,
                 write_report: bool = True) -> Diagnosis:
    """Run every detector on a finished run directory and write samples.csv / data_health.json."""
    from ..fitting import load_data, load_model
    from ..monitor import read_ledger
    from ..train.trainer import embed
    from .ambiguity import ambiguous_samples
    from .data_health import data_health
    from .duplicates import find_duplicates
    from .labels import label_issues
    from .outliers import outlier_scores

    run = Run(run_dir).check()
    if dataset is None or splits is None:
        dataset, splits = load_data(run.path)
    model = model if model is not None else load_model(run.path)
    ledger = read_ledger(run.path)
    n, k = len(dataset), dataset.n_classes
    y = dataset.y
    steps = _Steps(quiet, 5)

    steps.next("wrong labels")
    labels, label_summary = label_issues(ledger, y, k)
    steps.next("ambiguous samples")
    amb = ambiguous_samples(ledger, y, k, label_issue=labels["label_issue"].to_numpy(bool))
    steps.next("outliers")
    feats = embed(model, dataset.X)
    # images go in unflattened: the detectors then keep one pixel scale instead of z-scoring each pixel
    standardize = dataset.kind == "tabular"
    out_df = outlier_scores(feats, X_input=dataset.X, standardize=standardize)
    del feats
    release_memory()
    steps.next("duplicates")
    dup_df = find_duplicates(dataset.X, y, dataset.ids, standardize=standardize)
    steps.next("dataset health")
    release_memory()
    health = data_health(dataset, splits, duplicates=dup_df)
    health["outliers"] = out_df.attrs.get("summary", {})
    health["labels"] = label_summary
    steps.done()

    split_name = np.full(n, "", dtype=object)
    split_name[splits.train], split_name[splits.val], split_name[splits.test] = "train", "val", "test"
    classes = np.asarray(dataset.classes, dtype=object)
    s = pd.DataFrame({
        "id": dataset.ids,
        "given_label": classes[y],
        "label_issue": labels["label_issue"].to_numpy(bool),
        "label_score": labels["label_score"].to_numpy(float).round(6),
        "suggested_label": classes[labels["suggested_label"].to_numpy(int)],
        "outlier": out_df["outlier"].to_numpy(bool),
        "outlier_score": out_df["outlier_score"].to_numpy(float).round(6),
        "duplicate_of": dup_df["duplicate_of"].fillna("").astype(str).to_numpy(),
        "ambiguous": amb["ambiguous"].to_numpy(bool) & ~labels["label_issue"].to_numpy(bool),
    })
    s["issue"] = _main_issue(s, dup_df)
    s["split"] = split_name
    for extra in ("confidence", "variability", "aum", "forgetting"):
        if extra in labels.columns:
            s[extra] = labels[extra].to_numpy(float).round(6)
    if "duplicate_conflict" in dup_df.columns:
        s["duplicate_conflict"] = dup_df["duplicate_conflict"].to_numpy(bool)
    if "ambiguity_score" in amb.columns:
        s["ambiguity_score"] = amb["ambiguity_score"].to_numpy(float).round(6)
    del labels, amb, out_df, dup_df  # the report below reads samples.csv back: free the detectors' frames
    release_memory()
    run.write_csv(SAMPLES_CSV, s)
    run.write_json(DATA_HEALTH, health)
    model_health = run.read_json(MODEL_HEALTH) if run.file(MODEL_HEALTH).exists() else None
    summary = {"n_rows": n, "labels": label_summary, "counts": {
        "label_issue": int(s["label_issue"].sum()), "outlier": int(s["outlier"].sum()),
        "duplicate": int((s["duplicate_of"] != "").sum()), "ambiguous": int(s["ambiguous"].sum())}}
    run.update_meta(diagnosis=summary)
    if write_report:
        from ..fitting import _try_report

        _try_report(run)
    return Diagnosis(run, s, health, model_health, summary)


def _main_issue(s: pd.DataFrame, dup_df: pd.DataFrame) -> np.ndarray:
    """One issue name per row, most actionable first: label, duplicate with a conflicting label,
    outlier, duplicate, ambiguous."""
    conflict = dup_df["duplicate_conflict"].to_numpy(bool) if "duplicate_conflict" in dup_df else np.zeros(len(s), bool)
    dup = s["duplicate_of"].to_numpy(str) != ""
    issue = np.full(len(s), "", dtype=object)
    for mask, name in ((s["ambiguous"].to_numpy(bool), "ambiguous"), (dup, "duplicate"),
                       (s["outlier"].to_numpy(bool), "outlier"), (dup & conflict, "conflicting_duplicate"),
                       (s["label_issue"].to_numpy(bool), "label")):
        issue[mask] = name  # later assignments win: the list runs from least to most actionable
    return issue


class _Steps:
    """A small rich status line for the diagnosis steps."""

    def __init__(self, quiet: bool, total: int):
        self.quiet, self.total, self.i, self.status = quiet, total, 0, None

    def next(self, what: str) -> None:
        if self.quiet:
            return
        from rich.console import Console

        self.i += 1
        if self.status is None:
            self.status = Console(stderr=True).status("")
            self.status.start()
        self.status.update(f"diagnosing [{self.i}/{self.total}]: {what}")

    def done(self) -> None:
        if self.status is not None:
            self.status.stop()
