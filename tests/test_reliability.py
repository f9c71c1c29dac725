"""Reliability: SIGKILL mid-run then --resume, data-parallel training, untrusted files, determinism."""
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trainyard.errors import RunError
from trainyard.fitting import load_model
from trainyard.train.checkpoint import load_checkpoint

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TRAINYARD_QUIET": "1"}


@pytest.fixture(scope="module")
def blob_csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 4, size=(3, 6))
    y = np.repeat(np.arange(3), 300)
    X = centers[y] + rng.normal(0, 1.5, size=(900, 6))
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    df["label"] = np.array(["red", "green", "blue"])[y]
    p = tmp_path_factory.mktemp("data") / "blobs.csv"
    df.to_csv(p, index=False)
    return p


def _fit_cmd(csv, out, *extra):
    return [str(BIN / "trainyard"), "fit", str(csv), "--target", "label", "--epochs", "8", "--batch-size", "32",
            "--out", str(out), "--quiet", *extra]


def _check_every_file_readable(run: Path) -> None:
    """No file in the run directory may be half-written after a kill."""
    for p in run.rglob("*"):
        if p.is_dir() or p.name.startswith("."):
            continue
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".csv":
            pd.read_csv(p)
        elif p.suffix == ".pt":
            load_checkpoint(p)
        elif p.suffix in (".npz", ".npy"):
            np.load(p, allow_pickle=False)
    if (run / "ledger" / "meta.json").exists():
        from trainyard.monitor import read_ledger

        read_ledger(run)  # raises if a ledger file is shorter than its meta says


def test_sigkill_then_resume_matches_uninterrupted(blob_csv, tmp_path):
    ref = tmp_path / "ref"
    subprocess.run(_fit_cmd(blob_csv, ref), check=True, env=ENV, timeout=300)
    ref_sd = load_model(ref, "last").state_dict()
    rng = np.random.default_rng(123)
    for trial in range(3):
        run = tmp_path / f"killed{trial}"
        proc = subprocess.Popen(_fit_cmd(blob_csv, run), env=ENV)
        # wait until training is under way (a checkpoint exists), then kill at a random moment
        t0 = time.time()
        while not (run / "checkpoints" / "last.pt").exists() and proc.poll() is None and time.time() - t0 < 120:
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0, 1.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _check_every_file_readable(run)
        subprocess.run(_fit_cmd(blob_csv, run, "--resume"), check=True, env=ENV, timeout=300)
        _check_every_file_readable(run)
        sd = load_model(run, "last").state_dict()
        for k in ref_sd:
            assert torch.equal(ref_sd[k], sd[k]), (trial, k)
        assert json.loads((run / "run.json").read_text())["status"] == "finished"


@pytest.mark.skipif(not (BIN / "torchrun").exists(), reason="torchrun not installed beside this Python")
def test_two_process_data_parallel_matches_one(blob_csv, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(_fit_cmd(blob_csv, one), check=True, env=ENV, timeout=300)
    subprocess.run([str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29517", "-m", "trainyard",
                    *_fit_cmd(blob_csv, two)[1:]], check=True, env=ENV, timeout=300)
    a = json.loads((one / "run.json").read_text())["test_metrics"]["acc"]
    b = json.loads((two / "run.json").read_text())["test_metrics"]["acc"]
    assert b >= 0.9 and abs(a - b) <= 0.05
    assert (two / "ledger" / "rank0").is_dir() and (two / "ledger" / "rank1").is_dir()
    from trainyard.monitor import read_ledger

    led = read_ledger(two)
    assert led.loss.shape == (8, 630)  # both shards merged: every training row has a column
    assert (led.p_given[0].astype(float) > 0).all()  # a row no process wrote would still be 0


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/trainyard_pwned",))


def test_malicious_checkpoint_is_refused_not_run(tmp_path):
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"model": _Evil()}, f)
    if os.path.exists("/tmp/trainyard_pwned"):
        os.unlink("/tmp/trainyard_pwned")
    with pytest.raises(RunError, match="cannot load checkpoint safely"):
        load_checkpoint(p)
    assert not os.path.exists("/tmp/trainyard_pwned")


def test_same_seed_same_metrics(blob_csv, tmp_path):
    from trainyard.fitting import fit

    a = fit(str(blob_csv), target="label", out=tmp_path / "a", epochs=4, write_report=False)
    b = fit(str(blob_csv), target="label", out=tmp_path / "b", epochs=4, write_report=False)
    ma = pd.read_csv(tmp_path / "a" / "metrics.csv").drop(columns="seconds")
    mb = pd.read_csv(tmp_path / "b" / "metrics.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(ma, mb)
    assert a.test_metrics == b.test_metrics


def test_same_seed_same_samples_csv(blob_csv, tmp_path):
    """Diagnosis is deterministic too: two diagnose runs with one seed write the same samples.csv."""
    from trainyard.diagnose.core import diagnose

    for name in ("a", "b"):
        diagnose(str(blob_csv), target="label", out=tmp_path / name, epochs=4, seed=3)
    a = (tmp_path / "a" / "samples.csv").read_bytes()
    b = (tmp_path / "b" / "samples.csv").read_bytes()
    assert len(a) > 900 * 10  # one row per input row, with content
    assert a == b
