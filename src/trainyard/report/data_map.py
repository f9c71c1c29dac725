"""The data map (dataset cartography): per training sample, confidence vs variability.

confidence = mean over epochs of the probability the model gave the *given* label;
variability = its standard deviation. Easy samples sit top-left, hard ones (often mislabelled)
bottom-left, ambiguous ones on the right. Read from samples.csv when the diagnose step wrote
``confidence``/``variability`` columns, else computed from the ledger.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MAX_POINTS = 20_000  # above this the browser gets slow: subsample, keeping every flagged sample


@dataclass
class DataMap:
    points: pd.DataFrame  # id, confidence, variability, correct, flagged, given_label, suggested_label, issue
    total: int  # training samples before subsampling
    source: str  # "samples.csv" or "ledger"
    correct_rule: str  # how "correct" was decided, shown in the legend note

    @property
    def subsampled(self) -> bool:
        return len(self.points) < self.total


def _flag_mask(samples: pd.DataFrame) -> np.ndarray:
    return (samples["label_issue"] | samples["outlier"] | samples["ambiguous"] | samples["duplicate"]).to_numpy()


def _ledger_correct(run_dir: str | os.PathLike, n_rows: int) -> np.ndarray | None:
    """Per dataset row: 1.0 if the final epoch predicted the given label, 0.0 if not, NaN if the
    row was not trained on; None without a ledger."""
    led = read_ledger_or_none(run_dir)
    if led is None or getattr(led, "y", None) is None or getattr(led, "pred", None) is None:
        return None
    y, idx = np.asarray(led.y), np.asarray(led.train_idx, dtype=np.int64)
    if len(y) != n_rows or not len(idx) or idx.max() >= n_rows:
        return None
    out = np.full(n_rows, np.nan)
    out[idx] = np.asarray(led.pred[-1]) == y[idx]
    return out


def _from_samples(samples: pd.DataFrame, run_dir: str | os.PathLike | None = None) -> tuple[pd.DataFrame, str] | None:
    if not {"confidence", "variability"} <= set(samples.columns):
        return None
    used = ["id", "confidence", "variability", "given_label", "suggested_label", "issue", "split", "correctness",
            "predicted_label", "label_issue", "outlier", "ambiguous", "duplicate"]
    df = samples[[c for c in used if c in samples]].copy()  # not every column: 10^6 rows are copied here
    df["confidence"] = pd.to_numeric(df["confidence"], errors="coerce")
    df["variability"] = pd.to_numeric(df["variability"], errors="coerce")
    df["flagged"] = _flag_mask(df)
    ledger_correct = None
    if "correctness" not in df and "predicted_label" not in df and run_dir is not None:
        ledger_correct = _ledger_correct(run_dir, len(df))
    if ledger_correct is not None:
        df["_ledger_correct"] = ledger_correct
    keep = df["confidence"].notna() & df["variability"].notna()
    if "split" in df:
        train = df["split"].astype(str).str.lower().eq("train")
        if (keep & train).any():
            keep &= train
    df = df[keep]
    if "correctness" in df:
        df["correct"] = pd.to_numeric(df["correctness"], errors="coerce").fillna(0).to_numpy() >= 0.5
        rule = "predicted correctly in at least half of the epochs"
    elif ledger_correct is not None and df["_ledger_correct"].notna().all():
        df["correct"] = df["_ledger_correct"].to_numpy() == 1.0
        rule = "final-epoch prediction equals the given label"
    elif "predicted_label" in df:
        df["correct"] = df["predicted_label"].astype(str).to_numpy() == df["given_label"].to_numpy()
        rule = "final prediction equals the given label"
    else:
        df["correct"] = df["confidence"].to_numpy() >= 0.5
        rule = "mean probability of the given label at least 0.5"
    return df, rule


def read_ledger_or_none(run_dir: str | os.PathLike):
    """The run's ledger arrays, or None when the run kept no (readable) ledger."""
    if not (Path(run_dir) / "ledger").is_dir():
        return None  # skip importing the training stack for nothing
    try:
        from ..monitor import read_ledger  # the training stage's reader

        return read_ledger(run_dir)
    except Exception:  # noqa: BLE001 - no ledger (or an unreadable one) just means no data map
        return None


def _dataset_ids(run_dir: str | os.PathLike, idx: np.ndarray) -> np.ndarray:
    """The user's ids of dataset rows ``idx`` (from data.npz; the row numbers if it is missing)."""
    try:
        with np.load(Path(run_dir) / "data.npz", allow_pickle=False) as z:
            ids = z["ids"]  # npz members load lazily: X is not read
        if len(ids) > idx.max(initial=-1):
            return ids[idx].astype(str)
    except (OSError, KeyError, ValueError):
        pass
    return idx.astype(str)


def _from_ledger(run_dir: str | os.PathLike, samples: pd.DataFrame | None) -> tuple[pd.DataFrame, str] | None:
    led = read_ledger_or_none(run_dir)
    if led is None:
        return None
    p = np.asarray(led.p_given, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] == 0:
        return None
    idx = np.asarray(led.train_idx, dtype=np.int64)
    y = None if getattr(led, "y", None) is None else np.asarray(led.y)
    df = pd.DataFrame({"confidence": p.mean(0), "variability": p.std(0)})
    if y is not None and getattr(led, "pred", None) is not None:
        df["correct"] = np.asarray(led.pred[-1]) == y[idx]
        rule = "final-epoch prediction equals the given label"
    else:
        df["correct"] = df["confidence"].to_numpy() >= 0.5
        rule = "mean probability of the given label at least 0.5"
    n_rows = len(y) if y is not None else (len(samples) if samples is not None else 0)
    if samples is not None and len(samples) == n_rows and (idx < n_rows).all():
        rows = samples.iloc[idx].reset_index(drop=True)
        for col in ("id", "given_label", "suggested_label", "issue"):
            df[col] = rows[col].to_numpy()
        df["flagged"] = _flag_mask(rows)
    else:
        df["id"] = _dataset_ids(run_dir, idx)
        df["given_label"] = y[idx].astype(str) if y is not None else ""
        df["suggested_label"] = ""
        df["issue"] = ""
        df["flagged"] = False
    return df, rule


def build_data_map(run_dir: str | os.PathLike, samples: pd.DataFrame | None,
                   max_points: int = MAX_POINTS, seed: int = 0) -> DataMap | None:
    """Data-map points for the training samples, or None when neither source is available."""
    got = _from_samples(samples, run_dir) if samples is not None else None
    source = "samples.csv"
    if got is None:
        got, source = _from_ledger(run_dir, samples), "ledger"
    if got is None:
        return None
    df, rule = got
    df = df.reset_index(drop=True)
    total = len(df)
    if total > max_points:
        flagged = np.flatnonzero(df["flagged"].to_numpy())[:max_points]
        rest = np.flatnonzero(~df["flagged"].to_numpy())
        rng = np.random.default_rng(seed)
        extra = rng.choice(rest, size=max(0, max_points - len(flagged)), replace=False)
        df = df.iloc[np.sort(np.concatenate([flagged, extra]))].reset_index(drop=True)
    cols = ["id", "confidence", "variability", "correct", "flagged", "given_label", "suggested_label", "issue"]
    return DataMap(points=df[cols], total=total, source=source, correct_rule=rule)
