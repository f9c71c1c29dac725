"""Predict with a run (or an exported ONNX model) on new data, encoded exactly as in training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .run import Run, atomic_write


def read_features(run_dir: str | Path, data: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(X, ids) of a new file, encoded with the run's fitted encoder (tables) or loaded as in training."""
    run = Run(run_dir).check()
    path = Path(data)
    if run.file("encoder.json").exists() and path.suffix.lower() in (".csv", ".parquet", ".tsv", ".txt"):
        from .data import TableEncoder
        from .data import read_table

        enc = TableEncoder.from_dict(run.read_json("encoder.json"))
        df = read_table(path)
        return enc.transform(df), np.asarray([str(i) for i in range(len(df))], dtype=object)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z:
                raise DataError(f"{path}: .npz has no array named X")
            X = z["X"]
            ids = z["ids"].astype(str) if "ids" in z else np.arange(len(X)).astype(str)
        from .data import load

        try:
            ds = load(str(path))
            return ds.X, ds.ids
        except DataError:  # unlabelled new data: same scaling rules as the loader, no labels needed
            X = X.astype(np.float32) / (255.0 if X.dtype == np.uint8 else 1.0)
            if X.ndim == 3:
                X = X[:, None]
            return X, ids
    from .data import load

    ds = load(str(path))
    return ds.X, ds.ids


def predict(model: str | Path, data: str | Path, out: str | Path | None = None) -> Path:
    """Write ``predictions.csv`` (id, predicted, confidence, one probability column per class)."""
    model = Path(model)
    if model.suffix == ".onnx":
        from .compress import predict_onnx

        run_dir = model.parent
        X, ids = read_features(run_dir, data)
        probs = predict_onnx(model, X)
    else:
        from .fitting import load_model
        from .train.trainer import predict_proba

        run_dir = model
        X, ids = read_features(run_dir, data)
        probs = predict_proba(load_model(run_dir), X)
    classes = Run(run_dir).meta.get("data", {}).get("classes") or [str(i) for i in range(probs.shape[1])]
    df = pd.DataFrame({"id": ids, "predicted": np.asarray(classes, dtype=object)[probs.argmax(1)],
                       "confidence": probs.max(1).round(6)})
    for j, c in enumerate(classes):
        df[f"p_{c}"] = probs[:, j].round(6)
    out = Path(out) if out else run_dir / "predictions.csv"
    atomic_write(out, lambda tmp: df.to_csv(tmp, index=False))
    return out
