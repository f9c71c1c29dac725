"""Model files written by compress/ (``student.pt``, ``pruned.pt``): the zoo ``spec`` plus weights.

Only plain types and tensors are stored, so the files load with ``torch.load(weights_only=True)``:
a model file from someone else cannot run code.
"""
from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import RunError
from ..run import atomic_write

FORMAT = "trainyard.model/1"


def n_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def state_dict_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def model_size_bytes(model: nn.Module) -> int:
    """Size of the serialised float weights (what a ``.pt`` file of the model costs)."""
    return len(state_dict_bytes(model))


def gzip_size_bytes(model: nn.Module) -> int:
    """Size after gzip: shows what zeroed (pruned) weights save once a file is compressed."""
    return len(gzip.compress(state_dict_bytes(model), compresslevel=6))


def save_model(model: nn.Module, path: str | os.PathLike, **meta: Any) -> Path:
    """Atomically write ``{format, spec, state_dict, meta}``; ``meta`` must be plain JSON-like values."""
    spec = getattr(model, "spec", None)
    payload = {"format": FORMAT, "spec": dict(spec) if isinstance(spec, dict) else None,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": meta}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild a model saved by :func:`save_model` (zoo models only: the spec must rebuild it)."""
    from ..models import from_spec

    from ..train.checkpoint import safe_load

    path = Path(path)
    payload = safe_load(path, "model file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RunError(f"{path}: not a Trainyard model file (expected format {FORMAT})")
    if payload.get("spec") is None:
        raise RunError(f"{path}: the model has no spec (not a zoo model), so it cannot be rebuilt")
    model = from_spec(payload["spec"])
    model.load_state_dict(payload["state_dict"])
    return model.eval()
