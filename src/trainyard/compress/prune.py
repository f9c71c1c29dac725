"""Magnitude pruning with ``torch.nn.utils.prune``, a short fine-tune with the masks on, then permanent."""
from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
from torch import nn
from torch.nn.utils import prune as tprune

from ..errors import ConfigError
from ..explain._common import accuracy, load_finished_run, pick_split, split_indices
from .finetune import train_epochs
from .model_file import gzip_size_bytes, model_size_bytes, n_parameters, save_model

PRUNE_JSON = "prune.json"
PRUNED_PT = "pruned.pt"
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_layers(model: nn.Module, include_head: bool = True) -> list[tuple[str, nn.Module]]:
    """Linear and conv layers in module order; the last Linear (the class scores) is the head."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if not include_head:
        linears = [i for i, (_, m) in enumerate(layers) if isinstance(m, nn.Linear)]
        if linears:
            layers.pop(linears[-1])
    return layers


def zero_fraction(model: nn.Module, layers: list[tuple[str, nn.Module]] | None = None) -> dict:
    """Measured fraction of exactly-zero weights, overall and per layer (weights only, not biases)."""
    layers = prunable_layers(model) if layers is None else layers
    per_layer, zeros, total = {}, 0, 0
    for name, m in layers:
        w = m.weight.detach()
        z = int((w == 0).sum())
        per_layer[name] = z / max(w.numel(), 1)
        zeros, total = zeros + z, total + w.numel()
    return {"zero_fraction": zeros / max(total, 1), "n_weights": int(total), "n_zero": int(zeros),
            "per_layer": per_layer}


def apply_pruning(model: nn.Module, amount: float, structured: bool = False, norm: int = 1) -> list[tuple[str, nn.Module]]:
    """Attach pruning masks: global L1 over all weights, or (``structured``) L``norm`` per layer on
    output channels/units. The class-score layer is left whole when structured (pruning its units
    would delete classes). Returns the pruned layers."""
    if not 0.0 <= amount < 1.0:
        raise ConfigError(f"--amount must be in [0, 1), got {amount}")
    if structured:
        layers = prunable_layers(model, include_head=False)
        if not layers:
            raise ConfigError("structured pruning needs a hidden Linear or conv layer; this model has none")
        for _, m in layers:
            tprune.ln_structured(m, "weight", amount=amount, n=norm, dim=0)
    else:
        layers = prunable_layers(model)
        if not layers:
            raise ConfigError("this model has no Linear or conv layer to prune")
        tprune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=tprune.L1Unstructured,
                                   amount=amount)
    return layers


def make_permanent(layers: list[tuple[str, nn.Module]]) -> None:
    for _, m in layers:
        if tprune.is_pruned(m):
            tprune.remove(m, "weight")


def prune(model: nn.Module, data, splits: Any = None, *, amount: float = 0.5, structured: bool = False,
          norm: int = 1, finetune_epochs: int = 3, lr: float = 1e-3, batch_size: int = 128,
          seed: int = 0) -> tuple[nn.Module, dict]:
    """Prune a copy of ``model``, fine-tune it with the masks kept, make the pruning permanent.

    Returns ``(pruned_model, report)``: test accuracy before, right after pruning and after the
    fine-tune, the requested amount and the measured fraction of zero weights (which equals the
    amount up to rounding: per layer when structured), and sizes (dense and gzip-compressed).

    >>> pruned, report = prune(model, data, splits, amount=0.5)   # doctest: +SKIP
    >>> round(report["zero_fraction"], 3)                          # doctest: +SKIP
    0.5
    """
    n = len(data)
    tr = split_indices(splits, "train", n) if splits is not None else np.arange(n)
    va = split_indices(splits, "val", n) if splits is not None else np.zeros(0, dtype=np.int64)
    te = pick_split(splits, n, "test", "val")
    X_te, y_te = data.X[te], data.y[te]
    net = copy.deepcopy(model).cpu().eval()
    before = {"test_accuracy": accuracy(net, X_te, y_te), "size_bytes": model_size_bytes(net),
              "size_bytes_gzip": gzip_size_bytes(net), "n_params": n_parameters(net)}
    layers = apply_pruning(net, amount, structured, norm)
    acc_pruned = accuracy(net, X_te, y_te)
    history = train_epochs(net, data.X[tr], data.y[tr], epochs=finetune_epochs, lr=lr, batch_size=batch_size,
                           seed=seed, X_val=data.X[va], y_val=data.y[va])
    make_permanent(layers)
    net.eval()
    zeros = zero_fraction(net, layers)
    everything = zero_fraction(net)
    nonzero = sum(int((p != 0).sum()) for p in net.parameters())
    report = {"amount": float(amount), "structured": bool(structured), "norm": int(norm) if structured else 1,
              "finetune_epochs": int(finetune_epochs), "seed": int(seed),
              "pruned_layers": [name for name, _ in layers],
              "zero_fraction": zeros["zero_fraction"], "zero_fraction_per_layer": zeros["per_layer"],
              "zero_fraction_all_layers": everything["zero_fraction"],
              "before": before,
              "after": {"test_accuracy": accuracy(net, X_te, y_te), "size_bytes": model_size_bytes(net),
                        "size_bytes_gzip": gzip_size_bytes(net), "n_params": n_parameters(net),
                        "n_nonzero_params": int(nonzero)},
              "accuracy_without_finetune": acc_pruned, "history": history}
    report["accuracy_drop"] = before["test_accuracy"] - report["after"]["test_accuracy"]
    return net, report


def prune_run(run_dir: str | os.PathLike, *, amount: float = 0.5, **options: Any) -> dict:
    """Prune a finished run's model; writes ``pruned.pt`` and ``prune.json`` into the run."""
    run, model, data, splits = load_finished_run(run_dir)
    net, report = prune(model, data, splits, amount=amount, **options)
    save_model(net, run.file(PRUNED_PT), classes=list(data.classes), source="prune", amount=float(amount))
    report["model_file"] = PRUNED_PT
    run.write_json(PRUNE_JSON, report)
    return report
