"""Student models for distillation, named like ``mlp:64`` (an MLP with one hidden layer of 64)."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ..errors import ConfigError
from ..models import build_model


def parse_student(name: str) -> tuple[str, tuple[int, ...]]:
    """``"mlp:128,64"`` -> ("mlp", (128, 64)); ``"cnn:8,16"`` -> ("cnn", (8, 16)); ``"linear"``."""
    kind, _, widths = str(name).strip().partition(":")
    kind = kind.strip().lower()
    if kind not in ("mlp", "cnn", "linear"):
        raise ConfigError(f"--student {name!r}: expected mlp:W[,W...], cnn:C[,C...] or linear")
    try:
        sizes = tuple(int(w) for w in widths.split(",") if w.strip())
    except ValueError:
        raise ConfigError(f"--student {name!r}: widths must be integers, e.g. mlp:64 or mlp:128,64") from None
    if any(s <= 0 for s in sizes) or (kind == "cnn" and not sizes):
        raise ConfigError(f"--student {name!r}: give positive widths, e.g. cnn:8,16")
    return kind, sizes


def build_student(name: str, input_shape: Sequence[int], n_classes: int, dropout: float = 0.0) -> nn.Module:
    """Build a zoo model from a student name (untrained, input standardisation not fitted yet)."""
    kind, sizes = parse_student(name)
    if kind == "mlp":
        return build_model("mlp", input_shape, n_classes, hidden=sizes, dropout=dropout)
    if kind == "cnn":
        return build_model("cnn", input_shape, n_classes, channels=sizes, dropout=dropout)
    return build_model("linear", input_shape, n_classes)
