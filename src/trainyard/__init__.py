"""Trainyard: train, diagnose, repair, prove."""
__version__ = "0.1.0"
