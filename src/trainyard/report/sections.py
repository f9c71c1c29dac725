"""Build each report section's template context from the run files; None means "leave it out".

Each function reads only what it needs and tolerates the shapes other stages may write, so a
run that stopped early (or an older run) still gets a report of what it has.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np
import pandas as pd

from . import figures as F
from .data_map import build_data_map
from .evidence import Evidence, feature_importance
from .flagged import ISSUE_TITLES, flagged_samples, worst_per_issue
from .flagged import reasons as why_flagged
from .run_files import RunFiles

GALLERY_PER_ISSUE = 24
SEVERITY_ORDER = {"critical": 0, "high": 1, "error": 1, "warning": 2, "medium": 2, "low": 3, "info": 4}


def _when(ts: Any) -> str | None:
    if isinstance(ts, (int, float)) and ts > 0:
        return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
    return str(ts) if ts else None


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config dicts as dotted keys, for a two-column table."""
    out: dict[str, Any] = {}
    if not isinstance(d, dict):
        return {prefix or "value": d}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


# ---------------------------------------------------------------------------------- summary
def summary(rf: RunFiles) -> dict:
    meta = rf.meta
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    n = data.get("n_rows", data.get("n_samples", meta.get("n_samples")))
    if n is None and rf.samples is not None:
        n = len(rf.samples)
    classes = rf.classes
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    data_rows = {
        "source": data.get("source") or meta.get("source") or config.get("data"),
        "kind": rf.kind, "rows": n,
        "target column": data.get("target"), "text column": data.get("text"), "test file": data.get("test"),
        "classes": f"{len(classes)}: {', '.join(classes[:12])}" + (" …" if len(classes) > 12 else "")
        if classes else None,
        "input shape": data.get("input_shape"),
        "fingerprint (sha256)": meta.get("fingerprint") or data.get("fingerprint"),
    }
    for k in ("n_train", "n_val", "n_test"):
        if data.get(k) is not None or meta.get(k) is not None:
            data_rows[k[2:] + " rows"] = data.get(k, meta.get(k))
    created, finished = meta.get("created"), meta.get("finished")
    time_rows: dict[str, Any] = {"started": _when(created), "finished": _when(finished)}
    if isinstance(created, (int, float)) and isinstance(finished, (int, float)) and finished >= created:
        time_rows["wall time"] = _duration(finished - created)
    if isinstance(meta.get("seconds"), (int, float)):
        time_rows["training"] = _duration(meta["seconds"])
    timings = meta.get("timings")
    if isinstance(timings, dict):
        for k, v in timings.items():
            time_rows[f"{k}"] = _duration(v) if isinstance(v, (int, float)) else v
    for k in ("epochs_run", "best_epoch", "stopped_early", "diverged_at"):
        if meta.get(k) is not None:
            time_rows[k.replace("_", " ")] = meta[k]
    final: dict[str, Any] = {}
    if isinstance(meta.get("test_metrics"), dict):
        final.update({f"test {k}": v for k, v in meta["test_metrics"].items()
                      if k in ("acc", "accuracy", "macro_f1", "auc", "loss")})
    if rf.metrics is not None and len(rf.metrics):
        last = rf.metrics.iloc[-1]
        for k in ("val_loss", "val_acc", "val_macro_f1", "val_auc"):
            if k in last and pd.notna(last[k]):
                final[f"last {k}"] = last[k]
    model = meta.get("model")
    return {
        "name": rf.path.resolve().name, "status": meta.get("status", "unknown"),
        "seed": meta.get("seed", config.get("seed")),
        "data": {k: v for k, v in data_rows.items() if v not in (None, "")},
        "model": _flatten(model) if isinstance(model, dict) else ({"model": model} if model else {}),
        # fit stores its TrainConfig under config.train: show its keys without the prefix
        "config": _flatten(config["train"] if set(config) == {"train"} and isinstance(config["train"], dict)
                           else config),
        "time": {k: v for k, v in time_rows.items() if v not in (None, "")},
        "final": final,
        "versions": meta.get("versions") if isinstance(meta.get("versions"), dict) else {},
        "error": meta.get("error"),
    }


# ------------------------------------------------------------------------------ training
def curves(rf: RunFiles) -> dict | None:
    fig = F.learning_curves(rf.metrics) if rf.metrics is not None else None
    return {"fig": F.to_div(fig, "fig-curves"), "epochs": len(rf.metrics)} if fig else None


def confusion(rf: RunFiles) -> dict | None:
    cm = rf.meta.get("confusion_matrix")
    if not cm:
        return None
    fig = F.confusion_matrix(cm, rf.classes)
    if fig is None:
        return None
    a = np.asarray(cm, dtype=float)
    acc = float(np.trace(a) / a.sum()) if a.sum() else None
    return {"fig": F.to_div(fig, "fig-confusion"), "accuracy": acc, "n": int(a.sum()),
            "split": rf.meta.get("confusion_split", "test")}


def data_map(rf: RunFiles) -> dict | None:
    dm = build_data_map(rf.path, rf.samples)
    if dm is None or not len(dm.points):
        return None
    return {"fig": F.to_div(F.data_map(dm), "fig-datamap"), "total": dm.total, "shown": len(dm.points),
            "subsampled": dm.subsampled, "source": dm.source, "rule": dm.correct_rule,
            "flagged": int(dm.points["flagged"].sum())}


# ------------------------------------------------------------------------------ gallery
def _card(row: pd.Series, ev: Evidence) -> dict:
    view = ev.view(int(row["position"]))
    reasons = why_flagged(row)
    extra = ev.model_evidence(row["id"])
    if extra:
        reasons.append(extra)
    card = {"id": row["id"], "given": row["given_label"], "suggested": row["suggested_label"],
            "issues": row["issues"], "reasons": reasons, "severity": float(row["severity"]),
            "label_score": row["label_score"], "outlier_score": row["outlier_score"],
            "thumb": view.thumb, "features": view.features, "text": view.text, "twin": None}
    if row["duplicate"]:
        pos = ev.position_of(row["duplicate_of"])
        if pos is not None:
            twin = ev.view(pos)
            card["twin"] = {"id": row["duplicate_of"], "thumb": twin.thumb, "text": twin.text,
                            "features": twin.features}
    return card


def gallery(rf: RunFiles, ev: Evidence, per_issue: int = GALLERY_PER_ISSUE) -> dict | None:
    if rf.samples is None:
        return None
    flagged = flagged_samples(rf.samples)
    groups = []
    for issue, (rows, total) in worst_per_issue(flagged, per_issue).items():
        groups.append({"issue": issue, "title": ISSUE_TITLES[issue], "total": total, "shown": len(rows),
                       "cards": [_card(r, ev) for _, r in rows.iterrows()]})
    return {"groups": groups, "n_flagged": len(flagged), "n_samples": len(rf.samples),
            "counts": {g["issue"]: g["total"] for g in groups}, "kind": rf.kind}


# ---------------------------------------------------------------------------- data health
def _records(obj: Any) -> list[dict]:
    if isinstance(obj, list):
        return [o if isinstance(o, dict) else {"item": o} for o in obj]
    if isinstance(obj, dict):
        return [{"name": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in obj.items()]
    return []


def data_health(rf: RunFiles) -> dict | None:
    dh = rf.data_health
    if not isinstance(dh, dict):
        return None
    out: dict[str, Any] = {"extra": {}}
    imb = dh.get("imbalance")
    if isinstance(imb, dict) and imb.get("counts"):
        counts = imb["counts"]
        if isinstance(counts, list):
            names = rf.classes if len(rf.classes) == len(counts) else [str(i) for i in range(len(counts))]
            counts = dict(zip(names, counts))
        fig = F.bar(list(counts), [float(v) for v in counts.values()], "Samples per class", "class", "samples")
        out["imbalance"] = {"fig": F.to_div(fig, "fig-imbalance"), "ratio": imb.get("ratio"),
                            "minority": imb.get("minority_classes", imb.get("minority"))}
    drift = dh.get("drift")
    if isinstance(drift, dict) and "table" in drift:  # data_health.json: summary + per-feature table
        drift = drift["table"]
    if drift:
        rows = _records(drift)
        for r in rows:
            r.setdefault("feature", r.pop("name", ""))
        rows.sort(key=lambda r: -(r.get("psi") if isinstance(r.get("psi"), (int, float)) else -1))
        cols = ["feature"] + [c for c in ("psi", "ks", "kl") if any(c in r for r in rows)]
        cols += [c for c in rows[0] if c not in cols] if rows else []
        out["drift"] = {"rows": rows, "columns": cols}
    missing = dh.get("missing")
    if isinstance(missing, dict) and isinstance(missing.get("per_column"), dict):
        missing = missing["per_column"]
    if isinstance(missing, dict):
        miss = sorted(((k, v) for k, v in missing.items() if v), key=lambda kv: -float(kv[1] or 0))
        out["missing"] = miss
    for key, name in (("constant", "constant"), ("constant_columns", "constant"), ("leakage", "leakage")):
        value = dh.get(key)
        if isinstance(value, dict) and "columns" in value:  # {columns: [...], evidence...}
            value = value["columns"]
        if value:
            out[name] = value if isinstance(value, list) else _records(value)
    if isinstance(dh.get("duplicates"), dict):
        out["duplicates"] = {k: v for k, v in dh["duplicates"].items() if not isinstance(v, (list, dict))}
    ts = dh.get("two_sample")
    if isinstance(ts, dict) and ts.get("auc") is not None:
        out["two_sample"] = ts
    learnt = (dh.get("labels") or {}).get("heldout_agreement") if isinstance(dh.get("labels"), dict) else None
    if isinstance(learnt, dict) and learnt.get("learnt") is False:  # see diagnose/chance.py
        out["unlearnt"] = (f"The model's predictions on held-out rows agree with their labels no better than chance "
                           f"({learnt.get('agreement')} vs {learnt.get('chance_agreement')} on {learnt.get('rows')} "
                           "rows): it did not learn the classes, so the label findings below are no evidence of wrong "
                           "labels. Check the target column, the features and the model's health.")
    known = {"imbalance", "drift", "missing", "constant", "constant_columns", "leakage", "duplicates", "two_sample"}
    out["extra"] = {k: v for k, v in dh.items() if k not in known and not isinstance(v, (list, dict))}
    # blocks other detectors add later (e.g. "labels"): shown as small tables of their numbers
    out["other"] = {k.replace("_", " "): {kk: vv for kk, vv in v.items() if not isinstance(vv, (list, dict))}
                    for k, v in dh.items() if k not in known and isinstance(v, dict)}
    out["other"] = {k: v for k, v in out["other"].items() if v}
    return out


# --------------------------------------------------------------------------- model health
LAYER_METRICS = ("dead_fraction", "effective_rank", "width", "grad_norm", "update_ratio", "weight_norm")


def layer_table(mh: dict) -> pd.DataFrame:
    """model_health.json's per-epoch per-layer records as one long table (epoch, layer, metrics).

    Reads ModelMonitor's format (``{"epochs": [{"epoch", "layers": {weight layer: {grad_norm,
    update_ratio, weight_norm}}, "features": {activation: {dead_fraction, effective_rank, width}}}]}``),
    and also a list of ``{"name"|"layer", ...}`` per epoch or a flat list of ``{"epoch", "layer", ...}``.
    """
    rows: list[dict] = []

    def add_layers(epoch: Any, layers: Any) -> None:
        for rec in _records(layers):
            name = rec.get("layer", rec.get("name"))
            rows.append({"epoch": epoch, "layer": str(name), **{k: rec.get(k) for k in LAYER_METRICS}})

    records = next((mh[k] for k in ("epochs", "records", "per_epoch") if isinstance(mh.get(k), list)), None)
    for i, rec in enumerate(records or []):
        if not isinstance(rec, dict):
            continue
        epoch = rec.get("epoch", i)
        for key in ("layers", "features"):
            if key in rec:
                add_layers(epoch, rec[key])
        if "layer" in rec:
            add_layers(epoch, [rec])
    df = pd.DataFrame(rows, columns=["epoch", "layer", *LAYER_METRICS])
    for c in ("epoch", *LAYER_METRICS):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def _last_per_layer(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Each layer's latest record that has any of ``columns`` (activations are probed on some epochs only)."""
    have = table[table[columns].notna().any(axis=1)]
    if not len(have):
        return have
    last = have[have["epoch"] == have["epoch"].max()]
    return last.drop_duplicates("layer", keep="last")[["layer", *columns]]


def model_health(rf: RunFiles) -> dict | None:
    mh = rf.model_health
    if not isinstance(mh, dict):
        return None
    out: dict[str, Any] = {}
    table = layer_table(mh)
    if len(table):
        acts = _last_per_layer(table, ["dead_fraction", "effective_rank", "width"])
        if len(acts):
            fig = F.layer_health(acts)
            if fig is not None:
                out["layers_fig"] = F.to_div(fig, "fig-layers")
        for key, cols in (("activations", ["dead_fraction", "effective_rank", "width"]),
                          ("weights", ["grad_norm", "update_ratio", "weight_norm"])):
            last = _last_per_layer(table, cols)
            cols = [c for c in cols if len(last) and last[c].notna().any()]
            if cols:
                out[key] = {"rows": last.to_dict("records"), "columns": ["layer", *cols]}
        if table["epoch"].nunique() > 1:
            for col, title in (("grad_norm", "Gradient norm per layer"),
                               ("update_ratio", "Update / weight ratio per layer")):
                fig = F.per_layer_over_epochs(table.dropna(subset=[col]), col, title)
                if fig is not None:
                    out[f"{col}_fig"] = F.to_div(fig, f"fig-{col}")
    findings = [f for f in mh.get("findings") or [] if isinstance(f, dict)]
    findings.sort(key=lambda f: SEVERITY_ORDER.get(str(f.get("severity", "")).lower(), 5))
    out["findings"] = findings
    diagnosis = mh.get("summary") or mh.get("diagnosis") or mh.get("fit_diagnosis")
    if isinstance(diagnosis, str):
        out["diagnosis"] = diagnosis
    if isinstance(mh.get("explain"), dict):
        out["glossary"] = {k: v for k, v in mh["explain"].items() if isinstance(v, str)}
    return out if (len(table) or findings or out.get("diagnosis")) else None


# -------------------------------------------------------------------------------- repair
def repair(rf: RunFiles) -> dict | None:
    rp = rf.repair
    if not isinstance(rp, dict):
        return None
    fig = F.before_after(rp)
    deltas = {}
    for key in ("accuracy", "macro_f1"):
        b, a = rp.get(f"{key}_before"), rp.get(f"{key}_after")
        if isinstance(b, (int, float)) and isinstance(a, (int, float)):
            deltas[key.replace("_", " ")] = {"before": b, "after": a, "delta": a - b}
    rounds = _records(rp.get("rounds"))
    cols: list[str] = []
    for r in rounds:
        cols += [c for c in r if c not in cols and not isinstance(r[c], (list, dict))]
    policy = rp.get("policy")
    return {"fig": F.to_div(fig, "fig-repair") if fig else None, "deltas": deltas, "rounds": rounds,
            "round_columns": cols, "policy": _flatten(policy) if isinstance(policy, dict) else policy,
            "extra": {k: v for k, v in rp.items() if k not in ("rounds", "policy") and not k.endswith(("_before", "_after"))
                      and not isinstance(v, (list, dict))}}


# ---------------------------------------------------------------------------------- tune
def _explained_variance(x: pd.Series, value: np.ndarray, bins: int = 5) -> float:
    """eta squared: the share of the objective's variance explained by one parameter alone
    (numeric values grouped into quantile bins, categories as they are)."""
    num = pd.to_numeric(x, errors="coerce")
    if num.notna().all() and num.nunique() > bins:
        groups = pd.qcut(num.rank(method="first"), bins, labels=False).to_numpy()
    else:
        groups = x.astype(str).to_numpy()
    total = float(((value - value.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    between = sum(float((groups == g).sum()) * (value[groups == g].mean() - value.mean()) ** 2
                  for g in pd.unique(groups))
    return between / total


def param_importance(trials: pd.DataFrame | None, *saved: dict | None) -> tuple[dict[str, float], str] | None:
    """Parameter importance: the tuner's own (Optuna's fANOVA, in tune.json or best.json) when
    saved, else each parameter's main effect on trials.csv (share of the objective's variance it
    explains alone, the first-order term of fANOVA's decomposition), normalised to sum to 1."""
    for block in saved:
        if not isinstance(block, dict):
            continue
        for key in ("importances", "param_importance", "importance"):
            if isinstance(block.get(key), dict) and block[key]:
                note = block.get("importances_note") or "fANOVA importances saved by the tuner"
                return {str(k): float(v) for k, v in block[key].items()}, str(note)
    if trials is None or "value" not in trials:
        return None
    t = trials.copy()
    if "state" in t:
        t = t[t["state"].astype(str).str.upper().str.contains("COMPLETE")]
    t["value"] = pd.to_numeric(t["value"], errors="coerce")
    t = t.dropna(subset=["value"])
    params = [c for c in t.columns if c.startswith("params_")]
    if len(t) < 8 or not params or t["value"].nunique() < 2:
        return None
    value = t["value"].to_numpy(dtype=float)
    eta = {c[len("params_"):]: _explained_variance(t[c], value) for c in params}
    total = sum(eta.values())
    if total <= 0:
        return None
    return {k: v / total for k, v in eta.items()}, \
        "each parameter's share of the objective's variance explained alone (main effects on trials.csv)"


def tune(rf: RunFiles) -> dict | None:
    if rf.trials is None and not isinstance(rf.best, dict):
        return None
    best = rf.best if isinstance(rf.best, dict) else {}
    maximize = str(best.get("direction", "maximize")).lower().startswith("max")
    # best.json's "params" is the whole TrainConfig; "searched" holds what the study chose
    params = best.get("searched") if isinstance(best.get("searched"), dict) else best.get("params")
    out: dict[str, Any] = {"best_value": best.get("value"), "best_params": params or {},
                           "direction": "maximize" if maximize else "minimize", "metric": best.get("metric"),
                           "test_score": best.get("test_score"),
                           "best_trial": best.get("number", best.get("trial"))}
    if rf.trials is not None:
        fig = F.tune_history(rf.trials, maximize)
        out["history_fig"] = F.to_div(fig, "fig-tune-history") if fig else None
        out["n_trials"] = len(rf.trials)
        if "state" in rf.trials:
            out["states"] = rf.trials["state"].astype(str).value_counts().to_dict()
    imp = param_importance(rf.trials, rf.tune, best)
    if imp:
        values, how = imp
        names = sorted(values, key=lambda k: -values[k])
        fig = F.bar(names, [values[n] for n in names], "", "importance", horizontal=True)
        out["importance_fig"], out["importance_how"] = F.to_div(fig, "fig-tune-importance"), how
    return out


def explain(rf: RunFiles, top: int = 20) -> dict | None:
    pairs, method = feature_importance(rf.explain)
    out: dict[str, Any] = {"method": method}
    perm = rf.explain.get("permutation") if isinstance(rf.explain, dict) else None
    heat = perm.get("heatmap") if isinstance(perm, dict) else None
    if heat:
        fig = F.image_heatmap(heat, "accuracy lost when the region is shuffled")
        if fig is not None:
            out["heatmap_fig"] = F.to_div(fig, "fig-explain-heatmap")
    elif pairs:
        pairs = pairs[:top]
        fig = F.bar([p[0] for p in pairs], [p[1] for p in pairs], "", "importance", horizontal=True)
        out.update(fig=F.to_div(fig, "fig-explain"), n=len(pairs))
    return out if (out.get("fig") or out.get("heatmap_fig")) else None
