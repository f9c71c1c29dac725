"""``tune``: search training and architecture hyperparameters with Optuna.

Each trial is a ``fit`` on the train split scored on the validation split (best epoch's accuracy),
pruned early when its learning curve lags. The test split is not even given to the trials: it is
read once, by the best configuration retrained on train + validation.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..data.dataset import Dataset
from ..errors import ConfigError, RunError
from ..run import read_json, write_json
from .pruning import PruningCallback, StagedMedianPruner, best_score
from .space import SearchSpace, load_space, model_kind
from .storage import open_storage, recover_orphans, worker_id
from .warm_start import meta_features, pick_warm_start, read_registry, record_study, registry_path, top_configs

METRIC = "val_acc"
SAMPLERS = ("tpe", "gp", "cmaes", "random")
PRUNERS = ("median", "hyperband", "none")
# files fit() leaves in a run directory that a trial does not need afterwards (the data is in the study's input)
_TRIAL_SCRATCH = ("data.npz", "labels.npy", "splits.npz", "raw.csv", "encoder.json", "checkpoints")


@dataclass
class TuneResult:
    """What ``tune`` returns (and what ``best.json`` / ``tune.json`` hold).

    Attributes:
        best_params: the searched TrainConfig fields of the best trial (``hidden`` as a list, ...).
        best_value: its validation accuracy (best epoch); None when no trial finished.
        test_score: test accuracy of that configuration retrained on train + validation (None without a test split).
        n_trials: finished trials (complete + pruned) in the study, over all workers.
        warm_started: where each configuration tried first came from (empty when not warm-started).
    """

    best_params: dict[str, Any]
    best_value: float | None
    test_score: float | None
    n_trials: int
    out: Path
    study_name: str
    storage: str
    warm_started: list[str] = field(default_factory=list)
    best_trial: int | None = None
    best_config: dict[str, Any] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    metric: str = METRIC
    n_complete: int = 0
    n_pruned: int = 0
    n_failed: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    importances: dict[str, float] = field(default_factory=dict)
    best_run: Path | None = None
    seconds: float = 0.0


class _SurplusTrial(Exception):
    """Another worker already started the last trial the study needs (a race between two ``ask``)."""


class _DropSurplusLog(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "_SurplusTrial" not in record.getMessage()


# -- helpers ------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "study"


def default_study_name(ds: Dataset) -> str:
    """``<data name>-<first 8 hex of its fingerprint>``: the same data and command resume the same study."""
    src = str(ds.source or "data")
    stem = Path(src).stem if os.path.exists(src) else src  # a file's name, or a built-in like sklearn:digits
    return f"{_slug(stem)}-{ds.fingerprint()[:8]}"


def _splits(train: np.ndarray, val: np.ndarray, test: np.ndarray):
    from ..data.split import Splits

    return Splits(train, val, test)


# random draws the model-based samplers make after the first trials (training config + recipes)
# before they model the results: those first trials already are a diverse initial design
RANDOM_STARTUP = 0
TPE_OPTIONS: dict[str, Any] = {"n_ei_candidates": 256}


def _startup_trials(n_trials: int, n_first: int) -> int:
    return max(3, min(n_first + RANDOM_STARTUP, max(3, n_trials // 2)))


def _tpe_gamma(n: int) -> int:
    """How many of ``n`` finished trials TPE counts as "good". Optuna's default, the top 10 %, is one
    trial until n = 10: then the other good first trials (training config, recipes) fall in the "bad"
    density and TPE steers away from the good region. Half of them, at most 8, while few have run;
    the top 10 % (at most 25) once that is more."""
    return min(25, max(math.ceil(0.1 * n), min(math.ceil(0.5 * n), 8)))


def _make_sampler(name: str, seed: int, n_trials: int, shared: bool, n_first: int = 0):
    import optuna

    startup = _startup_trials(n_trials, n_first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            # multivariate: the knobs interact (learning rate with batch size and optimizer), and a
            # joint model needs fewer trials than one density per knob; group for spaces a YAML makes
            # conditional
            kwargs = dict(seed=seed, n_startup_trials=startup, multivariate=True, group=True, constant_liar=shared,
                          **TPE_OPTIONS)
            try:
                # gamma is deprecated since Optuna 4.9 (still honoured in 5.x); without it, TPE's own split
                warnings.simplefilter("ignore", FutureWarning)
                return optuna.samplers.TPESampler(gamma=_tpe_gamma, **kwargs)
            except TypeError:  # an Optuna that no longer takes gamma
                return optuna.samplers.TPESampler(**kwargs)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
        if name == "cmaes":
            try:
                import cmaes  # noqa: F401 - optuna imports it lazily, at the first sample
            except ImportError:
                raise ConfigError("--sampler cmaes needs the cmaes package (pip install cmaes); "
                                  "or use --sampler tpe") from None
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")


# median pruning, in two stages: while a run is young only the clearly hopeless are stopped (the
# bottom tenth of the finished trials' curves at that epoch: diverged or stalled), since a few epochs
# say little about configurations that start slowly (one-cycle warm-up, a small learning rate);
# from half the epochs on (at most the 5th), every trial below the median
FIRST_EPOCH_KEEP = 90.0


def _median_from(epochs: int) -> int:
    return max(1, min(int(epochs) // 2, 5))


def _median_startup(n_first: int) -> int:
    # the first trials (training config, recipes) always run to the end: the bar the rest are judged by
    return max(2, n_first)


def _make_pruner(name: str, epochs: int, n_first: int = 0):
    import optuna

    if name == "median":
        return StagedMedianPruner(_median_startup(n_first), FIRST_EPOCH_KEEP, _median_from(epochs))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, epochs), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}, got {name!r}")


@contextlib.contextmanager
def _optuna_logging(quiet: bool) -> Iterator[None]:
    """Optuna prints a line per trial at INFO; our progress bar says it better. Restored afterwards."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR if quiet else optuna.logging.WARNING)
    flt = _DropSurplusLog()
    opt_logger = logging.getLogger("optuna.study._optimize")
    opt_logger.addFilter(flt)
    try:
        yield
    finally:
        opt_logger.removeFilter(flt)
        optuna.logging.set_verbosity(before)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _count(study: Any, states: Sequence[Any]) -> int:
    return len(study.get_trials(deepcopy=False, states=tuple(states)))


def _repaired(ds: Dataset, sp: Any, out: Path, cfg: Any, quiet: bool) -> tuple[Dataset, Any]:
    """Diagnose and repair first (``trainyard.repair``); the search then runs on the repaired rows.

    Repair edits training rows only and is given no test rows to evaluate on, so the test split
    stays unread until the final retrain.
    """
    try:
        from ..repair import repair
    except ImportError as e:
        raise ConfigError(f"--diagnose needs trainyard.repair, which this installation lacks ({e}); "
                          "run tune without --diagnose") from None
    res = repair(ds, splits=_splits(sp.train, sp.val, np.zeros(0, np.int64)), out=str(out / "repair"), config=cfg,
                 quiet=quiet)
    fixed = getattr(res, "dataset", None)
    if not isinstance(fixed, Dataset):
        raise RunError(f"{out / 'repair'}: repair returned no repaired Dataset; rerun without --diagnose")
    # the repaired rows are the original rows in their order, minus the quarantined ones: match the ids
    source_row = np.empty(len(fixed), dtype=np.int64)
    i = 0
    for j, rid in enumerate(fixed.ids.tolist()):
        while i < len(ds) and ds.ids[i] != rid:
            i += 1
        if i == len(ds):
            raise RunError(f"{out / 'repair'}: repaired row id {rid!r} is not a row of the data; "
                           "rerun without --diagnose")
        source_row[j], i = i, i + 1
    split_of = np.full(len(ds), -1)
    split_of[sp.train], split_of[sp.val], split_of[sp.test] = 0, 1, 2
    part = split_of[source_row]
    keep = part >= 0  # rows outside every split stay out, as before
    fixed = fixed.subset(np.flatnonzero(keep))
    part = part[keep]
    fixed.info = {**ds.info, "repaired": str(out / "repair")}
    return fixed, _splits(np.flatnonzero(part == 0), np.flatnonzero(part == 1), np.flatnonzero(part == 2))


# -- the objective ------------------------------------------------------------------------------
class _Objective:
    """One trial: sample a configuration, ``fit`` it on train, score it on validation."""

    def __init__(self, ds: Dataset, train: np.ndarray, val: np.ndarray, space: SearchSpace, base: dict,
                 out: Path, n_trials: int, states: tuple):
        rows = np.concatenate([train, val])
        # the trials see only train + validation rows: the test split cannot leak into the search
        self.ds = Dataset(ds.X[rows], ds.y[rows], list(ds.classes), ds.ids[rows], ds.kind, ds.feature_names,
                          ds.source, dict(ds.info), None, None)
        self.splits = _splits(np.arange(len(train)), len(train) + np.arange(len(val)), np.zeros(0, np.int64))
        self.space, self.base, self.out = space, base, out
        self.n_trials, self.states = n_trials, states
        self.mine: list[int] = []

    def _surplus(self, trial: Any) -> bool:
        from optuna.trial import TrialState

        ahead = [t for t in trial.study.get_trials(deepcopy=False, states=self.states + (TrialState.RUNNING,))
                 if t.number < trial.number]
        return len(ahead) >= self.n_trials

    def __call__(self, trial: Any) -> float:
        import optuna

        from ..fitting import fit, make_config

        self.mine.append(trial.number)
        trial.set_user_attr("worker", worker_id())
        if self._surplus(trial):
            trial.set_user_attr("surplus", True)
            trial.study.stop()
            raise _SurplusTrial()
        sampled = self.space.suggest(trial)
        values = {**self.base, **self.space.to_config(sampled), "ledger": False, "monitor": False,
                  "checkpoint": False}
        cfg = make_config(values)
        run_dir = self.out / "trials" / str(trial.number)
        if run_dir.exists():  # a retried trial number never repeats, but a stale folder may exist
            shutil.rmtree(run_dir, ignore_errors=True)
        pruning = PruningCallback(trial, METRIC)
        t0 = time.time()
        try:
            res = fit(self.ds, splits=self.splits, out=run_dir, config=cfg, callbacks=[pruning], quiet=True,
                      write_report=False, keep_data=False)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)  # the next tune re-enqueues it
            raise
        except RuntimeError as e:  # e.g. out of memory for this batch size: the trial fails, the search goes on
            trial.set_user_attr("error", f"{type(e).__name__}: {str(e)[:300]}")
            raise
        finally:
            for name in _TRIAL_SCRATCH:
                p = run_dir / name
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        trial.set_user_attr("epochs_run", len(res.history))
        trial.set_user_attr("seconds", time.time() - t0)
        trial.set_user_attr("run", str(run_dir))
        value = best_score(res.history, METRIC)
        if pruning.pruned_at is not None:
            res.run.update_meta(status="pruned", pruned_at=pruning.pruned_at)
            trial.set_user_attr("pruned_at", pruning.pruned_at)
            raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at + 1} ({METRIC} {value:.4f})")
        return value


# -- outputs ------------------------------------------------------------------------------------
def _history(study: Any) -> list[dict[str, Any]]:
    rows, best = [], -math.inf
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        dur = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        if t.state.name == "COMPLETE" and t.value is not None:
            best = max(best, t.value)
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "duration": dur,
                     "params": dict(t.params), "best_so_far": best if best > -math.inf else None,
                     "epochs_run": t.user_attrs.get("epochs_run"), "pruned_at": t.user_attrs.get("pruned_at"),
                     "source": t.user_attrs.get("source"), "retry_of": t.user_attrs.get("retry_of"),
                     "error": t.user_attrs.get("error"),
                     "intermediate": {int(k): v for k, v in sorted(t.intermediate_values.items())}})
    return rows


def _trials_table(history: list[dict[str, Any]]):
    import pandas as pd

    names = sorted({k for h in history for k in h["params"]})
    return pd.DataFrame([{"number": h["number"], "value": h["value"], "state": h["state"], "duration": h["duration"],
                          **{f"params_{n}": h["params"].get(n) for n in names},
                          "source": h["source"] or ""} for h in history],
                        columns=["number", "value", "state", "duration", *[f"params_{n}" for n in names], "source"])


def _importances(study: Any, n_complete: int) -> tuple[dict[str, float], str | None]:
    """Parameter importances (fANOVA); needs a handful of complete trials with varied parameters."""
    import optuna

    if n_complete < 5:
        return {}, f"needs at least 5 complete trials, have {n_complete}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study)
        return {k: float(v) for k, v in imp.items()}, None
    except Exception as e:  # dynamic spaces, constant params...: importances are a nicety
        return {}, f"{type(e).__name__}: {str(e)[:200]}"


# -- the public function ------------------------------------------------------------------------
def tune(data: Dataset | str, *, target: str | None = None, text: str | None = None, test: str | None = None,
         trials: int = 20, timeout: float | None = None, storage: str | None = None, study: str | None = None,
         out: str | Path | None = None, sampler: str = "tpe", pruner: str = "median",
         space: str | Path | Mapping[str, Any] | None = None, warm_start: str = "auto",
         diagnose_first: bool = False, config: Any = None, split: Sequence[float] = (0.7, 0.2, 0.1),
         splits: Any = None, quiet: bool = True, registry: str | Path | None = None, retrain: bool = True,
         defaults_first: bool = True, recipes: bool | None = None, **train_overrides: Any) -> TuneResult:
    """Search training and architecture hyperparameters; retrain the best on train + validation.

    Args:
        data: a path, a built-in name (``sklearn:digits``) or a Dataset; ``target`` / ``text`` / ``test`` as in ``fit``.
        trials: finished (complete or pruned) trials the study should hold, over all workers and reruns.
        timeout: stop starting new trials after this many seconds.
        storage: an Optuna storage URL (default ``sqlite:///<out>/study.db``); see :mod:`trainyard.tune.storage`
            for PostgreSQL and journal files shared by many workers.
        study: the study name; rerunning with the same name (and ``out``/``storage``) resumes it.
        out: the output folder (default ``runs/tune-<study>``): ``best.json``, ``trials.csv``, ``tune.json``,
            ``trials/<number>/`` and ``best/`` (the retrained run).
        sampler: ``tpe`` (default), ``gp``, ``cmaes`` or ``random``; pruner: ``median``, ``hyperband`` or ``none``.
        space: a YAML file or mapping that narrows or widens the search (see :mod:`trainyard.tune.space`).
        warm_start: ``auto`` (best configurations of the nearest earlier studies first), ``off`` or a study name.
        diagnose_first: diagnose and repair the data first (``trainyard.repair``), then search on the repaired data.
        config: a base TrainConfig / dict / file; ``train_overrides`` (e.g. ``epochs=10``) are fixed, not searched.
        split / splits: train, val, test fractions, or explicit Splits.
        registry: the warm-start registry file (default: see :mod:`trainyard.tune.warm_start`).
        retrain: retrain the best configuration on train + validation and score it on test.
        defaults_first: when not warm-started, the first trial is the training config as given (its
            ``auto`` batch size resolved as ``fit`` would); False starts straight with the sampler.
        recipes: after the training config, try a few generic training recipes (see
            :data:`trainyard.tune.space.RECIPES`) before the sampler takes over; default: on for the
            model-based samplers (tpe, gp, cmaes), off for ``random`` (plain random search).

    Returns:
        TuneResult (``best_params``, ``best_value``, ``test_score``, ``n_trials``, ``out``, ...).

    >>> res = tune("sklearn:digits", trials=30, epochs=10)   # doctest: +SKIP
    >>> res.best_params["lr"], res.test_score                 # doctest: +SKIP
    """
    import optuna
    from optuna.trial import TrialState

    from ..fitting import fit, make_config, resolve_data

    t_start = time.time()
    if int(trials) < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    _make_sampler(sampler, 0, int(trials), shared=False)  # a bad --sampler fails before any work
    _make_pruner(pruner, 2)
    fixed_flags = {k: v for k, v in train_overrides.items() if v is not None}
    base_cfg = make_config(config, **fixed_flags)
    if isinstance(data, Dataset) and splits is None:
        from ..data.split import make_splits

        splits = make_splits(data.y, fractions=tuple(split), seed=base_cfg.seed)
    ds, sp = resolve_data(data, target, text, test, split, base_cfg.seed, splits)
    if len(sp.val) == 0:
        raise ConfigError(f"{ds.source or 'data'}: tune scores trials on a validation split, and it is empty; "
                          "use --split with a validation fraction, e.g. 0.7,0.2,0.1")
    fingerprint = ds.fingerprint()
    study_name = study or default_study_name(ds)
    out = Path(out) if out is not None else Path("runs") / f"tune-{_slug(study_name)}"
    out.mkdir(parents=True, exist_ok=True)

    changes, keep_defaults = load_space(space)
    model = changes["model"].value if "model" in changes and hasattr(changes["model"], "value") else base_cfg.model
    kind = model_kind(str(model), ds.input_shape)
    start = SearchSpace.default(kind, epochs=base_cfg.epochs) if keep_defaults else SearchSpace({}, kind)
    search = start.updated(changes).with_fixed({k: v for k, v in fixed_flags.items() if k != "model"})
    if not search.searched():
        raise ConfigError("the search space has nothing left to search (every parameter is fixed); "
                          "drop some flags or widen --space")
    epochs = int(search.fixed().get("epochs", base_cfg.epochs))

    if diagnose_first:
        ds, sp = _repaired(ds, sp, out, base_cfg, quiet)
    meta = meta_features(ds.y[np.concatenate([sp.train, sp.val])], ds.input_shape, ds.n_classes, ds.kind)
    first = _first_trials(search, base_cfg, len(sp.train), defaults_first,
                          sampler != "random" if recipes is None else bool(recipes))[:int(trials)]

    opt_storage, storage_url = open_storage(storage, out)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    with _optuna_logging(quiet):
        probe = optuna.create_study(study_name=study_name, storage=opt_storage, direction="maximize",
                                    load_if_exists=True)
        seen = probe.user_attrs.get("data_fingerprint")
        if seen is None:
            probe.set_user_attr("data_fingerprint", fingerprint)
            probe.set_user_attr("meta_features", meta)
            probe.set_user_attr("model", kind)
        elif seen != fingerprint:
            raise ConfigError(f"study {study_name!r} in {storage_url} was started on other data "
                              f"(fingerprint {seen[:8]}, this data {fingerprint[:8]}); use another --study")
        n_existing = len(probe.get_trials(deepcopy=False))
        # distinct seeds per rerun (and per worker on a shared storage) so nobody replays the same
        # proposals; a lone worker on its own storage stays reproducible
        shared = storage is not None or bool(probe.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        salt = os.getpid() if shared else 0
        seed = int(np.random.SeedSequence([int(base_cfg.seed), n_existing, salt]).generate_state(1)[0])
        # what a new study tries first: the best configurations of the nearest earlier studies, or with
        # no history to learn from, the training config itself (the defaults work on the first try)
        # and a few generic recipes; the sampler goes on from there
        queue: list[tuple[dict[str, Any], str]] = []
        sources: list[str] = []
        if n_existing == 0:
            if str(warm_start).lower() not in ("off", "none", "false", ""):
                reg = registry_path(out, registry)
                picks = pick_warm_start(read_registry(reg), meta, kind, str(warm_start), (storage_url, study_name))
                for params, source in picks:
                    params = {k: v for k, v in params.items() if search.contains(k, v)}
                    if params:
                        queue.append((params, source))
                        sources.append(source)
            if not queue:
                queue = list(first)
            n_first = len(queue)
        else:
            n_first = int(probe.user_attrs.get("first_trials", 0))
        opt_sampler = _make_sampler(sampler, seed, int(trials), shared=shared, n_first=n_first)
        opt_study = optuna.load_study(study_name=study_name, storage=opt_storage, sampler=opt_sampler,
                                      pruner=_make_pruner(pruner, epochs, n_first))
        recover_orphans(opt_study)

        if n_existing == 0:
            opt_study.set_user_attr("warm_started", sources)
            opt_study.set_user_attr("first_trials", n_first)
            for params, source in queue:
                opt_study.enqueue_trial(params, user_attrs={"source": source}, skip_if_exists=True)

        objective = _Objective(ds, sp.train, sp.val, search, base_cfg.to_dict(), out, int(trials), finished)
        failures = 0
        progress = None
        if not quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=True)
            progress.start()
            task = progress.add_task(f"tune {study_name}", total=int(trials),
                                     completed=_count(opt_study, finished), info="")
        try:
            while True:
                done = _count(opt_study, finished)
                if done + _count(opt_study, (TrialState.RUNNING,)) >= trials:
                    break
                if timeout is not None and time.time() - t_start >= timeout:
                    break
                opt_study.optimize(objective, n_trials=1, catch=(RuntimeError, _SurplusTrial), gc_after_trial=False)
                last = next((t for t in opt_study.get_trials(deepcopy=False) if objective.mine
                             and t.number == objective.mine[-1]), None)
                if last is not None and last.user_attrs.get("surplus"):
                    break
                failures = failures + 1 if last is not None and last.state == TrialState.FAIL else 0
                if failures >= 3:
                    raise RunError(f"{out / 'trials'}: 3 trials in a row failed, the last with "
                                   f"{last.user_attrs.get('error', 'an error')}; check the data and --space")
                if progress is not None:
                    try:
                        info = f"best {opt_study.best_value:.4f} (trial {opt_study.best_trial.number})"
                    except ValueError:
                        info = ""
                    progress.update(task, completed=_count(opt_study, finished), info=info)
            _wait_for_others(opt_study, objective)
        finally:
            if progress is not None:
                progress.stop()
    return _finish(opt_study, ds, sp, search, base_cfg, out, study_name, storage_url, meta, kind, registry,
                   retrain, quiet, t_start, fit, make_config)


def _first_trials(search: SearchSpace, base_cfg: Any, n_train: int, defaults_first: bool,
                  recipes: bool) -> list[tuple[dict[str, Any], str]]:
    """What a study with no history tries first: the training config, then (``recipes``) the generic recipes."""
    from ..train.config import auto_batch_size

    config = base_cfg.to_dict()
    if config.get("batch_size") is None:  # "auto": the size fit would use on this training split
        config["batch_size"] = auto_batch_size(n_train)
        snapped = search.snap("batch_size", config["batch_size"])
        if snapped is not None:
            config["batch_size"] = snapped
    trials = search.first_trials(config)
    if not defaults_first:
        return []
    return trials if recipes else [t for t in trials if t[1] == "training config"]


def _wait_for_others(study: Any, objective: _Objective, limit_s: float = 600.0) -> None:
    """Let the trials other workers are running finish before summarising (bounded)."""
    from optuna.trial import TrialState

    durations = [t.user_attrs.get("seconds", 0.0) for t in study.get_trials(deepcopy=False)
                 if t.user_attrs.get("seconds")]
    deadline = time.time() + min(limit_s, max(30.0, 3 * float(np.median(durations)) if durations else 60.0))
    while time.time() < deadline:
        running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t.number not in objective.mine]
        if not running:
            return
        time.sleep(0.5)


def _finish(study: Any, ds: Dataset, sp: Any, search: SearchSpace, base_cfg: Any, out: Path, study_name: str,
            storage_url: str, meta: dict, kind: str, registry: Any, retrain: bool, quiet: bool, t_start: float,
            fit: Any, make_config: Any) -> TuneResult:
    from optuna.trial import TrialState

    history = _history(study)
    states = [h["state"] for h in history]
    n_complete, n_pruned, n_failed = states.count("COMPLETE"), states.count("PRUNED"), states.count("FAIL")
    out.joinpath("trials").mkdir(parents=True, exist_ok=True)
    _write_csv(out / "trials.csv", _trials_table(history))
    importances, imp_note = _importances(study, n_complete)
    warm = list(study.user_attrs.get("warm_started", []))
    res = TuneResult({}, None, None, n_complete + n_pruned, out, study_name, storage_url, warm,
                     n_complete=n_complete, n_pruned=n_pruned, n_failed=n_failed, history=history,
                     importances=importances)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        sampled = search.to_config(best.params)
        changed = set(best.params) - {"depth", "width"}
        if {"depth", "width"} & set(best.params):
            changed.add("channels" if kind == "cnn" else "hidden")
        cfg = make_config({**base_cfg.to_dict(), **sampled})
        res.best_trial, res.best_value = best.number, float(best.value)
        res.best_config = cfg.to_dict()
        res.best_params = {k: res.best_config[k] for k in sorted(changed)}
        best_json = out / "best.json"
        with _file_lock(out / ".best.lock"):  # workers sharing an out folder retrain once
            prev = read_json(best_json) if best_json.exists() else {}
            if prev.get("study") == study_name and prev.get("trial") == best.number and "test_score" in prev:
                res.test_score, res.test_metrics = prev["test_score"], prev.get("test_metrics", {})
                res.best_run = Path(prev["run"]) if prev.get("run") else None
            elif retrain:
                tv = np.concatenate([sp.train, sp.val])
                final = fit(ds, splits=_splits(tv, np.zeros(0, np.int64), sp.test), out=out / "best", config=cfg,
                            quiet=quiet, write_report=False)
                res.test_metrics = dict(final.test_metrics)
                res.test_score = final.test_metrics.get("acc")
                res.best_run = final.run.path
            write_json(best_json, {"params": res.best_config, "searched": dict(best.params),
                                   "value": res.best_value, "metric": METRIC, "test_score": res.test_score,
                                   "test_metrics": res.test_metrics, "trial": best.number, "study": study_name,
                                   "storage": storage_url, "run": str(res.best_run) if res.best_run else None,
                                   "note": "params are TrainConfig fields: trainyard fit DATA --config best.json"})
        record_study(registry_path(out, registry),
                     {"study": study_name, "storage": storage_url, "data": ds.source, "meta": meta, "model": kind,
                      "metric": METRIC, "best": top_configs(study), "n_trials": res.n_trials, "out": str(out)})
    res.seconds = time.time() - t_start
    write_json(out / "tune.json", {
        "study": study_name, "storage": storage_url, "metric": METRIC, "best_trial": res.best_trial,
        "best_value": res.best_value, "best_params": res.best_params, "test_score": res.test_score,
        "n_trials": res.n_trials, "n_complete": n_complete, "n_pruned": n_pruned, "n_failed": n_failed,
        "warm_started": warm, "importances": importances, "importances_note": imp_note,
        "meta_features": meta, "model": kind, "space": search.describe(), "history": history,
        "seconds": res.seconds})
    return res


def _write_csv(path: Path, df: Any) -> None:
    from ..run import atomic_write

    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
