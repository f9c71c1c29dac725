"""Hostile inputs for the loaders: a fixed list of known-bad files plus random CSV generators.

Shared by ``tests/test_hostile_input.py`` and ``benchmarks/hostile_input.py``. The contract they
check: every input either loads into a valid Dataset or raises DataError, never another exception.
"""
from __future__ import annotations

import gzip
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DataError
from .dataset import Dataset


@dataclass
class FuzzCase:
    """One hostile input: ``load(source, **kwargs)`` must give ``expect`` ("error" or "ok")."""

    name: str
    source: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    expect: str = "error"
    in_message: str = ""  # a string the DataError message must contain (the file or folder name)


def check_dataset(ds: Dataset) -> None:
    """Raise AssertionError unless ``ds`` satisfies the Dataset contract."""
    n = len(ds.y)
    assert ds.X.dtype == np.float32 and len(ds.X) == n == len(ds.ids), "lengths or dtype"
    assert np.isfinite(ds.X).all(), "non-finite features"
    assert ds.y.dtype == np.int64 and n > 0, "labels"
    assert len(ds.classes) >= 2 and len(set(ds.classes)) == len(ds.classes), "classes"
    assert ds.y.min() >= 0 and ds.y.max() < len(ds.classes), "label codes out of range"
    assert len(set(ds.ids.tolist())) == n, "ids not unique"
    if ds.kind == "image":
        assert ds.X.ndim == 4 and ds.X.min() >= 0 and ds.X.max() <= 1, "image range"
    else:
        assert ds.X.ndim == 2 and ds.feature_names is not None and len(ds.feature_names) == ds.X.shape[1]


def outcome(load: Callable[..., Dataset], source: Any, **kwargs: Any) -> tuple[str, str]:
    """``("ok" | "data_error" | "other", detail)`` for one load attempt."""
    try:
        ds = load(source, **kwargs)
        check_dataset(ds)
        return "ok", ""
    except DataError as e:
        return "data_error", str(e)
    except Exception as e:  # the point of fuzzing: anything else is a bug to report, not to raise
        return "other", f"{type(e).__name__}: {e}"


def _png(path: Path, size: tuple[int, int], mode: str, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path)
    return path


def _image_folder(root: Path, modes: tuple[str, ...] = ("RGB",)) -> Path:
    for c, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            _png(root / cls / f"{i}.png", (8, 8), modes[(c * 3 + i) % len(modes)], seed=c * 3 + i)
    return root


def write_hostile_cases(folder: str | os.PathLike) -> list[FuzzCase]:
    """Write every known-hostile input under ``folder``; return the cases."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    cases: list[FuzzCase] = []

    def csv(name: str, content: bytes | str, expect: str = "error", **kwargs: Any) -> None:
        data = content.encode() if isinstance(content, str) else content
        (d / name).write_bytes(data)
        kwargs.setdefault("target", "y")
        cases.append(FuzzCase(name, str(d / name), kwargs, expect, name))

    csv("missing_target.csv", "a,b\n1,2\n3,4\n")
    csv("one_class.csv", "a,y\n1,x\n2,x\n3,x\n")
    csv("empty_labels.csv", "a,y\n1,x\n2,\n3,y\n4,NA\n")
    csv("empty.csv", b"")
    csv("header_only.csv", "a,y\n")
    csv("blank_lines.csv", "\n\n   \n")
    csv("latin1.csv", "a,y\n1,caf\xe9\n2,b\n".encode("latin-1"))
    csv("utf16.csv", "a,y\n1,x\n2,b\n".encode("utf-16"))
    csv("ragged_long.csv", "a,y\n1,x\n2,3,y\n3,x\n")
    csv("ragged_short.csv", "a,b,y\n1,2,x\n2\n3,4,y\n")
    csv("nul_bytes.csv", b"a,y\n1,x\x00\n2,y\n")
    csv("wide_1e5.csv", ",".join(f"c{i}" for i in range(100_000)) + ",y\n" + "1," * 100_000 + "x\n")
    csv("duplicate_columns.csv", "a,a,y\n1,2,x\n3,4,y\n")
    csv("unterminated_quote.csv", 'a,y\n1,"x\n2,y\n')
    csv("only_target.csv", "y\nx\ny\n")
    csv("only_ids.csv", "uid,y\n" + "".join(f"user{i},{'ab'[i % 2]}\n" for i in range(30)))
    csv("continuous_target.csv", "a,y\n" + "".join(f"{i},{i * 0.37:.3f}\n" for i in range(300)))
    csv("wrong_case_target.csv", "a,Label\n1,x\n2,y\n", target="label")
    csv("inf_and_huge.csv", "a,b,y\n1,inf,x\n2,1e400,y\n3,-inf,x\n4,5,y\n", expect="ok")
    csv("mixed_labels.csv", "a,y\n1,1\n2,b\n3,2\n4,b\n5,10\n", expect="ok")
    csv("bom_crlf.csv", "\ufeffa,y\r\n1,x\r\n2,y\r\n", expect="ok")
    csv("all_missing_feature.csv", "a,b,y\n,1,x\n,2,y\n,3,x\n", expect="ok")
    csv("quoted_newlines.csv", 'a,t,y\n1,"two\nlines",x\n2,"one, with comma",y\n', expect="ok")
    csv("binary_garbage.csv", bytes(range(1, 256)) * 4)
    csv("text_col_no_words.csv", "t,y\n!,x\n?,y\n", text="t")
    cases.append(FuzzCase("file_not_found", str(d / "no_such_file.csv"), {"target": "y"}, "error", "no_such_file.csv"))
    (d / "table.xlsx").write_bytes(b"PK\x03\x04 not really")
    cases.append(FuzzCase("unsupported_extension", str(d / "table.xlsx"), {"target": "y"}, "error", "table.xlsx"))
    (d / "garbage.parquet").write_bytes(b"not parquet at all")
    cases.append(FuzzCase("corrupt_parquet", str(d / "garbage.parquet"), {"target": "y"}, "error", "garbage.parquet"))
    os.symlink(d / "nowhere.csv", d / "broken_link.csv")
    cases.append(FuzzCase("broken_symlink", str(d / "broken_link.csv"), {"target": "y"}, "error", "broken_link.csv"))

    def npz(name: str, expect: str = "error", **arrays: Any) -> None:
        np.savez(d / name, **arrays)
        cases.append(FuzzCase(name, str(d / name), {}, expect, name))

    npz("no_X.npz", Z=np.ones((3, 2)), y=np.arange(3))
    npz("object_array.npz", X=np.array([[1, "a"], [2, None]], dtype=object), y=np.array([0, 1]))
    npz("length_mismatch.npz", X=np.ones((4, 2)), y=np.array([0, 1, 0]))
    npz("five_dims.npz", X=np.ones((2, 1, 2, 2, 2)), y=np.array([0, 1]))
    npz("string_X.npz", X=np.array([["a", "b"], ["c", "d"]]), y=np.array([0, 1]))
    npz("images_nhwc.npz", "ok", X=np.zeros((4, 5, 5, 3), dtype=np.uint8), y=np.array([0, 1, 0, 1]))
    npz("nan_pixels.npz", "ok", X=np.full((4, 1, 3, 3), np.nan), y=np.array([0, 1, 0, 1]))
    (d / "zip_garbage.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    cases.append(FuzzCase("zip_garbage.npz", str(d / "zip_garbage.npz"), {}, "error", "zip_garbage.npz"))
    np.save(d / "single.npy", np.ones(3))
    cases.append(FuzzCase("single.npy", str(d / "single.npy"), {}, "error", "single.npy"))
    with gzip.open(d / "table.csv.gz", "wb") as f:
        f.write(b"a,y\n1,x\n2,y\n")
    cases.append(FuzzCase("gzipped_csv", str(d / "table.csv.gz"), {"target": "y"}, "error", "table.csv.gz"))

    mixed = _image_folder(d / "images_mixed_modes", ("RGB", "L", "RGBA", "P", "1", "LA"))
    cases.append(FuzzCase("images_mixed_modes", str(mixed), {}, "ok"))
    corrupt = _image_folder(d / "images_corrupt")
    (corrupt / "cat" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cases.append(FuzzCase("images_corrupt", str(corrupt), {}, "error", "bad.png"))
    zero = _image_folder(d / "images_zero_byte")
    (zero / "dog" / "empty.jpg").write_bytes(b"")
    cases.append(FuzzCase("images_zero_byte", str(zero), {}, "error", "empty.jpg"))
    truncated = _image_folder(d / "images_truncated")
    whole = _png(truncated / "cat" / "big.png", (64, 64), "RGB", seed=9).read_bytes()
    (truncated / "cat" / "big.png").write_bytes(whole[: len(whole) // 2])
    cases.append(FuzzCase("images_truncated", str(truncated), {}, "error", "big.png"))
    loop = _image_folder(d / "images_symlink_loop")
    os.symlink(loop, loop / "cat" / "loop")
    cases.append(FuzzCase("images_symlink_loop", str(loop), {}, "error", "loop"))
    (d / "images_empty").mkdir(exist_ok=True)
    cases.append(FuzzCase("images_empty", str(d / "images_empty"), {}, "error", "images_empty"))
    one = d / "images_one_class"
    (one / "cat").mkdir(parents=True, exist_ok=True)
    _png(one / "cat" / "a.png", (4, 4), "RGB")
    cases.append(FuzzCase("images_one_class", str(one), {}, "error", "images_one_class"))
    cases.append(FuzzCase("unknown_builtin", "sklearn:nope", {}, "error", "sklearn:nope"))
    return cases


CSV_ALPHABET = b'0123456789.,-+eE \n\r"\'abcxyNA;\tinf'
BINARY_ALPHABET = CSV_ALPHABET + b"\xc3\xa9\xff\x00"


def random_csv_bytes(rng: np.random.Generator, max_size: int = 300) -> bytes:
    """A byte soup biased towards CSV syntax, usually behind a header with a ``y`` column
    (one in five also has non-UTF-8 and NUL bytes)."""
    size = int(rng.integers(0, max_size + 1))
    alphabet = BINARY_ALPHABET if rng.random() < 0.2 else CSV_ALPHABET
    body = bytes(rng.choice(np.frombuffer(alphabet, dtype=np.uint8), size=size).tolist())
    header = [b"", b"a,y\n", b"a,b,y\n", b"y,t\n"][int(rng.integers(0, 4))]
    return header + body


def random_table_csv(rng: np.random.Generator, max_rows: int = 20, max_cols: int = 5) -> bytes:
    """A random but well-formed CSV with a ``y`` column of mixed-type values."""
    import csv
    import io

    n_rows = int(rng.integers(0, max_rows + 1))
    n_cols = int(rng.integers(0, max_cols + 1)) if rng.random() < 0.1 else int(rng.integers(1, max_cols + 1))
    pools = [["0", "1", "2", "-3.5", "1e308", "1e400", "inf", "-inf", "nan", ""],
             ["a", "b", "c", "", "NA", "x y", "1"],
             ['q"uote', "com,ma", "new\nline", "  pad ", "é", ""]]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([f"c{j}" for j in range(n_cols)] + ["y"])
    labels = ["a", "b", "1", "2", "10", " b ", "x,y", "é"] + ([""] if rng.random() < 0.2 else [])
    kinds = rng.integers(0, len(pools), size=n_cols)
    for _ in range(n_rows):
        w.writerow([pools[k][int(rng.integers(0, len(pools[k])))] for k in kinds]
                   + [labels[int(rng.integers(0, len(labels)))]])
    return out.getvalue().encode()


def run_fuzz(load: Callable[..., Dataset], folder: str | os.PathLike, n_random: int = 200,
             seed: int = 0) -> dict[str, Any]:
    """Run the fixed cases and ``n_random`` of each random generator; counts of each outcome."""
    folder = Path(folder)
    counts = {"cases_tried": 0, "ok": 0, "data_error": 0, "other_exception": 0,
              "fixed_cases": 0, "fixed_cases_as_expected": 0, "random_cases": 0, "max_seconds": 0.0}
    failures: list[str] = []

    def tally(name: str, result: str, detail: str, seconds: float) -> None:
        counts["cases_tried"] += 1
        counts["other_exception" if result == "other" else result] += 1
        counts["max_seconds"] = max(counts["max_seconds"], round(seconds, 3))
        if result == "other":
            failures.append(f"{name}: {detail}")

    for case in write_hostile_cases(folder / "fixed"):
        t = time.perf_counter()
        result, detail = outcome(load, case.source, **case.kwargs)
        tally(case.name, result, detail, time.perf_counter() - t)
        counts["fixed_cases"] += 1
        expected = (result == "ok") if case.expect == "ok" else (result == "data_error" and case.in_message in detail)
        counts["fixed_cases_as_expected"] += int(expected)
        if not expected and result != "other":
            failures.append(f"{case.name}: expected {case.expect}, got {result} {detail[:100]}")
    rng = np.random.default_rng(seed)
    for i in range(n_random):
        for kind, make in (("soup", random_csv_bytes), ("table", random_table_csv)):
            path = folder / f"random_{kind}_{i}.csv"
            path.write_bytes(make(rng))
            t = time.perf_counter()
            result, detail = outcome(load, str(path), target="y")
            tally(path.name, result, detail, time.perf_counter() - t)
            counts["random_cases"] += 1
            path.unlink()
    counts["failures"] = failures[:20]
    return counts
