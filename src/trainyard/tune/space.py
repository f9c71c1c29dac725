"""The search space of ``tune``: what is varied per model kind, and the YAML file that changes it.

A space maps a name to one of three things::

    lr: {low: 1e-4, high: 1e-1, log: true}     # a range (float; ``int: true`` for integers)
    optimizer: [adamw, sgd]                    # a choice
    epochs: 20                                 # a fixed value

Names are TrainConfig fields (``lr``, ``batch_size``, ``activation``, ``warmup``, ...) plus two
architecture knobs: ``depth`` and ``width``. For an MLP they give ``hidden`` (``depth`` layers, the
first ``width`` wide, each next one half as wide); for a CNN they give ``channels`` (``depth``
blocks, the first ``width`` channels, each next one twice as many). Fixing ``hidden`` or
``channels`` directly removes ``depth`` and ``width`` from the search (``hidden: [256, 128]`` is one
architecture; ``hidden: [[256, 128], [512]]`` a choice between two). ``clip`` choices are
``none``, ``norm:1.0`` or ``agc:0.01``.

The file changes the built-in space name by name; with a top-level ``defaults: false`` only the
names it lists are searched and everything else comes from the training config.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Union

from ..errors import ConfigError
from ..train.config import TrainConfig

ARCHITECTURE = ("depth", "width")


@dataclass(frozen=True)
class Range:
    """A numeric range; ``log`` samples its logarithm uniformly."""

    low: float
    high: float
    log: bool = False
    integer: bool = False
    step: float | None = None


@dataclass(frozen=True)
class Choice:
    """One of a few values (str, int, float, bool or None)."""

    options: tuple


@dataclass(frozen=True)
class Fixed:
    """A value every trial uses."""

    value: Any


Param = Union[Range, Choice, Fixed]

TRAINING: dict[str, Param] = {
    "lr": Range(1e-4, 1e-1, log=True),
    "weight_decay": Range(1e-6, 1e-1, log=True),
    "batch_size": Choice((32, 64, 128, 256)),
    "optimizer": Choice(("adamw", "sgd")),
    "schedule": Choice(("cosine", "onecycle", "none")),
    "dropout": Range(0.0, 0.5),
    "label_smoothing": Range(0.0, 0.2),
    "clip": Choice(("none", "norm:1.0", "agc:0.01")),
}
ARCHITECTURES: dict[str, dict[str, Param]] = {
    "mlp": {"depth": Range(1, 3, integer=True), "width": Range(32, 512, log=True, integer=True)},
    "cnn": {"depth": Range(2, 3, integer=True), "width": Range(8, 64, log=True, integer=True)},
    "linear": {},
}


# Generic starting points, tried right after the training config while the sampler has nothing to
# learn from yet. They are textbook recipes, not fitted to any data set: each moves the knobs that
# matter most in a short run (optimizer family, steps per epoch, peak learning rate, capacity and
# regularisation) to a different well-known corner, so the first trials are diverse and each one
# is reasonable, instead of uniform draws from a 10-dimensional box. Values are absolute, or
# relative to the training config: ``"x0.5"`` halves it (batch size) and ``"x2"`` doubles it (width).
RECIPES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("recipe: one-cycle AdamW, more steps", {"optimizer": "adamw", "lr": 3e-3, "schedule": "onecycle",
                                             "batch_size": "x0.5", "label_smoothing": 0.1}),
    ("recipe: SGD + Nesterov, cosine", {"optimizer": "sgd", "lr": 0.05, "schedule": "cosine",
                                        "weight_decay": 5e-4, "clip": "norm:1.0"}),
    ("recipe: wider, more regularised", {"optimizer": "adamw", "lr": 1e-3, "schedule": "cosine", "width": "x2",
                                         "dropout": 0.3, "weight_decay": 1e-2}),
)


def model_kind(model: str, input_shape: tuple[int, ...]) -> str:
    """The zoo model a config trains: ``auto`` is a CNN for (C, H, W) inputs, else an MLP."""
    if model == "auto":
        return "cnn" if len(input_shape) == 3 else "mlp"
    return model


class SearchSpace:
    """Named parameters (:class:`Range`, :class:`Choice`, :class:`Fixed`) for one model kind.

    >>> space = SearchSpace.default("mlp", epochs=10)
    >>> sorted(space.searched())[:3]
    ['batch_size', 'clip', 'depth']
    """

    def __init__(self, params: Mapping[str, Param], model: str):
        self.params: dict[str, Param] = dict(params)
        self.model = model

    @classmethod
    def default(cls, model: str, epochs: int | None = None) -> "SearchSpace":
        """The built-in joint training-and-architecture space for ``model`` (mlp, cnn, linear)."""
        if model not in ARCHITECTURES:
            raise ConfigError(f"tune cannot search model {model!r}; use --model mlp, cnn or linear")
        params: dict[str, Param] = {**TRAINING, **ARCHITECTURES[model]}
        if model == "linear":
            params.pop("dropout")  # a linear model has no dropout layer
        if epochs is not None:
            params["epochs"] = Fixed(int(epochs))
        return cls(params, model)

    # -- changing the space -------------------------------------------------------------------
    def updated(self, changes: Mapping[str, Param]) -> "SearchSpace":
        """A copy with ``changes`` replacing (or adding) parameters."""
        params = dict(self.params)
        params.update(changes)
        if any(k in changes for k in ("hidden", "channels")) or self.model == "linear":
            for name in ARCHITECTURE:  # a fixed architecture wins over the depth/width search
                params.pop(name, None)
        return SearchSpace(params, self.model)

    def with_fixed(self, values: Mapping[str, Any]) -> "SearchSpace":
        """A copy where ``values`` (e.g. command-line flags) are fixed, not searched."""
        return self.updated({k: Fixed(v) for k, v in values.items() if v is not None})

    # -- reading it -----------------------------------------------------------------------------
    def searched(self) -> dict[str, Param]:
        """The parameters a trial samples (ranges and choices)."""
        return {k: p for k, p in self.params.items() if not isinstance(p, Fixed)}

    def fixed(self) -> dict[str, Any]:
        return {k: p.value for k, p in self.params.items() if isinstance(p, Fixed)}

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Sample every searched parameter from an Optuna trial; returns the sampled values."""
        out: dict[str, Any] = {}
        for name, p in sorted(self.searched().items()):
            if isinstance(p, Choice):
                out[name] = trial.suggest_categorical(name, list(p.options))
            elif p.integer:
                out[name] = trial.suggest_int(name, int(p.low), int(p.high), log=p.log,
                                              step=int(p.step) if p.step and not p.log else 1)
            else:
                out[name] = trial.suggest_float(name, float(p.low), float(p.high), log=p.log,
                                                step=None if p.log else p.step)
        return out

    def contains(self, name: str, value: Any) -> bool:
        """Whether ``value`` is a legal sample of searched parameter ``name`` (used by warm start)."""
        p = self.params.get(name)
        if p is None or isinstance(p, Fixed):
            return False
        if isinstance(p, Choice):
            return value in p.options
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        return p.low <= v <= p.high and (not p.integer or v == int(v))

    def to_config(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """TrainConfig fields from fixed values plus ``sampled`` (depth/width become hidden or channels)."""
        values = {**self.fixed(), **sampled}
        depth, width = values.pop("depth", None), values.pop("width", None)
        if depth is not None or width is not None:
            depth = int(depth if depth is not None else (2 if self.model == "mlp" else 3))
            width = int(width if width is not None else (256 if self.model == "mlp" else 32))
            if self.model == "cnn":
                values["channels"] = [width * 2 ** i for i in range(depth)]
            else:
                values["hidden"] = [max(8, width // 2 ** i) for i in range(depth)]
        if values.get("clip") in ("none", "None", ""):
            values["clip"] = None
        for name in ("hidden", "channels"):  # choices of lists are stored as "256,128" strings
            if isinstance(values.get(name), str):
                values[name] = [int(x) for x in values[name].split(",") if x.strip()]
        return values

    def from_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The searched parameters that reproduce ``config`` (TrainConfig fields) as closely as the
        space allows; values outside the space are left out (the sampler picks them)."""
        out: dict[str, Any] = {}
        arch = config.get("channels" if self.model == "cnn" else "hidden")
        for name in self.searched():
            if name == "depth" and arch:
                value: Any = len(arch)
            elif name == "width" and arch:
                value = int(arch[0])
            elif name == "clip":
                value = config.get("clip") or "none"
            elif name in ("hidden", "channels") and config.get(name) is not None:
                value = ",".join(str(int(x)) for x in config[name])
            elif name in config:
                value = config[name]
            else:
                continue
            if self.contains(name, value):
                out[name] = value
        return out

    def snap(self, name: str, value: Any) -> Any:
        """``value`` moved into the space: the nearest option of a numeric choice, clipped into a range
        (rounded for integers); None when it cannot be (an unknown word, a fixed or absent name)."""
        p = self.params.get(name)
        if p is None or isinstance(p, Fixed):
            return None
        if isinstance(p, Choice):
            if value in p.options:
                return next(o for o in p.options if o == value)  # the option itself: 32, not 32.0
            numeric = [o for o in p.options if isinstance(o, (int, float)) and not isinstance(o, bool)]
            if not numeric or not isinstance(value, (int, float)) or isinstance(value, bool):
                return None
            if all(o > 0 for o in numeric) and value > 0:  # batch sizes, widths: nearest on a log scale
                return min(numeric, key=lambda o: abs(math.log(o / value)))
            return min(numeric, key=lambda o: abs(o - value))
        try:
            v = min(max(float(value), p.low), p.high)
        except (TypeError, ValueError):
            return None
        return int(round(v)) if p.integer else v

    def first_trials(self, config: Mapping[str, Any]) -> list[tuple[dict[str, Any], str]]:
        """The training config, then :data:`RECIPES`, as searched parameters (each snapped into the
        space; what a recipe does not name stays as in the config). Repeats are dropped, so a narrow
        space yields fewer trials; names outside the space are left for the sampler to pick."""
        base = self.from_config(config)
        out = [(base, "training config")] if base else []
        arch = config.get("channels" if self.model == "cnn" else "hidden")
        relative = {"batch_size": config.get("batch_size"), "width": int(arch[0]) if arch else None}
        for label, recipe in RECIPES:
            params = dict(base)
            for name, value in recipe.items():
                if isinstance(value, str) and value.startswith("x") and name in relative:
                    if relative[name] is None:
                        continue
                    value = relative[name] * float(value[1:])
                snapped = self.snap(name, value)
                if snapped is not None:
                    params[name] = snapped
            if params and all(params != p for p, _ in out):
                out.append((params, label))
        return out

    def describe(self) -> dict[str, Any]:
        """The space as plain data (for tune.json)."""
        out: dict[str, Any] = {}
        for k, p in self.params.items():
            if isinstance(p, Fixed):
                out[k] = p.value
            elif isinstance(p, Choice):
                out[k] = list(p.options)
            else:
                out[k] = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
        return out


# -- the YAML file ----------------------------------------------------------------------------
_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_NOT_SEARCHABLE = {"extra", "ledger", "ledger_probs", "monitor", "checkpoint", "device", "model"}


def _is_int_param(name: str) -> bool:
    if name in ARCHITECTURE:
        return True
    default = TrainConfig().to_dict().get(name)
    return isinstance(default, int) and not isinstance(default, bool)


def _number(v: Any, where: str) -> float:
    # YAML 1.1 reads 1e-4 (no dot) as a string; accept it as the number the user meant
    try:
        if isinstance(v, bool):
            raise ValueError
        return float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {v!r} is not a number") from None


def _choice_value(v: Any) -> Any:
    if isinstance(v, (list, tuple)):  # a list of widths is one option: store it as "256,128"
        return ",".join(str(int(x)) for x in v)
    if isinstance(v, str):
        try:
            return int(v) if v.strip().lstrip("-").isdigit() else float(v) if _looks_float(v) else v
        except ValueError:
            return v
    return v


def _looks_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return any(c in s.lower() for c in ".e") and s.strip().lower() not in ("nan", "inf", "-inf")


def parse_space(spec: Mapping[str, Any], source: str = "space") -> tuple[dict[str, Param], bool]:
    """(parameters, whether the built-in space is kept) from the mapping of a space file."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{source}: the search space must be a mapping of name: range | [choices] | value")
    spec = dict(spec)
    keep = spec.pop("defaults", True)
    if not isinstance(keep, bool):
        raise ConfigError(f"{source}: defaults must be true or false, got {keep!r}")
    out: dict[str, Param] = {}
    for raw_name, v in spec.items():
        name = str(raw_name).replace("-", "_")
        where = f"{source}: {name}"
        if name not in _CONFIG_FIELDS and name not in ARCHITECTURE:
            known = sorted(set(_CONFIG_FIELDS) - _NOT_SEARCHABLE | set(ARCHITECTURE))
            raise ConfigError(f"{where}: unknown parameter; known: {', '.join(known)}")
        if name in _NOT_SEARCHABLE and not isinstance(v, (str, int, float, bool)) and v is not None:
            raise ConfigError(f"{where}: can only be fixed to one value, not searched")
        if isinstance(v, Mapping):
            unknown = set(v) - {"low", "high", "log", "int", "step"}
            if unknown or "low" not in v or "high" not in v:
                raise ConfigError(f"{where}: a range needs low and high (optional log, int, step); "
                                  f"got keys {sorted(v)}")
            low, high = _number(v["low"], where), _number(v["high"], where)
            log, integer = bool(v.get("log", False)), bool(v.get("int", _is_int_param(name)))
            step = _number(v["step"], where) if v.get("step") is not None else None
            if not math.isfinite(low) or not math.isfinite(high) or low > high:
                raise ConfigError(f"{where}: need finite low <= high, got low={low}, high={high}")
            if log and low <= 0:
                raise ConfigError(f"{where}: a log range needs low > 0, got {low}")
            if log and step is not None:
                raise ConfigError(f"{where}: a range cannot have both log and step")
            if low == high:
                out[name] = Fixed(int(low) if integer else low)
            else:
                out[name] = Range(low, high, log, integer, step)
        elif name in ("hidden", "channels") and isinstance(v, (list, tuple)) \
                and not any(isinstance(x, (list, tuple, str)) for x in v):
            out[name] = Fixed([int(_number(x, where)) for x in v])  # one architecture: [256, 128]
        elif isinstance(v, (list, tuple)):
            if not v:
                raise ConfigError(f"{where}: an empty list of choices")
            options = tuple(dict.fromkeys(_choice_value(x) for x in v))  # drop repeats, keep order
            if any(not isinstance(o, (str, int, float, bool, type(None))) for o in options):
                raise ConfigError(f"{where}: choices must be numbers, words or lists of widths")
            out[name] = Choice(options) if len(options) > 1 else Fixed(options[0])
        else:
            if name in ("hidden", "channels") and isinstance(v, str):
                v = [int(x) for x in v.split(",") if x.strip()]
            out[name] = Fixed(_choice_value(v) if isinstance(v, str) else v)
    return out, keep


def load_space(space: str | Path | Mapping[str, Any] | None) -> tuple[dict[str, Param], bool]:
    """(parameters, keep the built-in space) from a YAML/JSON file or a mapping (``None``: no changes)."""
    if space is None:
        return {}, True
    if isinstance(space, Mapping):
        return parse_space(space, "space")
    from ..train.config import read_user_text

    path = Path(space)
    text = read_user_text(path, "search-space file")
    import yaml  # JSON is YAML too

    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: cannot parse the search space ({str(e).splitlines()[0]})") from None
    return parse_space(spec or {}, str(path))
