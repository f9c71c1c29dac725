"""Stratified train/val/test splits, K folds and stratified subsets.

Per-class counts come from cumulative rounding over the classes (in a seeded random order), so
the split sizes match the fractions overall and every class is within one row of its share.
Every class keeps at least one training row: a class of one goes to train only, a class of two
to train and one held-out split.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, RunError


@dataclass
class Splits:
    """Integer row indices into a Dataset: ``train``, ``val``, ``test`` (disjoint, sorted)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        self.train = np.sort(np.asarray(self.train, dtype=np.int64).ravel())
        self.val = np.sort(np.asarray(self.val, dtype=np.int64).ravel())
        self.test = np.sort(np.asarray(self.test, dtype=np.int64).ravel())

    @property
    def heldout(self) -> np.ndarray:
        """val and test together (the rows the model never trains on)."""
        return np.sort(np.concatenate([self.val, self.test]))

    def sizes(self) -> dict[str, int]:
        """``{"train": n, "val": n, "test": n}``."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def check(self, n: int) -> None:
        """Raise RunError unless the splits are disjoint and index rows ``0..n-1``."""
        every = np.concatenate([self.train, self.val, self.test])
        if len(every) and (every.min() < 0 or every.max() >= n):
            raise RunError(f"splits index rows outside 0..{n - 1}")
        if len(np.unique(every)) != len(every):
            raise RunError("splits overlap: a row is in more than one of train/val/test")

    def to_npz(self, path: str | os.PathLike) -> Path:
        """Write atomically as an ``.npz`` with arrays train, val, test."""
        from ..run import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
                np.savez(f, train=self.train, val=self.val, test=self.test)

        return atomic_write(path, write)

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> "Splits":
        """Read :meth:`to_npz` output."""
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["train"], z["val"], z["test"])
        except (OSError, KeyError, ValueError) as e:
            raise RunError(f"{path}: not a splits file ({e})") from None


def _fractions(fractions: Sequence[float]) -> np.ndarray:
    fr = np.asarray(list(fractions), dtype=np.float64)
    if len(fr) == 2:
        fr = np.append(fr, 0.0)
    if len(fr) != 3 or (fr < 0).any() or not np.isfinite(fr).all() or abs(fr.sum() - 1) > 1e-6 or fr[0] <= 0:
        raise ConfigError(f"split fractions must be (train, val[, test]) >= 0 summing to 1 with train > 0, got {tuple(fractions)}")
    return fr


def _class_groups(y: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of each class, each shuffled, in a random class order."""
    order = np.argsort(y, kind="stable")
    _, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
    groups = [rng.permutation(order[s:s + c]) for s, c in zip(starts, counts)]
    return [groups[i] for i in rng.permutation(len(groups))]


def _cumulative_counts(sizes: Sequence[int], share: float) -> list[int]:
    """Per-group counts of round(size * share) whose running total stays within 0.5 of exact."""
    out, exact, taken = [], 0.0, 0
    for size in sizes:
        exact += size * share
        take = int(np.floor(exact + 0.5)) - taken
        take = min(max(take, 0), size)
        taken += take
        out.append(take)
    return out


def make_splits(y: np.ndarray, fractions: Sequence[float] = (0.7, 0.2, 0.1), seed: int = 0) -> Splits:
    """Stratified train/val/test split of rows by label.

    Example:
        >>> s = make_splits(np.repeat([0, 1], 50), (0.7, 0.2, 0.1), seed=0)
        >>> s.sizes()
        {'train': 70, 'val': 20, 'test': 10}
    """
    y = np.asarray(y).ravel()
    fr = _fractions(fractions)
    rng = np.random.default_rng(seed)
    groups = _class_groups(y, rng)
    sizes = [len(g) for g in groups]
    n_val = _cumulative_counts(sizes, fr[1])
    n_test = _cumulative_counts(sizes, fr[2])
    train, val, test = [], [], []
    for g, v, t in zip(groups, n_val, n_test):
        # Keep one training row per class; give up test before val when a class is too small.
        room = len(g) - 1
        t = min(t, max(room - v, 0)) if v <= room else 0
        v = min(v, room)
        val.append(g[:v])
        test.append(g[v:v + t])
        train.append(g[v + t:])
    empty = np.zeros(0, dtype=np.int64)
    return Splits(np.concatenate(train or [empty]), np.concatenate(val or [empty]), np.concatenate(test or [empty]))


def kfold(y: np.ndarray, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K folds: ``[(train_idx, heldout_idx), ...]``; every row is held out exactly once.

    Classes with fewer than ``k`` rows are spread over as many folds as they have rows (no error,
    unlike sklearn's StratifiedKFold).
    """
    y = np.asarray(y).ravel()
    if not (2 <= int(k) <= len(y)):
        raise ConfigError(f"k must be between 2 and the number of rows ({len(y)}), got {k}")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    offset = 0
    for g in _class_groups(y, rng):
        # A running offset spreads each class's remainder over different folds: sizes stay even.
        fold[g] = (offset + np.arange(len(g))) % k
        offset += len(g)
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(int(k))]


def stratified_sample(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` rows with the class proportions of ``y`` (all rows if n >= len(y))."""
    y = np.asarray(y).ravel()
    if n >= len(y):
        return np.arange(len(y))
    if n < 1:
        raise ConfigError(f"sample size must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    groups = _class_groups(y, rng)
    takes = _cumulative_counts([len(g) for g in groups], n / len(y))
    return np.sort(np.concatenate([g[:t] for g, t in zip(groups, takes)]))
