"""tune: a search that finds a good learning rate, resume without repeats, warm start, shared storage."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")
torch = pytest.importorskip("torch")

from trainyard.data.dataset import Dataset  # noqa: E402
from trainyard.data.split import make_splits  # noqa: E402
from trainyard.errors import ConfigError  # noqa: E402
from trainyard.tune import SearchSpace, load_space, tune  # noqa: E402
from trainyard.tune.space import Fixed, Range  # noqa: E402
from trainyard.tune.warm_start import distance, meta_features  # noqa: E402

torch.set_num_threads(1)

# only the learning rate is searched: every other knob is fixed, so the answer is known
LR_ONLY = {"defaults": False, "lr": {"low": 1e-5, "high": 1.0, "log": True}, "optimizer": "adamw",
           "schedule": "none", "batch_size": 32, "dropout": 0.0, "hidden": [32], "weight_decay": 0.0}
SMALL = {"defaults": False, "lr": {"low": 1e-3, "high": 3e-2, "log": True}, "width": {"low": 8, "high": 32},
         "depth": 1, "batch_size": 64}


def three_blobs(n: int = 240, seed: int = 0, sep: float = 2.5) -> Dataset:
    from sklearn.datasets import make_classification

    X, y = make_classification(n, 8, n_informative=5, n_redundant=0, n_classes=3, class_sep=sep,
                               random_state=seed)
    return Dataset(X.astype(np.float32), y, ["a", "b", "c"], np.arange(n), "tabular", source=f"blobs{seed}")


def test_space_file_format(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text("lr: {low: 1e-4, high: 1e-1, log: true}\noptimizer: [adamw, sgd]\nepochs: 7\n"
                 "hidden: [[64, 32], [128]]\nwidth: {low: 16, high: 64}\n")
    changes, keep = load_space(p)
    assert keep and changes["lr"] == Range(1e-4, 1e-1, log=True) and changes["epochs"] == Fixed(7)
    assert changes["width"].integer and changes["hidden"].options == ("64,32", "128")
    space = SearchSpace.default("mlp").updated(changes)
    assert "depth" not in space.params  # a searched `hidden` replaces depth/width
    assert space.to_config({"hidden": "64,32", "clip": "none"}) == {"epochs": 7, "hidden": [64, 32], "clip": None}
    assert SearchSpace.default("cnn").to_config({"depth": 3, "width": 16})["channels"] == [16, 32, 64]
    assert SearchSpace.default("mlp").to_config({"depth": 3, "width": 256})["hidden"] == [256, 128, 64]
    with pytest.raises(ConfigError, match="learning_rate"):
        load_space({"learning_rate": [1, 2]})
    with pytest.raises(ConfigError, match="low > 0"):
        load_space({"lr": {"low": 0, "high": 1, "log": True}})


def test_meta_feature_distance():
    a = meta_features(np.repeat(np.arange(10), 100), (64,), 10, "image")
    b = meta_features(np.repeat(np.arange(10), 50), (64,), 10, "image")
    c = meta_features(np.repeat(np.arange(2), 500), (30,), 2, "tabular")
    assert a["rows"] == 1000 and a["imbalance"] == 1.0
    assert distance(a, b) == pytest.approx(np.log10(2))  # half the rows, otherwise identical
    assert distance(a, c) == np.inf


def test_search_finds_a_good_learning_rate(tmp_path):
    ds = three_blobs()
    res = tune(ds, trials=6, out=tmp_path / "lr", space=LR_ONLY, epochs=3, pruner="none", warm_start="off",
               defaults_first=False, registry=tmp_path / "reg.json", retrain=True)
    values = [h["value"] for h in res.history if h["state"] == "COMPLETE"]
    lrs = [h["params"]["lr"] for h in res.history]
    assert res.n_trials == 6 and len(values) == 6
    assert max(lrs) / min(lrs) > 100  # the search spread over orders of magnitude, not one point
    assert 3e-4 < res.best_params["lr"] < 0.5
    assert res.best_value >= min(values) + 0.25  # and the best beats the worst by a wide margin
    assert res.best_value >= 0.8 and res.test_score >= 0.7
    best = json.loads((tmp_path / "lr" / "best.json").read_text())
    assert best["params"]["lr"] == res.best_params["lr"] and best["params"]["hidden"] == [32]
    from trainyard.train.config import read_config_file

    assert read_config_file(tmp_path / "lr" / "best.json")["lr"] == res.best_params["lr"]  # fit --config best.json
    table = (tmp_path / "lr" / "trials.csv").read_text().splitlines()
    assert table[0].startswith("number,value,state,duration,params_lr") and len(table) == 7
    assert (tmp_path / "lr" / "trials" / "0" / "metrics.csv").exists()
    assert not (tmp_path / "lr" / "trials" / "0" / "ledger").exists()


def test_killed_study_resumes_without_repeating(tmp_path):
    ds = three_blobs(seed=1)
    kw = dict(out=tmp_path / "t", study="resume-me", space=SMALL, epochs=2, warm_start="off",
              registry=tmp_path / "reg.json", retrain=False)
    first = tune(ds, trials=2, **kw)
    assert first.n_trials == 2
    # with no history, the first trial is the training config (lr 2e-3 lies in the searched range)
    assert first.history[0]["params"]["lr"] == 0.002 and first.history[0]["source"] == "training config"
    storage = f"sqlite:///{tmp_path / 't' / 'study.db'}"
    study = optuna.load_study(study_name="resume-me", storage=storage)
    before = {t.number: t.params for t in study.trials}
    # a kill leaves a RUNNING trial behind whose process is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True)})
    orphan.set_user_attr("worker", {"host": os.uname().nodename, "pid": dead.pid, "started": 0.0})

    second = tune(ds, trials=4, **kw)
    trials = optuna.load_study(study_name="resume-me", storage=storage).trials
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert second.n_trials == 4 and len(finished) == 4  # 4 in total, not 2 + 4
    assert {n: trials[n].params for n in before} == before  # the first two were kept, not rerun
    assert trials[orphan.number].state.name == "FAIL"
    retry = [t for t in trials if t.user_attrs.get("retry_of") == orphan.number]
    assert len(retry) == 1 and retry[0].params["lr"] == orphan.params["lr"]
    keys = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(keys)) == len(keys)  # no configuration was tried twice


def test_warm_start_enqueues_the_neighbours_best(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINYARD_HOME", str(tmp_path / "home"))
    earlier = tune(three_blobs(seed=2), trials=3, out=tmp_path / "a", study="earlier", space=SMALL, epochs=2,
                   warm_start="off", retrain=False)
    registry = json.loads((tmp_path / "home" / "studies.json").read_text())
    assert registry["studies"][0]["study"] == "earlier" and registry["studies"][0]["meta"]["rows"] == 216
    # a similar dataset (same generator, fewer rows): its study starts from the earlier best
    later = tune(three_blobs(n=200, seed=3), trials=1, out=tmp_path / "b", study="later", space=SMALL, epochs=2,
                 retrain=False)
    best_params = optuna.load_study(study_name="earlier", storage=earlier.storage).best_params
    first = optuna.load_study(study_name="later", storage=later.storage).trials[0]
    assert first.params == best_params
    assert later.warm_started and later.warm_started[0].startswith("earlier trial")
    with pytest.raises(ConfigError, match="no finished study"):
        tune(three_blobs(seed=3), trials=1, out=tmp_path / "d", study="named", space=SMALL, epochs=2,
             retrain=False, warm_start="nonexistent")


def _worker(storage: str, out: str, registry: str) -> None:
    torch.set_num_threads(1)
    space = {"defaults": False, "lr": {"low": 1e-3, "high": 3e-2, "log": True}, "hidden": [16]}
    tune(three_blobs(), trials=4, storage=storage, study="shared", out=out, epochs=2, warm_start="off", space=space,
         registry=registry, retrain=False)


def test_two_workers_share_one_study(tmp_path):
    import multiprocessing as mp

    # forked processes start without re-importing torch (seconds on a busy machine); they are still
    # separate processes that meet only through the journal file, as workers on two machines would
    ctx = mp.get_context("fork")
    storage = f"journal:{tmp_path / 'study.log'}"
    procs = [ctx.Process(target=_worker, args=(storage, str(tmp_path / f"w{i}"), str(tmp_path / "reg.json")))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(study_name="shared",
                              storage=JournalStorage(JournalFileBackend(str(tmp_path / "study.log"))))
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4  # four in total, not four per worker
    assert {t.user_attrs["worker"]["pid"] for t in finished} <= {p.pid for p in procs}
    # each worker summarised the whole study, not just its own trials
    assert [json.loads((tmp_path / f"w{i}" / "tune.json").read_text())["n_trials"] for i in range(2)] == [4, 4]


def test_lagging_trials_are_pruned_and_marked(tmp_path):
    # queue three good learning rates, then two hopeless ones: the median pruner must stop the last two
    out = tmp_path / "p"
    out.mkdir()
    study = optuna.create_study(study_name="prune", storage=f"sqlite:///{out / 'study.db'}", direction="maximize")
    for lr in (0.01, 0.011, 0.012, 1e-5, 1.1e-5):
        study.enqueue_trial({"lr": lr})
    space = {"defaults": False, "lr": {"low": 1e-5, "high": 0.1, "log": True}, "hidden": [16]}
    res = tune(three_blobs(seed=4), trials=5, out=out, study="prune", space=space, epochs=5, warm_start="off",
               registry=tmp_path / "reg.json", retrain=False, batch_size=32)
    states = [h["state"] for h in res.history]
    assert states == ["COMPLETE"] * 3 + ["PRUNED"] * 2 and res.n_pruned == 2
    for h in res.history:
        meta = json.loads((out / "trials" / str(h["number"]) / "run.json").read_text())
        assert meta["config"]["train"]["batch_size"] == 32  # a flag is fixed, not searched
        if h["state"] == "PRUNED":
            assert meta["status"] == "pruned" and h["epochs_run"] == meta["pruned_at"] + 1 < 5
        else:
            assert meta["status"] == "finished" and h["epochs_run"] == 5


def test_diagnose_first_searches_the_repaired_data(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import trainyard.repair

    ds = three_blobs(seed=5)
    splits = make_splits(ds.y, seed=0)
    seen = {}

    def fake_repair(data, splits=None, out=None, config=None, quiet=True, **kw):
        # relabel two training rows, quarantine three: what a repair might do
        seen["test_rows"] = len(splits.test)
        y = data.y.copy()
        y[splits.train[:2]] = (y[splits.train[:2]] + 1) % 3
        keep = np.setdiff1d(np.arange(len(data)), splits.train[2:5])
        return SimpleNamespace(dataset=data.with_labels(y).subset(keep))

    monkeypatch.setattr(trainyard.repair, "repair", fake_repair)
    res = tune(ds, splits=splits, trials=1, out=tmp_path / "r", space=SMALL, epochs=2, warm_start="off",
               registry=tmp_path / "reg.json", diagnose_first=True)
    assert seen["test_rows"] == 0  # repair never sees the test split
    trial = json.loads((tmp_path / "r" / "trials" / "0" / "run.json").read_text())
    assert trial["data"]["n_train"] == len(splits.train) - 3 and trial["data"]["n_val"] == len(splits.val)
    with np.load(res.best_run / "data.npz") as z, np.load(res.best_run / "splits.npz") as s:
        ids, y = z["ids"].astype(int), z["y"]
        assert np.array_equal(y[s["test"]], ds.y[ids[s["test"]]])  # test labels as given
        assert sorted(ids[s["test"]]) == sorted(splits.test)
        relabelled = splits.train[:2]
        assert np.array_equal(y[np.isin(ids, relabelled)], (ds.y[relabelled] + 1) % 3)
        assert not np.isin(splits.train[2:5], ids).any()


def test_first_trials_are_the_config_then_generic_recipes():
    from trainyard.train.config import TrainConfig
    from trainyard.tune.space import RECIPES
    from trainyard.tune.study import _first_trials

    space = SearchSpace.default("mlp", epochs=4)
    first = _first_trials(space, TrainConfig(), 1257, defaults_first=True, recipes=True)
    assert [src for _, src in first] == ["training config"] + [label for label, _ in RECIPES]
    config, one_cycle, sgd, wide = (p for p, _ in first)
    # "auto" batch size is the one fit would use on 1,257 training rows; hidden (256, 128) is depth 2, width 256
    assert config == {"lr": 0.002, "weight_decay": 1e-4, "batch_size": 64, "optimizer": "adamw", "schedule": "cosine",
                      "dropout": 0.1, "label_smoothing": 0.0, "clip": "none", "depth": 2, "width": 256}
    assert one_cycle["batch_size"] == 32 and type(one_cycle["batch_size"]) is int  # half the config's, an option
    assert one_cycle["schedule"] == "onecycle" and one_cycle["lr"] == 3e-3 and one_cycle["width"] == 256
    assert sgd["optimizer"] == "sgd" and sgd["lr"] == 0.05 and sgd["clip"] == "norm:1.0"
    assert wide["width"] == 512 and wide["dropout"] == 0.3  # twice the config's width
    assert all(space.contains(k, v) for p, _ in first for k, v in p.items())
    # a CNN's width doubles from its first block (32 channels), clipped to the space's top
    cnn = [p for p, _ in _first_trials(SearchSpace.default("cnn"), TrainConfig(), 5000, True, True)]
    assert [p["width"] for p in cnn] == [32, 32, 32, 64]
    # plain random search and the ablation keep only the config, or nothing
    assert [s for _, s in _first_trials(space, TrainConfig(), 1257, True, False)] == ["training config"]
    assert _first_trials(space, TrainConfig(), 1257, False, True) == []
    # a space that searches only the learning rate: the recipes differ only there, repeats are dropped
    lr_only = SearchSpace({"lr": Range(1e-3, 1e-2, log=True)}, "mlp")
    assert [p for p, _ in _first_trials(lr_only, TrainConfig(), 500, True, True)] == [
        {"lr": 0.002}, {"lr": 0.003}, {"lr": 0.01}, {"lr": 0.001}]


def test_snap_moves_values_into_the_space():
    space = SearchSpace.default("mlp")
    assert space.snap("batch_size", 1024) == 256 and space.snap("batch_size", 48) == 64  # nearest on a log scale
    assert space.snap("lr", 1.0) == 0.1 and space.snap("width", 1000) == 512 and space.snap("depth", 2.4) == 2
    assert space.snap("optimizer", "lion") is None and space.snap("epochs", 3) is None


def test_tpe_split_keeps_the_good_first_trials_together():
    from trainyard.tune.study import _tpe_gamma

    # half of the trials while few have run (at most 8), Optuna's top 10 % (at most 25) afterwards
    assert [_tpe_gamma(n) for n in (1, 4, 6, 16, 20, 100, 400)] == [1, 2, 3, 8, 8, 10, 25]


def test_staged_median_pruner_is_lenient_first_then_median():
    from trainyard.tune.pruning import StagedMedianPruner

    study = optuna.create_study(direction="maximize", pruner=StagedMedianPruner(4, keep_first=90.0, median_from=1))
    for curve in ([0.50, 0.70], [0.55, 0.75], [0.60, 0.80], [0.65, 0.85]):
        t = study.ask()
        for step, v in enumerate(curve):
            t.report(v, step)
        study.tell(t, curve[-1])
    # first epoch: only below the 10th percentile (0.515) is stopped; 0.52 lies below the median and survives
    for value, pruned in ((0.51, True), (0.52, False), (0.70, False)):
        t = study.ask()
        t.report(value, 0)
        assert t.should_prune() is pruned, value
        study.tell(t, state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.FAIL)
    # second epoch on: the median of 0.70..0.85 (0.775) is the bar for the trial's best value so far
    for value, pruned in ((0.77, True), (0.78, False)):
        t = study.ask()
        t.report(0.6, 0)
        t.report(value, 1)
        assert t.should_prune() is pruned, value
        study.tell(t, state=optuna.trial.TrialState.FAIL)
    # fewer finished trials than n_startup_trials: nothing is pruned
    young = optuna.create_study(direction="maximize", pruner=StagedMedianPruner(5))
    assert young.pruner.prune(young, study.trials[-1]) is False


def test_a_new_study_runs_config_and_recipes_first_then_the_sampler(tmp_path):
    from trainyard.tune.space import RECIPES

    space = {"defaults": False, "lr": {"low": 1e-4, "high": 0.1, "log": True}, "optimizer": ["adamw", "sgd"],
             "batch_size": [32, 64], "hidden": [16]}
    res = tune(three_blobs(seed=6), trials=5, out=tmp_path / "f", space=space, epochs=2, warm_start="off",
               registry=tmp_path / "reg.json", retrain=False, pruner="none")
    assert [h["source"] for h in res.history] == ["training config", *(label for label, _ in RECIPES), None]
    assert [h["params"]["lr"] for h in res.history[:4]] == [0.002, 0.003, 0.05, 0.001]
    assert res.history[2]["params"]["optimizer"] == "sgd"
    assert res.history[4]["params"] not in [h["params"] for h in res.history[:4]]
    # plain random search: only the training config goes first
    rnd = tune(three_blobs(seed=6), trials=2, out=tmp_path / "r", space=space, epochs=2, warm_start="off",
               registry=tmp_path / "reg.json", retrain=False, sampler="random", pruner="none")
    assert [h["source"] for h in rnd.history] == ["training config", None]
