"""Read a run directory for the report and the review page, tolerating missing or partial files.

Every stage is optional (a run that only did ``fit`` has no ``samples.csv``), so each file is read
on its own: a missing file is ``None``; an unreadable one is ``None`` plus a note shown in the report.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import RunError
from ..run import DATA_HEALTH, METRICS_CSV, MODEL_HEALTH, RUN_JSON, SAMPLES_CSV

REPAIR_JSON = "repair.json"
BEST_JSON = "best.json"
TRIALS_CSV = "trials.csv"
TUNE_JSON = "tune.json"
EXPLAIN_JSON = "explain.json"
DATA_NPZ = "data.npz"
RAW_CSV = "raw.csv"
REVIEWED_CSV = "reviewed.csv"

# samples.csv text columns (class names, ids, issue names)
STRING_COLUMNS = ("given_label", "suggested_label", "duplicate_of", "issue")
# samples.csv flag columns; rows written by other tools may lack some of them.
BOOL_COLUMNS = ("label_issue", "outlier", "ambiguous")
ISSUE_TYPES = ("label", "outlier", "duplicate", "ambiguous")


@dataclass
class RunFiles:
    """Everything the report can show, each ``None`` when that stage did not run."""

    path: Path
    meta: dict
    metrics: pd.DataFrame | None = None
    samples: pd.DataFrame | None = None
    data_health: dict | None = None
    model_health: dict | None = None
    repair: dict | None = None
    best: dict | None = None
    trials: pd.DataFrame | None = None
    tune: dict | None = None
    explain: dict | list | None = None
    notes: list[str] = field(default_factory=list)  # files that exist but could not be read

    @property
    def classes(self) -> list[str]:
        """Class names from run.json, else the labels seen in samples.csv."""
        classes = self.meta.get("classes")
        if classes:
            return [str(c) for c in classes]
        if self.samples is not None and "given_label" in self.samples:
            return sorted(self.samples["given_label"].dropna().astype(str).unique().tolist())
        return []

    @property
    def kind(self) -> str:
        """tabular, image or text, from run.json (top level or its ``data`` block)."""
        kind = self.meta.get("kind")
        data = self.meta.get("data")
        if not kind and isinstance(data, dict):
            kind = data.get("kind")
        return str(kind or "tabular")


def _to_bool(col: pd.Series) -> pd.Series:
    """CSV booleans arrive as True/False, 1/0, 'true'/'yes' or blanks."""
    if col.dtype == bool:
        return col
    text = col.astype(str).str.strip().str.lower()
    return text.isin(("true", "1", "1.0", "yes", "y", "t"))


def normalise_samples(df: pd.DataFrame, copy: bool = True) -> pd.DataFrame:
    """Give samples.csv the contract's columns and types whatever wrote it.

    ``copy=False`` changes ``df`` in place (a frame just read from disk: one fewer copy of 10^6 rows)."""
    if copy:
        df = df.copy()
    if "id" not in df:
        df["id"] = np.arange(len(df)).astype(str)
    df["id"] = df["id"].astype(str)
    for col in STRING_COLUMNS:
        if col not in df:
            df[col] = ""
        numeric = df[col].dtype.kind in "biuf"
        df[col] = df[col].astype(str).where(df[col].notna(), "")
        if numeric:  # integer-like labels read back as floats ("3.0") must match class names ("3")
            df[col] = df[col].str.replace(r"^(-?\d+)\.0$", r"\1", regex=True)
    for col in BOOL_COLUMNS:
        df[col] = _to_bool(df[col]) if col in df else False
    for col in ("label_score", "outlier_score"):
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else np.nan
    df["duplicate"] = df["duplicate_of"].str.len() > 0
    return df


def _read_json(path: Path, notes: list[str]) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        notes.append(f"{path.name} could not be read ({e}); its section is left out.")
        return None


def _read_csv(path: Path, notes: list[str], dtype: dict[str, Any] | None = None) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=dtype)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        notes.append(f"{path.name} could not be read ({e}); its section is left out.")
        return None


def load_run_files(run_dir: str | os.PathLike) -> RunFiles:
    """Read every report input of ``run_dir``; raise RunError if it is not a run directory."""
    path = Path(run_dir)
    # a tune output folder (best.json, trials.csv, tune.json) has no run.json of its own
    is_study = any((path / f).is_file() for f in (BEST_JSON, TRIALS_CSV, TUNE_JSON))
    if not (path / RUN_JSON).is_file() and not is_study:
        raise RunError(f"{path}: not a Trainyard run directory (no {RUN_JSON}); "
                       "pass the folder that `trainyard fit --out` wrote")
    notes: list[str] = []
    meta = _read_json(path / RUN_JSON, notes) if (path / RUN_JSON).is_file() else {"status": "study"}
    if not isinstance(meta, dict):
        raise RunError(f"{path / RUN_JSON}: not a valid run.json; rerun the stage that wrote it")
    rf = RunFiles(path=path, meta=meta, notes=notes)
    rf.metrics = _read_csv(path / METRICS_CSV, notes)
    # class names and ids read as text: "3" stays "3" (not 3.0), with no second pass over 10^6 rows
    samples = _read_csv(path / SAMPLES_CSV, notes, dtype={c: str for c in ("id",) + STRING_COLUMNS})
    rf.samples = normalise_samples(samples, copy=False) if samples is not None else None
    rf.data_health = _read_json(path / DATA_HEALTH, notes)
    rf.model_health = _read_json(path / MODEL_HEALTH, notes)
    rf.repair = _read_json(path / REPAIR_JSON, notes)
    rf.best = _read_json(path / BEST_JSON, notes)
    rf.trials = _read_csv(path / TRIALS_CSV, notes)
    rf.tune = _read_json(path / TUNE_JSON, notes)
    rf.explain = _read_json(path / EXPLAIN_JSON, notes)
    return rf


def load_data_arrays(run_dir: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """``data.npz`` of the run (X, y, ids, classes, maybe feature_names), or None."""
    p = Path(run_dir) / DATA_NPZ
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None


def load_raw_table(run_dir: str | os.PathLike) -> pd.DataFrame | None:
    """``raw.csv`` of the run (the user's rows as loaded, for display), or None."""
    p = Path(run_dir) / RAW_CSV
    if not p.is_file():
        return None
    try:
        return pd.read_csv(p, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pd.errors.ParserError):
        return None
