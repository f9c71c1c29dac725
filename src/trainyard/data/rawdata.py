"""What every reader returns before encoding, and the one place it becomes a Dataset.

Readers (tables, arrays, images, built-ins) only read and validate; encoding is a fitted
encoder's job, so the same encoder can later transform a test file or new data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dataset import Dataset
from .labels import encode_labels


@dataclass
class RawData:
    """Rows read from a source, not yet encoded.

    Attributes:
        inputs: what the encoder takes (a DataFrame of feature columns, an image array, image paths).
        labels: label strings, "" where missing; ``missing`` marks those.
        ids: row identifiers (strings).
        kind: tabular, image or text.
        source: the path or name, for messages and ``Dataset.source``.
        label_name: what the labels are called in messages (``"target 'y'"``, ``"y array"``).
        classes: a fixed class order (an npz ``classes`` array, sklearn's names), else None.
        raw: rows for display (a DataFrame), or None.
        notes: reader notes copied into ``Dataset.info``.
    """

    inputs: Any
    labels: np.ndarray
    missing: np.ndarray
    ids: np.ndarray
    kind: str
    source: str
    label_name: str = "labels"
    classes: list[str] | None = None
    raw: Any = None
    notes: dict[str, Any] = field(default_factory=dict)


def encode(data: RawData, encoder: Any, classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """Transform ``data`` with a fitted ``encoder``: ``(X, y, classes, info)``.

    ``classes`` fixes the class order (a training set's); labels outside it raise DataError.
    """
    y, names = encode_labels(data.labels, data.missing, f"{data.source}: {data.label_name}",
                             classes if classes is not None else data.classes)
    info: dict[str, Any] = {}
    X = encoder.transform(data.inputs, info=info, source=data.source)
    return X, y, names, info


def build_dataset(data: RawData, encoder: Any) -> Dataset:
    """Fit ``encoder`` on ``data`` and return the encoded Dataset (info: counts from the encoder + notes)."""
    # Labels first: a bad target column is the likelier mistake and the cheaper check.
    y, names = encode_labels(data.labels, data.missing, f"{data.source}: {data.label_name}", data.classes)
    encoder.fit(data.inputs, source=data.source)
    info: dict[str, Any] = {"n_rows": int(len(y))}
    X = encoder.transform(data.inputs, info=info, source=data.source)
    info.update(getattr(encoder, "fit_notes_", {}) or {})
    dropped = getattr(encoder, "dropped_", None)
    if dropped is not None:
        info["dropped"] = {**data.notes.pop("dropped", {}), **dropped}
    info.update(data.notes)
    info["class_counts"] = {names[k]: int(c) for k, c in enumerate(np.bincount(y, minlength=len(names)))}
    feature_names = list(encoder.feature_names_) if data.kind != "image" and hasattr(encoder, "feature_names_") else None
    return Dataset(X, y, names, data.ids, data.kind, feature_names, data.source, info, encoder, data.raw)
