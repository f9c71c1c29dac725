"""Injected label noise with the flipped rows recorded as ground truth (BENCHMARKS.md protocol)."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError

NOISE_KINDS = ("symmetric", "class_conditional", "instance")
# in ``instance`` noise no row is beyond being mislabelled: even a row a clean model is sure of
# carries this much weight when the rows to flip are drawn
INSTANCE_FLOOR = 0.01


def inject_label_noise(y: np.ndarray, rate: float, kind: str = "symmetric", n_classes: int | None = None,
                       seed: int = 0, idx: np.ndarray | None = None,
                       probs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(rate * len(rows))`` labels among ``rows`` (``idx``, or all of ``y``).

    Args:
        y: integer class codes.
        rate: share of rows to flip, 0..1.
        kind: ``symmetric`` (a flipped label goes to a uniformly random *other* class) or
            ``class_conditional`` (class k goes to class (k + 1) mod K) or ``instance`` (an annotator's
            confusion: rows are drawn with weight ``1 - probs[row, y]`` (at least ``INSTANCE_FLOOR``),
            so the rows a clean model finds hard are the likelier to be wrong, and each goes to the class
            that model finds most likely after the true one; the flips depend on the row, not only on
            its class, and every wrong label is a plausible one).
        n_classes: K; defaults to ``max(y) + 1``.
        seed: random seed for which rows flip (and, if symmetric, to what).
        idx: restrict flips to these rows (e.g. the training split; the test split keeps true labels).
        probs: for ``instance``: (len(y), K) class probabilities of a model that knows the true labels,
            best out of sample (the rows of ``idx`` are the ones read).

    Returns:
        ``(noisy_y, flipped)``: the new labels (int64, same length as ``y``) and a boolean mask
        over ``y`` marking the flipped rows. Every flipped row's label differs from the original.

    Example:
        >>> noisy, flipped = inject_label_noise(np.arange(10) % 2, 0.2, seed=0)
        >>> int(flipped.sum())
        2
    """
    y = np.asarray(y)
    if y.ndim != 1 or (len(y) and (y.dtype.kind not in "iu" or y.min() < 0)):
        raise ConfigError("y must be a 1-D array of non-negative integer class codes")
    if kind not in NOISE_KINDS:
        raise ConfigError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")
    if not (0.0 <= float(rate) <= 1.0):
        raise ConfigError(f"noise rate must be in 0..1, got {rate}")
    k = int(n_classes) if n_classes is not None else (int(y.max()) + 1 if len(y) else 0)
    if k < 2:
        raise ConfigError(f"label noise needs at least 2 classes, got {k}")
    if len(y) and y.max() >= k:
        raise ConfigError(f"label {int(y.max())} is out of range for n_classes={k}")
    rows = np.arange(len(y)) if idx is None else np.unique(np.asarray(idx, dtype=np.int64))
    if len(rows) and (rows.min() < 0 or rows.max() >= len(y)):
        raise ConfigError("idx holds rows outside y")
    n_flip = int(round(float(rate) * len(rows)))
    rng = np.random.default_rng(seed)
    weights, other = _instance_flips(y, rows, k, probs) if kind == "instance" else (None, None)
    chosen = rng.choice(rows, size=n_flip, replace=False, p=weights) if n_flip else np.zeros(0, dtype=np.int64)
    noisy = y.astype(np.int64).copy()
    if kind == "instance":
        noisy[chosen] = other[np.searchsorted(rows, chosen)]
    elif kind == "symmetric":
        # Adding 1..K-1 mod K reaches each other class with equal probability, never the same one.
        noisy[chosen] = (noisy[chosen] + rng.integers(1, k, size=n_flip)) % k
    else:
        noisy[chosen] = (noisy[chosen] + 1) % k
    flipped = np.zeros(len(y), dtype=bool)
    flipped[chosen] = True
    return noisy, flipped


def _instance_flips(y: np.ndarray, rows: np.ndarray, k: int,
                    probs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """For ``instance`` noise, per row of ``rows``: the probability of being drawn (proportional to
    ``1 - probs[row, y]``, at least ``INSTANCE_FLOOR``) and the most probable class other than its own."""
    if probs is None:
        raise ConfigError("instance noise needs probs: class probabilities of a model of the true labels")
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or p.shape != (len(y), k) or not np.isfinite(p[rows]).all():
        raise ConfigError(f"probs must be a finite ({len(y)}, {k}) array, got shape {p.shape}")
    p = p[rows].copy()
    own = np.arange(len(rows)), y[rows]
    w = np.maximum(1.0 - p[own], INSTANCE_FLOOR)
    p[own] = -np.inf
    return w / w.sum(), p.argmax(1).astype(np.int64)
