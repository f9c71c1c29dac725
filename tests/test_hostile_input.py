"""Property tests: any bytes, any table either load into a valid Dataset or raise DataError.

Never another exception, never a hang (small inputs, a per-example deadline, a test timeout).
With ``TRAINYARD_RECORD=1`` the counts are written to ``benchmarks/results/hostile_input.json``.
"""
from __future__ import annotations

import csv
import io
import os
import platform
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainyard.data import load
from trainyard.data.fuzz_cases import CSV_ALPHABET, outcome, run_fuzz

RESULT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "hostile_input.json"
FUZZ = settings(max_examples=100, deadline=timedelta(seconds=5), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
TALLY = {"cases_tried": 0, "ok": 0, "data_error": 0, "other_exception": 0}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    yield tmp_path_factory.mktemp("hostile")
    if os.environ.get("TRAINYARD_RECORD") == "1":
        from trainyard.run import write_json

        write_json(RESULT, {"source": "tests/test_hostile_input.py", "python": platform.python_version(),
                            "hypothesis_settings": {"max_examples": FUZZ.max_examples, "deadline_s": 5,
                                                    "derandomize": True}, **TALLY})


def _check(result: str, detail: str) -> None:
    TALLY["cases_tried"] += 1
    TALLY["other_exception" if result == "other" else result] += 1
    assert result in ("ok", "data_error"), detail


def _load_bytes(folder: Path, data: bytes, **kwargs) -> tuple[str, str]:
    path = folder / "case.csv"
    path.write_bytes(data)
    return outcome(load, str(path), **kwargs)


@pytest.mark.timeout(180)
@FUZZ
@given(header=st.sampled_from([b"", b"a,y\n", b"a,b,y\n", b"y\n", b"\xef\xbb\xbfa,y\r\n"]),
       body=st.binary(max_size=300))
def test_byte_soup(workdir, header, body):
    _check(*_load_bytes(workdir, header + body, target="y"))


@pytest.mark.timeout(180)
@FUZZ
@given(body=st.lists(st.sampled_from(list(CSV_ALPHABET.decode()) + ["é", "inf", "NA", "1e400", ","]), max_size=200),
       text=st.booleans())
def test_csv_like_text(workdir, body, text):
    kwargs = {"target": "y", "text": "b"} if text else {"target": "y"}
    _check(*_load_bytes(workdir, ("a,b,y\n" + "".join(body)).encode(), **kwargs))


CELL = st.one_of(st.integers(-10**20, 10**20).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.sampled_from(["", "NA", "nan", "inf", "-inf", "1e400", "true", "x", "y", " b ", "é"]),
                 st.text(max_size=8))


@pytest.mark.timeout(180)
@FUZZ
@given(rows=st.lists(st.lists(CELL, min_size=3, max_size=3), max_size=25))
def test_random_tables(workdir, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["num", "mixed", "y"])
    writer.writerows(rows)
    _check(*_load_bytes(workdir, out.getvalue().encode("utf-8", "surrogatepass"), target="y"))


COLUMN = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=12, max_size=12),
    st.lists(st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=3), st.floats()), min_size=12, max_size=12),
    st.lists(st.booleans(), min_size=12, max_size=12),
)


@pytest.mark.timeout(180)
@FUZZ
@given(columns=st.lists(COLUMN, min_size=1, max_size=4),
       labels=st.lists(st.one_of(st.integers(0, 3), st.sampled_from(["a", "b", "", None]), st.floats()),
                       min_size=12, max_size=12))
def test_random_dataframes(columns, labels):
    frame = pd.DataFrame({f"c{i}": pd.Series(col, dtype=object) for i, col in enumerate(columns)})
    frame["y"] = pd.Series(labels, dtype=object)
    _check(*outcome(load, frame, target="y"))


@pytest.mark.timeout(180)
def test_fixed_fuzz_list(workdir):
    counts = run_fuzz(load, workdir / "fixed", n_random=50, seed=0)
    for key in TALLY:
        TALLY[key] += counts[key]
    assert counts["other_exception"] == 0, counts["failures"]
    assert counts["fixed_cases_as_expected"] == counts["fixed_cases"], counts["failures"]
    assert counts["cases_tried"] == counts["fixed_cases"] + 100

