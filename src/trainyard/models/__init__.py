"""Model zoo: ``build_model(name, input_shape, n_classes, ...)`` and ``from_spec(spec)``."""
from .zoo import CNN, MLP, MODEL_NAMES, Linear, Standardize, build_model, from_spec, n_parameters

__all__ = ["build_model", "from_spec", "n_parameters", "MLP", "CNN", "Linear", "Standardize", "MODEL_NAMES"]
