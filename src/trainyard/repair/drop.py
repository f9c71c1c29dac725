"""Drop: quarantine flagged training rows (written to quarantine.csv with the reason, never lost)."""
from __future__ import annotations

import numpy as np

from .plan import Plan, RoundInput


def reason(inp: RoundInput, row: int, why: str) -> str:
    """A one-line reason naming the evidence, e.g. ``label_issue: label_score 0.93, suggested 7``."""
    s = inp.samples.iloc[row]
    if why == "outlier":
        return f"outlier: outlier_score {float(s['outlier_score']):.3f}"
    sug = inp.suggested[row]
    text = f"{why}: label_score {float(s['label_score']):.3f}"
    if sug >= 0:
        text += f", suggested {inp.classes[sug]} (p={inp.suggested_confidence()[row]:.2f})"
    return text


def drop(inp: RoundInput, outliers: bool = True) -> Plan:
    """Quarantine every editable training row flagged as a label issue (and, with ``outliers``,
    every outlier)."""
    plan = Plan.unchanged(inp)
    label = inp.flagged()
    out = inp.editable & inp.samples["outlier"].to_numpy(bool) & ~label if outliers else np.zeros_like(label)
    plan.drop = label | out
    plan.reasons = {int(i): reason(inp, int(i), "label_issue") for i in np.flatnonzero(label)}
    plan.reasons.update({int(i): reason(inp, int(i), "outlier") for i in np.flatnonzero(out)})
    plan.notes.append(f"quarantined {int(label.sum())} flagged rows" + (f" and {int(out.sum())} outliers" if out.any() else ""))
    return plan
