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
        # units that died during training died from steps that were too big
        ev = finding.get("evidence") or {}
        if ev.get("died_during_training") or _max_update_ratio(model_health or {}) > 0.5:
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
    for holder in (result, getattr(result, "state", None)):  # a Trainer State, or a FitResult's
        extra = getattr(holder, "extra", None)
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
    test = dict(getattr(result, "test_metrics", None) or {})
    best_val = best("val_acc")
    return {"findings": [f["issue"] for f in model_health.get("findings") or []],
            # the headline accuracy: on the test split when the fit has one, else the best validation epoch
            "acc": test.get("acc", best_val), "acc_on": "test" if "acc" in test else "validation",
            "epochs": len(history), "best_val_acc": best_val, "best_val_loss": best("val_loss", min),
            "final_val_acc": last.get("val_acc"), "final_train_loss": last.get("train_loss"),
            "final_train_acc": last.get("train_acc"), "test_metrics": test,
            "run": str(getattr(run, "path", run)) if run is not None else None}


def _resolve_config(config: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(TrainConfig from ``config`` + the config options among ``kwargs``, the other kwargs)."""
    import dataclasses

    from ..fitting import make_config
    from .config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return (make_config(config, **{k: v for k, v in kwargs.items() if k in names}),
            {k: v for k, v in kwargs.items() if k not in names})


def auto_fix(fit_fn: Callable[..., Any], data: Any, config: Any = None, **fit_kwargs: Any) -> dict[str, Any]:
    """Fit, diagnose, apply the recommended fix once, fit again; report before and after.

    Args:
        fit_fn: called as ``fit_fn(data, config=TrainConfig, **other_kwargs)`` (e.g. :func:`trainyard.fit`); its
            result must expose its model health: a FitResult (read from ``.run``), a Trainer State, or
            a dict with ``model_health``.
        data: passed through to ``fit_fn``.
        config: TrainConfig, dict, YAML/JSON path or None; training options among ``fit_kwargs``
            (``epochs=10``) win over it, as in ``fit``, and are folded into the TrainConfig.
        fit_kwargs: the others are passed through; with ``out=DIR`` the runs go to ``DIR/before`` and
            ``DIR/after`` and the report to ``DIR/auto_fix.json``.
    Returns:
        ``{"before": summary, "after": summary | None, "fix": {issue, overrides, why, advice} | None,
        "improved": bool | None, "config": the fixed TrainConfig, "before_result", "after_result"}``.
        A summary holds the findings, ``acc`` (test accuracy, else best validation accuracy) and the
        loss curve's end points. ``after`` is None when the first fit had nothing to fix.

    >>> report = auto_fix(trainyard.fit, "sklearn:digits", lr=1e-7, out="runs/x")  # doctest: +SKIP
    >>> report["fix"]["overrides"], report["before"]["acc"], report["after"]["acc"]  # doctest: +SKIP
    ({'lr': 0.002}, 0.09, 0.97)
    """
    # both fits get a full TrainConfig and the same non-training kwargs: they differ by the fix only
    cfg, rest = _resolve_config(config, fit_kwargs)
    out_dir = rest.get("out")
    if out_dir is not None:
        rest["out"] = Path(out_dir) / "before"
    first = fit_fn(data, config=cfg, **rest)
    mh = _model_health_of(first)
    out: dict[str, Any] = {"before": _summary(first, mh), "after": None, "fix": None, "improved": None,
                           "config": cfg, "before_result": first, "after_result": None}
    overrides = recommend_fix(mh, cfg) if mh else {}
    if overrides:
        finding = next(f for f in mh.get("findings") or [] if fix_for(f, _cfg_dict(mh, cfg), mh) == overrides)
        new_cfg = cfg.replace(**overrides)
        if out_dir is not None:
            rest["out"] = Path(out_dir) / "after"
        second = fit_fn(data, config=new_cfg, **rest)
        after = _summary(second, _model_health_of(second))
        b, a = out["before"]["acc"], after["acc"]
        out.update(after=after, config=new_cfg, after_result=second,
                   fix={"issue": finding["issue"], "overrides": overrides, "why": finding["explanation"],
                        "advice": finding["fix"]},
                   improved=None if a is None or b is None else bool(a > b))
    if out_dir is not None:
        from ..run import write_json

        write_json(Path(out_dir) / "auto_fix.json",
                   {k: v for k, v in out.items() if k not in ("before_result", "after_result", "config")}
                   | {"config": out["config"].to_dict()})
    return out
