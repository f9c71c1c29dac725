"""Diagnose the model itself from ``model_health.json`` and the per-epoch metrics.

Each finding is a plain dict::

    {"issue": "dead_units", "layer": "body.1", "severity": "warning" | "error",
     "evidence": {...numbers...}, "explanation": "plain words", "fix": "plain words"}

Issues: ``dead_units``, ``collapsed_features``, ``vanishing_gradients``, ``exploding_gradients``,
``lr_too_high``, ``lr_too_low``, ``overfitting``, ``underfitting``.

Thresholds are deliberately far from what healthy training shows (a healthy model must get no
finding); each is a module constant so it is visible and testable.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

DEAD_FRACTION = 0.30  # more than this share of a ReLU / saturating layer's units dead
DEAD_ERROR = 0.90  # ... and this share makes it an error (the layer barely passes a signal)
COLLAPSE_FRACTION = 0.10  # effective rank below this share of the layer's live width
MIN_WIDTH = 8  # narrower layers are not judged for collapse: their rank is small by design
GRAD_SPREAD = 1e4  # largest / smallest per-layer gradient norm: four orders of magnitude
GRAD_GROWTH = 1e3  # total gradient norm grew this much from the first epoch
LOSS_RISE = 1.5  # the training loss went this far above where it started: diverging
OSC_RISE = 0.10  # an epoch whose training loss rose more than 10 % ...
OSC_SHARE = 0.30  # ... in this share of the epochs (and at least twice): oscillating
LOW_LR_DROP = 0.10  # the training loss fell by less than 10 % over the whole run: barely moving
MIN_EPOCHS = 3  # fewer epochs say nothing about the trend of the loss
OVERFIT_RISE = 0.10  # validation loss ended 10 % above its best ...
OVERFIT_ABS = 0.05  # ... and at least this much above it in absolute terms
OVERFIT_AFTER = 3  # ... with at least this many epochs after the best one
OVERFIT_GAP = 0.05  # ... and the train-validation accuracy gap wider than this at the end
UNDERFIT_GAIN = 0.25  # accuracy gained over always guessing the majority class, as a share of what is possible

# When several issues are found, the first in this list is most likely the cause of the others.
PRIORITY = ("exploding_gradients", "lr_too_high", "vanishing_gradients", "dead_units", "lr_too_low",
            "collapsed_features", "underfitting", "overfitting")

FIXES = {
    "dead_units": "lower the learning rate (e.g. --lr divided by 10), use an activation that never stops "
                  "passing gradient (--activation gelu or leaky_relu), and re-initialise the model",
    "collapsed_features": "use less weight decay, add normalisation (--norm), and make narrow layers wider "
                          "(--hidden)",
    "vanishing_gradients": "add normalisation layers (--norm), use ReLU/GELU instead of sigmoid/tanh, or use a "
                           "shallower model",
    "exploding_gradients": "clip gradients (--clip norm:1.0, or adaptive clipping --clip agc:0.01), add "
                           "normalisation (--norm), and lower the learning rate",
    "lr_too_high": "lower the learning rate (e.g. --lr divided by 10) and clip gradients (--clip norm:1.0)",
    "lr_too_low": "raise the learning rate (e.g. --lr 1e-3 for AdamW), or train for more epochs",
    "overfitting": "stop early (--patience 5), regularise more (larger --weight-decay, --dropout 0.3), or get "
                   "more training data",
    "underfitting": "train longer (--epochs), use a bigger model (--hidden), or regularise less "
                    "(smaller --weight-decay, --dropout 0)",
}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _num(x: Any) -> float:
    return float(x) if _finite(x) else float("nan")


def _finding(issue: str, layer: str | None, severity: str, evidence: dict[str, Any], explanation: str) -> dict:
    return {"issue": issue, "layer": layer, "severity": severity, "evidence": evidence,
            "explanation": explanation, "fix": FIXES[issue]}


# -- layer findings ------------------------------------------------------------------------------
def _last_probed(record: dict) -> dict | None:
    for ep in reversed(record.get("epochs") or []):
        if ep.get("features"):
            return ep
    return None


def _dead_units(feats: dict[str, dict], initial: dict[str, dict] | None = None) -> list[dict]:
    bad = {n: f for n, f in feats.items() if f.get("kind") in ("relu", "saturating")
           and f.get("width", 0) >= 2 and _num(f.get("dead_fraction")) > DEAD_FRACTION}
    if not bad:
        return []
    worst = max(bad, key=lambda n: bad[n]["dead_fraction"])
    f = bad[worst]
    saturating = f["kind"] == "saturating"
    what = "stuck at the flat end of the curve" if saturating else "never switched on (output <= 0)"
    explanation = (f"{f['dead_units']} of the {f['width']} units of layer {worst} ({f['dead_fraction']:.0%}) "
                   f"{what} for any of the probe samples, so they pass no gradient and stopped learning.")
    at_start = _num(((initial or {}).get(worst) or {}).get("dead_fraction"))
    died = math.isfinite(at_start) and at_start <= DEAD_FRACTION
    if math.isfinite(at_start):
        explanation += (f" They died during training ({at_start:.0%} dead at the start): the steps were too big."
                        if died else " They were already dead before training: the initialisation is at fault.")
    if len(bad) > 1:
        explanation += f" {len(bad)} layers are affected."
    evidence = {"dead_fraction": {n: round(b["dead_fraction"], 4) for n, b in bad.items()},
                "dead_fraction_at_start": {n: (initial or {}).get(n, {}).get("dead_fraction") for n in bad},
                "died_during_training": died,
                "dead_units": {n: b["dead_units"] for n, b in bad.items()},
                "width": {n: b["width"] for n, b in bad.items()}, "threshold": DEAD_FRACTION}
    sev = "error" if f["dead_fraction"] >= DEAD_ERROR else "warning"
    finding = _finding("dead_units", worst, sev, evidence, explanation)
    if math.isfinite(at_start) and not died:
        finding["fix"] = ("re-initialise the model (check custom initialisation and biases), and use an activation "
                          "that never stops passing gradient (--activation gelu or leaky_relu)")
    return [finding]


def _collapse(feats: dict[str, dict], record: dict) -> list[dict]:
    n_classes = record.get("n_classes")
    probe_n = int((record.get("probe") or {}).get("n") or 0)
    layers = record.get("layers") or []
    index = {l["name"]: l.get("index", i) for i, l in enumerate(layers)}
    upstream = _num(record.get("input_effective_rank"))
    upstream = upstream if math.isfinite(upstream) else 0.0
    bad = {}
    for n in sorted(feats, key=lambda k: index.get(k, 0)):
        f = feats[n]
        live, er = int(f.get("live_width", 0)), _num(f.get("effective_rank"))
        if not math.isfinite(er):
            continue
        room = min(live, probe_n) if probe_n else live
        # collapsed = far below the width, fewer directions than the classes need (a healthy
        # classifier's last features shrink to about K-1 directions: "neural collapse"), and far
        # fewer than an earlier layer (or the input) had: the layer lost what it was given
        if (live >= MIN_WIDTH and er < COLLAPSE_FRACTION * room and (not n_classes or er < n_classes - 1)
                and er < 0.5 * upstream):
            bad[n] = (er, live, upstream)
        upstream = max(upstream, er)
    if not bad:
        return []
    worst = min(bad, key=lambda n: bad[n][0] / bad[n][1])
    er, live, up = bad[worst]
    # the narrowest weight layer before it is the usual culprit (a bottleneck)
    before = [l for l in layers if l.get("role") == "weights" and l.get("shape")
              and index.get(l["name"], 0) < index.get(worst, 0)]
    narrow = min(before, key=lambda l: l["shape"][0]) if before else None
    need = f" (the {n_classes} classes need about {n_classes - 1})" if n_classes else ""
    explanation = (f"The outputs of layer {worst} use only about {er:.1f} independent directions out of its "
                   f"{live} active units{need}, where an earlier layer used {up:.1f}: its features have "
                   f"collapsed, so later layers cannot tell the inputs apart.")
    if narrow is not None and narrow["shape"][0] < max(2 * er, (n_classes or 0) - 1):
        explanation += f" Layer {narrow['name']} before it has only {narrow['shape'][0]} outputs: widen it."
    if len(bad) > 1:
        explanation += f" {len(bad)} layers are affected."
    evidence = {"effective_rank": {n: round(v[0], 3) for n, v in bad.items()},
                "live_width": {n: v[1] for n, v in bad.items()},
                "effective_rank_before": {n: round(v[2], 3) for n, v in bad.items()}, "n_classes": n_classes,
                "narrowest_layer_before": {"name": narrow["name"], "width": narrow["shape"][0]} if narrow else None,
                "threshold_fraction": COLLAPSE_FRACTION}
    return [_finding("collapsed_features", worst, "warning", evidence, explanation)]


def _layer_grad_norms(record: dict) -> dict[str, float]:
    """Median over epochs of each weight layer's gradient norm (NaN if ever non-finite)."""
    names = [l["name"] for l in record.get("layers", []) if l.get("role") == "weights"]
    out = {}
    for n in names:
        eps = [ep["layers"][n] for ep in record.get("epochs", [])
               if ep.get("grad_samples") and n in ep.get("layers", {})]
        if any(e.get("no_grad") for e in eps):  # a layer the forward pass does not use: nothing to judge
            continue
        vals = [e.get("grad_norm") for e in eps]
        if not vals:
            continue
        out[n] = float(np.median([_num(v) for v in vals])) if all(_finite(v) for v in vals) else float("nan")
    return out


def _gradients(record: dict, feats: dict[str, dict], history: Sequence[dict]) -> list[dict]:
    grads = _layer_grad_norms(record)
    findings = []
    nonfinite_loss = sum(int(ep.get("nonfinite_loss_batches") or 0) for ep in record.get("epochs", []))
    nonfinite_epochs = sum(1 for r in history if "train_loss" in r and not _finite(r["train_loss"]))
    bad_layers = [n for n, g in grads.items() if not math.isfinite(g)]
    hist_gn = [r.get("grad_norm") for r in history if "grad_norm" in r]
    growth = float("nan")
    finite_gn = [g for g in hist_gn if _finite(g) and g > 0]
    if len(finite_gn) >= 2:
        growth = max(finite_gn) / finite_gn[0]
    # layers with exactly zero gradient behind a dead layer are explained by the dead units
    all_dead = any(_num(f.get("dead_fraction")) >= 0.99 for f in feats.values() if f.get("kind") != "smooth")
    pos = {n: g for n, g in grads.items() if math.isfinite(g) and g > 0}
    zero = [n for n, g in grads.items() if g == 0.0]
    order = list(grads)
    spread = max(pos.values()) / min(pos.values()) if len(pos) >= 2 else 1.0
    if nonfinite_loss or nonfinite_epochs or bad_layers or (_finite(growth) and growth > GRAD_GROWTH):
        parts = []
        if nonfinite_loss or nonfinite_epochs:
            parts.append(f"the loss became infinite or NaN in {nonfinite_loss} batch(es)" if nonfinite_loss
                         else f"the training loss was infinite or NaN in {nonfinite_epochs} epoch(s)")
        if bad_layers:
            parts.append(f"layer(s) {', '.join(bad_layers[:5])} had non-finite gradients")
        if _finite(growth) and growth > GRAD_GROWTH:
            parts.append(f"the total gradient norm grew {growth:.3g}-fold during training")
        findings.append(_finding(
            "exploding_gradients", bad_layers[0] if bad_layers else None, "error",
            {"nonfinite_loss_batches": nonfinite_loss, "nonfinite_loss_epochs": nonfinite_epochs,
             "nonfinite_grad_layers": bad_layers,
             "grad_norm_growth": growth, "grad_norm_by_layer": grads},
            "Gradients blew up: " + "; ".join(parts) + ". Training steps this large destroy what was learned."))
    if spread > GRAD_SPREAD or (zero and not all_dead and pos):
        lo = min(pos, key=pos.get) if pos else zero[0]
        hi = max(pos, key=pos.get) if pos else zero[0]
        lo_name = zero[0] if (zero and not all_dead) else lo
        vanishing = order.index(lo_name) < order.index(hi)  # smallest gradients nearest the input
        evidence = {"grad_norm_by_layer": grads, "spread": spread, "smallest": lo_name, "largest": hi,
                    "zero_grad_layers": zero if not all_dead else [], "threshold": GRAD_SPREAD}
        if vanishing:
            how = (f"no gradient at all reaches layer {lo_name}" if lo_name in zero else
                   f"the gradient reaching layer {lo_name} is {spread:.2g} times smaller than at layer {hi}")
            findings.append(_finding(
                "vanishing_gradients", lo_name, "warning", evidence,
                how[0].upper() + how[1:] + ": the early layers get almost no learning signal, so they barely change."))
        elif not findings:
            findings.append(_finding(
                "exploding_gradients", hi, "warning", evidence,
                f"The gradient at layer {hi} (near the input) is {spread:.2g} times larger than at layer "
                f"{lo_name}: gradients grow as they flow back and make early layers' steps unstable."))
    return findings


def diagnose_model(record: dict, history: Sequence[dict] | None = None) -> list[dict]:
    """All findings about the model: per-layer health plus :func:`fit_diagnosis`.

    Args:
        record: the model-health record (``model_health.json`` as a dict).
        history: per-epoch metric rows; defaults to ``record['history']``.
    Returns:
        findings, most likely root cause first; an empty list for a healthy model.
    """
    history = list(record.get("history") or []) if history is None else list(history)
    ep = _last_probed(record)
    feats = (ep or {}).get("features") or {}
    findings = (_dead_units(feats, record.get("initial_features")) + _collapse(feats, record)
                + _gradients(record, feats, history))
    findings += fit_diagnosis(history, n_classes=record.get("n_classes"), initial_loss=record.get("initial_loss"),
                              class_prior=record.get("class_prior"))
    return sort_findings(_explained_away(findings))


# A stuck network shows every symptom at once; report the symptoms under their cause.
# Causes come in PRIORITY order: a cause never explains away one listed before it.
EXPLAINS = {"lr_too_high": ("dead_units", "collapsed_features", "underfitting"),
            "vanishing_gradients": ("lr_too_low", "collapsed_features", "underfitting"),
            "dead_units": ("lr_too_low", "collapsed_features", "underfitting")}


def _explained_away(findings: list[dict]) -> list[dict]:
    """Drop findings that a more basic finding explains; list them under it as ``also_explains``."""
    issues = {f["issue"]: f for f in findings}
    causes = [c for c in EXPLAINS if c in issues and not (c == "dead_units" and issues[c]["severity"] != "error")]
    drop: set[str] = set()
    for c in causes:
        if c in drop:
            continue
        hit = [e for e in EXPLAINS[c] if e in issues and e not in causes[:causes.index(c)]]
        if hit:
            issues[c]["also_explains"] = hit
            drop.update(hit)
    return [f for f in findings if f["issue"] not in drop]


def sort_findings(findings: list[dict]) -> list[dict]:
    """Errors first, then by how likely the issue causes the others (:data:`PRIORITY`)."""
    return sorted(findings, key=lambda f: (f["severity"] != "error", PRIORITY.index(f["issue"])))


# -- fit findings --------------------------------------------------------------------------------
def _series(history: Sequence[dict], key: str) -> np.ndarray:
    return np.array([_num(r.get(key)) for r in history], dtype=float)


def fit_diagnosis(history: Sequence[dict], n_classes: int | None = None, initial_loss: float | None = None,
                  class_prior: Sequence[float] | None = None) -> list[dict]:
    """Over-/under-fitting and learning-rate problems from the per-epoch metric rows.

    Args:
        history: rows with ``train_loss`` (and optionally ``train_acc``, ``val_loss``, ``val_acc``).
        n_classes: number of classes (for the chance-level loss ln K and accuracy 1/K).
        initial_loss: the loss of the very first batch, before any step.
        class_prior: share of each class in the training set (the majority rate is the accuracy of guessing).

    >>> fit_diagnosis([{"train_loss": 2.3}, {"train_loss": 2.3}, {"train_loss": 2.29}], n_classes=10)[0]["issue"]
    'lr_too_low'
    """
    findings: list[dict] = []
    if not history:
        return findings
    tl = _series(history, "train_loss")
    n = len(tl)
    chance_loss = math.log(n_classes) if n_classes and n_classes > 1 else None
    ref = initial_loss if _finite(initial_loss) and initial_loss > 0 else (chance_loss or _num(tl[0]))
    finite = np.isfinite(tl)
    lr_problem = False

    # -- learning rate too high: the loss diverged, went well above where it started, or oscillates
    rises = np.diff(tl[finite]) if finite.sum() >= 2 else np.array([])
    prev = tl[finite][:-1] if finite.sum() >= 2 else np.array([])
    big_rises = int(np.sum((rises > OSC_RISE * np.abs(prev)) & (rises > 0.05 * ref))) if len(rises) else 0
    peak = float(np.nanmax(tl)) if finite.any() else float("nan")
    diverged = not finite.all()
    went_up = math.isfinite(peak) and math.isfinite(ref) and peak > LOSS_RISE * ref
    oscillates = (n >= MIN_EPOCHS and big_rises >= max(2, OSC_SHARE * (n - 1))
                  and finite.any() and tl[finite][-1] > 0.5 * ref)
    if diverged or went_up or oscillates:
        lr_problem = True
        bits = []
        if diverged:
            bits.append(f"the training loss became NaN or infinite at epoch {int(np.argmin(finite))}")
        if went_up:
            bits.append(f"it reached {peak:.3g}, {peak / ref:.3g} times its starting value {ref:.3g}")
        if oscillates:
            bits.append(f"it rose by more than {OSC_RISE:.0%} in {big_rises} of {n - 1} epochs")
        findings.append(_finding(
            "lr_too_high", None, "error" if diverged or went_up else "warning",
            {"train_loss": [None if not math.isfinite(v) else round(float(v), 5) for v in tl],
             "start_loss": ref, "peak_loss": peak, "rising_epochs": big_rises, "lr": _num(history[0].get("lr"))},
            "The learning rate is too high: " + "; ".join(bits) + ". Each step overshoots instead of going downhill."))

    # -- learning rate too low: the loss barely moved from where it started
    if not lr_problem and n >= MIN_EPOCHS and finite.all():
        start = max(ref, float(tl[0]))
        drop = (start - float(tl.min())) / start if start > 0 else 1.0
        near_chance = chance_loss is None or float(tl.min()) > 0.5 * chance_loss
        if drop < LOW_LR_DROP and near_chance:
            lr_problem = True
            findings.append(_finding(
                "lr_too_low", None, "warning",
                {"start_loss": start, "min_train_loss": float(tl.min()), "relative_drop": drop, "epochs": n,
                 "lr": _num(history[0].get("lr"))},
                f"The training loss barely moved: from {start:.4g} to at best {tl.min():.4g} "
                f"({drop:.1%}) in {n} epochs. The steps are too small to learn anything in this budget."))

    # -- over-fitting: validation loss climbs after its best epoch while training keeps improving
    vl = _series(history, "val_loss")
    if np.isfinite(vl).sum() >= MIN_EPOCHS and not lr_problem:
        best = int(np.nanargmin(vl))
        end = int(np.flatnonzero(np.isfinite(vl))[-1])
        after = end - best
        rise = vl[end] - vl[best]
        ta, va = _series(history, "train_acc"), _series(history, "val_acc")
        gap = ta[end] - va[end] if math.isfinite(ta[end]) and math.isfinite(va[end]) else float("nan")
        train_better = tl[end] <= tl[best]
        if (after >= OVERFIT_AFTER and rise > OVERFIT_RISE * vl[best] and rise > OVERFIT_ABS and train_better
                and (not math.isfinite(gap) or gap > OVERFIT_GAP)):
            findings.append(_finding(
                "overfitting", None, "warning",
                {"best_epoch": best, "best_val_loss": float(vl[best]), "last_val_loss": float(vl[end]),
                 "train_loss_at_best": float(tl[best]), "last_train_loss": float(tl[end]),
                 "train_val_acc_gap": gap},
                f"The model is memorising the training set: validation loss was best at epoch {best} "
                f"({vl[best]:.3g}) and rose to {vl[end]:.3g} over the next {after} epochs while the training "
                f"loss kept falling" + (f"; training accuracy is {gap:.0%} above validation accuracy." if
                                        math.isfinite(gap) else ".")))

    # -- under-fitting: both training and validation accuracy barely beat guessing
    ta = _series(history, "train_acc")
    if not lr_problem and np.isfinite(ta).any() and (n_classes or class_prior is not None):
        base = float(max(class_prior)) if class_prior is not None and len(class_prior) else 1.0 / n_classes
        need = base + UNDERFIT_GAIN * (1 - base)
        va = _series(history, "val_acc")
        best_t = float(np.nanmax(ta))
        best_v = float(np.nanmax(va)) if np.isfinite(va).any() else float("nan")
        if best_t < need and (not math.isfinite(best_v) or best_v < need):
            findings.append(_finding(
                "underfitting", None, "warning",
                {"best_train_acc": best_t, "best_val_acc": best_v, "guessing_acc": base, "needed_acc": need},
                f"The model barely beats guessing the most common class ({base:.0%}): best training accuracy "
                f"{best_t:.0%}" + (f", best validation accuracy {best_v:.0%}" if math.isfinite(best_v) else "")
                + ". It is too small, too regularised or not trained long enough to fit even the training data."))
    return findings


# -- plain words ---------------------------------------------------------------------------------
def summarize(findings: Sequence[dict]) -> str:
    """One sentence for the report and the command line."""
    if not findings:
        return "No problem found with the model: units are alive, features keep their rank, gradients are " \
               "well-scaled and the loss curves look healthy."
    names = ", ".join(dict.fromkeys(f["issue"].replace("_", " ") for f in findings))
    first = findings[0]
    return f"{len(findings)} problem(s) found with the model: {names}. Most likely root cause: " \
           f"{first['issue'].replace('_', ' ')}; fix: {first['fix']}."


def format_findings(findings: Sequence[dict]) -> str:
    """Findings as plain text, one block each (for ``trainyard diagnose`` output)."""
    if not findings:
        return summarize(findings)
    lines = []
    for f in findings:
        where = f" in {f['layer']}" if f.get("layer") else ""
        lines.append(f"[{f['severity']}] {f['issue'].replace('_', ' ')}{where}\n  {f['explanation']}\n"
                     f"  fix: {f['fix']}")
    return "\n".join(lines)


def format_layers(record: dict) -> str:
    """The last probed epoch, one line per layer, in plain numbers (for the command line and report)."""
    eps = record.get("epochs") or []
    if not eps:
        return "no epochs recorded"
    last, probed = eps[-1], _last_probed(record) or {}
    lines = [f"epoch {last.get('epoch')}: layer, weight norm, gradient norm, update/weight per epoch"]
    for name, v in (last.get("layers") or {}).items():
        lines.append(f"  {name:24s} {_num(v.get('weight_norm')):10.3g} {_num(v.get('grad_norm')):10.3g} "
                     f"{_num(v.get('update_ratio')):10.3g}")
    if probed.get("features"):
        lines.append(f"epoch {probed.get('epoch')} (probe of {(record.get('probe') or {}).get('n')} training rows): "
                     f"layer output, dead units, effective rank / live width")
        for name, f in probed["features"].items():
            lines.append(f"  {name:24s} {f.get('dead_units', 0):>5d} of {f.get('width', 0):<5d} "
                         f"{_num(f.get('effective_rank')):7.1f} / {f.get('live_width', 0)}")
    return "\n".join(lines)
