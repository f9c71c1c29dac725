"""Warm start (``fit --init RUN``): copy every weight whose name and shape match, skip the rest."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import ConfigError


def _read_state_dict(source) -> Mapping[str, torch.Tensor]:
    if isinstance(source, Mapping):
        sd = source
    else:
        path = Path(source)
        if path.is_dir():
            from ..explain._common import load_finished_run

            return load_finished_run(path)[1].state_dict()
        from ..train.checkpoint import safe_load

        sd = safe_load(path, "weights file")
    for key in ("state_dict", "model"):  # model files and checkpoints wrap the weights
        if isinstance(sd.get(key), Mapping):
            return sd[key]
    return sd


def init_from(model: nn.Module, state_dict: Mapping[str, torch.Tensor] | str | os.PathLike,
              keep: tuple[str, ...] = ("standardize.",)) -> dict:
    """Load the compatible weights of ``state_dict`` (a mapping, a .pt file or a run directory) into
    ``model``: same name and same shape only, so a new head for a different number of classes
    stays freshly initialised. Names starting with ``keep`` are never copied (by default the input
    standardisation, which the new model fits on its own training data). Returns what was loaded
    and what was skipped (with the reason).

    >>> init_from(model, "runs/pretrain")["n_loaded"]        # doctest: +SKIP
    6
    """
    source = _read_state_dict(state_dict)
    own = model.state_dict()
    loaded, skipped, take = [], [], {}
    for name, value in source.items():
        if name.startswith(keep):
            skipped.append({"name": name, "reason": "kept: this model's own"})
        elif name not in own:
            skipped.append({"name": name, "reason": "not in this model"})
        elif not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(own[name].shape):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            skipped.append({"name": name, "reason": f"shape {shape} != {tuple(own[name].shape)}"})
        else:
            take[name] = value.to(dtype=own[name].dtype)
            loaded.append(name)
    if not take:
        raise ConfigError("--init: no weight matches this model by name and shape; the architectures differ "
                          "(use the same --model and --hidden as the source run)")
    model.load_state_dict(take, strict=False)
    missing = [k for k in own if k not in take]
    return {"loaded": loaded, "skipped": skipped, "not_initialised": missing, "n_loaded": len(loaded),
            "n_skipped": len(skipped)}
