"""Which samples are flagged, how bad each is, and why, in words a person can check.

Shared by the report's gallery and the review page so both rank and explain samples alike.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .run_files import ISSUE_TYPES

# Column that flags each issue type in the (normalised) samples table.
FLAG_COLUMN = {"label": "label_issue", "outlier": "outlier", "duplicate": "duplicate", "ambiguous": "ambiguous"}
ISSUE_TITLES = {"label": "Label errors", "outlier": "Outliers", "duplicate": "Duplicates",
                "ambiguous": "Ambiguous samples"}


def _rank01(values: pd.Series) -> pd.Series:
    """Percentile rank in 0..1 (NaN stays NaN): makes scores of unknown range comparable."""
    return values.rank(pct=True, method="average")


def issue_scores(samples: pd.DataFrame) -> pd.DataFrame:
    """Per row, a 0..1 badness score for each issue type (NaN where that type is not flagged).

    ``label_score`` is already 0..1; ``outlier_score`` has no fixed range, so its percentile rank
    among all rows is used. Duplicates and ambiguity have no score in the contract: an optional
    ``duplicate_score`` / ``ambiguity_score`` column is used when present, else 0.5.
    """
    out = pd.DataFrame(index=samples.index)
    out["label"] = samples["label_score"].clip(0, 1).fillna(0.5)
    out["outlier"] = _rank01(samples["outlier_score"]).fillna(0.5)
    dup = samples["duplicate_score"] if "duplicate_score" in samples else pd.Series(0.5, index=samples.index)
    out["duplicate"] = pd.to_numeric(dup, errors="coerce").clip(0, 1).fillna(0.5)
    amb = None
    for col in ("ambiguity_score", "ambiguous_score"):
        if col in samples:
            amb = _rank01(pd.to_numeric(samples[col], errors="coerce"))
    out["ambiguous"] = amb.fillna(0.5) if amb is not None else 0.5
    for issue in ISSUE_TYPES:
        out.loc[~samples[FLAG_COLUMN[issue]].astype(bool), issue] = np.nan
    return out


def _fmt(x: float) -> str:
    return f"{x:.3g}" if isinstance(x, (float, np.floating)) and np.isfinite(x) else "?"


def reasons(row: pd.Series) -> list[str]:
    """Why this row (of :func:`flagged_samples`) was flagged, one plain sentence per issue."""
    out = []
    given, suggested = row.get("given_label", ""), row.get("suggested_label", "")
    if row.get("label_issue"):
        text = f"label score {_fmt(row.get('label_score'))}: labelled '{given}'"
        if suggested and suggested != given:
            text += f", the model says '{suggested}'"
        out.append(text)
    if row.get("outlier"):
        text = f"outlier score {_fmt(row.get('outlier_score'))}"
        top = row.get("outlier_top")
        if top is not None and np.isfinite(top):
            text += f" (top {top:.1%} of rows)"
        out.append(text + ": unlike the rest of the data")
    if row.get("duplicate"):
        out.append(f"duplicate of {row.get('duplicate_of')}")
    if row.get("ambiguous"):
        text = "ambiguous: the model's belief is split between classes"
        conf, var = row.get("confidence"), row.get("variability")
        if isinstance(conf, (float, np.floating)) and isinstance(var, (float, np.floating)) \
                and np.isfinite(conf) and np.isfinite(var):
            text += f" (confidence {conf:.2f}, variability {var:.2f})"
        out.append(text)
    for col in ("evidence", "why", "explanation"):
        extra = row.get(col)
        if isinstance(extra, str) and extra.strip():
            out.append(extra.strip())
    return out


def flagged_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """Flagged rows worst first, with ``position`` (row in samples.csv), ``severity``, ``issues``
    (list of types) and ``outlier_top`` (share of rows scoring at least as high); see
    :func:`reasons` for the sentences (computed only for the rows shown: N may be large)."""
    scores = issue_scores(samples)
    flags = scores.notna().to_numpy()
    mask = flags.any(axis=1)
    out = samples.loc[mask].copy()
    out["position"] = np.flatnonzero(mask)
    out["severity"] = scores.loc[mask].max(axis=1)
    out["issues"] = [[t for t, f in zip(ISSUE_TYPES, row) if f] for row in flags[mask]]
    # share of rows scoring at least as high: 1/N for the most extreme row
    top = samples["outlier_score"].rank(ascending=False, method="max") / max(len(samples), 1)
    out["outlier_top"] = top[mask].to_numpy()
    # ties (e.g. several duplicates at 0.5) fall back to the label score, then file order
    out["_tie"] = samples.loc[mask, "label_score"].fillna(0)
    out = out.sort_values(["severity", "_tie", "position"], ascending=[False, False, True], kind="stable")
    return out.drop(columns="_tie")


def worst_per_issue(flagged: pd.DataFrame, limit: int) -> dict[str, tuple[pd.DataFrame, int]]:
    """For each issue type: its worst ``limit`` rows (by that issue's own score) and the total."""
    scores = issue_scores(flagged)
    out = {}
    for issue in ISSUE_TYPES:
        rows = flagged[scores[issue].notna()]
        if not len(rows):
            continue
        key = scores.loc[rows.index, issue]
        if issue == "outlier":
            key = rows["outlier_score"].fillna(-np.inf)
        order = np.lexsort((rows["position"].to_numpy(), -key.to_numpy(dtype=float)))
        out[issue] = (rows.iloc[order[:limit]], len(rows))
    return out
