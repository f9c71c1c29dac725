"""Training: the Trainer, its config and its callbacks."""
from .callback import Callback, Control, State
from .config import TrainConfig, read_config_file
from .trainer import Trainer, default_callbacks, embed, predict_proba

__all__ = ["Trainer", "TrainConfig", "Callback", "Control", "State", "default_callbacks", "predict_proba",
           "embed", "read_config_file"]
