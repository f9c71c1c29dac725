"""Predict with a run (or an exported ONNX model) on new data, encoded exactly as in training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .run import Run, atomic_write


def read_features(run_dir: str | Path, data: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(X, ids) of a new file, encoded with the run's fitted encoder exactly as in training (labels optional)."""
    from .data import encoder_from_dict, load_features

    run = Run(run_dir).check()
    encoder = encoder_from_dict(run.read_json("encoder.json")) if run.file("encoder.json").exists() else None
    X, ids, _ = load_features(str(data), encoder)
    return X, ids


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
