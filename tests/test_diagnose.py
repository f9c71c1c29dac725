"""End-to-end diagnosis: one training run, every row judged, the samples.csv contract, online mode."""
import json

import numpy as np
import pandas as pd
import pytest

from trainyard.data import inject_label_noise, make_splits
from trainyard.diagnose import SAMPLE_COLUMNS, diagnose, diagnose_online


@pytest.fixture(scope="module")
def noisy_blobs_csv(tmp_path_factory):
    """Six well-separated classes, 20 % of training-split labels flipped; a CSV like a user's."""
    rng = np.random.default_rng(3)
    k, n = 6, 1200
    centers = rng.normal(0, 5, size=(k, 8))
    y = rng.integers(0, k, n)
    X = centers[y] + rng.normal(0, 1, size=(n, 8))
    sp = make_splits(y, seed=0)
    noisy, flipped = inject_label_noise(y, 0.2, "symmetric", k, seed=1, idx=sp.train)
    # and one flipped test row: test sets carry label errors too, judged out of sample
    t = sp.test[0]
    noisy[t] = (y[t] + 1) % k
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)])
    df["label"] = np.array([f"class_{c}" for c in range(k)])[noisy]
    d = tmp_path_factory.mktemp("blobs")
    df.to_csv(d / "blobs.csv", index=False)
    return d / "blobs.csv", y, noisy, sp, t


def test_diagnose_finds_flips_and_writes_contract(noisy_blobs_csv, tmp_path):
    path, y, noisy, sp, t = noisy_blobs_csv
    d = diagnose(str(path), target="label", out=tmp_path / "run", epochs=15, splits=sp)
    s = pd.read_csv(tmp_path / "run" / "samples.csv", keep_default_na=False)
    assert list(s.columns[:len(SAMPLE_COLUMNS)]) == SAMPLE_COLUMNS
    assert len(s) == len(y) and s["id"].astype(str).tolist() == [str(i) for i in range(len(y))]
    flipped = noisy != y
    flagged = s["label_issue"].astype(str).eq("True").to_numpy()
    tp = (flagged & flipped).sum()
    precision, recall = tp / flagged.sum(), tp / flipped.sum()
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 >= 0.9, (precision, recall)
    # suggested labels of the flagged true flips are the true classes
    hit = flagged & flipped
    assert (s["suggested_label"][hit].to_numpy() == np.array([f"class_{c}" for c in y[hit]])).mean() >= 0.95
    # the flipped test row (never trained on) is judged from out-of-sample predictions
    assert flagged[t] and s["split"][t] == "test"
    assert s["label_score"].between(0, 1).all() and s["outlier_score"].between(0, 1).all()
    assert (s["issue"][flagged] == "label").all()
    health = json.loads((tmp_path / "run" / "data_health.json").read_text())
    assert 0.1 <= health["labels"]["estimated_noise_rate"] <= 0.3
    assert "imbalance" in health and "drift" in health
    learnt = health["labels"]["heldout_agreement"]  # the model learnt the classes: its flags are evidence
    assert learnt["learnt"] and learnt["rows"] == len(sp.val) + len(sp.test) and learnt["agreement"] > 0.9


def test_a_model_that_learnt_nothing_says_its_label_findings_are_no_evidence(tmp_path):
    """Labels drawn independently of the features: the diagnosis flags about half the rows, as every
    disagreement-based detector would, and says that its held-out predictions agree with the labels no
    better than chance, in data_health.json, on the command line and in the report."""
    from rich.console import Console

    from trainyard.summary import print_diagnosis

    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(600, 8)), columns=[f"x{i}" for i in range(8)])
    df["label"] = rng.integers(0, 3, 600)
    df.to_csv(tmp_path / "random.csv", index=False)
    d = diagnose(str(tmp_path / "random.csv"), target="label", out=tmp_path / "run", epochs=15)
    learnt = d.data_health["labels"]["heldout_agreement"]
    assert learnt["learnt"] is False and abs(learnt["agreement"] - learnt["chance_agreement"]) < 0.08, learnt
    assert learnt["rows"] == 180
    console = Console(record=True, width=200)
    print_diagnosis(d, console)
    assert "no better than chance" in console.export_text()
    assert "no better than chance" in (tmp_path / "run" / "report.html").read_text()


def test_online_mode_flags_shifted_batch(noisy_blobs_csv, tmp_path):
    path, *_ = noisy_blobs_csv
    run = tmp_path / "run"
    diagnose(str(path), target="label", out=run, epochs=5)
    df = pd.read_csv(path).drop(columns="label").head(300)
    far = df.copy()
    far["x0"] = far["x0"] + 40.0  # a batch far from anything seen in training
    df.to_csv(tmp_path / "same.csv", index=False)
    far.to_csv(tmp_path / "far.csv", index=False)
    same = diagnose_online(run, tmp_path / "same.csv")
    shifted = diagnose_online(run, tmp_path / "far.csv")
    assert same["low_confidence_rate"] < 0.2
    assert shifted["drift"][0]["feature"] == "x0"
    assert shifted["two_sample"]["auc"] > 0.9 > same["two_sample"]["auc"]
