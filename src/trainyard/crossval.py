"""K-fold cross-validation: train K times, report mean ± std on each held-out fold."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


def cross_validate(data, k: int = 5, *, target: str | None = None, text: str | None = None, config=None,
                   out: str | Path | None = None, quiet: bool = True, **overrides: Any) -> dict[str, Any]:
    """Stratified K-fold; each fold's validation part (for early stopping / best epoch) is cut from its
    training part, and the fold itself is the test split."""
    from .data import kfold, load, make_splits
    from .errors import ConfigError
    from .fitting import default_out, fit
    from .run import write_json

    if k < 2:
        raise ConfigError(f"--cv must be >= 2, got {k}")
    ds = load(str(data), target=target, text=text) if isinstance(data, (str, Path)) else data
    out = Path(out) if out else default_out("cv")
    seed = int(overrides.get("seed") or 0)
    folds = []
    for i, (train_val, test) in enumerate(kfold(ds.y, k, seed)):
        inner = make_splits(ds.y[train_val], fractions=(0.8, 0.2, 0.0), seed=seed)
        sp = SimpleNamespace(train=train_val[inner.train], val=train_val[inner.val], test=np.asarray(test))
        res = fit(ds, splits=sp, out=out / f"fold{i}", config=config, quiet=quiet, write_report=False, **overrides)
        folds.append(res.test_metrics)
    summary: dict[str, Any] = {"k": k, "folds": folds}
    for key in ("acc", "macro_f1", "auc"):
        vals = np.array([f.get(key, np.nan) for f in folds], dtype=float)
        summary[f"{key}_mean"], summary[f"{key}_std"] = float(np.nanmean(vals)), float(np.nanstd(vals))
    write_json(out / "cv.json", summary)
    return summary
