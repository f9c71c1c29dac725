"""Compress: pruning hits the requested sparsity, ONNX matches PyTorch, int8 is smaller, the student
is smaller and still accurate, ensembles and warm starts behave."""
import json

import numpy as np
import pytest
import torch

from trainyard.compress import (distill, distill_run, distillation_loss, ensemble, ensemble_probs, ensemble_runs,
                                export, export_run, init_from, load_model, n_parameters, predict_onnx, prune,
                                prune_run, save_model, zero_fraction)
from trainyard.compress.distill import fit_input_scaling
from trainyard.compress.finetune import train_epochs
from trainyard.errors import ConfigError, DataError
from trainyard.models import build_model


def _train(model, data, splits, epochs, lr=5e-3, seed=0):
    torch.manual_seed(seed)
    fit_input_scaling(model, data.X[splits.train])
    train_epochs(model, data.X[splits.train], data.y[splits.train], epochs=epochs, lr=lr, seed=seed,
                 X_val=data.X[splits.val], y_val=data.y[splits.val])
    return model.eval()


@pytest.fixture(scope="module")
def digits_mlp(digits):
    data, splits = digits
    return _train(build_model("mlp", (1, 8, 8), 10, hidden=(128, 64), dropout=0.0), data, splits, epochs=15)


@pytest.fixture(scope="module")
def digits_cnn(digits):
    data, splits = digits
    return _train(build_model("cnn", (1, 8, 8), 10, channels=(8, 16, 32), dropout=0.0), data, splits, epochs=8, lr=1e-2)


def _acc(model, data, idx):
    with torch.no_grad():
        return float((model(torch.as_tensor(data.X[idx])).argmax(1).numpy() == data.y[idx]).mean())


def test_teachers_are_trained(digits, digits_mlp, digits_cnn):
    data, splits = digits
    assert _acc(digits_mlp, data, splits.test) > 0.93
    assert _acc(digits_cnn, data, splits.test) > 0.93


def test_global_pruning_zeroes_the_requested_fraction(digits, digits_mlp):
    data, splits = digits
    before = {k: v.clone() for k, v in digits_mlp.state_dict().items()}
    pruned, r = prune(digits_mlp, data, splits, amount=0.6, finetune_epochs=2)
    n_weights = zero_fraction(pruned)["n_weights"]
    assert abs(r["zero_fraction"] - 0.6) <= 1 / n_weights
    assert r["zero_fraction"] == zero_fraction(pruned)["zero_fraction"]
    assert not any(name.endswith(("_orig", "_mask")) for name in pruned.state_dict())  # pruning made permanent
    assert r["after"]["test_accuracy"] >= r["before"]["test_accuracy"] - 0.03
    assert r["after"]["size_bytes_gzip"] < r["before"]["size_bytes_gzip"]
    assert all(torch.equal(v, digits_mlp.state_dict()[k]) for k, v in before.items())  # caller's model untouched
    json.dumps(r)


def test_structured_pruning_removes_whole_channels_per_layer(digits, digits_cnn):
    data, splits = digits
    pruned, r = prune(digits_cnn, data, splits, amount=0.25, structured=True, finetune_epochs=1)
    convs = [m for m in pruned.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        dead = (conv.weight.detach().flatten(1).abs().sum(1) == 0).sum().item()
        assert dead == round(0.25 * conv.out_channels)
    assert "head" not in r["pruned_layers"]  # class scores are never pruned away
    assert abs(r["zero_fraction"] - 0.25) < 1e-9
    with pytest.raises(ConfigError, match="amount"):
        prune(digits_cnn, data, splits, amount=1.5)


def test_distilled_student_is_smaller_and_accurate(digits, digits_mlp):
    data, splits = digits
    student, r = distill(digits_mlp, data, splits, student="mlp:16", epochs=25)
    assert n_parameters(student) == r["student"]["n_params"] < 0.25 * n_parameters(digits_mlp)
    assert r["student"]["size_bytes"] < r["teacher"]["size_bytes"]
    assert r["student"]["test_accuracy"] > 0.88
    assert r["student"]["test_accuracy"] >= r["teacher"]["test_accuracy"] - 0.08
    json.dumps(r)


def test_distillation_loss_is_hinton_kl_times_t_squared():
    s = torch.tensor([[2.0, 0.0, -1.0]])
    t = torch.tensor([[1.0, 1.0, 0.0]])
    y = torch.tensor([0])
    T = 3.0
    p, q = torch.softmax(t / T, 1), torch.softmax(s / T, 1)
    kl = float((p * (p.log() - q.log())).sum())
    ce = float(-torch.log_softmax(s, 1)[0, 0])
    assert float(distillation_loss(s, y, t, T, 1.0)) == pytest.approx(T * T * kl, rel=1e-5)
    assert float(distillation_loss(s, y, t, T, 0.0)) == pytest.approx(ce, rel=1e-5)
    assert float(distillation_loss(t, y, t, T, 1.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("which", ["digits_mlp", "digits_cnn"])
def test_onnx_export_matches_pytorch_and_int8_is_smaller(which, digits, request, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the optional extra trainyard[export]")
    pytest.importorskip("onnxscript")
    model = request.getfixturevalue(which)
    data, splits = digits
    r = export(model, data, splits, tmp_path, int8=True, quantization="dynamic", measure_speed=False,
               formats=("onnx", "torchscript") if which == "digits_mlp" else ("onnx",))
    assert r["onnx"]["max_abs_diff"] <= 1e-4
    assert r["onnx"]["same_class"] == 1.0  # same predicted class on every test row
    assert r["onnx"]["onnx_accuracy"] == r["onnx"]["torch_accuracy"]
    assert r["int8"]["size_bytes"] < r["onnx"]["size_bytes"]
    assert r["int8"]["onnx_accuracy"] >= r["onnx"]["torch_accuracy"] - 0.03
    # dynamic batch size, and probabilities from predict_onnx
    X = data.X[splits.test]
    for n in (1, 37):
        probs = predict_onnx(tmp_path / "model.onnx", X[:n])
        assert probs.shape == (n, 10) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    with torch.no_grad():
        ref = torch.softmax(model(torch.as_tensor(X)), 1).numpy()
    assert np.abs(predict_onnx(tmp_path / "model.onnx", X) - ref).max() < 1e-5
    assert np.mean(predict_onnx(tmp_path / "model.int8.onnx", X).argmax(1) == ref.argmax(1)) > 0.95
    if which == "digits_mlp":
        assert r["torchscript"]["max_abs_diff"] <= 1e-5
        assert (tmp_path / "model.ts").exists()
        # int8 of a model this size is dominated by its weights: well under half the float file
        assert r["int8"]["size_ratio"] < 0.4
    with pytest.raises(DataError, match="expects inputs of shape"):
        predict_onnx(tmp_path / "model.onnx", np.zeros((3, 5), np.float32))
    json.dumps(r)


@pytest.fixture(scope="module")
def fitted_runs(tmp_path_factory):
    """Two real runs of the pipeline (trainyard.fit) on a table, differing only in seed."""
    trainyard = pytest.importorskip("trainyard.fitting", reason="trainyard.fit is not available yet")
    root = tmp_path_factory.mktemp("runs")
    return [trainyard.fit("sklearn:breast_cancer", out=root / f"s{seed}", epochs=4, model="mlp", hidden=(32,),
                          seed=seed, write_report=False, ledger=False, monitor=False).run.path for seed in (0, 1)]


def test_run_wrappers_write_their_files(fitted_runs):
    pytest.importorskip("onnxruntime")
    path = fitted_runs[0]
    d = distill_run(path, student="mlp:8", epochs=5)
    p = prune_run(path, amount=0.3, finetune_epochs=1)
    e = export_run(path, format="onnx", int8=True, measure_speed=False)
    saved = {name: json.loads((path / f"{name}.json").read_text()) for name in ("distill", "prune", "export")}
    assert saved["distill"]["student_name"] == "mlp:8" and saved["prune"]["amount"] == 0.3
    assert n_parameters(load_model(path / "student.pt")) == d["student"]["n_params"]
    assert zero_fraction(load_model(path / "pruned.pt"))["zero_fraction"] == pytest.approx(p["zero_fraction"])
    assert saved["export"]["onnx"]["max_abs_diff"] == e["onnx"]["max_abs_diff"] <= 1e-4
    assert (path / "model.onnx").exists() and (path / "model.int8.onnx").exists()
    # the distilled student exports too, under its own name
    s = export_run(path, format="onnx", model_file="student.pt", measure_speed=False)
    assert s["files"]["onnx"] == "student.onnx" and s["onnx"]["same_class"] == 1.0


def test_ensemble_runs_evaluate_on_rows_no_member_trained_on(fitted_runs, tmp_path):
    from trainyard import load_run

    r = ensemble_runs(fitted_runs, method="average", out=tmp_path)
    assert json.loads((tmp_path / "ensemble.json").read_text())["n_test"] == r["n_test"] > 0
    trained = set()
    for path in fitted_runs:
        trained |= set(load_run(path)[3].train.tolist())
    data = load_run(fitted_runs[0])[2]
    # runs with different training seeds share the fixed split: the whole test split is unseen by both
    assert r["n_test"] == len(load_run(fitted_runs[0])[3].test)
    assert r["n_test"] + len(trained) <= len(data)


def test_ensemble_methods_on_known_probabilities():
    y = np.array([0, 1, 2, 0])
    a = np.eye(3)[[0, 1, 2, 1]] * 0.9 + 0.1 / 3  # right on rows 0-2
    b = np.eye(3)[[0, 2, 2, 0]] * 0.9 + 0.1 / 3  # right on rows 0, 2, 3
    c = np.eye(3)[[0, 1, 1, 0]] * 0.9 + 0.1 / 3  # right on rows 0, 1, 3
    vote = ensemble_probs([a, b, c], "vote")
    assert vote.argmax(1).tolist() == [0, 1, 2, 0]  # every row has a 2-of-3 majority for the truth
    assert np.allclose(ensemble_probs([a, b], "average"), (a + b) / 2)
    # stacking learns to trust the model that is right on the validation split
    rng = np.random.default_rng(0)
    yv = rng.integers(0, 3, 300)
    good, noise = np.eye(3)[yv] * 0.8 + 0.2 / 3, rng.dirichlet(np.ones(3), 300)
    stacked = ensemble_probs([noise[:100], good[:100]], "stack", val_probs=[noise[100:], good[100:]], y_val=yv[100:])
    assert (stacked.argmax(1) == yv[:100]).mean() == 1.0
    with pytest.raises(ConfigError, match="validation"):
        ensemble_probs([a, b], "stack")
    with pytest.raises(ConfigError, match="method"):
        ensemble_probs([a, b], "median")


def test_ensemble_of_models_reports_members_and_the_ensemble(digits, digits_mlp, digits_cnn):
    data, splits = digits
    r = ensemble([digits_mlp, digits_cnn], data, splits, method="average", names=["mlp", "cnn"])
    assert [m["name"] for m in r["members"]] == ["mlp", "cnn"]
    assert [m["test_accuracy"] for m in r["members"]] == pytest.approx(
        [_acc(digits_mlp, data, splits.test), _acc(digits_cnn, data, splits.test)])
    # the ensemble is the mean of the members' softmax probabilities, scored on the test rows (an
    # average is usually, not always, at least as good as its weaker member: that is not asserted,
    # it failed once in a full-suite run when the two members came out close)
    with torch.no_grad():
        x = torch.as_tensor(data.X[splits.test])
        mean = (torch.softmax(digits_mlp(x), 1) + torch.softmax(digits_cnn(x), 1)) / 2
    assert r["test_accuracy"] == pytest.approx(float((mean.argmax(1).numpy() == data.y[splits.test]).mean()))
    assert r["gain_over_best_member"] == pytest.approx(r["test_accuracy"] - max(m["test_accuracy"] for m in r["members"]))
    json.dumps(r)


def test_init_from_copies_only_shape_matching_weights(digits_mlp, tmp_path):
    same = build_model("mlp", (1, 8, 8), 10, hidden=(128, 64), dropout=0.0)
    r = init_from(same, digits_mlp.state_dict())
    assert {s["name"] for s in r["skipped"]} == {"standardize.mean", "standardize.std"}  # fitted on its own data
    assert all(torch.equal(v, digits_mlp.state_dict()[k]) for k, v in same.state_dict().items()
               if not k.startswith("standardize."))
    # a new head for 3 classes stays fresh; the body is copied (here from a saved model file)
    save_model(digits_mlp, tmp_path / "m.pt")
    other = build_model("mlp", (1, 8, 8), 3, hidden=(128, 64), dropout=0.0)
    fresh_head = other.head.weight.detach().clone()
    r = init_from(other, tmp_path / "m.pt")
    assert {s["name"] for s in r["skipped"]} == {"head.weight", "head.bias", "standardize.mean", "standardize.std"}
    assert torch.equal(other.body[0].weight, digits_mlp.body[0].weight)
    assert torch.equal(other.head.weight, fresh_head)
    with pytest.raises(ConfigError, match="no weight matches"):
        init_from(torch.nn.Linear(3, 3), {"foo.weight": torch.zeros(3, 3)})
