"""Out-of-fold evidence for the repair: class probabilities of each training row from a model that
never trained on it (K-fold cross-fitting of the round's own model and config), and the rows those
probabilities say are mislabelled.

Why the repair spends K extra fits on this when diagnosis does not: the label detector reads one
run's training dynamics, and under class-dependent noise (k -> k+1) that run partly *learns* the
systematic flip, so the flipped rows stop standing out in it (recall 0.57-0.68 at 40 % on digits and
make_classification). A model that never saw a row cannot have memorised its label; its
probabilities, counted with the calibrated confident joint (Northcutt et al., Confident Learning,
2021), give an independent set of flags. The repair loop tries them as candidates and keeps one
only if validation prefers it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from ..diagnose.chance import CHANCE_Z, agreement_over_chance
from ..diagnose.labels import confident_joint_counts

FOLDS = 4


def crossfit_probs(dev: Dataset, labels: np.ndarray, in_train: np.ndarray, is_val: np.ndarray, cfg: Any,
                   path: Path, folds: int = FOLDS, quiet: bool = True, resume: bool = False) -> np.ndarray:
    """(rows, K) out-of-fold probabilities for the training rows in ``in_train`` (NaN elsewhere).

    Each of ``folds`` stratified folds is predicted by the round's model trained on the other folds
    (with ``labels``) and selected on the validation rows, as every repair fit is. The fold runs keep
    no ledger and no monitor; each is deleted once its predictions are kept (``path/fold<i>.npy``,
    until all folds are done), so with ``resume`` a killed cross-fit refits only the folds it had not
    finished, and the fold it was fitting continues from its last checkpoint.
    """
    import shutil

    from ..data import Splits, kfold
    from ..fitting import fit
    from ..train.trainer import predict_proba

    rows = np.flatnonzero(in_train & ~is_val)
    val = np.flatnonzero(is_val)
    out = np.full((len(dev), dev.n_classes), np.nan, dtype=np.float32)
    if len(rows) < 2 * folds:
        return out
    fold_cfg = cfg.replace(ledger=False, monitor=False)
    data = dev.with_labels(labels)
    for f, (fit_part, held) in enumerate(kfold(labels[rows], folds, int(cfg.seed))):
        kept = path / f"fold{f}.npy"
        probs = load_probs(kept, (len(held), dev.n_classes)) if resume else None
        if probs is not None:
            out[rows[held]] = probs
            continue
        sp = Splits(rows[fit_part], val, np.zeros(0, np.int64))
        run_dir = path / f"fold{f}"
        fr = _resumed_fold(data, sp, run_dir, quiet) if resume else None
        if fr is None:
            fr = fit(data, splits=sp, out=run_dir, config=fold_cfg, quiet=quiet, write_report=False, keep_data=False)
        out[rows[held]] = probs = predict_proba(fr.model, dev.X[rows[held]])
        save_probs(kept, probs)
        shutil.rmtree(run_dir, ignore_errors=True)  # one fold run on disk at a time (large data)
    shutil.rmtree(path, ignore_errors=True)
    return out


def _resumed_fold(data: Dataset, splits: Any, run_dir: Path, quiet: bool):
    """A fold's fit continued from the last checkpoint a killed repair left for the same data and rows
    (``fit(resume=True)``: the same weights as an uninterrupted fit); None, the folder cleared, when
    there is none or it was trained on something else."""
    import shutil

    from ..fitting import fit
    from ..run import Run

    run = Run(run_dir)
    seen = (run.meta.get("data") or {}) if (run_dir / "run.json").exists() else {}
    if (seen.get("fingerprint") == data.fingerprint() and seen.get("n_train") == len(splits.train)
            and (run.checkpoint_dir / "last.pt").exists()):
        return fit(data, splits=splits, out=run_dir, resume=True, quiet=quiet, write_report=False, keep_data=False)
    shutil.rmtree(run_dir, ignore_errors=True)
    return None


def load_probs(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """Probabilities kept by :func:`save_probs`; None when absent or of another shape (another run's)."""
    if not path.exists():
        return None
    probs = np.load(path)
    return probs if probs.shape == tuple(shape) else None


def save_probs(path: Path, probs: np.ndarray) -> None:
    """Write an ``.npy`` file of probabilities atomically (kept for a resumed repair)."""
    from ..run import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, probs)

    atomic_write(path, write, fsync=False)


def confident_flags(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows whose label the out-of-fold probabilities call wrong (False where ``probs`` is NaN).

    The calibrated confident joint estimates how many rows given label i truly belong to j; for each
    (i, j) off the diagonal that many rows labelled i are flagged, those where j beats i by the
    widest margin, and only where the model's top class is not the given label (a row the model
    predicts as labelled is not called wrong, whatever the count says).

    Nothing is flagged when the predictions agree with the given labels no better than chance
    (``agreement_over_chance`` under ``CHANCE_Z``): confident learning assumes a model that
    learnt the classes, and one that did not (more features than rows, labels unrelated to the
    features) disagrees with about half the labels, which the joint would then count as wrong; on a
    clean 300-row table with 2,000 columns that quarantined half the training rows.
    """
    ok = np.isfinite(probs).all(1)
    flags = np.zeros(len(labels), dtype=bool)
    if ok.sum() < n_classes or not agreement_over_chance(probs, labels)[2] >= CHANCE_Z:
        return flags
    idx = np.flatnonzero(ok)
    p, y = probs[idx], np.asarray(labels)[idx]
    cj = confident_joint_counts(p, y, n_classes)
    for i in range(n_classes):
        given_i = np.flatnonzero(y == i)
        if len(given_i) == 0:
            continue
        for j in range(n_classes):
            n = int(round(cj[i, j])) if j != i else 0
            if n == 0:
                continue
            margin = p[given_i, j] - p[given_i, i]
            flags[idx[given_i[np.argsort(-margin, kind="stable")[:n]]]] = True
    flags[idx] &= p.argmax(1) != y
    return flags
