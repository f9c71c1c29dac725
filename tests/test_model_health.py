"""Model health: plant each pathology on purpose, check it is found; a healthy model gets nothing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from trainyard.diagnose.model_health import diagnose_model, fit_diagnosis, format_findings, format_layers
from trainyard.models import build_model
from trainyard.monitor.model_monitor import ModelMonitor, _unit_stats, effective_rank
from trainyard.run import MODEL_HEALTH, Run, read_json
from trainyard.train import Trainer, TrainConfig, default_callbacks
from trainyard.train.autofix import auto_fix, recommend_fix

torch.set_num_threads(1)


def _split(name: str, n_train: int | None = None, seed: int = 0):
    d = load_digits() if name == "digits" else load_breast_cancer()
    X = d.data.astype(np.float32)
    X = (X - X.min(0)) / np.maximum(X.max(0) - X.min(0), 1e-9)
    Xtr, Xva, ytr, yva = train_test_split(X, d.target, test_size=0.25, random_state=seed, stratify=d.target)
    if n_train:
        Xtr, ytr = Xtr[:n_train], ytr[:n_train]
    return Xtr, ytr, Xva, yva


@pytest.fixture(scope="module")
def digits():
    return _split("digits")


def train(data, net: nn.Module | None = None, plant=None, run=None, mon: ModelMonitor | None = None, **over) -> dict:
    """Train with the real Trainer and its default callbacks plus the monitor; return the health record."""
    Xtr, ytr, Xva, yva = data
    cfg = TrainConfig(**{"epochs": 10, "seed": 0, "checkpoint": False, "ledger": False, **over})
    torch.manual_seed(cfg.seed)
    model = net
    if model is None:
        model = build_model("mlp", Xtr.shape[1:], int(ytr.max()) + 1, hidden=cfg.hidden, dropout=cfg.dropout,
                            activation=cfg.activation, norm=cfg.norm)
        model.standardize.fit(Xtr)
    if plant is not None:
        plant(model)
    state = Trainer(model, cfg, default_callbacks(cfg) + [mon or ModelMonitor()], run=run).fit(Xtr, ytr, Xva, yva)
    return state.extra["model_health"]


def issues(rec: dict) -> list[str]:
    return [f["issue"] for f in rec["findings"]]


# -- the measures ---------------------------------------------------------------------------------
def test_effective_rank_known_answers():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 50, generator=g)
    q, _ = torch.linalg.qr(a - a.mean(0))  # orthonormal, zero-mean columns
    v, _ = torch.linalg.qr(torch.randn(50, 50, generator=g))
    five_equal = q[:, :5] @ v[:5] * 3.0
    assert effective_rank(five_equal) == pytest.approx(5.0, abs=1e-3)
    s = torch.tensor([4.0, 2.0, 1.0, 1.0])
    expected = math.exp(-sum(p * math.log(p) for p in (s / s.sum()).tolist()))
    assert effective_rank(q[:, :4] @ torch.diag(s) @ v[:4]) == pytest.approx(expected, abs=1e-3)
    assert effective_rank(torch.randn(100, 2, generator=g) @ torch.randn(2, 64, generator=g)) <= 2.0 + 1e-6
    assert effective_rank(torch.full((50, 8), 0.7)) == 0.0  # no variation at all


def test_dead_units_counted_per_channel_and_saturation():
    x = torch.randn(16, 4, 5, 5)
    x[:, 1] = -x[:, 1].abs()  # channel 1 never positive
    x[:, 3] = 0.0  # channel 3 exactly zero
    st = _unit_stats(torch.relu(x), "relu", nn.ReLU(), channels_first=True)
    assert (st["dead_units"], st["width"], st["live_width"]) == (2, 4, 2)
    sig = torch.sigmoid(torch.cat([torch.full((32, 3), 9.0), torch.randn(32, 5)], 1))
    st = _unit_stats(sig, "saturating", nn.Sigmoid(), channels_first=False)
    assert st["dead_units"] == 3 and st["dead_fraction"] == pytest.approx(3 / 8)


# -- healthy models: no findings ------------------------------------------------------------------
def test_healthy_mlp_digits_has_no_findings(digits):
    rec = train(digits, epochs=8)
    assert rec["history"][-1]["val_acc"] > 0.95
    assert rec["findings"] == [], format_findings(rec["findings"])
    layer = rec["epochs"][-1]["features"]["body.1"]
    assert layer["dead_fraction"] < 0.1 and layer["effective_rank"] > 30


def test_healthy_mlp_breast_cancer_has_no_findings():
    rec = train(_split("breast_cancer"), epochs=8)
    assert rec["history"][-1]["val_acc"] > 0.9
    assert rec["findings"] == [], format_findings(rec["findings"])


# -- planted pathologies ----------------------------------------------------------------------------
def _dead_bias(model: nn.Module) -> None:
    with torch.no_grad():
        model.body[0].bias.fill_(-100.0)  # every unit of the first ReLU layer is switched off


def test_dead_relu_layer_found(digits):
    rec = train(digits, plant=_dead_bias, epochs=4)
    f = rec["findings"][0]
    assert f["issue"] == "dead_units" and f["layer"] == "body.1" and f["severity"] == "error"
    assert f["evidence"]["dead_fraction"]["body.1"] == 1.0
    assert "already dead before training" in f["explanation"]
    # the stuck loss and the empty features downstream are symptoms, reported under the cause
    assert issues(rec) == ["dead_units"]
    assert recommend_fix(rec)["activation"] == "gelu"


def test_rank_two_bottleneck_found(digits):
    rec = train(digits, hidden=(128, 2, 128), epochs=10)
    assert issues(rec) == ["collapsed_features"]
    f = rec["findings"][0]
    assert f["layer"] == "body.7"  # the wide layer after the 2-unit bottleneck
    assert f["evidence"]["effective_rank"]["body.7"] < 9  # fewer directions than 10 classes need
    assert f["evidence"]["narrowest_layer_before"] == {"name": "body.3", "width": 2}
    assert min(recommend_fix(rec)["hidden"]) >= 32


def test_learning_rate_ten_diverges(digits):
    rec = train(digits, lr=10.0, epochs=6)
    assert issues(rec) == ["lr_too_high"]
    # the huge steps killed the ReLUs of the second layer: a symptom, reported under its cause
    assert rec["findings"][0].get("also_explains") == ["dead_units"]
    assert rec["epochs"][-1]["features"]["body.4"]["dead_fraction"] > 0.9
    assert recommend_fix(rec) == {"lr": 1.0, "clip": "norm:1.0"}


def test_learning_rate_tiny_barely_moves(digits):
    rec = train(digits, lr=1e-7, epochs=5)
    assert issues(rec) == ["lr_too_low"]
    assert recommend_fix(rec) == {"lr": 2e-3}


def test_deep_sigmoid_stack_vanishing_gradients(digits):
    rec = train(digits, hidden=(32,) * 30, activation="sigmoid", dropout=0.0, epochs=3)
    f = rec["findings"][0]
    assert f["issue"] == "vanishing_gradients" and f["layer"] == "body.0"
    assert f["evidence"]["spread"] > 1e10
    assert recommend_fix(rec) == {"norm": True, "activation": "gelu"}


def test_tiny_training_set_overfits():
    rec = train(_split("breast_cancer", n_train=30), epochs=50, batch_size=8, dropout=0.0, weight_decay=0.0)
    assert issues(rec) == ["overfitting"]
    ev = rec["findings"][0]["evidence"]
    assert ev["last_val_loss"] > 1.1 * ev["best_val_loss"] and ev["train_val_acc_gap"] > 0.05


def test_nonfinite_loss_is_caught(digits):
    def plant(m: nn.Module) -> None:
        with torch.no_grad():
            m.head.weight[0, 0] = float("nan")

    rec = train(digits, plant=plant, epochs=3)
    assert rec["epochs"][0]["nonfinite_loss_batches"] > 0
    assert "exploding_gradients" in issues(rec) and rec["findings"][0]["severity"] == "error"


class _FunctionalNet(nn.Module):
    """Activations applied as functions: the monitor reads the next layer's inputs instead."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


def test_functional_relu_dead_units_found(digits):
    def plant(m):
        with torch.no_grad():
            m.fc2.bias[:40] = -100.0  # 40 of 64 units of the second layer dead

    rec = train(digits, net=_FunctionalNet(), plant=plant, epochs=3)
    f = rec["findings"][0]
    assert f["issue"] == "dead_units" and f["layer"] == "out:input"
    assert f["evidence"]["dead_units"]["out:input"] >= 40


class _UnusedBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.out, self.spare = nn.Linear(64, 64), nn.Linear(64, 10), nn.Linear(64, 64)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))


def test_unused_layer_is_not_vanishing(digits):
    rec = train(digits, net=_UnusedBranch(), epochs=3)
    assert rec["epochs"][-1]["layers"]["spare"].get("no_grad") is True
    assert rec["findings"] == []


# -- the record, the file, the budget ---------------------------------------------------------------
def test_model_health_json_written_atomically(digits, tmp_path):
    run = Run.create(tmp_path / "run")
    train(digits, run=run, epochs=3, lr=1e-7)
    rec = read_json(run.path / MODEL_HEALTH)
    assert rec["format"].startswith("trainyard.model_health")
    assert [e["epoch"] for e in rec["epochs"]] == [0, 1, 2]
    assert set(rec["epochs"][0]["layers"]) == {"body.0", "body.3", "head"}
    layer = rec["epochs"][0]["layers"]["body.0"]
    assert 0 < layer["update_ratio"] < 1e-4 and layer["weight_norm"] > 0 and layer["grad_norm"] > 0
    assert rec["probe"] == {"n": 256, "source": "train_X"}
    assert [f["issue"] for f in rec["findings"]] == ["lr_too_low"] and "explain" in rec
    assert not list(run.path.glob(".*.tmp"))


def test_probe_skipped_when_over_budget(digits):
    rec = train(digits, mon=ModelMonitor(budget=0.0), epochs=5)
    # only the untrained model (before_fit) and the final one (after_fit) are probed
    assert [e["probed"] for e in rec["epochs"]] == [False, False, False, False, True]
    assert rec["initial_features"]["body.1"]["dead_fraction"] < 0.1
    assert all(e["grad_samples"] > 0 for e in rec["epochs"])  # cheap stats every epoch


def test_early_stop_still_probes_the_final_model(digits):
    rec = train(digits, mon=ModelMonitor(budget=0.0), epochs=30, patience=1, lr=1e-7)
    assert len(rec["epochs"]) < 30 and rec["epochs"][-1]["probed"]
    assert "body.1" in rec["epochs"][-1]["features"]
    assert "dead units" in format_layers(rec) and "body.0" in format_layers(rec)


# -- fit diagnosis on known curves ------------------------------------------------------------------
def _rows(train_loss, val_loss=None, train_acc=None, val_acc=None):
    rows = []
    for i, tl in enumerate(train_loss):
        r = {"epoch": i, "train_loss": tl, "lr": 1e-3}
        for k, s in (("val_loss", val_loss), ("train_acc", train_acc), ("val_acc", val_acc)):
            if s is not None:
                r[k] = s[i]
        rows.append(r)
    return rows


def test_fit_diagnosis_known_curves():
    healthy = _rows([1.5, 0.6, 0.35, 0.25, 0.2, 0.18, 0.17], [1.0, 0.6, 0.45, 0.4, 0.39, 0.39, 0.39],
                    [0.6, 0.85, 0.9, 0.93, 0.94, 0.95, 0.95], [0.7, 0.85, 0.88, 0.89, 0.9, 0.9, 0.9])
    assert fit_diagnosis(healthy, n_classes=10, initial_loss=2.3) == []
    overfit = _rows([1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01], [1.0, 0.7, 0.6, 0.7, 0.8, 0.9, 1.0],
                    [0.6, 0.8, 0.9, 0.95, 0.99, 1.0, 1.0], [0.6, 0.75, 0.8, 0.79, 0.78, 0.78, 0.77])
    (f,) = fit_diagnosis(overfit, n_classes=10)
    assert f["issue"] == "overfitting" and f["evidence"]["best_epoch"] == 2
    oscill = _rows([2.0, 1.5, 2.2, 1.4, 2.3, 1.6, 2.4])
    assert [f["issue"] for f in fit_diagnosis(oscill, n_classes=10, initial_loss=2.3)] == ["lr_too_high"]
    nan = _rows([2.0, float("nan")])
    assert fit_diagnosis(nan, n_classes=10)[0]["severity"] == "error"
    under = _rows([2.2, 2.0, 1.9, 1.85], None, [0.15, 0.2, 0.22, 0.23], None)
    assert [f["issue"] for f in fit_diagnosis(under, n_classes=10, initial_loss=2.3)] == ["underfitting"]
    # the same accuracies on a 90 % majority-class problem are far below guessing too
    assert fit_diagnosis(under, class_prior=[0.9, 0.1], initial_loss=2.3)[0]["issue"] == "underfitting"


def test_diagnose_model_reads_history_from_record():
    rec = {"history": _rows([2.3, 2.3, 2.3]), "n_classes": 10, "epochs": [], "layers": []}
    assert [f["issue"] for f in diagnose_model(rec)] == ["lr_too_low"]
    assert diagnose_model(rec, history=[]) == []


def test_units_that_died_during_training_ask_for_a_lower_learning_rate():
    feats = lambda dead: {"body.1": {"width": 100, "dead_units": int(dead * 100), "dead_fraction": dead,
                                     "live_width": 100 - int(dead * 100), "effective_rank": 30.0, "kind": "relu"}}
    rec = {"layers": [], "history": [], "initial_features": feats(0.05), "config": {"lr": 0.02, "activation": "relu"},
           "epochs": [{"epoch": 0, "layers": {}, "features": feats(0.8)}]}
    (f,) = diagnose_model(rec)
    assert f["issue"] == "dead_units" and f["evidence"]["died_during_training"] and f["severity"] == "warning"
    assert recommend_fix(rec) == {"activation": "gelu", "lr": pytest.approx(0.002)}


@pytest.mark.parametrize("issue, expected", [
    ("overfitting", {"weight_decay": 1e-2, "dropout": 0.3, "patience": 5}),
    ("underfitting", {"epochs": 20, "hidden": (512, 16), "dropout": 0.0, "weight_decay": 1e-4 / 10}),
    ("exploding_gradients", {"lr": 1e-3 / 10, "clip": "norm:1.0", "norm": True}),
    ("collapsed_features", {"weight_decay": 1e-4 / 10, "norm": True, "hidden": (256, 36)}),
])
def test_recommend_fix_per_issue(issue, expected):
    cfg = TrainConfig(epochs=10, lr=1e-3, weight_decay=1e-4, hidden=(256, 8), dropout=0.1, norm=False)
    rec = {"findings": [{"issue": issue}], "n_classes": 10}
    fix = recommend_fix(rec, cfg)
    assert fix == expected
    cfg.replace(**fix)  # every override is a valid TrainConfig value


# -- auto-fix ---------------------------------------------------------------------------------------
def test_auto_fix_retrains_with_the_fix(digits, tmp_path):
    calls = []

    def fit_fn(data, config, out=None):
        calls.append((config, out))
        return {"model_health": train(data, **config.to_dict())}

    out = auto_fix(fit_fn, digits, TrainConfig(lr=1e-7, seed=0, checkpoint=False, ledger=False), epochs=4,
                   out=tmp_path)
    (cfg1, out1), (cfg2, out2) = calls
    assert cfg1.epochs == 4 and cfg2.epochs == 4  # options given as keywords survive into the second fit
    assert cfg2.lr == pytest.approx(2e-3) and (out1, out2) == (tmp_path / "before", tmp_path / "after")
    assert out["fix"]["issue"] == "lr_too_low" and out["fix"]["overrides"] == {"lr": 2e-3}
    assert out["before"]["findings"] == ["lr_too_low"] and out["after"]["findings"] == []
    assert out["after"]["acc"] > out["before"]["acc"] + 0.5 and out["improved"]
    assert read_json(tmp_path / "auto_fix.json")["fix"]["overrides"] == {"lr": 2e-3}


def test_auto_fix_leaves_a_healthy_model_alone():
    calls = []

    def fit_fn(data, config):
        calls.append(config)
        return {"model_health": {"findings": [], "history": [{"val_acc": 0.9}]}}

    out = auto_fix(fit_fn, None, None)
    assert len(calls) == 1 and out["fix"] is None and out["after"] is None and out["before"]["acc"] == 0.9
