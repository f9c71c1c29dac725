"""Ambiguous samples: rows that sit between two classes, flagged apart from wrong labels.

A wrong label is one the model, before memorising it, consistently prefers another class over. An
ambiguous row is one where the given label and a second class share the probability and the margin
between them keeps changing sign from epoch to epoch (high variability, a second class close to the
first). Both read the same memorisation window of the ledger (see :mod:`trainyard.diagnose.labels`),
so a row is never both: ``label_issues`` leaves near ties to this detector, except those it flags
when the confident joint counts more wrong labels than the clear cases (its step 4).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .labels import Evidence, _check, label_issues, tied_with_given, window_evidence
from .registry import register


def _score(ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
    """Ambiguity in 0-1: closeness of the two most likely classes (second / first) times the share of
    probability they hold together; 1 for an even split between exactly two classes."""
    top2 = np.argsort(-ev.mean_probs, axis=1)[:, :2]
    p = np.take_along_axis(ev.mean_probs, top2, 1)
    closeness = p[:, 1] / np.maximum(p[:, 0], 1e-12)
    other = np.where(top2[:, 0] == ev.y, top2[:, 1], top2[:, 0])
    return np.clip(closeness * p.sum(1), 0.0, 1.0), other


def ambiguous_samples(ledger: Any, y: np.ndarray, n_classes: int | None = None,
                      label_issue: np.ndarray | None = None) -> pd.DataFrame:
    """Flag rows whose given label is nearly tied with another class.

    Args:
        ledger: a :class:`trainyard.monitor.LedgerArrays`.
        y: labels of the whole dataset as trained on.
        n_classes: K (default: from the ledger).
        label_issue: per dataset row, the wrong-label flag of :func:`label_issues` when it was already
            computed (those rows are not ambiguous); by default it is worked out again here.

    Returns:
        One row per dataset row with ``ambiguity_score`` (0-1), ``ambiguous`` (bool), ``other_class``
        (the class it is tied with) and ``margin_spread`` (standard deviation of the margin over the
        window); rows the ledger never saw get score NaN and ``ambiguous`` False. The summary is in
        ``table.attrs["summary"]``.

    Example:
        >>> amb = ambiguous_samples(read_ledger("runs/x"), dataset.y)   # doctest: +SKIP
        >>> amb[amb.ambiguous].sort_values("ambiguity_score", ascending=False).head()   # doctest: +SKIP
    """
    y = np.asarray(y, dtype=np.int64)
    _check(ledger, y)
    probs = getattr(ledger, "probs", None)
    if n_classes is None:
        n_classes = int(probs.shape[2]) if probs is not None else int(y.max()) + 1
    window, train, held = window_evidence(ledger, y, int(n_classes))
    if label_issue is None:  # ties that label_issues flags are not ambiguous
        label_issue = label_issues(ledger, y, int(n_classes))[0]["label_issue"].to_numpy(bool)
    n = len(y)
    out = pd.DataFrame({"ambiguity_score": np.full(n, np.nan), "ambiguous": np.zeros(n, bool),
                        "other_class": y.copy(), "margin_spread": np.full(n, np.nan)})
    counts = {}
    for name, ev in (("train", train), ("heldout", held)):
        if ev is None:
            continue
        score, other = _score(ev)
        wrong = np.asarray(label_issue, dtype=bool)[ev.rows]
        flag = tied_with_given(ev) & ~wrong
        out.loc[ev.rows, "ambiguity_score"] = score
        out.loc[ev.rows, "ambiguous"] = flag
        out.loc[ev.rows, "other_class"] = other
        out.loc[ev.rows, "margin_spread"] = ev.margin_std
        counts[f"n_ambiguous_{name}"] = int(flag.sum())
    out.attrs["summary"] = {"method": "given label and another class tied within one standard error of the "
                                      "margin over the memorisation window",
                            "window": {"start": window.start, "stop": window.stop}, **counts}
    return out


register("ambiguity", score="ambiguity_score", flag="ambiguous")(ambiguous_samples)
