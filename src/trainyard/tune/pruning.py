"""Pruning: a Trainer callback that reports each epoch's validation score to an Optuna trial.

It never raises inside the training loop: on a prune decision it asks the loop to stop
(``control.should_stop``), so ``fit`` closes its run directory normally; the objective then
marks the run ``pruned`` and raises ``optuna.TrialPruned``.
"""
from __future__ import annotations

import math
from typing import Any

from ..train.callback import Callback, Control, State


class PruningCallback(Callback):
    """Report ``monitor`` (default ``val_acc``) to ``trial`` after every epoch; stop when pruned.

    >>> cb = PruningCallback(trial)                 # doctest: +SKIP
    >>> fit(data, callbacks=[cb]); cb.pruned_at     # doctest: +SKIP
    """

    order = 60  # after early stopping (50), before checkpoints (90)

    def __init__(self, trial: Any, monitor: str = "val_acc"):
        self.trial, self.monitor = trial, monitor
        self.pruned_at: int | None = None

    def after_epoch(self, state: State, control: Control) -> None:
        value = state.metrics.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), step=int(state.epoch))
        if self.trial.should_prune():
            self.pruned_at = int(state.epoch)
            state.extra["pruned_at"] = self.pruned_at
            control.should_stop = True


def best_score(history: list[dict], monitor: str = "val_acc") -> float:
    """The best finite ``monitor`` over epochs (what ``fit`` keeps as its best checkpoint); 0 if none."""
    values = [float(r[monitor]) for r in history if r.get(monitor) is not None and math.isfinite(float(r[monitor]))]
    return max(values) if values else 0.0
