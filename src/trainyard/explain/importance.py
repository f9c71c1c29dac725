"""Global feature importance: permutation importance (any model) and SHAP values (tabular models).

Both return plain dicts whose arrays a report can render directly: one number per feature, and
for images a heat map (H, W) built from importance per image patch.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ._common import device_of, eval_mode, predict_logits, require


def _image_patches(shape: tuple[int, ...], max_groups: int) -> tuple[int, list[tuple[slice, slice]], tuple[int, int]]:
    """Square patches covering an (C, H, W) image, at most ``max_groups`` of them."""
    _, h, w = shape
    side = max(1, int(math.isqrt(max_groups)))
    p = max(1, math.ceil(max(h, w) / side))
    rows, cols = range(0, h, p), range(0, w, p)
    return p, [(slice(r, r + p), slice(c, c + p)) for r in rows for c in cols], (len(rows), len(cols))


def _saliency(model: nn.Module, X: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Mean |gradient x input| per column: a cheap ranking used to pick columns worth permuting."""
    dev = device_of(model)
    total = np.zeros(X.shape[1], dtype=np.float64)
    with eval_mode(model):
        for i in range(0, len(X), batch_size):
            xb = torch.as_tensor(X[i:i + batch_size], device=dev).requires_grad_(True)
            logits = model(xb)
            logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
            total += (xb.grad * xb).abs().sum(0).detach().cpu().numpy()
    return total / max(len(X), 1)


def permutation_importance(model: nn.Module, X: np.ndarray, y: np.ndarray, *, n_repeats: int = 5,
                           seed: int = 0, feature_names: Sequence[str] | None = None,
                           max_groups: int = 64, max_features: int = 256,
                           batch_size: int = 1024) -> dict:
    """Drop in accuracy when one feature (tabular) or one image patch is shuffled across rows.

    Run it on the validation split. Images are cut into at most ``max_groups`` square patches
    (all channels together); the result then has a ``heatmap`` (H, W). Tabular data with more than
    ``max_features`` columns permutes only the ``max_features`` columns with the largest mean
    |gradient x input| (listed in ``evaluated``); the rest get importance 0.

    >>> r = permutation_importance(model, X_val, y_val)          # doctest: +SKIP
    >>> r["ranking"][0]                                           # doctest: +SKIP
    'income'
    """
    X = np.array(X, dtype=np.float32, copy=True)  # permuted in place, restored after each group
    y = np.asarray(y, dtype=np.int64)
    if len(y) < 2:
        raise ConfigError("permutation importance needs at least 2 validation rows")
    rng = np.random.default_rng(seed)

    def score() -> float:
        return float((predict_logits(model, X, batch_size).argmax(1) == y).mean())

    baseline = score()
    out: dict = {"method": "permutation", "metric": "accuracy", "n_repeats": int(n_repeats),
                 "n_samples": int(len(y)), "baseline_score": baseline}
    if X.ndim == 4:
        p, patches, grid = _image_patches(X.shape[1:], max_groups)
        names = [f"rows {r.start}-{min(r.stop, X.shape[2]) - 1}, cols {c.start}-{min(c.stop, X.shape[3]) - 1}"
                 for r, c in patches]
        groups = [(slice(None), slice(None), r, c) for r, c in patches]
        evaluated = list(range(len(groups)))
    elif X.ndim == 2:
        d = X.shape[1]
        names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(d)]
        if len(names) != d:
            raise ConfigError(f"{len(names)} feature names for {d} columns")
        groups = [(slice(None), j) for j in range(d)]
        evaluated = list(range(d))
        if d > max_features:
            evaluated = sorted(np.argsort(-_saliency(model, X))[:max_features].tolist())
            out["evaluated"] = [names[j] for j in evaluated]
    else:
        raise ConfigError(f"permutation importance needs (N, D) or (N, C, H, W) inputs, got shape {X.shape}")

    drops = np.zeros((len(groups), n_repeats), dtype=np.float64)
    for g in evaluated:
        sel = groups[g]
        original = X[sel].copy()
        for r in range(n_repeats):
            X[sel] = original[rng.permutation(len(y))]
            drops[g, r] = baseline - score()
        X[sel] = original
    mean, std = drops.mean(1), drops.std(1)
    out.update(features=names, importance_mean=mean.tolist(), importance_std=std.tolist(),
               ranking=[names[j] for j in np.argsort(-mean, kind="stable")])
    if X.ndim == 4:
        h, w = X.shape[2:]
        heat = np.kron(mean.reshape(grid), np.ones((p, p)))[:h, :w]
        out.update(patch=p, grid=list(grid), heatmap=heat.tolist())
    return out


def _as_nd_k(values, n: int, d: int) -> np.ndarray:
    """SHAP output as (n, d, K): shap returns a list of K arrays or an (n, d, K) array by version."""
    if isinstance(values, list):
        return np.stack([np.asarray(v).reshape(n, d) for v in values], axis=-1)
    v = np.asarray(values)
    return v.reshape(n, d, -1)


def shap_importance(model: nn.Module, X_background: np.ndarray, X_explain: np.ndarray, *,
                    feature_names: Sequence[str] | None = None, max_background: int = 100,
                    max_explain: int = 200, max_values_features: int = 100, seed: int = 0) -> dict:
    """SHAP values of a tabular model (``shap.DeepExplainer``, ``GradientExplainer`` as fallback).

    ``X_background`` is a sample of training rows (the reference), ``X_explain`` the rows to explain
    (the validation split). Returns the global importance ``mean_abs`` (mean |SHAP| over rows and
    classes, one per feature) and ``values``: per row, the SHAP values toward the predicted class
    (rows x features, the ``max_values_features`` most important features only).
    """
    shap = require("shap")
    Xb = np.asarray(X_background, dtype=np.float32)
    Xe = np.asarray(X_explain, dtype=np.float32)
    if Xe.ndim != 2:
        raise ConfigError("SHAP values are computed for tabular data only; use integrated gradients "
                          f"for images (inputs of shape {Xe.shape})")
    rng = np.random.default_rng(seed)
    if len(Xb) > max_background:
        Xb = Xb[np.sort(rng.choice(len(Xb), max_background, replace=False))]
    rows = np.arange(len(Xe))
    if len(Xe) > max_explain:
        rows = np.sort(rng.choice(len(Xe), max_explain, replace=False))
        Xe = Xe[rows]
    n, d = Xe.shape
    names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(d)]
    net = copy.deepcopy(model).eval()  # explainers attach hooks; keep the caller's model untouched
    dev = device_of(net)
    bg, ex = torch.as_tensor(Xb, device=dev), torch.as_tensor(Xe, device=dev)
    used, values, err = None, None, None
    for kind in ("deep", "gradient"):
        try:
            with warnings.catch_warnings():
                # DeepExplainer warns about modules it passes through as linear maps (input scaling)
                # and about numpy 2 deprecations inside shap: nothing the user can act on
                warnings.simplefilter("ignore")
                explainer = (shap.DeepExplainer if kind == "deep" else shap.GradientExplainer)(net, bg)
                values = _as_nd_k(explainer.shap_values(ex), n, d)
            used = kind
            break
        except Exception as e:  # DeepExplainer refuses some layers and can fail its additivity check
            err = e
    if values is None:
        raise ConfigError(f"SHAP failed on this model: {err}")
    pred = predict_logits(model, Xe).argmax(1)
    toward_pred = values[np.arange(n), :, pred]
    mean_abs = np.abs(values).mean(axis=(0, 2))
    order = np.argsort(-mean_abs, kind="stable")
    keep = np.sort(order[:max_values_features])
    return {"method": "shap", "explainer": used, "n_background": int(len(Xb)), "n_samples": int(n),
            "rows": rows.tolist(), "features": names, "mean_abs": mean_abs.tolist(),
            "ranking": [names[j] for j in order], "values_features": [names[j] for j in keep],
            "values": toward_pred[:, keep].tolist(), "predicted": pred.tolist()}
