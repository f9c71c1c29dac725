"""Auto: per flagged row, relabel when the suggested class is clear, quarantine when it is not
(ambiguous) or when the row is also an outlier (a suggestion far from all data is not to be trusted);
rebalance and augment only when the data calls for it. Outliers with a plausible label stay: on real
data they are mostly rare but valid styles, and dropping them cost accuracy on digits.

Whether the result is kept is decided by the repair loop on the validation split, never the test split.
"""
from __future__ import annotations

import numpy as np

from .augment import augment, overfits, thin_classes
from .correct import correct as correct_plan
from .drop import reason
from .plan import Plan, RoundInput
from .rebalance import IMBALANCE_RATIO, imbalance_ratio, rebalance
from .relabel import MIN_CONFIDENCE, clear_suggestions, with_suggestion
from .revisit import restore_quarantined
from .revisit import revisit as revisit_plan

# over-fitting alone triggers augmentation only when label noise does not explain it: with many
# wrong labels the model "over-fits" by memorising them, and fixing the labels is the cure
FEW_FLAGS = 0.02
# a flagged row without a clear suggestion is quarantined only when its label is very likely wrong;
# below this the flags of a weak model are mostly hard but correct rows, and removing them starves
# the hard classes (measured on digits: flagged rows with label_score 0.5-0.7 were ~80 % correct)
DROP_SCORE = 0.9


def auto(inp: RoundInput, min_confidence: float = MIN_CONFIDENCE, prune: bool = False,
         relabel: bool = True, trust: bool = False, correct: bool = False, revisit: bool = False) -> Plan:
    """The per-sample mix of relabel and drop, plus rebalance / augment when triggered.

    Args:
        prune: quarantine every flagged row without a clear suggestion, not only those very likely
            mislabelled.
        relabel: take clear suggestions; without it every flagged row is quarantined (confident
            learning's pruning). Under class-dependent noise (k -> k+1) the model's mistakes run in
            the direction of the noise, so its suggestions are wrong in a systematic way, and pruning
            is safer.
        trust: relabel every flagged row that has a suggestion, clear or not (outliers are still
            quarantined). Where data is plentiful and classes are smooth, a suggestion that is right
            most of the time beats losing the row; where it is not, validation rejects it.
        correct: change no label and drop no row; train through the estimated noise transition
            instead (``correct.correct``, forward loss correction). Under class-conditional noise the
            flags' suggestions are wrong in a systematic way and the flags miss rows, but the rate of
            each flip can still be estimated, and that is all the correction needs.
        revisit: flag nothing new; re-examine the rows earlier rounds relabelled or quarantined with
            the last model (``revisit.revisit``). A later-round candidate: after a cleaning round the
            detector's new flags are mostly the cleaner model's own errors on correct rows.

    The loop tries the variants of ``candidates.VARIANTS`` in the first round (gentle; prune; prune without
    relabelling; trust; correct), correct once more through the noise its own predictions find, and
    the cross-fit's flags quarantined, and keeps the one that scores best on validation. After a correct round the next also tries quarantining what
    that round's diagnosis flags (its model predicts the true class, so its flags are the better ones);
    after a cleaning round, the next also tries revisiting that round's changes instead of repeating it.
    """
    if revisit:  # like every variant, on top of it rebalance / augment where the data calls for them
        plan = revisit_plan(inp)
        after = RoundInput(**{**inp.__dict__, "labels": plan.labels, "in_train": inp.in_train | plan.restore})
        return _data_level(inp, plan, after, float(inp.flagged().sum()))
    if correct:
        return _data_level(inp, correct_plan(inp), inp, float(inp.flagged().sum()))
    plan = Plan.unchanged(inp)
    flagged = inp.flagged()
    outlier = flagged & inp.samples["outlier"].to_numpy(bool)
    clear = (with_suggestion(inp) if trust else clear_suggestions(inp, min_confidence)) & ~outlier & relabel
    plan.labels[clear] = inp.suggested[clear]
    score = np.nan_to_num(inp.samples["label_score"].to_numpy(float), nan=0.0)
    ambiguous = flagged & ~clear & ~outlier & ((score >= DROP_SCORE) | prune)
    plan.drop = ambiguous | outlier
    plan.reasons = {int(i): reason(inp, int(i), "ambiguous label_issue") for i in np.flatnonzero(ambiguous)}
    plan.reasons.update({int(i): reason(inp, int(i), "outlier") + " and label_issue" for i in np.flatnonzero(outlier)})
    plan.notes.append(f"relabelled {int(clear.sum())} flagged rows with a clear suggestion, quarantined "
                      f"{int(ambiguous.sum())} ambiguous flagged rows and {int(outlier.sum())} flagged outliers")
    plan = restore_quarantined(inp, plan)
    plan = plan.merge(keep_class_prior(inp, plan))
    after = RoundInput(**{**inp.__dict__, "labels": plan.labels, "in_train": inp.in_train & ~plan.drop})
    return _data_level(inp, plan, after, float(flagged.sum()))


def _data_level(inp: RoundInput, plan: Plan, after: RoundInput, n_flagged: float) -> Plan:
    """Rebalance and augment on top of the label plan, when the data after it calls for them."""
    ratio = imbalance_ratio(after)
    if ratio > IMBALANCE_RATIO:
        plan = plan.merge(rebalance(after))
        plan.notes.append(f"rebalanced: largest/smallest training class = {ratio:.1f} > {IMBALANCE_RATIO:g}")
    thin = thin_classes(after)
    share = n_flagged / max(int(inp.in_train.sum()), 1)
    if thin or (overfits(inp) and share < FEW_FLAGS):
        plan = plan.merge(augment(after))
        plan.notes.append("augmented: " + (f"thin classes {', '.join(thin[:5])}" if thin else
                                           "the model over-fits and few labels are flagged"))
    return plan


def keep_class_prior(inp: RoundInput, plan: Plan, tolerance: float = 0.1) -> Plan:
    """Per-row weights that give each class the share of the loss it had before the quarantine.

    Quarantined rows come mostly from the classes the model finds hard; without this, removing them
    shifts the class prior the model learns against exactly those classes.
    """
    out = Plan.unchanged(inp)
    k = inp.n_classes
    before = np.bincount(plan.labels[inp.in_train], minlength=k).astype(float)
    kept = inp.in_train & ~plan.drop
    after = np.bincount(plan.labels[kept], minlength=k).astype(float)
    present = after > 0
    if not plan.drop.any() or before.sum() == 0 or after.sum() == 0:
        return out
    ratio = np.ones(k)
    ratio[present] = (before[present] / before.sum()) / (after[present] / after.sum())
    if np.abs(ratio - 1).max() <= tolerance:
        return out
    w = np.ones(len(plan.labels), dtype=np.float32)
    w[kept] = np.clip(ratio[plan.labels[kept]], 0.5, 3.0)
    out.weights = w
    out.notes.append(f"class weights {ratio.min():.2f}..{ratio.max():.2f} keep each class's share of the loss "
                     "after the quarantine")
    return out
