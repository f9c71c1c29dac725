"""Reweight: flagged training rows count less in the loss, in proportion to how likely their label is wrong."""
from __future__ import annotations

import numpy as np

from .plan import Plan, RoundInput

MIN_WEIGHT = 0.05


def reweight(inp: RoundInput, min_weight: float = MIN_WEIGHT) -> Plan:
    """Importance weight ``1 - label_score`` (at least ``min_weight``) for flagged rows, 1 for the rest.

    Unflagged rows keep weight 1 so a detector's small scores on clean rows do not shrink the whole
    data set; ``fit(sample_weight=...)`` multiplies each row's loss by its weight.
    """
    plan = Plan.unchanged(inp)
    flagged = inp.flagged()
    score = np.nan_to_num(inp.samples["label_score"].to_numpy(float), nan=0.0)
    w = np.ones(len(score), dtype=np.float32)
    w[flagged] = np.clip(1.0 - score[flagged], min_weight, 1.0)
    plan.weights = w
    plan.notes.append(f"down-weighted {int(flagged.sum())} flagged rows (mean weight "
                      f"{float(w[flagged].mean()) if flagged.any() else 1.0:.2f})")
    return plan
