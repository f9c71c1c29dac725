"""Trainyard: train a model, find what is wrong with the data and the model from the training run
itself, repair it, and prove the gain on held-out data.

The public verbs::

    import trainyard as ty
    ds = ty.load("data.csv", target="label")
    res = ty.fit(ds, out="runs/first")
    diag = ty.diagnose("runs/first")
    fixed = ty.repair(ds, policy="auto", out="runs/fixed")
    study = ty.tune(ds, trials=30)
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use: `import trainyard` stays fast)
_API = {
    "load": "trainyard.data",
    "Dataset": "trainyard.data.dataset",
    "inject_label_noise": "trainyard.data",
    "fit": "trainyard.fitting",
    "FitResult": "trainyard.fitting",
    "load_run": "trainyard.fitting",
    "load_model": "trainyard.fitting",
    "load_data": "trainyard.fitting",
    "diagnose": "trainyard.diagnose",
    "diagnose_online": "trainyard.diagnose",
    "Diagnosis": "trainyard.diagnose",
    "repair": "trainyard.repair",
    "compare": "trainyard.repair",
    "tune": "trainyard.tune",
    "predict": "trainyard.predicting",
    "cross_validate": "trainyard.crossval",
    "TrainConfig": "trainyard.train",
    "Trainer": "trainyard.train",
    "Callback": "trainyard.train",
    "Run": "trainyard.run",
    "read_ledger": "trainyard.monitor",
    "write_report": "trainyard.report",
    "TrainyardError": "trainyard.errors",
    "DataError": "trainyard.errors",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trainyard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
