"""Training one round's model for the repair loop: the rows and labels it trains on (``RoundState``), the
fit itself (resumable), the cross-fit's out-of-fold probabilities, and the noise a fitted round's
predictions find in its labels."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from ..errors import RunError
from ..run import Run
from .augment import Mixup
from .correct import transition_from
from .crossfit import crossfit_probs, load_probs, save_probs
from .plan import Plan


@dataclass
class RoundState:
    """The development rows' labels and membership before/after a round."""

    labels: np.ndarray
    in_train: np.ndarray
    weights: np.ndarray | None = None


def noise_after(fr, dev: Dataset, state: RoundState, is_val: np.ndarray, k: int,
                 reviewed: np.ndarray | None = None) -> np.ndarray:
    """The noise transition of ``state``'s labels with a round's predictions standing in for the true
    classes, on the rows it trained and validated on, a reviewer's rows left out (their labels carry no
    noise, and counting them would dilute the estimate for the rest). After a forward-corrected round
    this is a better estimate than the baseline's flags gave (see ``correct``); the next ``correct``
    round uses it."""
    from ..train.trainer import predict_proba

    rows = round_rows(state, is_val)
    if reviewed is not None and (~reviewed[rows]).any():
        rows = rows[~reviewed[rows]]
    pred = np.full(len(state.labels), -1, dtype=np.int64)
    pred[rows] = predict_proba(fr.model, dev.X[rows]).argmax(1)
    return transition_from(pred, state.labels, rows, k)


def round_rows(state: RoundState, is_val: np.ndarray) -> np.ndarray:
    """Development rows a round trains/validates on, in the order of its dataset: training, validation."""
    return np.concatenate([np.flatnonzero(state.in_train), np.flatnonzero(is_val)])


def fit_round(path: Path, dev: Dataset, state: RoundState, is_val: np.ndarray, cfg: Any, plan: Plan, quiet: bool,
              mixup: float = 0.0, resume: bool = False):
    """Train one round on ``state``; a repair round (``mixup`` > 0) adds mixup unless the plan already mixes.
    With ``resume``, a round that finished in ``path`` is read back and one that was cut off continues
    (``resumed_fit``)."""
    from ..data import Splits
    from ..fitting import fit

    rows = round_rows(state, is_val)
    n_train = int(state.in_train.sum())
    sub = dev.subset(rows).with_labels(state.labels[rows])
    train = np.arange(n_train)
    weights = None if state.weights is None else np.asarray(state.weights, np.float32)[rows]
    if plan.synthetic is not None and len(plan.synthetic[1]):
        Xs, ys = plan.synthetic
        sub = Dataset(np.concatenate([sub.X, Xs]), np.concatenate([sub.y, ys]), sub.classes,
                      np.concatenate([sub.ids, [f"synthetic:{i}" for i in range(len(ys))]]), sub.kind,
                      sub.feature_names, sub.source, dict(sub.info), sub.encoder, None)
        train = np.concatenate([train, np.arange(len(rows), len(rows) + len(ys))])
        if weights is not None:
            weights = np.concatenate([weights, np.ones(len(ys), np.float32)])
    splits = Splits(train, np.arange(n_train, len(rows)), np.zeros(0, np.int64))
    round_cfg = cfg.replace(**plan.config) if plan.config else cfg
    callbacks = list(plan.callbacks)
    if mixup > 0 and not any(isinstance(c, Mixup) for c in callbacks):
        callbacks.append(Mixup(mixup))
    if resume and (path / "run.json").exists():
        done = resumed_fit(path, sub, splits, callbacks, weights, quiet)
        if done is not None:
            return done
    return fit(sub, splits=splits, out=path, config=round_cfg, callbacks=callbacks, sample_weight=weights,
               quiet=quiet, write_report=False)


def resumed_fit(path: Path, sub: Dataset, splits: Any, callbacks: list, weights: np.ndarray | None, quiet: bool):
    """A round's fit from an earlier, killed repair: the finished run read back (its best-epoch model,
    history and best epoch, exactly what ``fit`` returned then), or the cut-off run continued from its
    last checkpoint; None (folder cleared) when it stopped before its first checkpoint. Refuses a
    folder trained on other rows or labels than this round's."""
    import shutil

    from ..fitting import FitResult, fit, load_model, make_config
    from ..train.checkpoint import load_checkpoint

    run = Run(path)
    meta = run.meta
    seen = (meta.get("data") or {}).get("fingerprint")
    if seen is not None and seen != sub.fingerprint():
        raise RunError(f"{path}: trained on other rows or labels than this repair gives that round (different data, "
                       "split or review file?); cannot resume: start the repair without --resume in a new --out")
    last = run.checkpoint_dir / "last.pt"
    if not last.exists():
        shutil.rmtree(path, ignore_errors=True)
        return None
    if meta.get("status") != "finished":
        return fit(sub, splits=splits, out=path, callbacks=callbacks, sample_weight=weights, quiet=quiet,
                   write_report=False, resume=True)
    payload = load_checkpoint(last)
    state = SimpleNamespace(best_epoch=payload["best_epoch"], history=list(payload["history"]), extra={})
    cfg = make_config(meta.get("config", {}).get("train"))
    return FitResult(run, load_model(path), sub, splits, list(payload["history"]), {}, cfg, state)


def crossfit_oof(run: Run, dev: Dataset, labels: np.ndarray, rows: np.ndarray, is_val: np.ndarray, cfg: Any,
                 folds: int, quiet: bool, resume: bool) -> np.ndarray:
    """``crossfit_probs``, kept in the repair folder (``crossfit_oof.npy``) so a resumed repair reads
    them back instead of refitting the folds (a cross-fit killed part-way keeps its finished folds and
    continues the one it was fitting from its checkpoint)."""
    path = run.path / "crossfit_oof.npy"
    oof = load_probs(path, (len(dev), dev.n_classes)) if resume else None
    if oof is not None:
        return oof
    oof = crossfit_probs(dev, labels, rows, is_val, cfg, run.path / "crossfit", folds, quiet, resume)
    save_probs(path, oof)
    return oof
