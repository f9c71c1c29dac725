"""Helpers shared by explain/ and compress/: lazy optional imports, eval-mode logits, run loading."""
from __future__ import annotations

import contextlib
import importlib
from types import ModuleType
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, RunError, TrainyardError

EXTRA_OF = {"shap": "explain", "captum": "explain", "onnx": "export", "onnxruntime": "export",
            "onnxscript": "export"}


def require(module: str) -> ModuleType:
    """Import an optional dependency or raise a TrainyardError that names the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRA_OF.get(module.split(".")[0], "all")
        raise TrainyardError(f"this needs the optional package {module.split('.')[0]!r}: "
                             f"pip install 'trainyard[{extra}]'") from None


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block (dropout off, BatchNorm frozen), the caller's mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def predict_logits(model: nn.Module, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Eval-mode logits as float32 numpy, in batches."""
    dev = device_of(model)
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
    out = []
    with eval_mode(model):
        for i in range(0, len(Xt), batch_size):
            out.append(model(Xt[i:i + batch_size].to(dev)).float().cpu().numpy())
    if not out:
        return np.zeros((0, n_classes_of(model)), np.float32)
    return np.concatenate(out)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def predict_proba(model: nn.Module, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    return softmax(predict_logits(model, X, batch_size))


def accuracy(model: nn.Module, X: np.ndarray, y: np.ndarray) -> float:
    if len(y) == 0:
        return float("nan")
    return float((predict_logits(model, X).argmax(1) == np.asarray(y)).mean())


def n_classes_of(model: nn.Module) -> int:
    spec = getattr(model, "spec", None)
    if isinstance(spec, dict) and "n_classes" in spec:
        return int(spec["n_classes"])
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if last:
        return int(last[-1].out_features)
    raise ConfigError("cannot tell the number of classes of this model; give it a .spec dict with n_classes")


def split_indices(splits: Any, name: str, n: int) -> np.ndarray:
    """Index array of split ``name`` ('train', 'val', 'test'); all rows when there are no splits."""
    if splits is None:
        return np.arange(n)
    idx = splits.get(name) if isinstance(splits, dict) else getattr(splits, name, None)
    if idx is None:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(idx, dtype=np.int64)


def pick_split(splits: Any, n: int, *names: str) -> np.ndarray:
    """The first non-empty split among ``names`` (e.g. 'val', then 'test'), else all rows."""
    for name in names:
        idx = split_indices(splits, name, n)
        if len(idx):
            return idx
    return np.arange(n)


def load_finished_run(run_dir: Any) -> tuple:
    """``trainyard.load_run(run_dir)`` -> (Run, model, Dataset, splits), with a clear error if missing."""
    try:
        from .. import load_run  # type: ignore[attr-defined]
    except ImportError:
        raise RunError(f"{run_dir}: cannot read runs back (trainyard.load_run is not available)") from None
    return load_run(run_dir)


def jsonable_ids(ids: np.ndarray) -> list[str]:
    return [str(i) for i in np.asarray(ids).tolist()]
