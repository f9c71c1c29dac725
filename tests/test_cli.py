"""The command line: exit codes, one-line errors, no half-written run directory."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BIN = Path(sys.executable).parent / "trainyard"


def run(*args, cwd=None):
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    df = pd.DataFrame(rng.normal(size=(300, 4)) + y[:, None] * 3, columns=list("abcd"))
    df["color"] = np.array(["red", "green", "blue"])[rng.integers(0, 3, 300)]
    df["label"] = np.array(["x", "y", "z"])[y]
    p = tmp_path_factory.mktemp("cli") / "small.csv"
    df.to_csv(p, index=False)
    return p


@pytest.mark.parametrize("args,needle", [
    (["fit", "missing.csv", "--target", "label"], "missing.csv"),
    (["fit", "{csv}", "--target", "nope"], "nope"),
    (["fit", "{csv}", "--target", "label", "--epochs", "0"], "--epochs"),
    (["fit", "{csv}", "--target", "label", "--clip", "agc:x"], "--clip"),
    (["fit", "{csv}", "--target", "label", "--split", "0.5,0.5"], "--split"),
    (["report", "{tmp}/not_a_run"], "not a Trainyard run"),
    (["repair", "{csv}", "--target", "label", "--resume"], "nothing to resume"),
])
def test_bad_input_one_line_exit_2_nothing_written(small_csv, tmp_path, args, needle):
    out = tmp_path / "out"
    args = [a.replace("{csv}", str(small_csv)).replace("{tmp}", str(tmp_path)) for a in args]
    r = run(*args, "--out", out) if args[0] in ("fit", "repair") else run(*args)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_fit_cli_writes_run_directory(small_csv, tmp_path):
    out = tmp_path / "run"
    r = run("fit", small_csv, "--target", "label", "--epochs", "3", "--hidden", "32,16", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "finished" and meta["config"]["train"]["hidden"] == [32, 16]
    for f in ("metrics.csv", "checkpoints/last.pt", "checkpoints/best.pt", "ledger/meta.json", "data.npz"):
        assert (out / f).exists(), f
    assert "test" in r.stdout and "acc" in r.stdout
    # predict on new rows through the fitted encoder
    r = run("predict", out, small_csv, "--out", tmp_path / "pred.csv")
    assert r.returncode == 0, r.stderr
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert len(pred) == 300 and set(pred["predicted"]) <= {"x", "y", "z"}


def test_help_has_examples():
    r = run("fit", "--help")
    assert r.returncode == 0 and "examples:" in r.stdout and "--resume" in r.stdout
