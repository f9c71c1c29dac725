"""Warm start from earlier studies.

Every finished ``tune`` records its dataset's meta-features (rows, features, classes, imbalance,
kind), its model kind and its best configurations in a small registry file. A new study first
tries the best configurations of the nearest earlier studies (``--warm-start auto``), or of one
named study (``--warm-start NAME``); TPE then learns from those trials like from any other.

The registry is ``$TRAINYARD_HOME/studies.json`` when ``TRAINYARD_HOME`` is set, else
``.trainyard_studies.json`` beside the tune output folder (``runs/`` by default).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import ConfigError
from ..run import read_json, write_json

HOME_ENV = "TRAINYARD_HOME"
REGISTRY_NAME = ".trainyard_studies.json"
MAX_DISTANCE = 1.5  # beyond this, an earlier study says little about this data (see distance())
TOP_K = 3  # configurations kept per study


def registry_path(out: Path, explicit: str | Path | None = None) -> Path:
    """Where studies are recorded: ``explicit``, else ``$TRAINYARD_HOME/studies.json``, else beside ``out``."""
    if explicit is not None:
        return Path(explicit)
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / "studies.json"
    return Path(out).resolve().parent / REGISTRY_NAME


def meta_features(y: np.ndarray, input_shape: Sequence[int], n_classes: int, kind: str) -> dict[str, Any]:
    """What describes a dataset for warm start: rows, features, classes, imbalance (largest / smallest class)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes)
    present = counts[counts > 0]
    return {"rows": int(len(y)), "features": int(np.prod(input_shape)), "classes": int(n_classes),
            "imbalance": float(present.max() / present.min()) if len(present) else 1.0, "kind": kind}


def distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """How far apart two datasets are: Euclidean over log10 rows, log10 features, log2 classes and
    log2 imbalance, so 10x more rows, 10x more features or twice the classes each count 1.
    Different kinds (tabular / image / text) are infinitely far."""
    if a.get("kind") != b.get("kind"):
        return math.inf

    def v(m: dict[str, Any]) -> np.ndarray:
        return np.array([math.log10(max(m["rows"], 1)), math.log10(max(m["features"], 1)),
                         math.log2(max(m["classes"], 2)), math.log2(max(m.get("imbalance", 1.0), 1.0))])

    return float(np.linalg.norm(v(a) - v(b)))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside ``path`` (workers may finish at the same moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: atomic writes still keep the file whole
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_registry(path: Path) -> list[dict[str, Any]]:
    """The recorded studies (empty when the file does not exist)."""
    if not Path(path).exists():
        return []
    data = read_json(path)
    studies = data.get("studies", []) if isinstance(data, dict) else []
    return [s for s in studies if isinstance(s, dict) and "study" in s and "meta" in s]


def record_study(path: Path, entry: dict[str, Any]) -> None:
    """Add or replace (same storage and study name) ``entry`` in the registry."""
    with _locked(Path(path)):
        studies = [s for s in read_registry(path)
                   if (s.get("storage"), s.get("study")) != (entry.get("storage"), entry.get("study"))]
        studies.append({**entry, "updated": time.time()})
        write_json(path, {"version": 1, "studies": studies})


def top_configs(study: Any, k: int = TOP_K) -> list[dict[str, Any]]:
    """The ``k`` best distinct finished configurations of a study (parameters as Optuna sampled them)."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    out, seen = [], set()
    for t in sorted(done, key=lambda t: (-t.value, t.number)):
        key = tuple(sorted((n, repr(v)) for n, v in t.params.items()))
        if key in seen:
            continue
        seen.add(key)
        out.append({"trial": t.number, "value": float(t.value), "params": dict(t.params)})
        if len(out) == k:
            break
    return out


def pick_warm_start(entries: list[dict[str, Any]], meta: dict[str, Any], model: str, mode: str,
                    current: tuple[str, str], limit: int = 3) -> list[tuple[dict[str, Any], str]]:
    """(params, source) of the configurations to try first.

    ``mode`` is ``auto`` (the two nearest earlier studies of the same data kind and model, within
    MAX_DISTANCE, interleaved: nearest's best, second nearest's best, nearest's second best, ...)
    or a study name.
    """
    others = [e for e in entries if (e.get("storage"), e.get("study")) != current and e.get("best")]
    if mode == "auto":
        scored = [(distance(meta, e["meta"]), e) for e in others if e.get("model") == model]
        # nearest first; studies about equally near (same data, other runs) by their best score
        near = sorted([(d, e) for d, e in scored if d <= MAX_DISTANCE],
                      key=lambda de: (round(de[0], 1), -de[1]["best"][0]["value"], -de[1].get("updated", 0)))
        chosen = near[:2]
    else:
        named = sorted([e for e in others if e["study"] == mode], key=lambda e: -e.get("updated", 0))
        if not named:
            known = sorted({e["study"] for e in others})
            raise ConfigError(f"--warm-start {mode}: no finished study of that name in the registry"
                              + (f"; known: {', '.join(known)}" if known else " (it is empty)")
                              + "; use --warm-start auto or off")
        chosen = [(distance(meta, named[0]["meta"]), named[0])]
    picks: list[tuple[dict[str, Any], str]] = []
    for rank in range(TOP_K):
        for d, e in chosen:
            if rank < len(e["best"]) and len(picks) < limit:
                b = e["best"][rank]
                where = f"{e['study']} trial {b['trial']} (val {b['value']:.4f}, distance {d:.2f})"
                picks.append((dict(b["params"]), where))
    return picks
