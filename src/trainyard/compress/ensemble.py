"""Ensembles of trained models: majority vote, averaged probabilities, or stacking."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
from torch import nn

from ..errors import ConfigError, RunError
from ..explain._common import load_finished_run, pick_split, predict_proba, split_indices
from ..run import write_json

ENSEMBLE_JSON = "ensemble.json"
METHODS = ("vote", "average", "stack")


def ensemble_probs(probs: Sequence[np.ndarray], method: str = "average", *,
                   val_probs: Sequence[np.ndarray] | None = None, y_val: np.ndarray | None = None,
                   seed: int = 0) -> np.ndarray:
    """Combine per-model probabilities (each (N, K)) into ensemble probabilities (N, K).

    ``vote``: fraction of models voting for each class (ties go to the higher mean probability);
    ``average``: mean probability; ``stack``: a logistic regression fit on the models'
    validation-split probabilities (``val_probs``, ``y_val``) applied to ``probs``.
    """
    if method not in METHODS:
        raise ConfigError(f"ensemble method must be one of {', '.join(METHODS)}, got {method!r}")
    P = np.stack([np.asarray(p, dtype=np.float64) for p in probs])  # (M, N, K)
    if P.ndim != 3:
        raise ConfigError("every model must give (N, K) probabilities for the same rows and classes")
    m, n, k = P.shape
    mean = P.mean(0)
    if method == "average":
        return mean.astype(np.float32)
    if method == "vote":
        votes = np.zeros((n, k))
        np.add.at(votes, (np.repeat(np.arange(n), m), P.argmax(2).T.ravel()), 1.0)
        votes /= m
        return (votes + 1e-6 * mean).astype(np.float32)  # tie-break by mean probability
    if val_probs is None or y_val is None or len(y_val) == 0:
        raise ConfigError("stacking needs the models' validation-split probabilities and labels")
    from sklearn.linear_model import LogisticRegression

    V = np.concatenate([np.asarray(p, dtype=np.float64) for p in val_probs], axis=1)
    y_val = np.asarray(y_val)
    if len(np.unique(y_val)) < 2:
        raise ConfigError("stacking needs at least two classes in the validation split")
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(V, y_val)
    out = np.zeros((n, k))
    out[:, clf.classes_] = clf.predict_proba(np.concatenate(list(P), axis=1))
    return out.astype(np.float32)


def ensemble(models: Sequence[nn.Module], data, splits: Any = None, *, method: str = "average",
             names: Sequence[str] | None = None, seed: int = 0) -> dict:
    """Test accuracy of each model and of their ensemble (stacking fits on the validation split)."""
    if len(models) < 2:
        raise ConfigError("an ensemble needs at least two models")
    n = len(data)
    te = pick_split(splits, n, "test", "val")
    va = split_indices(splits, "val", n) if splits is not None else np.zeros(0, dtype=np.int64)
    y_te = data.y[te]
    test_probs = [predict_proba(m, data.X[te]) for m in models]
    val_probs = [predict_proba(m, data.X[va]) for m in models] if method == "stack" else None
    P = ensemble_probs(test_probs, method, val_probs=val_probs, y_val=data.y[va], seed=seed)
    names = list(names) if names is not None else [f"model {i}" for i in range(len(models))]
    members = [{"name": nm, "test_accuracy": float((p.argmax(1) == y_te).mean())} for nm, p in zip(names, test_probs)]
    acc = float((P.argmax(1) == y_te).mean()) if len(te) else float("nan")
    best = max(mm["test_accuracy"] for mm in members)
    return {"method": method, "n_models": len(models), "n_test": int(len(te)), "members": members,
            "test_accuracy": acc, "gain_over_best_member": acc - best}


def common_heldout(splits_list: Sequence[Any], n: int) -> SimpleNamespace:
    """Rows no member trained on: the test rows of every member, and the remaining unseen rows as
    the validation split (stacking fits there). Members trained with different seeds split the
    data differently; evaluating on a row some member trained on would flatter the ensemble."""
    train_any = np.zeros(n, dtype=bool)
    test_all = np.ones(n, dtype=bool)
    for s in splits_list:
        train_any[split_indices(s, "train", n)] = True
        in_test = np.zeros(n, dtype=bool)
        in_test[pick_split(s, n, "test", "val")] = True
        test_all &= in_test
    test_all &= ~train_any
    val = ~train_any & ~test_all
    return SimpleNamespace(train=np.flatnonzero(train_any), val=np.flatnonzero(val), test=np.flatnonzero(test_all))


def ensemble_runs(run_dirs: Sequence[str | os.PathLike], *, method: str = "average",
                  out: str | os.PathLike | None = None, seed: int = 0) -> dict:
    """Ensemble finished runs trained on the same data; evaluated on the rows that no member trained
    on (see :func:`common_heldout`). Writes ensemble.json into ``out`` (a folder or a .json path;
    default: the first run directory)."""
    if len(run_dirs) < 2:
        raise ConfigError("ensemble needs at least two run directories")
    loaded = [load_finished_run(r) for r in run_dirs]
    data = loaded[0][2]
    ref = data.fingerprint()
    for (_, _, d, _), path in zip(loaded[1:], run_dirs[1:]):
        if d.fingerprint() != ref:
            raise RunError(f"{path}: trained on different data than {run_dirs[0]}; ensembles need the same data")
    splits = common_heldout([s for _, _, _, s in loaded], len(data))
    if len(splits.test) == 0:
        raise RunError(f"{', '.join(map(str, run_dirs))}: no test row is held out from every run "
                       "(their splits differ); train the members with the same split")
    result = ensemble([m for _, m, _, _ in loaded], data, splits, method=method,
                      names=[str(r) for r in run_dirs], seed=seed)
    result["evaluated_on"] = f"{len(splits.test)} test rows held out from every member"
    target = Path(out) if out is not None else loaded[0][0].path
    write_json(target if target.suffix == ".json" else target / ENSEMBLE_JSON, result)
    return result
