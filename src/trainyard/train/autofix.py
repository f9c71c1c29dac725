"""``--auto-fix``: apply the fix recommended by the model diagnosis once, retrain, report both runs.

:func:`recommend_fix` turns the most basic finding of ``model_health.json`` into TrainConfig
overrides (architecture hints such as ``activation='gelu'`` or ``norm=True`` are TrainConfig
fields too); :func:`auto_fix` calls a fit function twice, before and after.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

SATURATING = ("sigmoid", "tanh")
RELU_LIKE = ("relu", "relu6")
DEFAULT_LR = {"adamw": 2e-3, "adafactor": 2e-3, "sgd": 0.05}  # a safe starting learning rate per optimizer


def _cfg_dict(model_health: dict, config: Any = None) -> dict[str, Any]:
    """Current training settings: the given config wins over what the run recorded."""
    d = dict(model_health.get("config") or {})
    if config is not None:
        d.update(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    return d


def _max_update_ratio(model_health: dict) -> float:
    vals = [v.get("update_ratio") for ep in model_health.get("epochs") or [] for v in ep.get("layers", {}).values()]
    vals = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
    return max(vals) if vals else float("nan")


def fix_for(finding: dict, cfg: dict[str, Any], model_health: dict | None = None) -> dict[str, Any]:
    """TrainConfig overrides that address one finding, given the current settings ``cfg``."""
    issue = finding["issue"]
    lr = float(cfg.get("lr") or DEFAULT_LR["adamw"])
    wd = float(cfg.get("weight_decay") or 0.0)
    act = str(cfg.get("activation") or "relu")
    hidden = tuple(cfg.get("hidden") or ())
    k = int((model_health or {}).get("n_classes") or 0)
    fix: dict[str, Any] = {}
    if issue == "lr_too_high":
        fix["lr"] = lr / 10
        if not cfg.get("clip"):
            fix["clip"] = "norm:1.0"
    elif issue == "exploding_gradients":
        fix["lr"] = lr / 10
        if not cfg.get("clip"):
            fix["clip"] = "norm:1.0"
        if cfg.get("norm") is False:
            fix["norm"] = True
    elif issue == "vanishing_gradients":
        fix["norm"] = True
        if act in SATURATING:
            fix["activation"] = "gelu"
    elif issue == "dead_units":
        if act in RELU_LIKE or act in SATURATING:
            fix["activation"] = "gelu"
        # units usually die from steps that are too big: lower the rate when the weights moved a lot
        if _max_update_ratio(model_health or {}) > 0.5:
            fix["lr"] = lr / 10
    elif issue == "collapsed_features":
        if wd > 0:
            fix["weight_decay"] = wd / 10
        if not cfg.get("norm"):
            fix["norm"] = True
        need = max(32, 4 * max(k - 1, 1))
        if hidden and min(hidden) < need:
            fix["hidden"] = tuple(max(h, need) for h in hidden)
    elif issue == "lr_too_low":
        safe = DEFAULT_LR.get(str(cfg.get("optimizer") or "adamw"), DEFAULT_LR["adamw"])
        fix["lr"] = safe if lr < safe / 10 else lr * 10
    elif issue == "overfitting":
        fix["weight_decay"] = max(wd * 10, 1e-2)
        fix["dropout"] = max(float(cfg.get("dropout") or 0.0), 0.3)
        if not cfg.get("patience"):
            fix["patience"] = 5
    elif issue == "underfitting":
        fix["epochs"] = int(cfg.get("epochs") or 30) * 2
        if hidden:
            fix["hidden"] = tuple(2 * h for h in hidden)
        if float(cfg.get("dropout") or 0.0) > 0:
            fix["dropout"] = 0.0
        if wd > 0:
            fix["weight_decay"] = wd / 10
    return fix


def recommend_fix(model_health: dict, config: Any = None) -> dict[str, Any]:
    """TrainConfig overrides fixing the most basic problem found; ``{}`` for a healthy model.

    Args:
        model_health: the record of ``model_health.json`` (findings are computed if absent).
        config: the TrainConfig (or dict) of the run; defaults to the settings the run recorded.

    >>> recommend_fix({"findings": [{"issue": "lr_too_low"}], "config": {"lr": 1e-7}})
    {'lr': 0.002}
    """
    findings = model_health.get("findings")
    if findings is None:
        from ..diagnose.model_health import diagnose_model

        findings = diagnose_model(model_health)
    cfg = _cfg_dict(model_health, config)
    for f in findings:  # already sorted: most likely root cause first
        fix = fix_for(f, cfg, model_health)
        if fix:
            return fix
    return {}


# -- auto-fix ------------------------------------------------------------------------------------
def _model_health_of(result: Any) -> dict:
    """The model-health record of a fit result (FitResult, Trainer State, dict or run directory)."""
    if isinstance(result, dict) and "model_health" in result:
        return result["model_health"]
    mh = getattr(result, "model_health", None)
    if mh is not None:
        return mh
    extra = getattr(result, "extra", None)
    if isinstance(extra, dict) and extra.get("model_health") is not None:
        return extra["model_health"]
    run = getattr(result, "run", result)
    path = getattr(run, "path", run)
    if isinstance(path, (str, Path)) and (Path(path) / "model_health.json").exists():
        from ..run import read_json

        return read_json(Path(path) / "model_health.json")
    return {}


def _summary(result: Any, model_health: dict) -> dict[str, Any]:
    history = getattr(result, "history", None)
    if history is None and isinstance(result, dict):
        history = result.get("history")
    history = list(history or model_health.get("history") or [])

    def best(key: str, fn=max) -> float | None:
        vals = [r[key] for r in history if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return fn(vals) if vals else None

    last = history[-1] if history else {}
    run = getattr(result, "run", None)
    return {"findings": [f["issue"] for f in model_health.get("findings") or []],
            "epochs": len(history), "best_val_acc": best("val_acc"), "best_val_loss": best("val_loss", min),
            "final_val_acc": last.get("val_acc"), "final_train_loss": last.get("train_loss"),
            "final_train_acc": last.get("train_acc"),
            "run": str(getattr(run, "path", run)) if run is not None else None}


def _apply(config: Any, overrides: dict[str, Any]) -> Any:
    if config is None:
        from .config import TrainConfig

        return TrainConfig().replace(**overrides)
    if hasattr(config, "replace"):
        return config.replace(**overrides)
    return {**dict(config), **overrides}


def auto_fix(fit_fn: Callable[[Any, Any], Any], data: Any, config: Any = None) -> dict[str, Any]:
    """Fit, diagnose, apply the recommended fix once, fit again.

    Args:
        fit_fn: ``fit_fn(data, config) -> result``; the result must expose its model health (a
            FitResult with ``.run``, a Trainer State, or a dict with ``model_health``).
        data: passed through to ``fit_fn``.
        config: the TrainConfig (or dict, or None for defaults) of the first fit.
    Returns:
        ``{"before": summary, "after": summary | None, "fix": {issue, overrides, why} | None,
        "improved": bool | None, "config": fixed config, "before_result": ..., "after_result": ...}``;
        the summaries hold findings, best/final validation accuracy and loss. ``after`` is None when
        the first fit had nothing to fix.
    """
    first = fit_fn(data, config)
    mh = _model_health_of(first)
    out: dict[str, Any] = {"before": _summary(first, mh), "after": None, "fix": None, "improved": None,
                           "config": config, "before_result": first, "after_result": None}
    overrides = recommend_fix(mh, config) if mh else {}
    if not overrides:
        return out
    finding = next(f for f in mh.get("findings") or [] if fix_for(f, _cfg_dict(mh, config), mh) == overrides)
    new_config = _apply(config, overrides)
    second = fit_fn(data, new_config)
    after = _summary(second, _model_health_of(second))
    b, a = out["before"]["best_val_acc"], after["best_val_acc"]
    out.update(after=after, config=new_config, after_result=second,
               fix={"issue": finding["issue"], "overrides": overrides, "why": finding["explanation"],
                    "advice": finding["fix"]},
               improved=None if a is None or b is None else bool(a > b))
    return out
