"""``fit``: load data, split it, train with the ledger on, evaluate on the held-out test split,
and leave everything in a Run directory. ``load_run`` reads a finished run back."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .data.dataset import Dataset
from .errors import ConfigError, RunError
from .run import Run, atomic_write
from .train.callback import Callback
from .train.config import TrainConfig, read_config_file


@dataclass
class FitResult:
    """What ``fit`` returns: the run directory, the trained model (best epoch), data and splits."""

    run: Run
    model: Any
    dataset: Dataset
    splits: Any
    history: list[dict] = field(default_factory=list)
    test_metrics: dict[str, float] = field(default_factory=dict)
    config: TrainConfig | None = None
    state: Any = None


def make_config(config: TrainConfig | dict | str | Path | None = None, **overrides: Any) -> TrainConfig:
    """A TrainConfig from a TrainConfig, dict or YAML/JSON file, with ``overrides`` winning."""
    if isinstance(config, TrainConfig):
        base = config.to_dict()
    elif isinstance(config, (str, Path)):
        base = read_config_file(config)
    else:
        base = dict(config or {})
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(base)


def resolve_data(data: Dataset | str, target: str | None = None, text: str | None = None,
                 test: str | None = None, split: Sequence[float] = (0.7, 0.2, 0.1), seed: int = 0,
                 splits: Any = None):
    """(Dataset, Splits) from a path / built-in name / Dataset, with a stratified split."""
    if isinstance(data, (str, Path)):
        from .data import load, load_with_test

        if test is not None:
            return load_with_test(str(data), str(test), target=target, text=text, fractions=split, seed=seed) \
                if splits is None else (load(str(data), target=target, text=text), splits)
        data = load(str(data), target=target, text=text)
    if splits is None:
        from .data import make_splits

        splits = make_splits(data.y, fractions=tuple(split), seed=seed)
    return data, splits


def save_data(run: Run, ds: Dataset, splits, keep_data: bool = True) -> None:
    """Keep the data a run trained on (features, labels, ids, classes, splits) inside the run.

    ``keep_data=False`` keeps only labels and splits (search trials: their data lives elsewhere)."""
    def write_npz(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, X=ds.X, y=ds.y, ids=ds.ids.astype(str), classes=np.asarray(ds.classes, dtype=str))

    if keep_data:
        atomic_write(run.file("data.npz"), write_npz)
    def write_labels(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, ds.y)

    atomic_write(run.file("labels.npy"), write_labels)

    def write_splits(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, train=np.asarray(splits.train), val=np.asarray(splits.val), test=np.asarray(splits.test))

    atomic_write(run.file("splits.npz"), write_splits)
    if ds.encoder is not None and hasattr(ds.encoder, "to_dict"):
        run.write_json("encoder.json", ds.encoder.to_dict())
    if keep_data and ds.raw is not None and isinstance(ds.raw, pd.DataFrame) and len(ds.raw) <= 200_000:
        run.write_csv("raw.csv", ds.raw)


def default_out(prefix: str = "fit") -> Path:
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def fit(data: Dataset | str, *, target: str | None = None, text: str | None = None, test: str | None = None,
        out: str | Path | None = None, config: TrainConfig | dict | str | Path | None = None,
        split: Sequence[float] = (0.7, 0.2, 0.1), splits: Any = None, split_seed: int = 0,
        callbacks: Sequence[Callback] = (),
        resume: bool = False, quiet: bool = True, sample_weight: np.ndarray | None = None,
        init: str | Path | None = None, write_report: bool = True, keep_data: bool = True,
        **overrides: Any) -> FitResult:
    """Train a model on ``data`` and leave a Run directory in ``out``.

    Args:
        data: a path (.csv, .parquet, .npz, image folder), a built-in name (``sklearn:digits``) or a Dataset.
        target / text: the label column and an optional text column (tables).
        test: a separate test file; otherwise ``split`` (train, val, test fractions) is used.
        out: the run directory (default ``runs/fit-<time>``).
        config: a TrainConfig, dict or YAML/JSON file; ``overrides`` (e.g. ``epochs=10``) win.
        resume: continue a killed run in ``out`` from its last checkpoint (same final weights).
        sample_weight: per-dataset-row loss weights (used by the reweight repair policy).
        init: another run whose weights start this one (fine-tuning; shape-matching layers only).
        keep_data: save a copy of the data in the run (``data.npz``; needed by diagnose, explain, report).
        split_seed: seed of the stratified split, fixed by default so runs with different training
            seeds share one test split (comparable, and ensembles of them can be evaluated).

    Returns:
        FitResult with ``run``, ``model`` (weights of the best validation epoch), ``dataset``, ``splits``,
        ``history`` and ``test_metrics``.

    >>> res = fit("sklearn:digits", epochs=5, out="runs/digits")  # doctest: +SKIP
    """
    import torch

    from .models import build_model
    from .train.metrics import classification_metrics, confusion
    from .train.metrics_log import MetricsLog
    from .train.trainer import Trainer, default_callbacks, predict_proba

    out = Path(out) if out is not None else default_out()
    if resume:
        if not (out / "run.json").exists():
            raise RunError(f"{out}: nothing to resume (no run.json); start it without --resume")
        stored = Run(out).meta.get("config", {})
        cfg = make_config(stored.get("train", stored))
    else:
        cfg = make_config(config, **overrides)
    ds, splits = resolve_data(data, target, text, test, split, split_seed, splits)
    if len(splits.train) < 2:
        raise ConfigError(f"{ds.source or 'data'}: the training split has {len(splits.train)} rows; need at least 2")
    data_info = {"source": ds.source, "target": target, "text": text, "test": str(test) if test else None,
                 "kind": ds.kind, "n_rows": len(ds), "n_classes": ds.n_classes, "classes": ds.classes,
                 "input_shape": list(ds.input_shape), "fingerprint": ds.fingerprint(),
                 "n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test),
                 "loader": ds.info}
    from .train import distributed
    from .train.trainer import pick_device

    parallel = distributed.init(pick_device(cfg.device))
    main = distributed.is_main()
    if main:
        run = Run.create(out, {"train": cfg.to_dict()}, resume=resume)
    distributed.barrier()
    if not main:  # other data-parallel processes only write their ledger shard
        run = Run(out)
    t0 = time.time()
    try:
        if main:
            run.update_meta(data=data_info, seed=cfg.seed, world_size=distributed.world()[1])
            if not resume or not run.file("data.npz").exists():
                save_data(run, ds, splits, keep_data)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, ds.input_shape, ds.n_classes, hidden=cfg.hidden, dropout=cfg.dropout,
                            activation=cfg.activation, norm=cfg.norm, channels=cfg.channels)
        model.standardize.fit(ds.X[splits.train])
        init_report = None
        if init is not None:
            from .compress.transfer import init_from

            init_report = init_from(model, init)
        if main:
            run.update_meta(model=model.spec, init=None if init is None else
                            {"from": str(init), "n_loaded": init_report["n_loaded"]})
        cbs = default_callbacks(cfg, run=run, quiet=quiet, extra=list(callbacks), main=main)
        if main:
            cbs.append(MetricsLog(run.file("metrics.csv")))
        trainer = Trainer(model, cfg, cbs, run=run)
        tr, va, te = splits.train, splits.val, splits.test
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)[tr]
        state = trainer.fit(ds.X[tr], ds.y[tr], ds.X[va] if len(va) else None, ds.y[va] if len(va) else None,
                            sample_weight=sw, X_extra=ds.X[te] if len(te) else None,
                            resume_from=run.checkpoint_dir / "last.pt" if resume else None)
        distributed.barrier()
        best = run.checkpoint_dir / "best.pt"
        if best.exists():
            from .train.checkpoint import load_checkpoint

            model.load_state_dict(load_checkpoint(best)["model"])
        # the test labels are read here, once, for the final evaluation
        test_metrics: dict[str, Any] = {}
        cm = None
        if len(te):
            pt = predict_proba(model, ds.X[te], device=trainer.device, precision=cfg.precision)
            test_metrics = classification_metrics(ds.y[te], pt)
            cm = confusion(ds.y[te], pt.argmax(1), ds.n_classes)
        if main:
            run.finish("finished", test_metrics=test_metrics, confusion_matrix=cm, classes=ds.classes,
                       best_epoch=state.best_epoch, epochs_run=len(state.history),
                       batch_size=state.extra.get("batch_size"),
                       stopped_early=state.extra.get("stopped_early_at"), diverged_at=state.extra.get("diverged_at"),
                       seconds=time.time() - t0)
    except KeyboardInterrupt:
        if main:
            run.finish("failed", error="interrupted")
        raise
    except Exception as e:
        if main:
            run.finish("failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        if parallel and torch.distributed.is_initialized():
            distributed.barrier()
            torch.distributed.destroy_process_group()
    result = FitResult(run, model, ds, splits, list(state.history), test_metrics, cfg, state)
    if write_report and main:
        _try_report(run)
    return result


def _try_report(run: Run) -> None:
    """The report is a convenience: failing to draw it must not fail the training run."""
    try:
        from .report import write_report
    except ImportError:
        return
    try:
        write_report(run.path)
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        run.update_meta(report_error=f"{type(e).__name__}: {e}")


def load_data(run_dir: str | Path) -> tuple[Dataset, Any]:
    """The Dataset and Splits a run trained on (from ``data.npz`` / ``splits.npz``)."""
    from .data import Splits

    run = Run(run_dir).check()
    p = run.file("data.npz")
    if not p.exists():
        raise RunError(f"{p}: missing; this run directory is incomplete")
    with np.load(p, allow_pickle=False) as z:
        X, y, ids, classes = z["X"], z["y"], z["ids"], z["classes"]
    meta = run.meta
    kind = meta.get("data", {}).get("kind", "image" if X.ndim == 4 else "tabular")
    encoder = None
    if run.file("encoder.json").exists():
        from .data import encoder_from_dict

        encoder = encoder_from_dict(run.read_json("encoder.json"))
    raw = pd.read_csv(run.file("raw.csv")) if run.file("raw.csv").exists() else None
    feature_names = getattr(encoder, "feature_names", None) if encoder is not None else None
    ds = Dataset(X, y, list(classes), ids, kind, feature_names, meta.get("data", {}).get("source", ""), {}, encoder, raw)
    with np.load(run.file("splits.npz"), allow_pickle=False) as z:
        splits = Splits(train=z["train"], val=z["val"], test=z["test"])
    return ds, splits


def load_model(run_dir: str | Path, which: str = "best"):
    """The trained model of a run (``best`` or ``last`` checkpoint), in eval mode."""
    from .models import from_spec
    from .train.checkpoint import load_checkpoint

    run = Run(run_dir).check()
    spec = run.meta.get("model")
    if not spec:
        raise RunError(f"{run.path}: run.json has no model spec; was the run trained?")
    model = from_spec(spec)
    path = run.checkpoint_dir / f"{which}.pt"
    if not path.exists():
        path = run.checkpoint_dir / "last.pt"
    model.load_state_dict(load_checkpoint(path)["model"])
    return model.eval()


def load_run(run_dir: str | Path):
    """(Run, model, Dataset, Splits) of a finished run."""
    run = Run(run_dir).check()
    ds, splits = load_data(run.path)
    return run, load_model(run.path), ds, splits
