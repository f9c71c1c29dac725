"""``explain``: global importance, per-sample attributions and why-flagged evidence in one dict."""
from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import numpy as np
from torch import nn

from ..errors import ConfigError
from ._common import jsonable_ids, load_finished_run, pick_split, predict_proba, split_indices
from .attribution import attribution_heatmap, integrated_gradients, why_flagged
from .importance import permutation_importance, shap_importance

EXPLAIN_JSON = "explain.json"


def _class_code(value: Any, classes: Sequence[str], what: str) -> int | None:
    if value is None or (isinstance(value, float) and value != value) or str(value) == "":
        return None
    names = [str(c) for c in classes]
    if isinstance(value, float) and value.is_integer() and str(value) not in names:
        value = int(value)  # pandas reads a class column "3" with empty cells as the float 3.0
    if str(value) in names:
        return names.index(str(value))
    raise ConfigError(f"{what}: unknown class {value!r}; classes are {names}")


def _flagged_rows(model: nn.Module, data, flagged: Iterable[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, given and suggested codes of the flagged samples; the suggestion defaults to the
    model's most probable class other than the given one."""
    pos = {str(i): k for k, i in enumerate(data.ids)}
    rows, suggested = [], []
    for item in flagged:
        rec = item if isinstance(item, dict) else {"id": item}
        key = str(rec["id"])
        if key not in pos:
            raise ConfigError(f"flagged id {key!r} is not a row id of {data.source or 'the dataset'}")
        rows.append(pos[key])
        suggested.append(_class_code(rec.get("suggested_label"), data.classes, f"row {key}"))
    rows_a = np.asarray(rows, dtype=np.int64)
    given = data.y[rows_a]
    if any(s is None for s in suggested):
        probs = predict_proba(model, data.X[rows_a]) if len(rows_a) else np.zeros((0, data.n_classes))
        probs[np.arange(len(rows_a)), given] = -1.0  # suggest the best class that is not the given one
        alt = probs.argmax(1) if len(rows_a) else np.zeros(0, dtype=np.int64)
        suggested = [alt[k] if s is None else s for k, s in enumerate(suggested)]
    return rows_a, given, np.asarray(suggested, dtype=np.int64)


def explain(model: nn.Module, data, splits: Any = None, *, flagged: Iterable[Any] | None = None,
            n_repeats: int = 5, n_samples: int = 16, top: int = 5, use_shap: bool = True,
            ig_steps: int = 32, seed: int = 0) -> dict:
    """Explain a trained model on a Dataset.

    Args:
        model: a trained model (``forward(x) -> logits``).
        data: the Dataset; ``splits`` (``.train``, ``.val``, ``.test`` index arrays) picks the rows:
            importance is measured on the validation split (test if there is none).
        flagged: ids, or dicts with ``id`` and optionally ``suggested_label`` (class name), of rows
            to give "why flagged" evidence for.
        use_shap: add SHAP values for tabular/text data (needs ``trainyard[explain]``).

    Returns a dict with ``permutation`` (and ``shap``), ``samples`` (integrated gradients of
    ``n_samples`` validation rows toward their predicted class; heat maps for images) and
    ``flagged`` (one entry per flagged row, see :func:`why_flagged`).
    """
    n = len(data)
    val_idx = pick_split(splits, n, "val", "test")
    train_idx = split_indices(splits, "train", n) if splits is not None else np.arange(n)
    if len(train_idx) == 0:
        train_idx = np.arange(n)
    rng = np.random.default_rng(seed)
    tabular = data.X.ndim == 2
    # IG reference: a black image, or the average training row (zeros would be an arbitrary point)
    baseline = data.X[train_idx].mean(0) if tabular else None
    out: dict = {"kind": data.kind, "classes": list(data.classes), "n_val": int(len(val_idx)), "seed": seed,
                 "input_shape": list(data.X.shape[1:])}
    out["permutation"] = permutation_importance(model, data.X[val_idx], data.y[val_idx], n_repeats=n_repeats,
                                                seed=seed, feature_names=data.feature_names if tabular else None)
    if use_shap and tabular:
        res = shap_importance(model, data.X[train_idx], data.X[val_idx], feature_names=data.feature_names, seed=seed)
        res["ids"] = jsonable_ids(data.ids[val_idx][res.pop("rows")])
        out["shap"] = res
    pick = np.sort(rng.choice(val_idx, min(n_samples, len(val_idx)), replace=False)) if len(val_idx) else val_idx
    pred = predict_proba(model, data.X[pick]).argmax(1) if len(pick) else np.zeros(0, dtype=np.int64)
    attr = integrated_gradients(model, data.X[pick], pred, baseline=baseline, n_steps=ig_steps)
    samples = {"ids": jsonable_ids(data.ids[pick]), "label": [data.classes[k] for k in data.y[pick]],
               "predicted": [data.classes[k] for k in pred], "method": "integrated_gradients",
               "baseline": "training mean" if tabular else "zeros"}
    if tabular:
        samples["features"] = list(data.feature_names or [f"x{j}" for j in range(data.X.shape[1])])
        samples["attribution"] = attr.tolist()
    else:
        samples["heatmaps"] = attribution_heatmap(attr).tolist()
    out["samples"] = samples
    if flagged is not None:
        rows, given, suggested = _flagged_rows(model, data, flagged)
        out["flagged"] = why_flagged(model, data.X[rows], given, suggested, ids=data.ids[rows], classes=data.classes,
                                     feature_names=data.feature_names if tabular else None, top=top,
                                     baseline=baseline, n_steps=ig_steps)
    return out


def flagged_from_samples(run, ids: Sequence[str] | None = None, max_flagged: int = 50) -> list[dict]:
    """Flagged rows of a run: the given ``ids``, else the label issues in samples.csv (worst first)."""
    path = run.file("samples.csv")
    table = run.read_csv("samples.csv") if path.exists() else None
    if ids is not None:
        suggestion = {}
        if table is not None and "suggested_label" in table:
            suggestion = {str(i): s for i, s in zip(table["id"].astype(str), table["suggested_label"])}
        return [{"id": str(i), "suggested_label": suggestion.get(str(i))} for i in ids]
    if table is None or "label_issue" not in table:
        return []
    issues = table[table["label_issue"].astype(str).str.lower().isin(["true", "1"])]
    if "label_score" in issues:
        issues = issues.sort_values("label_score", ascending=False)
    return [{"id": str(r["id"]), "suggested_label": r.get("suggested_label")}
            for _, r in issues.head(max_flagged).iterrows()]


def explain_run(run_dir: str | os.PathLike, samples: Sequence[str] | None = None, *, max_flagged: int = 50,
                **options: Any) -> dict:
    """Explain a finished run's model. "Why flagged" evidence is given for the row ids in ``samples``,
    else for the label issues in the run's samples.csv (worst ``max_flagged``). Writes explain.json.

    >>> explain_run("runs/first", samples=["17", "42"])["flagged"][0]["top_features"]   # doctest: +SKIP
    """
    run, model, data, splits = load_finished_run(run_dir)
    flagged = flagged_from_samples(run, samples, max_flagged)
    result = explain(model, data, splits, flagged=flagged, **options)
    run.write_json(EXPLAIN_JSON, result)
    return result
