"""Writes ``metrics.csv`` (one row per epoch) atomically after every epoch."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..run import atomic_write
from .callback import Callback, Control, State


class MetricsLog(Callback):
    order = 85

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def after_epoch(self, state: State, control: Control) -> None:
        df = pd.DataFrame(state.history)
        atomic_write(self.path, lambda tmp: df.to_csv(tmp, index=False))
