"""Robustness: eps 0 is the clean accuracy, accuracy falls as eps grows, images stay in range,
and the rows closest to the decision boundary flip first."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from trainyard.compress.distill import fit_input_scaling
from trainyard.compress.finetune import train_epochs
from trainyard.data.dataset import Dataset
from trainyard.errors import ConfigError
from trainyard.explain import fgsm, pgd, robust_run, robustness
from trainyard.models import build_model


@pytest.fixture(scope="module")
def linear_rule():
    """Label = sign(x0 + x1); a trained MLP. Distance to the boundary is |x0 + x1| / sqrt(2)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    data = Dataset(X, y, ["a", "b"], [f"r{i}" for i in range(500)], "tabular")
    splits = SimpleNamespace(train=np.arange(300), val=np.arange(300, 400), test=np.arange(400, 500))
    torch.manual_seed(0)
    model = build_model("mlp", (4,), 2, hidden=(32,), dropout=0.0)
    fit_input_scaling(model, X[:300])
    train_epochs(model, X[:300], y[:300], epochs=30, lr=1e-2, X_val=X[300:400], y_val=y[300:400])
    return model.eval(), data, splits


def test_eps_zero_is_clean_accuracy_and_accuracy_falls_with_eps(linear_rule):
    model, data, splits = linear_rule
    X, y = data.X[splits.test], data.y[splits.test]
    r = robustness(model, X, y, eps=(0.3, 0, 0.1, 1.0), ids=data.ids[splits.test])
    assert r["eps"] == [0.0, 0.1, 0.3, 1.0]
    assert r["clean_accuracy"] > 0.9
    for attack in ("fgsm", "pgd", "noise"):
        acc = r["accuracy"][attack]
        assert acc[0] == r["clean_accuracy"]
        assert all(a >= b for a, b in zip(acc, acc[1:])), (attack, acc)
    # a 1-std push in the worst direction crosses the boundary for most rows; random noise of that size does not
    assert r["accuracy"]["fgsm"][-1] < 0.5
    assert r["accuracy"]["pgd"][-1] <= r["accuracy"]["fgsm"][-1] + 0.02
    assert r["accuracy"]["noise"][-1] > r["accuracy"]["pgd"][-1] + 0.2
    json.dumps(r)


def test_rows_near_the_boundary_flip_first(linear_rule):
    model, data, splits = linear_rule
    X, y = data.X[splits.test], data.y[splits.test]
    r = robustness(model, X, y, eps=(0.05, 0.2, 0.5), attacks=("fgsm",), top=10)
    flips = r["first_flips"]
    assert [f["eps"] for f in flips] == sorted(f["eps"] for f in flips)
    distance = np.abs(X[:, 0] + X[:, 1]) / np.sqrt(2)
    first = [f["index"] for f in flips[:5]]
    assert np.all(distance[first] < np.quantile(distance, 0.25))
    assert sum(r["first_flip_histogram"].values()) == len(y)


def test_image_attacks_stay_in_the_data_range_and_in_the_eps_ball():
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 3, channels=(4, 8)).eval()
    x = torch.rand(16, 1, 8, 8)
    y = torch.randint(0, 3, (16,))
    for adv in (fgsm(model, x, y, 0.1, (0.0, 1.0)), pgd(model, x, y, 0.1, 5, clip=(0.0, 1.0))):
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
        assert float((adv - x).abs().max()) <= 0.1 + 1e-6
    r = robustness(model, x.numpy(), y.numpy(), eps=(0.0, 0.05))
    assert r["clip"] == [float(x.min()), float(x.max())]


def test_bad_options_are_config_errors(linear_rule):
    model, data, _ = linear_rule
    with pytest.raises(ConfigError, match="unknown attack"):
        robustness(model, data.X[:10], data.y[:10], attacks=("cw",))
    with pytest.raises(ConfigError, match=">= 0"):
        robustness(model, data.X[:10], data.y[:10], eps=(-0.1,))


def test_robust_run_on_a_real_run_writes_robust_json(tmp_path):
    trainyard = pytest.importorskip("trainyard.fitting", reason="trainyard.fit is not available yet")
    res = trainyard.fit("sklearn:breast_cancer", out=tmp_path / "run", epochs=4, model="mlp", hidden=(32,),
                        write_report=False, ledger=False, monitor=False)
    r = robust_run(res.run.path, eps=(0.0, 0.1, 0.5), pgd_steps=3)
    saved = json.loads((res.run.path / "robust.json").read_text())
    assert saved["n_samples"] == len(res.splits.test) == r["n_samples"]
    assert saved["clip"] is None  # standardised table columns have no natural range
    assert saved["accuracy"]["fgsm"][0] == pytest.approx(res.test_metrics["acc"])
    assert saved["accuracy"]["pgd"][-1] < saved["accuracy"]["pgd"][0]
    assert {f["id"] for f in saved["first_flips"]} <= set(res.dataset.ids[res.splits.test])
