"""Evidence the policies and the round selection share, read from a run's ledger.

``consensus_probs``: per row, the class probabilities averaged over the epochs before memorisation
sets in (the label detector's window; by default up to the best validation epoch). Networks fit the clean majority of a class before they memorise its wrong labels
(the training-dynamics observation behind AUM and dataset cartography), so these early-epoch
probabilities say what the model believed before it learned the noise: training rows from the
ledger's training forward pass, validation rows from their out-of-sample predictions.

``noise_transition`` / ``corrected_accuracy``: validation accuracy measured against noisy labels
understates a model's accuracy, and under class-conditional noise (k -> k+1) it can even prefer the
model that learned the noise. If the noise on validation rows is class-conditional with transition
``T[true, given]`` and independent of the model (the model never trained on those rows), the
expected confusion counts satisfy ``C_given = C_true @ T``; so ``C_true = C_given @ inv(T)`` and the
clean accuracy is ``trace(C_given @ inv(T)) / n``. For symmetric noise this is an increasing affine
function of the plain accuracy, so it ranks models exactly as the plain accuracy does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def consensus_probs(run_dir: str | Path, n_rows: int, start: int | None = None, stop: int | None = None) -> np.ndarray:
    """(n_rows, K) mean class probabilities over epochs ``[start, stop)`` of a run's ledger (default: all);
    NaN rows for rows the ledger did not see. Rows are the run's dataset rows."""
    from ..monitor import read_ledger

    led = read_ledger(run_dir)
    if led.probs is None:
        raise ValueError(f"{run_dir}: the ledger kept no probabilities (ledger_probs=False)")
    e_total = led.probs.shape[0]
    start = 0 if start is None else max(0, min(int(start), e_total - 1))
    stop = e_total if stop is None else max(start + 1, min(int(stop), e_total))
    k = led.probs.shape[2]
    out = np.full((n_rows, k), np.nan, dtype=np.float32)
    out[led.train_idx] = _epoch_mean(led.probs, start, stop)
    if led.heldout_probs is not None and len(led.heldout_idx):
        out[led.heldout_idx] = _epoch_mean(led.heldout_probs, start, stop)
    return out


def _epoch_mean(arr: np.ndarray, start: int, stop: int) -> np.ndarray:
    # one epoch at a time: the memory map of a large ledger never has to fit in memory at once
    acc = np.zeros(arr.shape[1:], dtype=np.float64)
    for i in range(start, stop):
        acc += np.asarray(arr[i], dtype=np.float64)
    return (acc / max(stop - start, 1)).astype(np.float32)


def noise_transition(true_guess: np.ndarray, given: np.ndarray, n_classes: int, prior: float = 1.0) -> np.ndarray:
    """Estimated ``T[t, g] = P(given label g | true class t)`` from a guess of the true classes.

    ``prior`` adds that many pseudo-rows on the diagonal of each class so a rare class does not
    produce a degenerate row.
    """
    counts = np.zeros((n_classes, n_classes), dtype=np.float64)
    np.add.at(counts, (np.asarray(true_guess, int), np.asarray(given, int)), 1.0)
    counts += prior * np.eye(n_classes)
    return counts / counts.sum(1, keepdims=True)


def reliability_curve(confidence: np.ndarray, agrees: np.ndarray, transition: np.ndarray | None):
    """How often the model's top class is the *true* class, as a function of its probability.

    Fitted on held-out rows (the model never trained on them): ``agrees`` says whether the top class
    equals the given, possibly wrong, label. An isotonic fit gives ``A(q) = P(given == top | q)``;
    with a diagonal ``a`` and an off-diagonal ``b`` of the estimated noise transition (read as
    symmetric), ``A = c a + (1 - c) b``, so the true reliability is ``c(q) = (A(q) - b) / (a - b)``.

    Returns:
        A function from probabilities to reliabilities in 0..1 (None when there are too few rows).
    """
    from sklearn.isotonic import IsotonicRegression

    confidence, agrees = np.asarray(confidence, float), np.asarray(agrees, float)
    ok = np.isfinite(confidence)
    if ok.sum() < 20:
        return None
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(confidence[ok], agrees[ok])
    a, b = 1.0, 0.0
    if usable(transition):
        k = transition.shape[0]
        a = float(np.mean(np.diag(transition)))
        b = (1.0 - a) / max(k - 1, 1)

    def reliability(q: np.ndarray) -> np.ndarray:
        return np.clip((iso.predict(np.asarray(q, float)) - b) / max(a - b, 1e-6), 0.0, 1.0)

    return reliability


def usable(transition: np.ndarray | None) -> bool:
    """Whether the inverse of an estimated transition can be trusted (no class mostly mislabelled)."""
    return transition is not None and bool(np.all(np.diag(transition) >= 0.5)) and np.linalg.cond(transition) <= 50


def usable_transition(transition: np.ndarray, step: float = 0.05) -> np.ndarray | None:
    """``transition`` if it is :func:`usable`, else the least shrinkage ``(1 - a) T + a I`` towards the
    identity that is (None if none is, short of the identity).

    At 40 % class-conditional noise the estimated diagonal sits near the 0.5 line, and one class a few
    rows under it used to switch the correction off altogether, falling back to plain accuracy on the
    noisy validation labels, which at that noise rate prefers the model that learnt the flips (digits,
    seed 1: every repair round then lost to the baseline). Shrinking keeps the correction's direction
    and only makes it milder."""
    if usable(transition):
        return transition
    eye = np.eye(len(transition))
    for a in np.arange(step, 1.0, step):
        t = (1 - a) * transition + a * eye
        if usable(t):
            return t
    return None


def unreviewed_noise(transition: np.ndarray | None, flagged: np.ndarray, reviewed: np.ndarray) -> np.ndarray | None:
    """The noise transition of the rows a reviewer left, when ``transition`` was estimated (from the
    flags) for all of them: ``I + s (T - I)``, ``s`` = the flagged share of the unreviewed rows over the
    flagged share of all rows (at most 1). The estimate counts noise only where rows are flagged, so
    once a reviewer has labelled the flagged rows the rest are, by the same estimate, clean: correcting
    them for the full rate would inflate every model's score by the noise just removed, the more the
    more a model disagrees with the labels. ``transition`` itself when nothing was reviewed."""
    flagged, reviewed = np.asarray(flagged, bool), np.asarray(reviewed, bool)
    if transition is None or not reviewed.any() or not flagged.any():
        return transition
    left = ~reviewed
    share = float(flagged[left].mean()) / float(flagged.mean()) if left.any() else 0.0
    return blended_noise(transition, 1.0 - min(share, 1.0))


def blended_noise(transition: np.ndarray | None, trusted_share: float) -> np.ndarray | None:
    """The noise of a set of rows of which ``trusted_share`` carry a reviewer's labels (no noise) and the
    rest ``transition``: ``share * I + (1 - share) * T``. For corrections fitted on all the rows at once
    (the reliability curve), where row-by-row scores are not an option."""
    if transition is None:
        return None
    eye = np.eye(len(transition))
    return float(trusted_share) * eye + (1.0 - float(trusted_share)) * np.asarray(transition)


def row_scores(pred: np.ndarray, given: np.ndarray, transition: np.ndarray | None,
               trusted: np.ndarray | None = None) -> np.ndarray:
    """Per-row contributions to the corrected accuracy: ``inv(T)[given, pred]``, since
    ``trace(C @ inv(T)) = sum_i inv(T)[given_i, pred_i]``; plain 0/1 correctness when ``transition``
    is None or not :func:`usable`, and on ``trusted`` rows (a reviewer's labels: no noise to correct
    for, and the correction's weights would distort them). Per-row scores let two models be compared
    row by row (paired); either kind of row estimates the true correctness without bias, so their mean
    is the accuracy."""
    pred, given = np.asarray(pred, int), np.asarray(given, int)
    plain = (pred == given).astype(np.float64)
    if not usable(transition):
        return plain
    out = np.linalg.inv(transition)[given, pred]
    if trusted is not None:
        out = np.where(np.asarray(trusted, bool), plain, out)
    return out


def corrected_accuracy(pred: np.ndarray, given: np.ndarray, transition: np.ndarray | None) -> float:
    """Accuracy against the true classes estimated from noisy ``given`` labels (see module docstring),
    clipped to 0..1; the plain accuracy when ``transition`` is None or not :func:`usable`."""
    if len(pred) == 0:
        return float("nan")
    return float(np.clip(row_scores(pred, given, transition).mean(), 0.0, 1.0))


def paired_difference(scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of ``b - a`` over the same rows."""
    d = np.asarray(scores_b, float) - np.asarray(scores_a, float)
    if len(d) < 2:
        return float(d.mean()) if len(d) else 0.0, float("inf")
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))
