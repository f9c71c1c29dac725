"""Fine-tuning: start a model from another run's weights (layers whose shapes match)."""
from __future__ import annotations

from pathlib import Path

from torch import nn


def init_from_state_dict(model: nn.Module, state_dict: dict) -> list[str]:
    """Copy every tensor whose name and shape match; returns the names copied."""
    own = model.state_dict()
    copied = [k for k, v in state_dict.items() if k in own and own[k].shape == v.shape]
    own.update({k: state_dict[k] for k in copied})
    model.load_state_dict(own)
    return copied


def init_from_run(model: nn.Module, run_dir: str | Path) -> list[str]:
    """Load the best weights of ``run_dir`` into ``model`` where shapes match.

    The new model keeps its own input standardisation (fitted on its own training data)."""
    from .train.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / "best.pt"
    if not path.exists():
        path = run_dir / "checkpoints" / "last.pt"
    sd = {k: v for k, v in load_checkpoint(path)["model"].items() if not k.startswith("standardize.")}
    return init_from_state_dict(model, sd)
