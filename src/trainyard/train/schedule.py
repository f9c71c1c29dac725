"""Learning-rate schedules as a callback: cosine with linear warm-up, one-cycle, step."""
from __future__ import annotations

import math

import torch

from .callback import Callback, Control, State


def lr_lambda(schedule: str, total_steps: int, warmup: float = 0.05):
    """Multiplier of the base learning rate at step t (0-based)."""
    total = max(1, total_steps)
    warm = int(round(warmup * total)) if schedule == "cosine" else 0

    def cosine(t: int) -> float:
        if t < warm:
            return (t + 1) / warm
        progress = (t - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def step(t: int) -> float:  # divide by 10 at 50 % and 75 % of training
        return 0.1 ** (int(t >= 0.5 * total) + int(t >= 0.75 * total))

    return {"cosine": cosine, "step": step, "none": lambda t: 1.0}[schedule]


class LRSchedule(Callback):
    """Steps a per-optimizer-step schedule after every optimizer step."""

    order = 10

    def __init__(self, schedule: str = "cosine", warmup: float = 0.05):
        self.schedule, self.warmup = schedule, warmup

    def before_fit(self, state: State, control: Control) -> None:
        total = state.max_epochs * state.batches_per_epoch // max(1, state.config.accumulate)
        opt = state.optimizer
        if self.schedule == "onecycle":
            state.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=max(2, total + 1))
        else:
            state.scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(self.schedule, total, self.warmup))

    def after_batch(self, state: State, control: Control) -> None:
        if state.extra.get("stepped"):
            state.scheduler.step()
