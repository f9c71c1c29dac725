"""Callback protocol of the Trainer (fastai's named events, Hugging Face's read-only state + control).

A callback reads ``state`` and steers the loop only through ``control``. Events, in order::

    before_fit
      before_epoch
        before_batch -> (forward) -> after_loss -> (backward) -> before_step -> (step) -> after_batch
      after_epoch            (state.metrics holds this epoch's row once validation ran)
    after_fit

Callbacks run sorted by ``order`` (lower first).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Control:
    """What callbacks may ask of the loop."""

    should_stop: bool = False  # stop after this epoch
    should_save: bool = False  # save a checkpoint now (after_epoch)
    skip_step: bool = False  # skip the optimizer step for this batch (e.g. non-finite gradients)


@dataclass
class State:
    """What the loop shows to callbacks. Callbacks must treat it as read-only,
    except for fields documented as writable by a specific callback (``loss`` may be replaced
    in ``after_loss`` by a loss-shaping callback such as the L1 penalty)."""

    model: Any = None
    optimizer: Any = None
    scheduler: Any = None
    config: Any = None  # the TrainConfig
    run: Any = None  # the Run directory, or None
    device: Any = None
    n_train: int = 0  # number of training samples (ledger rows)
    n_classes: int = 0
    epoch: int = 0  # 0-based, current epoch
    max_epochs: int = 0
    step: int = 0  # optimizer steps so far
    batch_in_epoch: int = 0
    batches_per_epoch: int = 0
    # current batch
    batch_idx: np.ndarray | None = None  # indices into the training set of this batch's samples
    batch_index: Any = None  # the same indices as a tensor
    xb: Any = None
    yb: Any = None
    logits: Any = None  # model output of the training forward pass (grad-tracking tensor)
    loss_per_sample: Any = None  # unreduced loss, shape (batch,)
    loss: Any = None  # the reduced loss that will be back-propagated
    grad_norm: float = float("nan")  # total gradient norm before clipping, set before before_step
    # history
    metrics: dict[str, float] = field(default_factory=dict)  # this epoch's row (after_epoch)
    history: list[dict[str, float]] = field(default_factory=list)  # all finished epochs' rows
    best_score: float = float("-inf")
    best_epoch: int = -1
    extra: dict[str, Any] = field(default_factory=dict)  # callbacks may publish results here


class Callback:
    """Base class: override the events you need. ``order`` decides who runs first."""

    order: int = 0

    def before_fit(self, state: State, control: Control) -> None: ...
    def before_epoch(self, state: State, control: Control) -> None: ...
    def before_batch(self, state: State, control: Control) -> None: ...
    def after_loss(self, state: State, control: Control) -> None: ...
    def before_step(self, state: State, control: Control) -> None: ...
    def after_batch(self, state: State, control: Control) -> None: ...
    def after_epoch(self, state: State, control: Control) -> None: ...
    def after_fit(self, state: State, control: Control) -> None: ...

    def state_dict(self) -> dict:
        """What must survive a resume (plain types / tensors only)."""
        return {}

    def load_state_dict(self, d: dict) -> None:
        pass
