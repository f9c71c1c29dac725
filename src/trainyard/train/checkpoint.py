"""Checkpoints each epoch (atomic), best by validation accuracy, and loading them back safely."""
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
    """Writes ``checkpoints/last.pt`` (everything needed to resume) every epoch, ``best.pt`` on improvement."""

    order = 90  # after early stopping and the ledger have updated their state

    def __init__(self, directory: str | os.PathLike, monitor: str = "val_acc"):
        self.dir = Path(directory)
        self.monitor = monitor

    def after_epoch(self, state: State, control: Control) -> None:
        trainer = state.extra["trainer"]
        score = state.metrics.get(self.monitor, state.metrics.get("train_acc", 0.0))
        improved = score is not None and score == score and score > state.best_score
        if improved:
            state.best_score, state.best_epoch = float(score), state.epoch
            save_checkpoint(self.dir / "best.pt", {"model": state.model.state_dict(), "epoch": state.epoch,
                                                   "score": float(score)})
        save_checkpoint(self.dir / "last.pt", trainer.resume_payload())
