"""Loss penalties as callbacks."""
from __future__ import annotations

from .callback import Callback, Control, State


class L1Penalty(Callback):
    """Adds ``strength * sum |w|`` over weight matrices (not biases or norms) to the loss."""

    order = 5

    def __init__(self, strength: float):
        self.strength = float(strength)

    def after_loss(self, state: State, control: Control) -> None:
        penalty = sum(p.abs().sum() for n, p in state.model.named_parameters() if p.ndim > 1)
        state.loss = state.loss + self.strength * penalty
