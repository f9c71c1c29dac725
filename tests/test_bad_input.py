"""Every bad input gives a one-line DataError naming the file and the problem."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from trainyard.data import load
from trainyard.data.fuzz_cases import outcome, write_hostile_cases
from trainyard.errors import DataError


def _error(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message.strip(), "messages are one line"
    assert os.path.basename(str(path)) in message
    return message


def _csv(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_every_hostile_case_behaves(tmp_path):
    wrong = []
    for case in write_hostile_cases(tmp_path):
        result, detail = outcome(load, case.source, **case.kwargs)
        if case.expect == "ok" and result != "ok":
            wrong.append(f"{case.name}: expected to load, got {result}: {detail}")
        if case.expect == "error" and not (result == "data_error" and case.in_message in detail
                                           and "\n" not in detail.strip()):
            wrong.append(f"{case.name}: expected a one-line DataError naming {case.in_message!r}, got {result}: {detail}")
    assert not wrong, "\n".join(wrong)


def test_missing_file(tmp_path):
    assert "not found" in _error(tmp_path / "nope.csv", target="y")


def test_target_not_a_column_lists_columns(tmp_path):
    path = _csv(tmp_path, "cols.csv", ",".join(f"col{i}" for i in range(30)) + "\n" + ",".join("1" * 30) + "\n")
    message = _error(path, target="label")
    assert "'label' not found" in message and "'col0'" in message and "(30 in all)" in message


def test_target_one_class_and_empty_values(tmp_path):
    assert "only one class ('x')" in _error(_csv(tmp_path, "one.csv", "a,y\n1,x\n2,x\n"), target="y")
    message = _error(_csv(tmp_path, "holes.csv", "a,y\n" + "".join(f"{i},{'' if i % 3 == 0 else 'x' + str(i % 2)}\n"
                                                                    for i in range(20))), target="y")
    assert "empty in 7 rows" in message and "rows 0, 3, 6, 9, 12 and 2 more" in message


def test_a_measured_number_as_target_is_refused_but_many_real_classes_load(tmp_path):
    # sklearn's diabetes target: 214 integral values in 442 rows, about two rows each
    rng = np.random.default_rng(0)
    y = rng.integers(25, 346, 442)
    rows = "".join(f"{i},{v}\n" for i, v in enumerate(y))
    message = _error(_csv(tmp_path, "diabetes.csv", "a,target\n" + rows), target="target")
    assert f"{len(set(y))} distinct values in 442 rows" in message and "continuous number" in message
    # 40 classes of 10 rows each are classes
    ok = "".join(f"{i},c{i % 40}\n" for i in range(400))
    assert load(_csv(tmp_path, "forty.csv", "a,y\n" + ok), target="y").n_classes == 40


def test_empty_and_header_only(tmp_path):
    assert "empty" in _error(_csv(tmp_path, "empty.csv", ""), target="y")
    assert "no data rows" in _error(_csv(tmp_path, "head.csv", "a,y\n"), target="y")


def test_non_utf8_names_the_byte(tmp_path):
    message = _error(_csv(tmp_path, "latin.csv", "a,y\n1,ok\n2,caf\xe9\n".encode("latin-1")), target="y")
    assert "byte 14" in message and "line 3" in message and "0xe9" in message


def test_ragged_rows_name_the_line(tmp_path):
    assert "line 4 has 3 fields, the header has 2" in _error(
        _csv(tmp_path, "ragged.csv", "a,y\n1,x\n2,y\n3,4,x\n"), target="y")
    assert "line 3 has 1 field" in _error(_csv(tmp_path, "short.csv", "a,b,y\n1,2,x\n3\n"), target="y")


def test_nul_bytes(tmp_path):
    assert "NUL byte at byte 8 (line 3)" in _error(_csv(tmp_path, "nul.csv", b"a,y\n1,x\n\x00,y\n"), target="y")


def test_inf_and_huge_numbers_are_missing_and_counted(tmp_path):
    ds = load(_csv(tmp_path, "big.csv", "a,b,y\n1,inf,x\n2,1e400,y\n3,-inf,x\n4,5,y\n5,1e39,x\n"), target="y")
    assert ds.info["missing"] == {"b": 4} and ds.info["nonfinite"] == {"b": 4}
    assert np.isfinite(ds.X).all() and np.allclose(ds.X[:, 1], 0)  # all imputed with the one value left


def test_wide_file_fails_fast(tmp_path):
    path = _csv(tmp_path, "wide.csv", ",".join(f"c{i}" for i in range(100_000)) + ",y\n" + "0," * 100_000 + "x\n")
    start = time.perf_counter()
    assert "100001 columns" in _error(path, target="y")
    assert time.perf_counter() - start < 10


def test_npz_problems(tmp_path):
    np.savez(tmp_path / "nox.npz", features=np.ones((2, 2)), y=np.array([0, 1]))
    assert "no array named 'X'" in _error(tmp_path / "nox.npz")
    np.savez(tmp_path / "obj.npz", X=np.array([[1, "a"], [2, None]], dtype=object), y=np.array([0, 1]))
    assert "object" in _error(tmp_path / "obj.npz")
    np.savez(tmp_path / "nan_y.npz", X=np.ones((3, 2)), y=np.array([0.0, np.nan, 1.0]))
    assert "empty in 1 row (row 1" in _error(tmp_path / "nan_y.npz")
    np.savez(tmp_path / "dup_ids.npz", X=np.ones((3, 2)), y=np.array([0, 1, 0]), ids=np.array(["a", "b", "a"]))
    assert "'a' appears more than once" in _error(tmp_path / "dup_ids.npz")


def test_images_mixed_modes_become_rgb(tmp_path):
    from PIL import Image

    for i, mode in enumerate(["L", "RGBA", "P", "1"]):
        (tmp_path / f"c{i % 2}").mkdir(exist_ok=True)
        Image.new(mode, (4, 4)).save(tmp_path / f"c{i % 2}" / f"{i}.png")
    ds = load(tmp_path)
    assert ds.X.shape == (4, 3, 4, 4) and ds.info["mode"] == "RGB"


def test_corrupt_image_names_the_file(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / cls / "ok.png")
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert "b/broken.png" in _error(tmp_path)


def test_symlink_loop_is_an_error_not_a_hang(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("L", (4, 4)).save(tmp_path / cls / "0.png")
    os.symlink(tmp_path, tmp_path / "a" / "again")
    message = _error(tmp_path)
    assert "a/again: symlink loop" in message


def test_unsupported_extension_and_missing_target_arg(tmp_path):
    assert "unsupported file type '.xlsx'" in _error(_csv(tmp_path, "book.xlsx", "PK"), target="y")
    assert "pass target=COLUMN" in _error(_csv(tmp_path, "notarget.csv", "a,y\n1,x\n"))


def test_text_option_on_non_table(tmp_path):
    np.savez(tmp_path / "arr.npz", X=np.ones((2, 2)), y=np.array([0, 1]))
    assert "text=" in _error(tmp_path / "arr.npz", text="t")


def test_a_free_text_column_without_text_option_says_which_option_to_give(tmp_path):
    words = ["good", "bad", "film", "plot", "actors", "slow", "fun", "long"]
    rows = "".join(f"\"{' '.join(words[(i * k) % 8] for k in range(1, 6))} {i}\",{'pos' if i % 2 else 'neg'}\n"
                   for i in range(60))
    path = _csv(tmp_path, "reviews.csv", "review,label\n" + rows)
    message = _error(path, target="label")
    assert "free text" in message and "--text review" in message
    assert load(path, target="label", text="review").kind == "text"
    codes = "".join(f"u{i:04d},{i % 3}\n" for i in range(60))  # ids are not called free text
    assert "id-like text" in _error(_csv(tmp_path, "ids.csv", "user,label\n" + codes), target="label")
