"""What a repair policy sees (``RoundInput``) and what it returns (``Plan``).

Every array is aligned to the *development rows* (training + validation rows of the user's data,
in the order the loop keeps them); test rows never reach a policy. A policy may only change rows
where ``inp.editable`` is true: training rows still in training that no reviewer has decided on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..train.callback import Callback


@dataclass
class RoundInput:
    """The state of the data before a round, and the diagnosis of the model trained on it."""

    X: np.ndarray  # features of the development rows
    labels: np.ndarray  # current label code of each row (training rows may already be repaired)
    given: np.ndarray  # the user's label code of each row
    in_train: np.ndarray  # bool: a training row still used for training (not quarantined)
    is_val: np.ndarray  # bool: a validation row (never edited by a policy)
    exempt: np.ndarray  # bool: a reviewer decided on this row; automatic policies leave it alone
    samples: pd.DataFrame  # the diagnosis, one row per development row (NaN/False where not judged)
    consensus: np.ndarray  # (rows, K) class probabilities before memorisation (NaN where not judged)
    classes: list[str]
    kind: str  # tabular | image | text
    reliability: Any = None  # probability -> how often the model's top class is right (held-out rows)
    # (rows, K) the last round's model's class probabilities for the training rows: in sample for the rows
    # it trained on, out of sample for quarantined ones (NaN elsewhere; None in round 1)
    model_probs: np.ndarray | None = None
    history: list[dict] = field(default_factory=list)  # the diagnosed run's metrics per epoch
    model_health: dict | None = None
    round: int = 1
    # (K, K) estimated P(given label | true class) of the current labels: from the baseline diagnosis in
    # round 1, from the previous round's predictions later (``correct``)
    transition: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def editable(self) -> np.ndarray:
        return self.in_train & ~self.exempt

    @property
    def quarantined(self) -> np.ndarray:
        """Training rows taken out of training by an earlier round."""
        return ~self.in_train & ~self.is_val

    @property
    def suggested(self) -> np.ndarray:
        """The diagnosis' suggested class code per row (-1 where there is none)."""
        return self.samples["suggested_code"].to_numpy(np.int64)

    def flagged(self) -> np.ndarray:
        """Editable rows the diagnosis flags as probably mislabelled."""
        return self.editable & self.samples["label_issue"].to_numpy(bool)

    def suggested_confidence(self) -> np.ndarray:
        """How sure the model is of the suggested class: its consensus probability (0 where unknown)."""
        s = self.suggested
        ok = s >= 0
        out = np.zeros(len(s), dtype=np.float64)
        out[ok] = self.consensus[np.flatnonzero(ok), s[ok]]
        return np.nan_to_num(out, nan=0.0)


@dataclass
class Plan:
    """One round's edit of the training data. Arrays are aligned to the development rows."""

    labels: np.ndarray  # the label code to train on
    drop: np.ndarray  # bool: rows to quarantine from this round on
    restore: np.ndarray | None = None  # bool: quarantined rows taken back into training (with ``labels``)
    reasons: dict[int, str] = field(default_factory=dict)  # row -> why it was quarantined
    weights: np.ndarray | None = None  # per-row loss weight (1 = unchanged)
    config: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides (e.g. class_weight)
    callbacks: list[Callback] = field(default_factory=list)  # extra training callbacks (augmentation)
    synthetic: tuple[np.ndarray, np.ndarray] | None = None  # extra training rows (X, y), e.g. SMOTE
    notes: list[str] = field(default_factory=list)  # what the policy decided, in words
    base: np.ndarray | None = None  # the labels the plan started from (its edits are the differences)

    @classmethod
    def unchanged(cls, inp: RoundInput) -> "Plan":
        return cls(labels=inp.labels.copy(), drop=np.zeros(len(inp.labels), dtype=bool), base=inp.labels.copy())

    def merge(self, other: "Plan") -> "Plan":
        """Combine two plans: ``other``'s label edits (rows where it differs from the labels it
        started from) and drops are added to ``self``'s; a row dropped by either is dropped."""
        labels = self.labels.copy()
        changed = other.labels != (other.base if other.base is not None else self.labels)
        labels[changed] = other.labels[changed]
        weights = self.weights if other.weights is None else (
            other.weights if self.weights is None else self.weights * other.weights)
        synthetic = other.synthetic if other.synthetic is not None else self.synthetic
        restore = self.restore if other.restore is None else (
            other.restore if self.restore is None else self.restore | other.restore)
        return Plan(labels, self.drop | other.drop, restore, {**self.reasons, **other.reasons}, weights,
                    {**self.config, **other.config}, self.callbacks + other.callbacks, synthetic,
                    self.notes + other.notes, self.base)
