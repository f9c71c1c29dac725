"""Mixed precision: autocast for the forward pass (bf16 or fp16) and a grad scaler for fp16."""
from __future__ import annotations

import torch

from .callback import Callback, Control, State


class MixedPrecision(Callback):
    """Runs the forward pass under ``torch.autocast``; fp16 also scales the loss (GradScaler)."""

    order = -10

    def __init__(self, precision: str = "bf16"):
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        self.scaler = None
        self._ctx = None

    def before_fit(self, state: State, control: Control) -> None:
        if self.dtype == torch.float16:
            self.scaler = torch.amp.GradScaler(state.device.type)
            state.extra["grad_scaler"] = self.scaler

    def before_batch(self, state: State, control: Control) -> None:
        self._ctx = torch.autocast(state.device.type, dtype=self.dtype)
        self._ctx.__enter__()

    def after_loss(self, state: State, control: Control) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, d: dict) -> None:
        if self.scaler is not None and d.get("scaler"):
            self.scaler.load_state_dict(d["scaler"])
