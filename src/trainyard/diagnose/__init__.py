"""Diagnosis: one module per detector; ``diagnose`` runs them all and writes samples.csv."""
from .core import SAMPLE_COLUMNS, Diagnosis, diagnose, diagnose_run
from .online import diagnose_online

__all__ = ["diagnose", "diagnose_run", "diagnose_online", "Diagnosis", "SAMPLE_COLUMNS"]
