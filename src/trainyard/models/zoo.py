"""The model zoo: MLP for tabular/text features, a small CNN for images, a linear model.

Every model standardises its own input (statistics fitted on the training split and kept as
buffers), so a saved or exported model needs no separate preprocessing step.
Each model has ``forward(x) -> logits``, ``embed(x) -> penultimate features`` and ``spec``
(a plain dict from which :func:`from_spec` rebuilds it).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU,
               "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None


class Standardize(nn.Module):
    """(x - mean) / std with buffers; per feature for vectors, per channel for images."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.register_buffer("mean", torch.zeros(*shape))
        self.register_buffer("std", torch.ones(*shape))

    def fit(self, X: np.ndarray) -> "Standardize":
        X = np.asarray(X, dtype=np.float64)
        if self.mean.ndim == 1:  # a vector model (MLP, linear) sees images flattened
            X = X.reshape(len(X), -1)
        axes = (0,) if X.ndim == 2 else (0, 2, 3)
        mean = X.mean(axis=axes, keepdims=True)[0]
        std = X.std(axis=axes, keepdims=True)[0]
        std = np.where(std < 1e-6, 1.0, std)  # constant columns would divide by zero
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).reshape(self.mean.shape))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).reshape(self.std.shape))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean.ndim == 1:
            x = x.flatten(1)
        return (x - self.mean) / self.std


class MLP(nn.Module):
    """Multi-layer perceptron: [Linear -> (LayerNorm) -> activation -> Dropout] x depth -> Linear."""

    def __init__(self, n_features: int, n_classes: int, hidden: Sequence[int] = (256, 128),
                 dropout: float = 0.1, activation: str = "relu", norm: bool = False):
        super().__init__()
        self.standardize = Standardize((n_features,))
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if norm:
                layers.append(nn.LayerNorm(h))
            layers.append(_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)
        self.spec = {"name": "mlp", "input_shape": [n_features], "n_classes": n_classes,
                     "hidden": list(hidden), "dropout": dropout, "activation": activation, "norm": norm}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.standardize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class CNN(nn.Module):
    """Small CNN: three conv blocks (BatchNorm, activation), global average pooling, a linear head."""

    def __init__(self, in_shape: Sequence[int], n_classes: int, channels: Sequence[int] = (32, 64, 128),
                 dropout: float = 0.1, activation: str = "relu", norm: bool = True):
        super().__init__()
        c_in, h, w = in_shape
        self.standardize = Standardize((1, c_in, 1, 1))
        blocks: list[nn.Module] = []
        for i, c in enumerate(channels):
            blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=not norm)]
            if norm:
                blocks.append(nn.BatchNorm2d(c))
            blocks.append(_activation(activation))
            # pool only while the map is big enough: 8x8 digits get two poolings, 28x28 three
            if min(h, w) >= 4 and i < len(channels) - 1 or min(h, w) >= 8:
                blocks.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c_in = c
        self.body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Dropout(dropout) if dropout > 0 else nn.Identity())
        self.head = nn.Linear(c_in, n_classes)
        self.spec = {"name": "cnn", "input_shape": list(in_shape), "n_classes": n_classes,
                     "channels": list(channels), "dropout": dropout, "activation": activation, "norm": norm}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.standardize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class Linear(nn.Module):
    """Multinomial logistic regression on standardised inputs."""

    def __init__(self, n_features: int, n_classes: int):
        super().__init__()
        self.standardize = Standardize((n_features,))
        self.head = nn.Linear(n_features, n_classes)
        self.spec = {"name": "linear", "input_shape": [n_features], "n_classes": n_classes}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardize(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


MODEL_NAMES = ("auto", "mlp", "cnn", "linear")


def build_model(name: str, input_shape: Sequence[int], n_classes: int, hidden: Sequence[int] = (256, 128),
                dropout: float = 0.1, activation: str = "relu", norm: bool | None = None,
                channels: Sequence[int] | None = None) -> nn.Module:
    """Build a zoo model. ``auto`` picks a CNN for image-shaped inputs (C, H, W), else an MLP.

    >>> build_model("auto", (1, 8, 8), 10).spec["name"]
    'cnn'
    """
    input_shape = tuple(int(s) for s in input_shape)
    if name == "auto":
        name = "cnn" if len(input_shape) == 3 else "mlp"
    n_features = int(np.prod(input_shape))
    if name == "mlp":
        return MLP(n_features, n_classes, hidden, dropout, activation, bool(norm))
    if name == "cnn":
        if len(input_shape) != 3:
            raise ConfigError(f"--model cnn needs image data (C, H, W); this data has shape {input_shape}")
        return CNN(input_shape, n_classes, tuple(channels or (32, 64, 128)), dropout, activation,
                   True if norm is None else norm)
    if name == "linear":
        return Linear(n_features, n_classes)
    raise ConfigError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")


def from_spec(spec: dict) -> nn.Module:
    """Rebuild an (untrained) model from its ``spec`` dict."""
    spec = dict(spec)
    name = spec.pop("name")
    kw = {k: spec[k] for k in ("hidden", "dropout", "activation", "norm", "channels") if k in spec}
    return build_model(name, spec["input_shape"], spec["n_classes"], **kw)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
