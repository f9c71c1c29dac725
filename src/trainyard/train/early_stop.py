"""Early stopping on the validation metric."""
from __future__ import annotations

from .callback import Callback, Control, State


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs."""

    order = 50

    def __init__(self, patience: int = 5, monitor: str = "val_acc", min_delta: float = 0.0):
        self.patience, self.monitor, self.min_delta = patience, monitor, min_delta
        self.best, self.wait = float("-inf"), 0

    def after_epoch(self, state: State, control: Control) -> None:
        value = state.metrics.get(self.monitor)
        if value is None:
            return
        value = -value if self.monitor.endswith("loss") else value
        if value > self.best + self.min_delta:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                control.should_stop = True
                state.extra["stopped_early_at"] = state.epoch

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, d: dict) -> None:
        self.best, self.wait = d["best"], d["wait"]
