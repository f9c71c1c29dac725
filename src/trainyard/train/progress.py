"""A rich progress bar over epochs and batches."""
from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .callback import Callback, Control, State


class ProgressBar(Callback):
    order = 100

    def __init__(self, description: str = "training"):
        self.description = description
        self.progress: Progress | None = None

    def before_fit(self, state: State, control: Control) -> None:
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 transient=True)
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=state.max_epochs * state.batches_per_epoch,
                                           completed=state.epoch * state.batches_per_epoch, info="")

    def after_batch(self, state: State, control: Control) -> None:
        self.progress.advance(self.task)

    def after_epoch(self, state: State, control: Control) -> None:
        m = state.metrics
        info = f"epoch {state.epoch + 1}/{state.max_epochs} loss {m.get('train_loss', float('nan')):.3f}"
        if "val_acc" in m:
            info += f" val_acc {m['val_acc']:.3f}"
        self.progress.update(self.task, info=info, completed=(state.epoch + 1) * state.batches_per_epoch)

    def after_fit(self, state: State, control: Control) -> None:
        if self.progress is not None:
            self.progress.stop()
