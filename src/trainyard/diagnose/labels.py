"""Wrong labels, read from the ledger of one training run.

Why it works: a network learns the pattern shared by most samples of a class before it memorises the
samples that contradict it. Until it memorises them, its prediction for a wrongly labelled training
sample is in effect out-of-sample, and the margin of the given label (its logit minus the largest other
logit) is negative. Once memorisation starts, the margins of wrong labels turn positive and the signal
fades (on sklearn digits with a CNN, the average precision of the per-epoch margin falls from 0.98 at
epoch 2 to 0.45 at epoch 30). So the detector:

1. finds the **memorisation window**: the epochs before held-out accuracy starts to fall, or before
   training accuracy against the given labels passes held-out accuracy (``memorisation_window``);
2. scores each training row by its **area under the margin** (AUM, Pleiss et al. 2020) over that window;
   held-out rows get the same mean margin from their eval-mode (truly out-of-sample) predictions;
3. flags a row when its AUM is below the **error threshold** (``error_threshold``), unless the given
   label and another class are tied within the noise of the window (``tied_with_given``: those rows
   are ambiguous, not wrong). The threshold is zero (before memorising, the model believes another
   class more than the given one) or lower, where the AUM of the training rows splits into two groups
   whose boundary lies below zero: a model still under-fit in the window gives clean but confusable
   rows a slightly negative AUM, while wrong labels sit far below zero (the model confidently believes
   their true class). A two-component Gaussian mixture of the AUM finds that boundary (as DivideMix
   does with losses, Li et al. 2020), used only when the two groups are clearly apart (Ashman's
   D >= 2, the usual test of a bimodal mixture; overlapping groups put the boundary anywhere); it can
   only make the rule stricter, never flag more than a negative AUM. No threshold to tune.
4. near ties are not always ambiguous: class-conditional noise at a high rate (class k often labelled
   k+1) teaches the model the flip as a split belief, so the flipped rows look tied with their given
   label. When the confident joint of the window's mean probabilities counts more wrong labels than
   step 3 flagged, the tied rows below the threshold are flagged too, most negative AUM first, up to
   that count (``wrong_labels``); the rest stay ambiguous.

5. steps 3-4 say **how many** rows are wrong; **which** ones is read from a second window, the one whose
   AUM splits the training rows into two groups most clearly (``separating_window``): the count's
   rows are taken lowest AUM first over it. The memorisation window stops at the first sign of
   memorising, which on large data comes long before the wrong labels' margins stop being apart; but
   over a longer window the model has learnt part of a systematic flip, so the AUM below zero
   under-counts. On make_classification with 35,000 training rows (3 seeds, six noise settings) this
   raised the F1 from 0.937 to 0.960 on average (class-conditional 40 %: 0.75 to 0.85), and moved it by
   at most +0.002 on average on digits and on the 7,000-row set.

6. the count of steps 3-4 is read over the ranking window too, and the smaller of the two kept, when the
   memorisation window stopped at a dip of held-out accuracy while the model was still under-fit
   (``_underfit_at_stop``: held-out accuracy later, inside the ranking window, beats every epoch of
   the memorisation window) and the ranking window's AUM splits into two groups clearly apart
   (Ashman's D >= 2). Stopped that early, clean but confusable rows have a negative margin as well and
   the count runs high (Fashion-MNIST at 14,000 training rows, 10 % noise: 2,885 rows counted for
   1,400 flips, window stopped at epoch 4, held-out accuracy 0.79 there and 0.88 later); over the
   longer window the model has fitted those rows (1,961 counted). Where held-out accuracy only falls
   after the stop, the model is memorising, and a longer window has begun to learn the flips
   themselves: its count runs low (sklearn digits, 40 % class-conditional: 398 for 503), and it is not
   used; nor where its groups overlap (make_classification, 40 % class-conditional: 800 for 2,800).
   Like the threshold, this can only make the rule stricter.

``label_score`` is a logistic map of the ranking AUM centred on the cut between flagged and unflagged
rows (``label_score >= 0.5`` is exactly ``label_issue``); the confident joint (Northcutt et al. 2021) of the window's mean
probabilities gives an independent estimate of the noise rate for the summary.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .chance import heldout_agreement
from .registry import register
from .mixture import fit_two_gaussians

NEAR_TIE = 0.8  # two classes within 20% of each other's probability are a tie, not a preference
MIN_WINDOW = 3  # epochs; fewer is too noisy (the first epoch's forward passes come from a model still learning)


@dataclass
class Window:
    """The epochs ``[start, stop)`` whose predictions are out-of-sample in effect, and why."""

    start: int
    stop: int
    n_epochs: int
    reason: str
    train_acc: np.ndarray
    heldout_acc: np.ndarray | None
    dip: bool = False  # stopped because held-out accuracy fell (not because training rows passed it)


def memorisation_window(ledger: Any, y: np.ndarray) -> Window:
    """Epochs before memorisation sets in (see the module docstring).

    Memorising wrong labels shows in the held-out rows: their accuracy falls below its best so far (the
    model bends itself around the wrong labels), or the training rows' accuracy against their own
    labels passes the best held-out accuracy (the model fits seen rows better than unseen ones). The
    window stops at the first epoch where either happens by more than two standard errors of the
    held-out accuracy. It always keeps at least ``MIN_WINDOW`` epochs. Falls back to the first half of
    the epochs when no held-out predictions were recorded."""
    y = np.asarray(y)
    e_total = int(ledger.margin.shape[0])
    y_train = y[np.asarray(ledger.train_idx)]
    train_acc = np.array([np.mean(np.asarray(ledger.pred[e]) == y_train) for e in range(e_total)])
    held = getattr(ledger, "heldout_probs", None)
    held_idx = np.asarray(getattr(ledger, "heldout_idx", np.zeros(0, np.int64)))
    start = 1 if e_total > MIN_WINDOW else 0  # epoch 0's forward passes mostly show an untrained model
    if held is None or len(held_idx) == 0:
        stop = max(min(e_total, start + MIN_WINDOW), e_total // 2)
        return Window(start, stop, e_total, "no held-out rows: first half of the epochs", train_acc, None)
    y_held = y[held_idx]
    m = len(held_idx)
    heldout_acc = np.array([np.mean(np.asarray(held[e]).argmax(1) == y_held) for e in range(e_total)])
    best = np.maximum.accumulate(heldout_acc)
    tolerance = 2 * np.sqrt(np.maximum(best * (1 - best), 1 / m) / m)  # two standard errors
    hurt = heldout_acc < best - tolerance  # fitting the training rows now costs held-out accuracy
    ahead = train_acc > best + tolerance  # the training rows are fitted better than unseen rows
    late = np.flatnonzero((hurt | ahead) & (np.arange(e_total) > start))
    stop = int(late[0]) if len(late) else e_total
    reason = ("no memorisation seen: all epochs" if not len(late) else
              f"held-out accuracy falls at epoch {stop}" if hurt[stop] else
              f"training accuracy passes held-out accuracy at epoch {stop}")
    dip = bool(len(late) and hurt[stop])
    stop = min(e_total, max(stop, start + MIN_WINDOW))
    return Window(start, stop, e_total, reason, train_acc, heldout_acc, dip)


MIXTURE_ROWS = 20_000  # rows the threshold's 1-D mixture is fitted on (evenly spaced beyond that): cost stays flat
SEPARATED = 2.0  # Ashman's D of two groups clearly apart (Ashman et al. 1994); below it they overlap


def _spread_subset(a: np.ndarray, rows: int) -> np.ndarray:
    """At most ``rows`` values, evenly spaced over the array: a fixed sample that no seeded draw elsewhere
    can line up with. (A seeded random draw did: ``default_rng(0).choice(n, m)`` picks the same first
    rows for every m, so on a benchmark whose noise was injected with seed 0 the "random" subset held
    all the flipped rows, and the mixture saw 35 % noise where there was 20 %.)"""
    if len(a) <= rows:
        return a
    return a[np.linspace(0, len(a) - 1, rows).round().astype(np.int64)]


def _two_groups(aum: np.ndarray, seed: int = 0):
    """A two-component Gaussian mixture of the finite AUM values (``mixture.fit_two_gaussians``: best of
    five k-means starts, on at most ``MIXTURE_ROWS`` evenly spaced rows); None when there are too few
    rows or no spread."""
    a = np.asarray(aum, dtype=np.float64)
    a = a[np.isfinite(a)]
    if len(a) < 20 or np.ptp(a) <= 1e-6:
        return None
    return fit_two_gaussians(_spread_subset(a, MIXTURE_ROWS), seed=seed)


def _ashman_d(gm) -> float:
    """sqrt(2) |mean gap| / sqrt(var_low + var_high) of a two-component mixture."""
    var = gm.covariances_.reshape(-1)
    return float(np.sqrt(2) * abs(gm.means_[1, 0] - gm.means_[0, 0]) / np.sqrt(var.sum()))


def separation(aum: np.ndarray, seed: int = 0) -> float:
    """Ashman's D of a two-component Gaussian mixture of the AUM: how far apart its two groups are
    (>= ``SEPARATED`` reads as two groups clearly apart); 0 when no mixture can be fitted."""
    gm = _two_groups(aum, seed)
    return 0.0 if gm is None else _ashman_d(gm)


def separating_window(ledger: Any, y: np.ndarray, base: Window | None = None) -> Window:
    """The window whose AUM splits the training rows most clearly into two groups.

    ``memorisation_window`` stops at the first sign of memorisation, but that sign is a proxy: on
    large data a model learns class-conditional flips slowly, held-out accuracy dips at epoch 5 while
    the wrong labels' margins stay negative for 20 epochs more, and the short window ranks them worse
    than the long one (make_classification, 35,000 rows, 10 % class-conditional: average precision
    0.984 at the memorisation stop, 0.994 twenty epochs later). What the window is for is to separate
    wrong labels from right ones, and that can be read off directly: for every stop from
    ``start + MIN_WINDOW`` to the last epoch, the AUM's two-group mixture is fitted and the stop with the
    largest separation (Ashman's D) is kept. Memorising the wrong labels pulls their margins up and the
    groups together, so the choice stops before it without a rule for when it starts."""
    base = base or memorisation_window(ledger, y)
    e_total = base.n_epochs
    first = base.start + MIN_WINDOW
    if e_total < first + 1:
        return base
    total = np.zeros(np.asarray(ledger.margin[0]).shape, dtype=np.float64)
    stops, ds = [], []
    for e in range(base.start, e_total):
        total += np.asarray(ledger.margin[e], dtype=np.float64)
        if e + 1 >= first:
            stops.append(e + 1)
            ds.append(separation(total / (e + 1 - base.start)))
    best = int(np.argmax(ds))  # the first of equal maxima: the shorter window
    best_stop, best_d = stops[best], float(ds[best])
    reason = (f"AUM groups most apart at epoch {best_stop} (Ashman's D {best_d:.2f}); "
              f"first sign of memorisation: {base.reason}")
    return Window(base.start, best_stop, e_total, reason, base.train_acc, base.heldout_acc, base.dip)


def _mean_over(arr: Any, window: Window, dtype=np.float32) -> np.ndarray:
    """Mean over the window's epochs, one epoch at a time (the ledger may be a memory map)."""
    acc = np.zeros(arr.shape[1:], dtype=np.float64)
    for e in range(window.start, window.stop):
        acc += np.asarray(arr[e], dtype=np.float64)
    return (acc / max(window.stop - window.start, 1)).astype(dtype)


def _log_margin(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log p[given] - max_{j != given} log p[j] (equal to the logit margin)."""
    logp = np.log(np.clip(probs, 1e-12, None))
    rows = np.arange(len(y))
    given = logp[rows, y].copy()
    logp[rows, y] = -np.inf
    return given - logp.max(1)


def confident_joint_counts(probs: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Calibrated confident joint: estimated number of rows per (given label, true label) pair.

    A row counts toward (i, j) when its probability of class j reaches the mean probability of j among
    rows labelled j (the class's own threshold), taking the largest such j; each row of the matrix is
    then rescaled to the number of rows given label i (Northcutt et al., Confident Learning, 2021)."""
    y = np.asarray(y)
    counts_given = np.bincount(y, minlength=n_classes).astype(np.float64)
    thresholds = np.array([probs[y == j, j].mean() if counts_given[j] else 1.0 for j in range(n_classes)])
    confident = probs >= thresholds[None, :] - 1e-12
    masked = np.where(confident, probs, -1.0)
    true_j = masked.argmax(1)
    has = confident.any(1)
    cj = np.zeros((n_classes, n_classes), dtype=np.float64)
    np.add.at(cj, (y[has], true_j[has]), 1.0)
    row = cj.sum(1, keepdims=True)
    cj = np.where(row > 0, cj / np.maximum(row, 1) * counts_given[:, None], 0.0)
    # a class never confidently seen keeps all its rows as correct
    empty = row[:, 0] == 0
    cj[empty, empty] = counts_given[empty]
    return cj


def _best_other(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = probs.copy()
    p[np.arange(len(y)), y] = -1.0
    return p.argmax(1)


def _logistic_score(aum: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    z = np.clip((threshold - aum) / max(scale, 1e-6), -50, 50)
    return 1.0 / (1.0 + np.exp(-z))


def _rows_stats(probs_seq: Any, y: np.ndarray, n_epochs: int):
    """Confidence / variability of the given label over all epochs (data maps) and forgetting events."""
    rows = np.arange(len(y))
    s1 = np.zeros(len(y)); s2 = np.zeros(len(y))
    forget = np.zeros(len(y), dtype=np.int64)
    prev = None
    for e in range(n_epochs):
        p = np.asarray(probs_seq[e], dtype=np.float32)
        pg = p[rows, y].astype(np.float64)
        s1 += pg; s2 += pg * pg
        correct = p.argmax(1) == y
        if prev is not None:
            forget += prev & ~correct
        prev = correct
    conf = s1 / n_epochs
    var = np.sqrt(np.maximum(s2 / n_epochs - conf * conf, 0.0))
    return conf, var, forget


@dataclass
class Evidence:
    """Per-row evidence over the memorisation window, for one group of rows (training or held-out)."""

    rows: np.ndarray  # dataset row numbers
    y: np.ndarray  # their given labels
    aum: np.ndarray  # mean margin of the given label over the window (logit units)
    margin_std: np.ndarray  # its spread over the window's epochs
    mean_probs: np.ndarray  # (rows, K) mean probabilities over the window, normalised
    n_epochs: int = 1  # epochs in the window


def window_evidence(ledger: Any, y: np.ndarray, n_classes: int, window: Window | None = None
                    ) -> tuple[Window, Evidence, Evidence | None]:
    """The memorisation window and the evidence of the training rows and held-out rows over it."""
    y = np.asarray(y, dtype=np.int64)
    window = window or memorisation_window(ledger, y)
    train_idx = np.asarray(ledger.train_idx, dtype=np.int64)
    y_train = y[train_idx]
    epochs = range(window.start, window.stop)
    margins = np.stack([np.asarray(ledger.margin[e], dtype=np.float32) for e in epochs])
    probs = getattr(ledger, "probs", None)
    if probs is not None:
        mean_p = _mean_over(probs, window)
    else:  # no probability vectors kept: a vote of the predictions stands in
        mean_p = np.zeros((len(train_idx), n_classes), dtype=np.float32)
        for e in epochs:
            mean_p[np.arange(len(train_idx)), np.asarray(ledger.pred[e], dtype=np.int64)] += 1.0
    mean_p /= np.maximum(mean_p.sum(1, keepdims=True), 1e-12)
    train = Evidence(train_idx, y_train, margins.mean(0), margins.std(0), mean_p, len(epochs))
    held = getattr(ledger, "heldout_probs", None)
    held_idx = np.asarray(getattr(ledger, "heldout_idx", np.zeros(0, np.int64)), dtype=np.int64)
    if held is None or len(held_idx) == 0:
        return window, train, None
    y_held = y[held_idx]
    h_margins = np.stack([_log_margin(np.asarray(held[e], dtype=np.float32), y_held) for e in epochs])
    h_p = _mean_over(held, window)
    h_p /= np.maximum(h_p.sum(1, keepdims=True), 1e-12)
    return window, train, Evidence(held_idx, y_held, h_margins.mean(0), h_margins.std(0), h_p, len(epochs))


def tied_with_given(ev: Evidence) -> np.ndarray:
    """Rows whose given label and the most likely other class are close to a tie over the window: the
    smaller of their mean probabilities is within ``NEAR_TIE`` of the larger, or at least half of it
    while the mean margin stays within one standard error of zero over the window's epochs. These are
    ambiguous rather than wrong."""
    rows = np.arange(len(ev.y))
    p_given = ev.mean_probs[rows, ev.y]
    p_other = ev.mean_probs[rows, _best_other(ev.mean_probs, ev.y)]
    ratio = np.minimum(p_given, p_other) / np.maximum(np.maximum(p_given, p_other), 1e-12)
    unresolved = np.abs(ev.aum) <= ev.margin_std / np.sqrt(max(ev.n_epochs, 1))
    return (ratio >= NEAR_TIE) | (unresolved & (ratio >= 0.5))


@dataclass
class Threshold:
    """The AUM below which a row is flagged, and the two groups of the mixture that placed it."""

    aum: float
    means: tuple[float, float] = (float("nan"), float("nan"))  # low group, high group (logit units)
    weights: tuple[float, float] = (float("nan"), float("nan"))
    reason: str = ""
    separation: float = 0.0  # Ashman's D of the two groups (0 when no mixture could be fitted)


def error_threshold(aum: np.ndarray, seed: int = 0) -> Threshold:
    """Where the training rows' AUM splits into a wrong-label group and a correct-label group.

    A two-component Gaussian mixture is fitted to the AUM (best of five starts); the threshold is the
    point between the two group means where a row becomes more likely to belong to the low group than
    to the high one, capped at zero. It is zero when the AUM does not split into two groups clearly
    apart (too few rows, no spread, or Ashman's D = sqrt(2) |mean gap| / sqrt(var_low + var_high)
    below ``SEPARATED``).

    Example:
        >>> t = error_threshold(np.r_[np.full(80, 2.0), np.full(20, -2.0)] + np.linspace(-.3, .3, 100))
        >>> -2 < t.aum <= 0
        True
    """
    gm = _two_groups(aum, seed)
    if gm is None:
        return Threshold(0.0, reason="too few rows or no spread: zero")
    lo, hi = np.argsort(gm.means_[:, 0])
    grid = np.linspace(gm.means_[lo, 0], gm.means_[hi, 0], 2001)
    low_more_likely = gm.predict_proba(grid[:, None])[:, lo] >= 0.5
    boundary = float(grid[np.argmin(low_more_likely)]) if not low_more_likely.all() else float(grid[-1])
    means = (float(gm.means_[lo, 0]), float(gm.means_[hi, 0]))
    weights = (float(gm.weights_[lo]), float(gm.weights_[hi]))
    d = _ashman_d(gm)
    if d < SEPARATED:
        return Threshold(0.0, means, weights, f"the groups overlap (Ashman's D {d:.2f}): zero", d)
    if boundary >= 0:
        return Threshold(0.0, means, weights, f"the groups split at {boundary:.2f} >= 0: zero", d)
    return Threshold(boundary, means, weights, f"the groups split at {boundary:.2f}, below zero", d)


def _flag(ev: Evidence, threshold: float = 0.0) -> np.ndarray:
    """A label is wrong when, before memorisation, the model on average prefers another class (AUM below
    the threshold, itself at most zero), unless the row is a near tie (then it is ambiguous)."""
    return (ev.aum < threshold) & ~tied_with_given(ev)


def _off_diagonal(cj: np.ndarray) -> int:
    return int(round(cj.sum() - np.trace(cj)))


def estimated_errors(ev: Evidence, n_classes: int) -> int:
    """Number of wrong labels the confident joint of the window's mean probabilities counts."""
    return _off_diagonal(confident_joint_counts(ev.mean_probs, ev.y, n_classes))


def wrong_labels(ev: Evidence, threshold: float, n_classes: int) -> np.ndarray:
    """The flag of step 3, plus, when the confident joint counts more wrong labels than that, the near
    ties below the threshold (most negative AUM first) up to the confident joint's count (step 4)."""
    return _with_ties(ev, _flag(ev, threshold), threshold, estimated_errors(ev, n_classes))


def _with_ties(ev: Evidence, below: np.ndarray, threshold: float, n_errors: int) -> np.ndarray:
    """Step 4 on top of the step-3 flag ``below``: the near ties under the threshold, most negative AUM
    first, until ``n_errors`` rows are flagged."""
    flag = below.copy()
    missing = n_errors - int(flag.sum())
    if missing > 0:
        tied = np.flatnonzero((ev.aum < threshold) & ~flag)
        flag[tied[np.argsort(ev.aum[tied], kind="stable")[:missing]]] = True
    return flag


@dataclass
class Count:
    """Steps 3-4 over one window."""

    n: int  # rows counted wrong
    n_ties: int  # of them, near ties added by step 4
    n_negative: int  # rows a zero threshold would flag (negative AUM, not tied)
    noise_rate: float  # the confident joint's estimate


def count_wrong(ev: Evidence, threshold: float, n_classes: int) -> Count:
    """Steps 3-4 (``wrong_labels``) as counts, with the near ties and the confident joint computed once."""
    tied = tied_with_given(ev)
    below = (ev.aum < threshold) & ~tied  # step 3 (_flag)
    cj = confident_joint_counts(ev.mean_probs, ev.y, n_classes)
    counted = _with_ties(ev, below, threshold, _off_diagonal(cj))
    return Count(int(counted.sum()), int((counted & ~below).sum()), int(((ev.aum < 0) & ~tied).sum()),
                 float(1 - np.trace(cj) / max(cj.sum(), 1)))


def _underfit_at_stop(window: Window, rank_window: Window) -> bool:
    """Whether the memorisation window stopped at a dip of held-out accuracy that the model then made up:
    later, within the ranking window, it did better on the held-out rows than at any epoch inside the
    window, so at the stop it was still under-fit, not memorising. A stop because the training rows
    passed the held-out ones is memorisation by its own sign and never counts here: with noisy held-out
    labels, learning a systematic flip raises held-out accuracy against them too."""
    h = window.heldout_acc
    if h is None or not window.dip or rank_window.stop <= window.stop:
        return False
    return bool(np.max(h[window.stop:rank_window.stop]) > np.max(h[:window.stop]))


def lowest(aum: np.ndarray, n: int) -> tuple[np.ndarray, float]:
    """The ``n`` rows of lowest AUM (stable order) and a cut between them and the rest."""
    flag = np.zeros(len(aum), dtype=bool)
    if n <= 0:
        return flag, float(np.min(aum)) - 1.0 if len(aum) else 0.0
    order = np.argsort(aum, kind="stable")
    flag[order[:n]] = True
    last = float(aum[order[n - 1]])
    return flag, (last + float(aum[order[n]])) / 2 if n < len(aum) else last + 1.0


def label_issues(ledger: Any, y: np.ndarray, n_classes: int | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score every row of the dataset for a wrong label, from a run's ledger.

    Args:
        ledger: a :class:`trainyard.monitor.LedgerArrays` (``read_ledger(run_dir)``).
        y: the labels of the whole dataset as trained on (int codes).
        n_classes: K (default: from the ledger's probabilities, else ``max(y) + 1``).

    Returns:
        ``(table, summary)``: one row per dataset row (index = row number) with ``label_score`` (0-1),
        ``label_issue`` (bool), ``suggested_label`` (int code, the class the model believes) and the
        evidence columns ``aum``, ``oos_self_confidence``, ``early_error``, ``confidence``,
        ``variability``, ``forgetting``, ``split`` ("train", "heldout" or "" if never seen);
        ``summary`` holds the estimated noise rate, the threshold, the epoch window and the method.
        The summary is also in ``table.attrs["summary"]``.

    Example:
        >>> table, summary = label_issues(read_ledger("runs/x"), dataset.y)   # doctest: +SKIP
        >>> table[table.label_issue].sort_values("label_score", ascending=False).head()   # doctest: +SKIP
    """
    y = np.asarray(y, dtype=np.int64)
    _check(ledger, y)
    probs = getattr(ledger, "probs", None)
    if n_classes is None:
        n_classes = int(probs.shape[2]) if probs is not None else int(y.max()) + 1
    k = int(n_classes)
    window, train, held = window_evidence(ledger, y, k)  # how many are wrong: the memorisation window
    rank_window = separating_window(ledger, y, window)  # which ones: the window that separates them best
    if (rank_window.start, rank_window.stop) == (window.start, window.stop):
        r_train, r_held = train, held
    else:
        _, r_train, r_held = window_evidence(ledger, y, k, rank_window)
    # one logistic scale for all rows: the typical spread of the training rows' AUM
    scale = float(np.median(np.abs(r_train.aum - np.median(r_train.aum)))) or 1.0
    n = len(y)
    out = pd.DataFrame({
        "label_score": np.full(n, np.nan), "label_issue": np.zeros(n, bool), "suggested_label": y.copy(),
        "aum": np.full(n, np.nan), "oos_self_confidence": np.full(n, np.nan), "early_error": np.full(n, np.nan),
        "confidence": np.full(n, np.nan), "variability": np.full(n, np.nan), "forgetting": np.zeros(n, np.int64),
        "split": np.full(n, "", dtype=object)})
    threshold = error_threshold(train.aum)
    summary: dict[str, Any] = {
        "method": "as many rows as the area under the margin over the epochs before memorisation puts below "
                  "the error threshold (zero, or the lower boundary of a two-group mixture of the AUM), taken "
                  "lowest first by the AUM over the window that separates the two groups best; the count is the "
                  "smaller of that and the same count over the ranking window where the memorisation window stopped "
                  "at a dip (the model under-fit) and the ranking window's groups are clearly apart",
        "threshold_aum": round(threshold.aum, 4),
        "threshold": {"reason": threshold.reason, "group_means": [round(m, 4) for m in threshold.means],
                      "group_weights": [round(w, 4) for w in threshold.weights]},
        "window": {"start": window.start, "stop": window.stop, "epochs": window.n_epochs, "reason": window.reason},
        "rank_window": {"start": rank_window.start, "stop": rank_window.stop, "reason": rank_window.reason},
    }
    groups = [("train", train, r_train, probs if probs is not None else None)]
    if held is not None:
        groups.append(("heldout", held, r_held, ledger.heldout_probs))
    # step 6 (see the docstring): the mixture of the ranking window is fitted only when the cheap test
    # of the stop passes (it implies a longer, so different, ranking window)
    recount, rank_threshold = False, None
    if _underfit_at_stop(window, rank_window):
        rank_threshold = error_threshold(r_train.aum)
        recount = rank_threshold.separation >= SEPARATED
    summary["rank_threshold"] = (
        {"aum": round(rank_threshold.aum, 4), "reason": rank_threshold.reason, "recounted": recount}
        if rank_threshold is not None else
        {"aum": None, "reason": "not fitted: the memorisation window did not stop at a dip the model made up",
         "recounted": False})
    for name, ev, rv, seq in groups:
        # held-out rows too: the same model, the same boundary
        count = count_wrong(ev, threshold.aum, k)
        n_wrong, n_ties = count.n, count.n_ties
        if recount:
            rank_count = count_wrong(rv, rank_threshold.aum, k)
            if rank_count.n < n_wrong:
                n_wrong, n_ties = rank_count.n, rank_count.n_ties
        flag, cut = lowest(rv.aum, n_wrong)
        score = _logistic_score(rv.aum, cut, scale)
        score[~flag] = np.minimum(score[~flag], 0.499)  # label_score >= 0.5 is exactly label_issue
        score[flag] = np.maximum(score[flag], 0.5)
        # the class the model believes, from the memorisation window: over the longer ranking window it
        # has partly learnt a systematic flip, and its top class for a flipped row drifts to the given one
        rows = np.arange(len(ev.y))
        argmax = ev.mean_probs.argmax(1)
        suggested = np.where(flag & (argmax == ev.y), _best_other(ev.mean_probs, ev.y), argmax)
        onehot = np.zeros_like(ev.mean_probs)
        onehot[rows, ev.y] = 1.0
        if seq is not None:
            conf, var, forget = _rows_stats(seq, ev.y, window.n_epochs)
        else:
            pg = np.asarray(ledger.p_given, dtype=np.float32)
            conf, var, forget = pg.mean(0), pg.std(0), _forgetting(ledger.pred, ev.y)
        _fill(out, ev.rows, name, score, flag, suggested, rv.aum, ev.mean_probs[rows, ev.y],
              np.linalg.norm(ev.mean_probs - onehot, axis=1), conf, var, forget)
        summary[f"n_flagged_{name}"] = int(flag.sum())
        summary[f"n_negative_aum_{name}"] = count.n_negative  # what a zero threshold would flag
        summary[f"n_ties_flagged_{name}"] = n_ties  # step 4
        summary[f"flagged_rate_{name}"] = round(float(flag.mean()), 4)
        summary[f"estimated_noise_rate_{name}"] = round(count.noise_rate, 4)
    summary["estimated_noise_rate"] = summary["estimated_noise_rate_train"]
    # flags are evidence only from a model that learnt the classes (``chance``): said, not hidden
    summary["heldout_agreement"] = heldout_agreement(ledger, y, k)
    out.attrs["summary"] = summary
    return out, summary


def _check(ledger: Any, y: np.ndarray) -> None:
    from ..errors import RunError

    if getattr(ledger, "margin", None) is None or np.asarray(ledger.margin).shape[0] == 0:
        raise RunError("the ledger has no finished epoch: train at least one epoch with the ledger on")
    rows = np.asarray(ledger.train_idx)
    if len(rows) and rows.max() >= len(y):
        raise RunError(f"the ledger names dataset row {int(rows.max())} but the labels have {len(y)} rows: "
                       "pass the labels of the dataset the run trained on")


def _forgetting(pred: Any, y: np.ndarray) -> np.ndarray:
    forget = np.zeros(len(y), dtype=np.int64)
    prev = None
    for e in range(pred.shape[0]):
        correct = np.asarray(pred[e]) == y
        if prev is not None:
            forget += prev & ~correct
        prev = correct
    return forget


def _fill(out: pd.DataFrame, idx: np.ndarray, split: str, score, flag, suggested, aum, self_conf, early_error,
          conf, var, forget) -> None:
    out.loc[idx, "label_score"] = score
    out.loc[idx, "label_issue"] = flag
    out.loc[idx, "suggested_label"] = suggested
    out.loc[idx, "aum"] = aum
    out.loc[idx, "oos_self_confidence"] = self_conf
    out.loc[idx, "early_error"] = early_error
    out.loc[idx, "confidence"] = conf
    out.loc[idx, "variability"] = var
    out.loc[idx, "forgetting"] = forget
    out.loc[idx, "split"] = split


register("labels", score="label_score", flag="label_issue")(label_issues)
