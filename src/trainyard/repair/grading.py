"""How the repair loop grades a round on the validation split, and whether the baseline learnt the
classes at all (without that, its label flags are no evidence of wrong labels)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..diagnose.chance import CHANCE_Z, chance_agreement, pooled_z
from ..errors import RunError
from .evidence import row_scores
from .selection import cross_fitted_rows, last_model, prefer_last


@dataclass
class Grading:
    """What every round is graded on: the validation rows' given (or a reviewer's) labels, scored row by
    row (``evidence.row_scores``) through the noise the baseline diagnosis estimated; ``trusted`` rows
    (a reviewer's) are scored as they are."""

    X: np.ndarray
    labels: np.ndarray
    transition: np.ndarray | None
    trusted: np.ndarray

    def rows_of(self, model) -> tuple[np.ndarray, np.ndarray]:
        """A model's validation predictions and their per-row scores."""
        from ..train.trainer import predict_proba

        pred = predict_proba(model, self.X).argmax(1)
        return pred, row_scores(pred, self.labels, self.transition, self.trusted)

    def score(self, fr, repaired: bool = True, heldout: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
        """A round's validation scores and per-row scores. A repair round switches ``fr.model`` to its
        final epoch unless that scores worse (``selection.prefer_last``); the baseline keeps its best epoch.
        A best epoch's rows are scored without the optimism of having been chosen on them
        (``selection.cross_fitted_rows``, from the ledger's per-epoch validation probabilities:
        ``heldout`` where the caller has read them already)."""
        pred, rows = self.rows_of(fr.model)
        extra = {}
        if repaired:
            last = last_model(fr)
            if last is not None:
                pred_l, rows_l = self.rows_of(last)
                # the checkpoint is chosen on the plain rows: ``prefer_last``'s tolerance allows for their optimism
                if prefer_last(rows, rows_l):
                    fr.model.load_state_dict(last.state_dict())
                    fr.run.update_meta(repair_uses="checkpoints/last.pt (the final epoch; see repair.json)")
                    return self._scores(pred_l, rows_l, checkpoint="last"), rows_l
                extra["checkpoint"] = "best"
        heldout = heldout_probs(fr, len(self.labels)) if heldout is None else heldout
        if heldout is not None:
            extra["val_acc_corrected_as_chosen"] = float(np.clip(rows.mean(), 0, 1))  # before the cross-fit
            rows = cross_fitted_rows(heldout, self.labels,
                                     lambda p: row_scores(p, self.labels, self.transition, self.trusted))
        return self._scores(pred, rows, **extra), rows

    def _scores(self, pred: np.ndarray, rows: np.ndarray, **extra) -> dict:
        return {"val_acc": float((pred == self.labels).mean()),
                "val_acc_corrected": float(np.clip(rows.mean(), 0, 1)), **extra}


def check_label_evidence(base, grading: Grading, k: int, heldout: np.ndarray | None,
                         crossfit: dict | None) -> dict:
    """Whether the baseline's model family learnt the classes at all: its out-of-sample predictions
    (validation rows, each scored by an epoch chosen without it from ``heldout``, the ledger's per-epoch
    validation probabilities; the cross-fit's training rows, ``crossfit`` being its agreement summary)
    must agree with the given labels more than chance (``chance.pooled_z`` >= ``CHANCE_Z``).

    Why: a model that learnt nothing disagrees with about as many labels as chance does, its
    diagnosis flags them, the noise estimated from the flags is an artefact of them, and a candidate
    that adopts the flags' suggestions then predicts what that estimate rewards, so the noise-corrected
    validation score favours it. On data with random labels, repairs kept rounds that relabelled or
    quarantined up to 80 % of the training rows (``benchmarks/null_data.py``)."""
    parts = []
    val = grading.labels
    if len(val):
        pred, _ = grading.rows_of(base.model)
        correct = (pred == val).astype(float)
        if heldout is not None:  # the best epoch's own agreement reads high: it was chosen on these rows
            correct = cross_fitted_rows(heldout, val, lambda p: (p == val).astype(float))
        parts.append((float(correct.mean()), chance_agreement(val, pred, k), len(val)))
    if crossfit and crossfit["rows"]:
        parts.append((crossfit["agreement"], crossfit["chance_agreement"], crossfit["rows"]))
    rows = sum(n for _, _, n in parts)
    z = pooled_z(parts)
    return {"rows": rows, "agreement": sum(o * n for o, _, n in parts) / max(rows, 1),
            "chance_agreement": sum(c * n for _, c, n in parts) / max(rows, 1), "z_over_chance": z,
            # no out-of-sample row at all: nothing to judge by, so the repair goes on as before
            "usable": bool(z >= CHANCE_Z) if rows else True}


def heldout_probs(fr, n_val: int) -> np.ndarray | None:
    """A round's per-epoch validation probabilities from its ledger (None without a ledger)."""
    from ..monitor import read_ledger

    try:
        led = read_ledger(fr.run.path)
    except (RunError, OSError, ValueError):  # no ledger (turned off) or an unreadable one: score as before
        return None
    hp = led.heldout_probs
    if hp is None or hp.ndim != 3 or hp.shape[1] < n_val or len(hp) == 0 or n_val < 2:  # nothing to halve
        return None
    return np.asarray(hp[:, :n_val])
