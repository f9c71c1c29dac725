"""Whether a model learnt the classes at all: its out-of-sample predictions against the labels, beyond
chance.

Every label detector, ours and confident learning alike, calls a row suspect where a model disagrees
with its label. That is evidence only from a model that learnt the classes: one that did not (labels
unrelated to the features, far more columns than rows) disagrees with about as many labels as chance
does, and all of them look wrong. The check here is Cohen's: observed agreement against the agreement
of a guess that keeps the predicted classes' shares but ignores the row.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# how many binomial standard errors above chance the agreement must be (one-sided: about 2 % of
# models that learnt nothing pass)
CHANCE_Z = 2.0


def agreement_over_chance(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(observed agreement, chance agreement, z) of out-of-sample ``probs`` with ``labels`` on the rows
    where ``probs`` is finite. Chance is ``sum_i P(label = i) P(pred = i)``; z is the excess over its
    binomial standard error."""
    ok = np.isfinite(probs).all(1)
    if not ok.any():
        return float("nan"), float("nan"), float("nan")
    pred, y = probs[ok].argmax(1), np.asarray(labels)[ok]
    k = max(int(probs.shape[1]), int(y.max()) + 1)
    observed = float(np.mean(pred == y))
    chance = chance_agreement(y, pred, k)
    return observed, chance, _z(observed, chance, len(y))


def chance_agreement(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """``sum_i P(label = i) P(pred = i)``, each share over its own array (``pred`` may hold several
    predictions per row, e.g. one per epoch)."""
    labels, pred = np.asarray(labels).ravel(), np.asarray(pred).ravel()
    counts = np.dot(np.bincount(labels, minlength=n_classes), np.bincount(pred, minlength=n_classes))
    return float(counts) / (len(labels) * len(pred))


def pooled_z(parts: list[tuple[float, float, int]]) -> float:
    """One z over several sets of out-of-sample predictions, each (observed agreement, chance
    agreement, rows): the summed excess over chance divided by its binomial standard error."""
    excess = sum(n * (o - c) for o, c, n in parts if n)
    var = sum(n * c * (1 - c) for o, c, n in parts if n)
    return float(excess / np.sqrt(var)) if var > 0 else float("nan")


def heldout_agreement(ledger: Any, y: np.ndarray, n_classes: int) -> dict[str, Any] | None:
    """The check on a run's held-out rows (validation, then test), from the ledger's per-epoch
    probabilities: agreement averaged over the epochs, so no epoch is picked on the rows it is judged
    on. None when the ledger kept no held-out probabilities."""
    hp = getattr(ledger, "heldout_probs", None)
    idx = np.asarray(getattr(ledger, "heldout_idx", np.zeros(0, np.int64)))
    if hp is None or hp.ndim != 3 or len(hp) == 0 or min(hp.shape[1], len(idx)) == 0:
        return None
    m = min(hp.shape[1], len(idx))
    labels = np.asarray(y)[idx[:m]]
    pred = np.asarray(hp[:, :m], np.float32).argmax(-1)
    observed = float((pred == labels[None]).mean())
    chance = chance_agreement(labels, pred, n_classes)
    z = _z(observed, chance, m)
    return {"rows": m, "agreement": round(observed, 4), "chance_agreement": round(chance, 4),
            "z_over_chance": round(z, 2), "learnt": bool(z >= CHANCE_Z)}


def _z(observed: float, chance: float, n: int) -> float:
    return float((observed - chance) / np.sqrt(max(chance * (1 - chance), 1e-12) / n))
