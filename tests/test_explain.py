"""Explain: on data where one feature (or one image patch) carries the label, every method must rank it first."""
import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from trainyard.compress.distill import fit_input_scaling
from trainyard.compress.finetune import train_epochs
from trainyard.data.dataset import Dataset
from trainyard.errors import TrainyardError
from trainyard.explain import (explain, explain_run, integrated_gradients, permutation_importance,
                               shap_importance, why_flagged)
from trainyard.models import build_model
from trainyard.run import Run

INFORMATIVE = 2  # the only column that carries the label


def _train(model, data, splits, epochs=20, lr=1e-2):
    torch.manual_seed(0)
    fit_input_scaling(model, data.X[splits.train])
    train_epochs(model, data.X[splits.train], data.y[splits.train], epochs=epochs, lr=lr,
                 X_val=data.X[splits.val], y_val=data.y[splits.val])
    return model.eval()


@pytest.fixture(scope="module")
def one_feature():
    """600 rows, 5 noise columns; the label is sign(x2). Test rows 560.. have flipped labels."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5)).astype(np.float32)
    y = (X[:, INFORMATIVE] > 0).astype(np.int64)
    y[560:] = 1 - y[560:]  # planted label errors, outside train/val
    data = Dataset(X, y, ["neg", "pos"], [f"r{i}" for i in range(600)], "tabular", [f"f{i}" for i in range(5)])
    splits = SimpleNamespace(train=np.arange(400), val=np.arange(400, 500), test=np.arange(500, 600))
    model = _train(build_model("mlp", (5,), 2, hidden=(32, 32), dropout=0.0), data, splits)
    return model, data, splits


@pytest.fixture(scope="module")
def one_patch():
    """8x8 noise images; the label is whether the top-left 2x2 patch is brighter than average."""
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, size=(900, 1, 8, 8)).astype(np.float32)
    y = (X[:, 0, :2, :2].mean(axis=(1, 2)) > 0.5).astype(np.int64)
    data = Dataset(X, y, ["dark", "bright"], np.arange(900), "image")
    splits = SimpleNamespace(train=np.arange(600), val=np.arange(600, 800), test=np.arange(800, 900))
    model = _train(build_model("mlp", (1, 8, 8), 2, hidden=(64,), dropout=0.0), data, splits, epochs=30)
    return model, data, splits


def test_models_learned_the_planted_rule(one_feature, one_patch):
    for (model, data, splits), least in ((one_feature, 0.95), (one_patch, 0.85)):
        pred = model(torch.as_tensor(data.X[splits.val])).argmax(1).numpy()
        assert (pred == data.y[splits.val]).mean() > least


def test_permutation_importance_ranks_the_informative_feature_first(one_feature):
    model, data, splits = one_feature
    r = permutation_importance(model, data.X[splits.val], data.y[splits.val], feature_names=data.feature_names)
    assert r["ranking"][0] == "f2"
    imp = np.array(r["importance_mean"])
    assert imp[INFORMATIVE] > 0.3  # shuffling the label's only cause costs ~half the accuracy
    assert np.all(np.delete(imp, INFORMATIVE) < 0.05)


def test_shap_ranks_the_informative_feature_first(one_feature):
    pytest.importorskip("shap", reason="shap is in the optional extra trainyard[explain]")
    model, data, splits = one_feature
    r = shap_importance(model, data.X[splits.train], data.X[splits.val], feature_names=data.feature_names)
    assert r["ranking"][0] == "f2"
    mean_abs = np.array(r["mean_abs"])
    assert mean_abs[INFORMATIVE] > 3 * np.delete(mean_abs, INFORMATIVE).max()
    assert np.array(r["values"]).shape == (len(splits.val), 5)


def test_integrated_gradients_rank_the_informative_feature_first(one_feature):
    pytest.importorskip("captum", reason="captum is in the optional extra trainyard[explain]")
    model, data, splits = one_feature
    X = data.X[splits.val]
    base = data.X[splits.train].mean(0)
    attr = integrated_gradients(model, X, baseline=base, n_steps=64)
    assert attr.shape == X.shape
    assert np.abs(attr).mean(0).argmax() == INFORMATIVE
    # completeness: attributions sum to logit(x) - logit(baseline) of the explained class
    with torch.no_grad():
        logits = model(torch.as_tensor(X)).numpy()
        base_logits = model(torch.as_tensor(base[None])).numpy()[0]
    pred = logits.argmax(1)
    gap = logits[np.arange(len(X)), pred] - base_logits[pred]
    assert np.allclose(attr.sum(1), gap, atol=0.05 * np.abs(gap).max())


def test_image_heat_maps_point_at_the_informative_patch(one_patch):
    pytest.importorskip("captum")
    model, data, splits = one_patch
    X, y = data.X[splits.val], data.y[splits.val]
    perm = permutation_importance(model, X, y)
    heat = np.array(perm["heatmap"])
    assert heat.shape == (8, 8)
    top4 = set(np.argsort(-heat.ravel())[:4].tolist())
    assert top4 == {0, 1, 8, 9}  # pixels (0,0) (0,1) (1,0) (1,1)
    attr = np.abs(integrated_gradients(model, X)).mean(0)[0]
    assert set(np.argsort(-attr.ravel())[:4].tolist()) == {0, 1, 8, 9}


def test_why_flagged_names_the_feature_that_contradicts_the_given_label(one_feature):
    pytest.importorskip("captum")
    model, data, _ = one_feature
    rows = np.arange(560, 600)
    rows = rows[np.abs(data.X[rows, INFORMATIVE]) > 0.5]  # clear cases: the model is sure of the true class
    true = 1 - data.y[rows]
    out = why_flagged(model, data.X[rows], data.y[rows], true, ids=data.ids[rows], classes=data.classes,
                      feature_names=data.feature_names, baseline=data.X[:400].mean(0))
    assert len(out) == len(rows) > 5
    for row in out:
        assert row["top_features"][0]["feature"] == "f2"
        assert row["top_features"][0]["attribution"] > 0
        assert row["p_suggested"] > row["p_given"]


def test_explain_returns_json_ready_sections(one_feature):
    pytest.importorskip("shap")
    model, data, splits = one_feature
    flagged = [{"id": "r570", "suggested_label": data.classes[1 - data.y[570]]}, "r580"]
    r = explain(model, data, splits, flagged=flagged, n_samples=8, n_repeats=2)
    json.dumps(r)  # plain types only
    assert r["permutation"]["ranking"][0] == "f2" and r["shap"]["ranking"][0] == "f2"
    assert np.array(r["samples"]["attribution"]).shape == (8, 5)
    assert [f["id"] for f in r["flagged"]] == ["r570", "r580"]
    # without a suggestion, the suggested class is the model's best class other than the given one
    assert r["flagged"][1]["suggested_label"] != r["flagged"][1]["given_label"]
    with pytest.raises(TrainyardError, match="nope"):
        explain(model, data, splits, flagged=["nope"], use_shap=False)


def test_explain_run_writes_explain_json(one_patch, tmp_path, monkeypatch):
    pytest.importorskip("captum")
    model, data, splits = one_patch
    run = Run.create(tmp_path / "run")
    import pandas as pd

    run.write_csv("samples.csv", pd.DataFrame({"id": ["3", "7"], "given_label": ["dark", "bright"],
                                               "label_issue": [True, False], "label_score": [0.9, 0.1],
                                               "suggested_label": ["bright", ""]}))
    import trainyard

    monkeypatch.setattr(trainyard, "load_run", lambda path: (Run(path), model, data, splits), raising=False)
    r = explain_run(run.path, n_samples=4, n_repeats=1)
    saved = json.loads((run.path / "explain.json").read_text())
    assert saved["flagged"][0]["id"] == "3" and len(saved["flagged"]) == 1
    assert np.array(saved["flagged"][0]["heatmap"]).shape == (8, 8)
    assert np.array(r["samples"]["heatmaps"]).shape == (4, 8, 8)


def test_missing_extra_raises_a_clear_error(one_feature, monkeypatch):
    model, data, splits = one_feature
    monkeypatch.setitem(sys.modules, "shap", None)  # import shap now raises ImportError
    with pytest.raises(TrainyardError, match=r"trainyard\[explain\]"):
        shap_importance(model, data.X[:50], data.X[50:60])


def test_explain_run_on_a_real_run(tmp_path):
    pytest.importorskip("shap")
    trainyard = pytest.importorskip("trainyard.fitting", reason="trainyard.fit is not available yet")
    res = trainyard.fit("sklearn:breast_cancer", out=tmp_path / "run", epochs=4, model="mlp", hidden=(32,),
                        write_report=False, ledger=False, monitor=False)
    ids = [str(i) for i in res.dataset.ids[res.splits.test[:2]]]
    r = explain_run(res.run.path, samples=ids, n_samples=4, n_repeats=1)
    saved = json.loads((res.run.path / "explain.json").read_text())
    assert [f["id"] for f in saved["flagged"]] == ids == [f["id"] for f in r["flagged"]]
    names = res.dataset.feature_names
    assert saved["permutation"]["features"] == names and saved["shap"]["features"] == names
    assert len(saved["flagged"][0]["attribution"]) == len(names)
