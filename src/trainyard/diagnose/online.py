"""Inference-time monitoring: low-confidence predictions and drift of a new batch against training data."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..run import Run, atomic_write, write_json


def diagnose_online(run_dir: str | Path, new_data: str | Path, out: str | Path | None = None,
                    quantile: float = 0.05) -> dict[str, Any]:
    """Score a new batch with a trained run.

    A prediction is *low-confidence* when its top probability is below the ``quantile`` of the top
    probabilities the model gave the validation split (so the rate is ~5 % on data like the training data).
    Drift compares the new batch with the training split feature by feature (PSI, KS, KL) and with a
    classifier two-sample test.
    """
    from ..fitting import load_data, load_model
    from ..predicting import read_features
    from ..train.trainer import predict_proba
    from .drift import online_drift

    run = Run(run_dir).check()
    ds, splits = load_data(run.path)
    model = load_model(run.path)
    X_new, ids = read_features(run.path, new_data)
    ref = ds.X[splits.val] if len(splits.val) else ds.X[splits.train]
    threshold = float(np.quantile(predict_proba(model, ref).max(1), quantile))
    probs = predict_proba(model, X_new)
    conf = probs.max(1)
    low = conf < threshold
    drift = online_drift(ds.X[splits.train], X_new, ds.feature_names, seed=0)
    out = Path(out) if out else run.path / f"online-{Path(new_data).stem}"
    out.mkdir(parents=True, exist_ok=True)
    classes = np.asarray(ds.classes, dtype=object)
    df = pd.DataFrame({"id": ids, "predicted": classes[probs.argmax(1)], "confidence": conf.round(6),
                       "low_confidence": low})
    atomic_write(out / "online.csv", lambda tmp: df.to_csv(tmp, index=False))
    res = {"n_rows": int(len(X_new)), "n_low_confidence": int(low.sum()), "confidence_threshold": threshold,
           "low_confidence_rate": float(low.mean()) if len(low) else 0.0, "drift_detected": drift["drift"], "drifted_features": drift["drifted_features"],
           "drift": drift["features"], "two_sample": drift["two_sample"], "drift_rule": drift["rule"],
           "out": str(out)}
    write_json(out / "online.json", res)
    return res
