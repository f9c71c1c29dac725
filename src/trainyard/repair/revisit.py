"""Revisit: a later round re-examines what the earlier rounds changed, with the model they trained,
instead of flagging new rows.

Why: after a cleaning round the labels that are still wrong are few, about as few as the rows the
cleaner model itself gets wrong, so the label detector's new flags are mostly that model's own errors
on correct rows (make_classification at 20 % symmetric noise, one seed: repeating the round's
relabelling on the new flags took the wrong training labels from 505 to 909). The rows an earlier
round changed are different: each was already suspect, and a suggestion taken from the noisy
baseline is the likeliest to be wrong. The model trained on the cleaner labels is the better judge
of them (same run: 505 -> 432 wrong labels, and +0.14 test points; ``benchmarks/second_round.py``).
Quarantined rows come back as in ``auto`` (out-of-sample prediction with at least
``RESTORE_CONFIDENCE`` probability).

Where the model fits its training rows closely (small data, many epochs) it mostly agrees with the
labels it was given and revisiting changes little; the loop then tries the usual repetition of the
round beside it and keeps whichever scores better on validation.
"""
from __future__ import annotations

import numpy as np

from .plan import Plan, RoundInput

# a quarantined row comes back (with the predicted label) when a later, cleaner model predicts it
# out of sample with at least this probability
RESTORE_CONFIDENCE = 0.9


def restore_quarantined(inp: RoundInput, plan: Plan, min_confidence: float = RESTORE_CONFIDENCE) -> Plan:
    """Take back into ``plan`` the quarantined rows the last model predicts with at least
    ``min_confidence`` (out of sample: it never trained on them), with the predicted label."""
    if inp.model_probs is None or not inp.quarantined.any():
        return plan
    q = np.nan_to_num(inp.model_probs, nan=0.0)
    back = inp.quarantined & ~inp.exempt & (q.max(1) >= min_confidence)
    plan.restore = back if plan.restore is None else plan.restore | back
    plan.labels[back] = q[back].argmax(1)
    plan.notes.append(f"restored {int(back.sum())} quarantined rows the retrained model predicts with "
                      f"probability >= {min_confidence:g}")
    return plan


def revisit(inp: RoundInput) -> Plan:
    """Relabel each training row an earlier round relabelled (its label differs from the given one)
    with the last model's class where the two disagree (back to the given label, when that is the
    model's class); restore confidently predicted quarantined rows; leave every other row alone.

    >>> plan = revisit(round_input)     # doctest: +SKIP
    >>> plan.notes                      # doctest: +SKIP
    """
    plan = Plan.unchanged(inp)
    plan.restore = np.zeros(len(inp.labels), dtype=bool)
    if inp.model_probs is None:
        plan.notes.append("revisited nothing: no predictions of the last model")
        return plan
    probs = np.nan_to_num(inp.model_probs, nan=-1.0)
    known = np.isfinite(inp.model_probs).all(1)
    pred = probs.argmax(1)
    changed_before = inp.editable & known & (inp.labels != inp.given)
    take = changed_before & (pred != inp.labels)
    plan.labels[take] = pred[take]
    back_to_given = int((take & (pred == inp.given)).sum())
    plan.notes.append(f"revisited {int(changed_before.sum())} rows relabelled by earlier rounds: {int(take.sum())} "
                      f"take the retrained model's class ({back_to_given} of them their given label again)")
    return restore_quarantined(inp, plan)
