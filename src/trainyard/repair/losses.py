"""A training loss in place of the trainer's cross-entropy, with the trainer's row and class weights.

Subclasses give the per-row loss of logits against labels; the callback puts it in the batch's
``loss`` and ``loss_per_sample`` (what the ledger records) and publishes it as
``state.extra["target_loss"]``, so that mixup (``augment.Mixup``, a later callback) mixes its second
term through the same loss.
"""
from __future__ import annotations

import torch

from ..train.callback import Callback, Control, State


class ReplacedLoss(Callback):
    """Base class: ``per_row(logits, labels)`` replaces ``cross_entropy(logits, labels, reduction="none")``."""

    order = 4  # before Mixup (5), whose after_loss reads ``target_loss``
    key = "ReplacedLoss"  # what the repair loop compares to tell two rounds' trainings apart

    def per_row(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def after_loss(self, state: State, control: Control) -> None:
        lps = self.per_row(state.logits, state.yb)
        class_w = state.extra.get("class_weight")
        if class_w is not None:
            lps = lps * class_w[state.yb]
        w = state.extra.get("batch_weight")
        if w is not None:
            lps = lps * w
        state.loss_per_sample = lps
        state.loss = lps.mean() / state.config.accumulate
        state.extra["target_loss"] = lambda logits, y: self.per_row(logits, y).mean()
