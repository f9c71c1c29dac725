"""Class labels: values of any type -> strings -> integer codes with naturally sorted names."""
from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError

# More distinct labels than this (and more than half the rows) means the column is an id or a
# continuous value, not classes; training a 10,000-way classifier on it would be a silent mistake.
MAX_CLASSES = 1000
MANY_CLASSES, THIN_CLASS = 20, 3
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key: numbers numerically ("2" < "10"), then text with embedded numbers ("img2" < "img10")."""
    try:
        value = float(name)
        if value == value:  # NaN would break ordering; sort it as text
            return (0, value, name)
    except (ValueError, OverflowError):
        pass
    parts = _DIGITS.split(name)
    # Digit runs compare by (length, digits) rather than int(): no limit on how long they are.
    key = [(len(p.lstrip("0")), p.lstrip("0")) if i % 2 else (0, p.casefold()) for i, p in enumerate(parts)]
    return (1, key, name)


def natural_sorted(names: Sequence[str]) -> list[str]:
    """``names`` sorted with :func:`natural_key`."""
    return sorted(names, key=natural_key)


def _float_strings(values: np.ndarray) -> np.ndarray:
    """Floats as strings; integral values without ".0" (a float column of 0/1 gives "0"/"1")."""
    out = values.astype(str).astype(object)
    integral = np.isfinite(values) & (np.abs(values) < 2.0**53)
    integral[integral] = values[integral] == np.round(values[integral])
    out[integral] = values[integral].astype(np.int64).astype(str)
    return out


def _one_string(v: Any) -> str:
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, (float, np.floating)):
        return "" if v != v else str(_float_strings(np.array([v], dtype=np.float64))[0])
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", "replace").strip()
    return str(v).strip()


def to_strings(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Any 1-D column as label/category strings.

    Returns ``(strings, missing)``: an object array of stripped strings ("" where missing) and a
    boolean mask of missing entries (None, NaN, empty or blank). Numbers and text mixed in one
    column all become strings; integral floats lose their ".0" so 1 and 1.0 are the same label.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_bool_dtype(s.dtype):
        out = s.astype(object).map(_one_string).to_numpy(dtype=object)
    elif pd.api.types.is_integer_dtype(s.dtype) and not s.hasnans:
        out = s.to_numpy().astype(str).astype(object)
    elif pd.api.types.is_float_dtype(s.dtype) or pd.api.types.is_integer_dtype(s.dtype):
        arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
        out = _float_strings(arr)
        out[np.isnan(arr)] = ""
    elif isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow":
        import pyarrow as pa
        import pyarrow.compute as pc

        # Arrow kernels: several times faster than the pandas .str path on wide tables.
        trimmed = pc.fill_null(pc.utf8_trim_whitespace(pa.array(s.array)), "")
        out = trimmed.to_numpy(zero_copy_only=False).astype(object, copy=False)
    elif isinstance(s.dtype, pd.StringDtype):
        out = s.str.strip().fillna("").to_numpy(dtype=object)
    else:  # object columns may mix str, int, float, None: one value at a time
        out = np.array([_one_string(v) for v in s.tolist()], dtype=object)
    missing = out == ""
    return out, np.asarray(missing, dtype=bool)


def describe_rows(rows: np.ndarray, limit: int = 5) -> str:
    """``"rows 3, 7, 9 and 12 more"`` for an error message (0-based data rows, as in ids)."""
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def looks_continuous(counts: np.ndarray, n: int) -> bool:
    """Whether label counts per class say the column is an id or a measured number, not classes: more
    than ``MAX_CLASSES`` values, more than 100 taking over half the rows, or more than
    ``MANY_CLASSES`` of which half have fewer than ``THIN_CLASS`` rows (sklearn's diabetes target: 214
    values in 442 rows, 2 rows per value; no classifier learns a class from two rows)."""
    k = len(counts)
    return k > MAX_CLASSES or (k > 100 and k > n // 2) or (k > MANY_CLASSES and float(np.median(counts)) < THIN_CLASS)


def encode_labels(strings: np.ndarray, missing: np.ndarray, where: str,
                  classes: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Label strings -> ``(y codes, class names)``.

    ``where`` names the file and column for error messages. Without ``classes`` the names are the
    distinct labels sorted naturally; with ``classes`` (a fixed order, e.g. a training set's) every
    label must be one of them.
    """
    if len(strings) == 0:
        raise DataError(f"{where}: no rows")
    if missing.any():
        rows = np.flatnonzero(missing)
        raise DataError(f"{where} is empty in {len(rows)} row{'s' if len(rows) > 1 else ''} "
                        f"({describe_rows(rows)}; 0-based data rows); fill in the labels or remove those rows")
    codes, uniques = pd.factorize(np.asarray(strings, dtype=object))
    uniques = [str(u) for u in uniques]
    if classes is None:
        names = natural_sorted(uniques)
        n = len(strings)
        if len(names) < 2:
            raise DataError(f"{where} has only one class ({names[0]!r}); a classifier needs at least two")
        if looks_continuous(np.bincount(codes), n):
            raise DataError(f"{where} has {len(names)} distinct values in {n} rows: it looks like an id or a "
                            "continuous number, not class labels; pick the column that holds the classes")
    else:
        names = [str(c) for c in classes]
        known = set(names)
        unknown = [u for u in uniques if u not in known]
        if unknown:
            rows = np.flatnonzero(np.isin(np.asarray(strings, dtype=object), unknown))
            raise DataError(f"{where}: label {unknown[0]!r} ({describe_rows(rows)}) is not one of the "
                            f"training classes {short_list(names)}")
    position = {name: i for i, name in enumerate(names)}
    rank = np.array([position[u] for u in uniques], dtype=np.int64)
    return rank[codes], names


def short_list(names: Sequence[str], limit: int = 20) -> str:
    """A list of names for an error message, truncated after ``limit``: ``['a', 'b', ...] (40 in all)``."""
    names = [str(n) for n in names]
    shown = ", ".join(repr(n[:40]) for n in names[:limit])
    return f"[{shown}, ...] ({len(names)} in all)" if len(names) > limit else f"[{shown}]"
