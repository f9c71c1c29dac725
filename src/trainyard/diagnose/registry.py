"""The detector registry: per-sample detectors register themselves by name.

Every registered detector returns one row per sample with a 0..1 score column (higher = worse),
a boolean flag column and evidence columns, and puts its summary in ``df.attrs["summary"]``
(cleanlab Datalab's issue-manager shape). Adding a detector means adding one module with a
``@register(...)`` function; the orchestrator can list them with ``available()``.

Example:
    >>> from trainyard.diagnose.registry import get
    >>> get("outliers").score, get("outliers").flag
    ('outlier_score', 'outlier')
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class Detector:
    """A registered detector: its function and the names of its score and flag columns."""

    name: str
    func: Callable
    score: str
    flag: str


DETECTORS: dict[str, Detector] = {}
# Modules of this package that hold detectors; imported on first look-up so they can register.
BUILTIN_MODULES = ("outliers", "duplicates", "labels", "ambiguity")


def _load_builtins() -> None:
    for name in BUILTIN_MODULES:
        try:
            import_module(f"{__package__}.{name}")
        except ImportError:  # a detector module not written yet must not break the others
            pass


def register(name: str, *, score: str, flag: str) -> Callable[[F], F]:
    """Decorator: register ``func`` under ``name`` (re-registering a name replaces it)."""

    def wrap(func: F) -> F:
        DETECTORS[name] = Detector(name, func, score, flag)
        return func

    return wrap


def get(name: str) -> Detector:
    """The detector registered as ``name``."""
    _load_builtins()
    if name not in DETECTORS:
        raise KeyError(f"no detector named {name!r}; registered: {sorted(DETECTORS)}")
    return DETECTORS[name]


def available() -> list[str]:
    """Names of the registered detectors."""
    _load_builtins()
    return sorted(DETECTORS)
