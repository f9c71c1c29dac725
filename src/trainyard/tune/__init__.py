"""Hyperparameter search on Optuna: search spaces, pruning, warm start from earlier studies, shared storage.

>>> from trainyard.tune import tune                       # doctest: +SKIP
>>> res = tune("sklearn:digits", trials=30, epochs=10)   # doctest: +SKIP
"""
from .pruning import PruningCallback
from .space import Choice, Fixed, Range, SearchSpace, load_space
from .study import TuneResult, tune
from .warm_start import meta_features

__all__ = ["tune", "TuneResult", "SearchSpace", "Range", "Choice", "Fixed", "load_space", "PruningCallback",
           "meta_features"]
