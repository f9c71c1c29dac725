"""Per-sample attributions (integrated gradients via captum) and the "why flagged" evidence."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ._common import device_of, eval_mode, predict_proba, require


def integrated_gradients(model: nn.Module, X: np.ndarray, target: np.ndarray | int | None = None, *,
                         baseline: np.ndarray | float | None = None, n_steps: int = 32,
                         batch_size: int = 32) -> np.ndarray:
    """Integrated gradients (Sundararajan et al. 2017) of the ``target`` logit, same shape as ``X``.

    ``target`` defaults to the predicted class. ``baseline`` is the reference input: zeros (a
    black image) by default; for tabular data pass the training mean. The attributions of a row
    sum to logit(x) - logit(baseline) (up to the Riemann error of ``n_steps``).
    """
    captum_attr = require("captum.attr")
    X = np.asarray(X, dtype=np.float32)
    if len(X) == 0:
        return np.zeros_like(X)
    dev = device_of(model)
    if target is None:
        target = predict_proba(model, X).argmax(1)
    tgt = np.array(np.broadcast_to(np.asarray(target, dtype=np.int64), (len(X),)))
    base = np.zeros(X.shape[1:], np.float32) if baseline is None else np.asarray(baseline, np.float32)
    base = np.array(np.broadcast_to(base, X.shape))
    ig = captum_attr.IntegratedGradients(model)
    out = []
    with eval_mode(model):
        for i in range(0, len(X), batch_size):
            xb = torch.as_tensor(X[i:i + batch_size], device=dev)
            bb = torch.as_tensor(base[i:i + batch_size], device=dev)
            tb = torch.as_tensor(tgt[i:i + batch_size], device=dev)
            out.append(ig.attribute(xb, baselines=bb, target=tb, n_steps=n_steps).detach().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def attribution_heatmap(attr: np.ndarray) -> np.ndarray:
    """(N, C, H, W) image attributions -> (N, H, W) by summing channels (sign kept)."""
    return attr.sum(axis=1) if attr.ndim == 4 else attr


def why_flagged(model: nn.Module, X: np.ndarray, given: Sequence[int], suggested: Sequence[int], *,
                ids: Sequence[str] | None = None, classes: Sequence[str] | None = None,
                feature_names: Sequence[str] | None = None, top: int = 5,
                baseline: np.ndarray | float | None = None, n_steps: int = 32) -> list[dict]:
    """For each flagged row: which features drove the model toward the suggested label.

    The evidence is IG toward the suggested class minus IG toward the given class (= IG of the
    logit difference); positive values push away from the given label. Tabular rows list the
    ``top`` features with their values; image rows list the ``top`` pixels and a heat map (H, W).
    """
    X = np.asarray(X, dtype=np.float32)
    given = np.asarray(given, dtype=np.int64)
    suggested = np.asarray(suggested, dtype=np.int64)
    if not (len(X) == len(given) == len(suggested)):
        raise ConfigError("why_flagged: X, given and suggested must have the same length")
    if len(X) == 0:
        return []
    diff = (integrated_gradients(model, X, suggested, baseline=baseline, n_steps=n_steps)
            - integrated_gradients(model, X, given, baseline=baseline, n_steps=n_steps))
    probs = predict_proba(model, X)
    ids = [str(i) for i in (ids if ids is not None else range(len(X)))]
    name = (lambda k: str(classes[k])) if classes is not None else (lambda k: int(k))
    out = []
    for i in range(len(X)):
        row = {"id": ids[i], "given_label": name(given[i]), "suggested_label": name(suggested[i]),
               "p_given": float(probs[i, given[i]]), "p_suggested": float(probs[i, suggested[i]]),
               "evidence_total": float(diff[i].sum())}
        if given[i] == suggested[i]:
            row["note"] = "suggested label equals the given label: no evidence to show"
        if X.ndim == 4:
            heat = attribution_heatmap(diff[i:i + 1])[0]
            w = heat.shape[1]
            best = np.argsort(-heat.ravel(), kind="stable")[:top]
            row["top_features"] = [{"feature": f"pixel ({int(j // w)}, {int(j % w)})", "row": int(j // w),
                                    "col": int(j % w), "value": float(X[i, :, j // w, j % w].mean()),
                                    "attribution": float(heat.ravel()[j])} for j in best]
            row["heatmap"] = heat.tolist()
        else:
            flat = diff[i].reshape(-1)
            names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(len(flat))]
            best = np.argsort(-flat, kind="stable")[:top]
            row["top_features"] = [{"feature": names[j], "value": float(X[i].reshape(-1)[j]),
                                    "attribution": float(flat[j])} for j in best]
            if len(flat) <= 256:  # wide text features would bloat explain.json; top_features suffice
                row["attribution"] = flat.tolist()
        out.append(row)
    return out
