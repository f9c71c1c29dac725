"""Monitoring callbacks: the per-sample Ledger and the per-layer ModelMonitor."""
from .ledger import Ledger, LedgerArrays, read_ledger

__all__ = ["Ledger", "LedgerArrays", "read_ledger"]
try:  # the model monitor lives in its own module
    from .model_monitor import ModelMonitor  # noqa: F401

    __all__.append("ModelMonitor")
except ImportError:  # pragma: no cover
    pass
