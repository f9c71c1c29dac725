"""Robustness: accuracy under FGSM, PGD and Gaussian noise per epsilon, and the rows that flip first."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._common import device_of, eval_mode, jsonable_ids, load_finished_run, pick_split, predict_logits

ATTACKS = ("fgsm", "pgd", "noise")
ROBUST_JSON = "robust.json"


def _clamp(x: torch.Tensor, clip: tuple[float, float] | None) -> torch.Tensor:
    return x if clip is None else x.clamp(clip[0], clip[1])


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    return torch.autograd.grad(loss, x)[0]


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
         clip: tuple[float, float] | None = None) -> torch.Tensor:
    """Fast gradient sign attack (Goodfellow et al. 2015): one step of size ``eps`` up the loss."""
    if eps == 0:
        return x.detach().clone()
    return _clamp(x + eps * _input_grad(model, x, y).sign(), clip).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
        step_size: float | None = None, clip: tuple[float, float] | None = None,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """L-inf projected gradient descent (Madry et al. 2018) with a random start in the eps-ball."""
    if eps == 0:
        return x.detach().clone()
    step_size = 2.5 * eps / steps if step_size is None else step_size
    noise = torch.rand(x.shape, generator=generator).to(x.device) * 2 - 1
    adv = _clamp(x + eps * noise, clip)
    for _ in range(steps):
        adv = adv + step_size * _input_grad(model, adv, y).sign()
        adv = _clamp(torch.max(torch.min(adv, x + eps), x - eps), clip).detach()
    return adv


def gaussian_noise(x: torch.Tensor, eps: float, clip: tuple[float, float] | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """x + N(0, eps^2) noise, clipped to the data range."""
    return _clamp(x + eps * torch.randn(x.shape, generator=generator).to(x.device), clip)


def _resolve_clip(X: np.ndarray, clip) -> tuple[float, float] | None:
    if clip == "auto":
        # images live in a bounded range (0..1); standardised tabular features have none
        return (float(X.min()), float(X.max())) if X.ndim == 4 and len(X) else None
    if clip is None:
        return None
    lo, hi = clip
    return float(lo), float(hi)


def robustness(model: nn.Module, X: np.ndarray, y: np.ndarray, *, eps: Sequence[float] = (0.01, 0.03, 0.1),
               attacks: Sequence[str] = ATTACKS, clip: str | tuple[float, float] | None = "auto",
               pgd_steps: int = 10, ids: Sequence[str] | None = None, classes: Sequence[str] | None = None,
               top: int = 20, seed: int = 0, batch_size: int = 256) -> dict:
    """Accuracy under each attack at each epsilon, and the rows whose prediction flips first.

    ``eps`` is in input units (images in 0..1: 0.03 is about 8/255). ``clip="auto"`` keeps images
    inside the data range and leaves tabular inputs unclipped. A row's *first flip* is the lowest
    epsilon at which any attack changes its prediction from the clean one; ties are broken by the
    clean margin (top-1 minus top-2 probability), smallest first.

    >>> r = robustness(model, X_test, y_test, eps=(0, 0.03, 0.1))    # doctest: +SKIP
    >>> r["accuracy"]["fgsm"]                                         # doctest: +SKIP
    [0.97, 0.81, 0.32]
    """
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ConfigError(f"unknown attack(s) {unknown}; choose from {', '.join(ATTACKS)}")
    eps_list = sorted(float(e) for e in eps)
    if any(e < 0 for e in eps_list):
        raise ConfigError(f"epsilons must be >= 0, got {eps_list}")
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    clip_range = _resolve_clip(X, clip)
    dev = device_of(model)
    logits = predict_logits(model, X)
    clean_pred = logits.argmax(1)
    sorted_p = np.sort(torch.softmax(torch.as_tensor(logits), 1).numpy(), axis=1)
    margin = sorted_p[:, -1] - (sorted_p[:, -2] if sorted_p.shape[1] > 1 else 0.0)
    gen = torch.Generator().manual_seed(seed)
    acc: dict[str, list[float]] = {}
    flipped: dict[str, list[float]] = {}
    first_eps = np.full(n, np.inf)
    first_attack = np.full(n, "", dtype=object)
    first_pred = clean_pred.copy()
    with eval_mode(model):
        for attack in attacks:
            acc[attack], flipped[attack] = [], []
            for e in eps_list:
                preds = np.empty(n, dtype=np.int64)
                for i in range(0, n, batch_size):
                    xb = torch.as_tensor(X[i:i + batch_size], device=dev)
                    yb = torch.as_tensor(y[i:i + batch_size], device=dev)
                    if attack == "fgsm":
                        adv = fgsm(model, xb, yb, e, clip_range)
                    elif attack == "pgd":
                        adv = pgd(model, xb, yb, e, pgd_steps, clip=clip_range, generator=gen)
                    else:
                        adv = gaussian_noise(xb, e, clip_range, generator=gen)
                    with torch.no_grad():
                        preds[i:i + batch_size] = model(adv).argmax(1).cpu().numpy()
                acc[attack].append(float((preds == y).mean()) if n else float("nan"))
                changed = preds != clean_pred
                flipped[attack].append(float(changed.mean()) if n else float("nan"))
                better = changed & (e < first_eps)
                first_eps[better], first_attack[better], first_pred[better] = e, attack, preds[better]
    ids = jsonable_ids(ids) if ids is not None else [str(i) for i in range(n)]
    name = (lambda k: str(classes[k])) if classes is not None else (lambda k: int(k))
    order = np.lexsort((margin, first_eps))
    order = [i for i in order if np.isfinite(first_eps[i])][:top]
    hist = {str(e): int((first_eps == e).sum()) for e in eps_list}
    hist["never"] = int(np.isinf(first_eps).sum())
    return {"n_samples": int(n), "clean_accuracy": float((clean_pred == y).mean()) if n else float("nan"),
            "eps": eps_list, "attacks": list(attacks), "clip": list(clip_range) if clip_range else None,
            "pgd_steps": int(pgd_steps), "seed": int(seed), "accuracy": acc, "flipped_fraction": flipped,
            "first_flip_histogram": hist,
            "first_flips": [{"id": ids[i], "index": int(i), "eps": float(first_eps[i]),
                             "attack": str(first_attack[i]), "label": name(y[i]),
                             "clean_pred": name(clean_pred[i]), "adv_pred": name(first_pred[i]),
                             "clean_margin": float(margin[i])} for i in order]}


def robust_run(run_dir: str | os.PathLike, *, eps: Sequence[float] = (0.01, 0.03, 0.1),
               attacks: Sequence[str] = ATTACKS, split: str = "test", max_samples: int = 2000,
               pgd_steps: int = 10, top: int = 20, seed: int = 0) -> dict:
    """Robustness of a finished run's model on its ``split`` (test, falling back to val); writes robust.json."""
    run, model, data, splits = load_finished_run(run_dir)
    idx = pick_split(splits, len(data), split, "val", "test")
    if len(idx) > max_samples:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_samples, replace=False))
    result = robustness(model, data.X[idx], data.y[idx], eps=eps, attacks=attacks, pgd_steps=pgd_steps,
                        ids=data.ids[idx], classes=data.classes, top=top, seed=seed)
    result["split"] = split
    run.write_json(ROBUST_JSON, result)
    return result
