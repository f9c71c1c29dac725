"""TrainConfig: every training knob in one place, loadable from YAML/JSON (flags win)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

OPTIMIZERS = ("adamw", "sgd", "adafactor")
SCHEDULES = ("cosine", "onecycle", "step", "none")
PRECISIONS = ("32", "bf16", "16")


@dataclass
class TrainConfig:
    """Training configuration. Defaults work on the first try for small tabular and image data."""

    epochs: int = 30
    batch_size: int | None = None  # None: 64, growing with the data up to 1024 (see auto_batch_size)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup: float = 0.05  # fraction of steps of linear warm-up (cosine)
    precision: str = "32"
    clip: str | None = None  # None | "norm:1.0" | "agc:0.01"
    l1: float = 0.0
    label_smoothing: float = 0.0
    patience: int | None = None  # early stopping on validation accuracy
    accumulate: int = 1
    class_weight: str | None = None  # None | "balanced"
    seed: int = 0
    model: str = "auto"
    hidden: tuple[int, ...] = (256, 128)
    channels: tuple[int, ...] = (32, 64, 128)
    dropout: float = 0.1
    activation: str = "relu"
    norm: bool | None = None
    ledger: bool = True
    ledger_probs: bool = True  # keep full per-epoch probability vectors (needed by label diagnosis)
    monitor: bool = True
    device: str = "auto"
    checkpoint: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        self.hidden = _int_tuple(self.hidden, "hidden")
        self.channels = _int_tuple(self.channels, "channels")
        self.precision = str(self.precision)
        need(int(self.epochs) >= 1, f"--epochs must be >= 1, got {self.epochs}")
        need(self.batch_size is None or int(self.batch_size) >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        need(float(self.lr) > 0, f"--lr must be > 0, got {self.lr}")
        need(self.optimizer in OPTIMIZERS, f"--optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        need(self.schedule in SCHEDULES, f"--schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        need(self.precision in PRECISIONS, f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        need(0 <= float(self.dropout) < 1, f"--dropout must be in [0, 1), got {self.dropout}")
        need(0 <= float(self.label_smoothing) < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        need(int(self.accumulate) >= 1, f"--accumulate must be >= 1, got {self.accumulate}")
        need(self.class_weight in (None, "balanced"), f"--class-weight must be 'balanced', got {self.class_weight!r}")
        if self.clip is not None:
            kind, _, value = str(self.clip).partition(":")
            try:
                ok = kind in ("norm", "agc") and float(value) > 0
            except ValueError:
                ok = False
            need(ok, f"--clip must look like norm:1.0 or agc:0.01, got {self.clip!r}")
        self.epochs, self.accumulate = int(self.epochs), int(self.accumulate)
        self.batch_size = None if self.batch_size is None else int(self.batch_size)
        self.lr, self.weight_decay = float(self.lr), float(self.weight_decay)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"], d["channels"] = list(self.hidden), list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        d = self.to_dict()
        d.update({k: v for k, v in changes.items()})
        return TrainConfig.from_dict(d)


def auto_batch_size(n: int) -> int:
    """64 for up to ~45k rows, then doubling with the data (about 1,000-2,000 steps an epoch), at most 1024."""
    import math

    return int(min(1024, max(64, 2 ** round(math.log2(max(n, 1) / 1000)))))


def _int_tuple(v: Any, name: str) -> tuple[int, ...]:
    if isinstance(v, str):
        v = [p for p in v.replace(" ", "").split(",") if p]
    try:
        out = tuple(int(x) for x in v)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name} must be comma-separated integers like 256,128, got {v!r}") from None
    if any(x < 1 for x in out):
        raise ConfigError(f"--{name} widths must be >= 1, got {v!r}")
    return out


def read_user_text(path: Path, what: str) -> str:
    """The UTF-8 text of a file the user named, or a ConfigError saying what is wrong with it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {what} is not UTF-8 text") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict of options (flags override it)."""
    path = Path(path)
    text = read_user_text(path, "config file")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml and json raise different types; both mean the same to a user
        raise ConfigError(f"{path}: cannot parse config ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config must be a mapping of option: value")
    # best.json from `trainyard tune` nests the options under "params"
    if "params" in data and isinstance(data["params"], dict) and "config" not in data:
        data = data["params"]
    elif "config" in data and isinstance(data["config"], dict):
        data = data["config"]
    return {k.replace("-", "_"): v for k, v in data.items()}
