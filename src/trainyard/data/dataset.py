"""The Dataset every stage passes around: features, integer labels, class names, row ids."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = ("tabular", "image", "text")


@dataclass
class Dataset:
    """A labelled dataset.

    Attributes:
        X: float32 features; ``(N, D)`` for tabular/text, ``(N, C, H, W)`` in 0..1 for images.
        y: int64 class codes in ``0..len(classes)-1``.
        classes: class names (strings), index = code.
        ids: the user's row identifiers (row number in the file, or the image path), as strings.
        kind: one of ``tabular``, ``image``, ``text``.
        feature_names: one name per column of ``X`` (tabular/text), else None.
        source: where the data came from (path or ``sklearn:NAME``).
        info: loader notes (missing values imputed per column, encoded columns, ...).
        encoder: the fitted transform from the raw file to ``X`` (applied to new data), or None.
        raw: the original rows for display (a pandas DataFrame for tables/text), or None.
    """

    X: np.ndarray
    y: np.ndarray
    classes: list[str]
    ids: np.ndarray
    kind: str = "tabular"
    feature_names: list[str] | None = None
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    encoder: Any = None
    raw: Any = None

    def __post_init__(self) -> None:
        self.X = np.ascontiguousarray(self.X, dtype=np.float32)
        self.y = np.asarray(self.y, dtype=np.int64)
        ids = np.asarray(self.ids)
        # converting a million ids one by one costs a second: vectorise when they are plain numbers/strings
        self.ids = ids.astype(str).astype(object) if ids.dtype.kind in "iuUS" else \
            np.asarray([str(i) for i in ids], dtype=object)
        self.classes = [str(c) for c in self.classes]
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not (len(self.X) == len(self.y) == len(self.ids)):
            raise ValueError("X, y and ids must have the same length")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])

    def subset(self, idx: np.ndarray) -> "Dataset":
        """Rows ``idx`` as a new Dataset (same classes, encoder)."""
        idx = np.asarray(idx)
        raw = None
        if self.raw is not None:
            raw = self.raw.iloc[idx].reset_index(drop=True) if hasattr(self.raw, "iloc") else self.raw[idx]
        return Dataset(self.X[idx], self.y[idx], list(self.classes), self.ids[idx], self.kind,
                       self.feature_names, self.source, dict(self.info), self.encoder, raw)

    def with_labels(self, y: np.ndarray) -> "Dataset":
        """A copy with new labels (same rows)."""
        return Dataset(self.X, np.asarray(y), list(self.classes), self.ids, self.kind,
                       self.feature_names, self.source, dict(self.info), self.encoder, self.raw)

    def fingerprint(self) -> str:
        """sha256 of features, labels and class names: identifies the data a run saw."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.X).tobytes())
        h.update(self.y.tobytes())
        h.update("\x00".join(self.classes).encode())
        return h.hexdigest()
