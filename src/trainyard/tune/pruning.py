"""Pruning: a Trainer callback that reports each epoch's validation score to an Optuna trial.

It never raises inside the training loop: on a prune decision it asks the loop to stop
(``control.should_stop``), so ``fit`` closes its run directory normally; the objective then
marks the run ``pruned`` and raises ``optuna.TrialPruned``.
"""
from __future__ import annotations

import math
from typing import Any

from ..train.callback import Callback, Control, State

try:
    from optuna.pruners import BasePruner, MedianPruner, PercentilePruner
except ImportError:  # pragma: no cover - tune needs optuna; the callback alone does not
    BasePruner = object  # type: ignore[misc,assignment]


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


class StagedMedianPruner(BasePruner):
    """Median pruning that is lenient at first: during the first ``median_from`` steps a trial is
    stopped only when its best value so far lies in the bottom ``100 - keep_first`` % of the finished
    trials' values at that step; from step ``median_from`` on, when it lies below their median
    (Optuna's ``PercentilePruner`` and ``MedianPruner``); never before ``n_startup_trials`` finished.

    One epoch says little about a configuration that starts slowly (a warm-up, a small learning rate),
    but it does tell a diverging or stalled one; two epochs tell much more.

    >>> study = optuna.create_study(direction="maximize", pruner=StagedMedianPruner(4))  # doctest: +SKIP
    """

    def __init__(self, n_startup_trials: int = 4, keep_first: float = 90.0, median_from: int = 1):
        self.median_from = int(median_from)
        self._early = PercentilePruner(float(keep_first), n_startup_trials=int(n_startup_trials))
        self._median = MedianPruner(n_startup_trials=int(n_startup_trials), n_warmup_steps=self.median_from)

    def prune(self, study: Any, trial: Any) -> bool:
        step = trial.last_step
        if step is None:
            return False
        return bool((self._early if step < self.median_from else self._median).prune(study, trial))


def best_score(history: list[dict], monitor: str = "val_acc") -> float:
    """The best finite ``monitor`` over epochs (what ``fit`` keeps as its best checkpoint); 0 if none."""
    values = [float(r[monitor]) for r in history if r.get(monitor) is not None and math.isfinite(float(r[monitor]))]
    return max(values) if values else 0.0
