"""Checkpoints each epoch (atomic), best by validation accuracy (ties: lower validation loss), and loading
them back safely."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import RunError
from ..run import atomic_write
from .callback import Callback, Control, State


def save_checkpoint(path: Path, payload: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def safe_load(path: str | os.PathLike, what: str = "checkpoint"):
    """``torch.load`` with ``weights_only=True``: a file from someone else cannot run code."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or unsafe pickles are refused, not executed
        raise RunError(f"{path}: cannot load {what} safely ({str(e).splitlines()[0][:200]})") from None


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a training checkpoint safely (see :func:`safe_load`)."""
    return safe_load(path, "checkpoint")


class Checkpoint(Callback):
    """Writes ``checkpoints/last.pt`` (everything needed to resume) every epoch, ``best.pt`` on improvement.

    An epoch improves on the best so far when its ``monitor`` score is higher, or equal with a lower loss
    (``val_loss`` for ``val_acc``). Why the tie-break: on a small validation split the accuracy saturates
    or repeats, and the first of equal epochs is the least trained one: on sklearn's wine (36 validation
    rows, 100 % from the second epoch) the first-wins rule kept epoch 2 of 30, 83 % on test.
    """

    order = 90  # after early stopping and the ledger have updated their state

    def __init__(self, directory: str | os.PathLike, monitor: str = "val_acc"):
        self.dir = Path(directory)
        self.monitor = monitor
        self.best_loss = float("inf")

    def after_epoch(self, state: State, control: Control) -> None:
        trainer = state.extra["trainer"]
        name = self.monitor if self.monitor in state.metrics else "train_acc"
        score = state.metrics.get(name, 0.0)
        loss = _finite(state.metrics.get(name.replace("_acc", "_loss")))
        if score is not None and score == score and (
                score > state.best_score or (score == state.best_score and loss < self.best_loss)):
            state.best_score, state.best_epoch, self.best_loss = float(score), state.epoch, loss
            save_checkpoint(self.dir / "best.pt", {"model": state.model.state_dict(), "epoch": state.epoch,
                                                   "score": float(score)})
        save_checkpoint(self.dir / "last.pt", trainer.resume_payload())

    def state_dict(self) -> dict:
        return {"best_loss": self.best_loss}

    def load_state_dict(self, d: dict) -> None:
        self.best_loss = float(d.get("best_loss", float("inf")))


def _finite(value) -> float:
    """``value`` as a float, +inf when it is missing or not a number (it then never wins a tie)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float("inf")
    return value if value == value else float("inf")
