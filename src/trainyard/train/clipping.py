"""Gradient clipping callbacks: by global norm, and adaptive gradient clipping (AGC).

AGC (Brock et al. 2021, "High-Performance Large-Scale Image Recognition Without Normalization")
clips each unit's gradient so that ||G_i|| / max(||W_i||, eps) <= lambda, unit-wise (rows of a
weight matrix, output channels of a conv kernel).
"""
from __future__ import annotations

import torch

from .callback import Callback, Control, State


class ClipGradNorm(Callback):
    """Clip the global gradient norm to ``max_norm`` before each optimizer step."""

    order = 20

    def __init__(self, max_norm: float):
        self.max_norm = float(max_norm)

    def before_step(self, state: State, control: Control) -> None:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), self.max_norm)


def _unit_norm(t: torch.Tensor) -> torch.Tensor:
    """Norm per output unit: over all dims but the first (a bias/vector is one norm per element)."""
    if t.ndim <= 1:
        return t.abs()
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


@torch.no_grad()
def adaptive_clip_(parameters, clipping: float = 0.01, eps: float = 1e-3) -> int:
    """Apply AGC in place; returns the number of units that were clipped."""
    clipped = 0
    for p in parameters:
        if p.grad is None:
            continue
        w_norm = _unit_norm(p.detach()).clamp_min(eps)
        g_norm = _unit_norm(p.grad.detach())
        max_norm = w_norm * clipping
        too_big = g_norm > max_norm
        if too_big.any():
            scale = torch.where(too_big, max_norm / g_norm.clamp_min(1e-6), torch.ones_like(g_norm))
            p.grad.mul_(scale)
            clipped += int(too_big.sum())
    return clipped


class AdaptiveGradClip(Callback):
    """Unit-wise adaptive gradient clipping (AGC). The final classifier layer is exempt, as in the paper."""

    order = 20

    def __init__(self, clipping: float = 0.01, eps: float = 1e-3, skip_head: bool = True):
        self.clipping, self.eps, self.skip_head = float(clipping), eps, skip_head
        self.clipped_units = 0

    def before_step(self, state: State, control: Control) -> None:
        head = getattr(state.model, "head", None)
        skip = {id(p) for p in head.parameters()} if (self.skip_head and head is not None) else set()
        params = [p for p in state.model.parameters() if id(p) not in skip]
        self.clipped_units += adaptive_clip_(params, self.clipping, self.eps)


def clip_callback(spec: str | None) -> Callback | None:
    """``norm:1.0`` -> ClipGradNorm(1.0); ``agc:0.01`` -> AdaptiveGradClip(0.01); None -> None."""
    if not spec:
        return None
    kind, _, value = spec.partition(":")
    return ClipGradNorm(float(value)) if kind == "norm" else AdaptiveGradClip(float(value))
