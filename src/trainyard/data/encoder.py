"""The fitted transform from a table to the float32 feature matrix, serialisable to JSON.

``TableEncoder`` learns, from the training table only, what each column is and how to turn it
into numbers; ``transform`` then applies exactly that to new rows of the same schema (prediction,
online monitoring, a separate test file). Column kinds:

* numeric: non-finite or float32-overflowing values and text that is not a number count as
  missing; missing values get the training median; then standardised with the training mean/std.
* categorical: one-hot over the (at most ``max_categories``) most frequent values, the rest go to
  an ``<other>`` column; missing values get the most frequent value; unseen values are all-zero
  (or ``<other>``).
* text (the ``text`` column): TF-IDF over the ``max_vocabulary`` most frequent words.

Dropped (and reported in ``dropped_``): all-missing columns, id-like string columns (more than
``max_categories`` distinct values, most of them unique, or unique in every row) and row-index
columns (named like ``id``/``index``/``Unnamed: 0`` with unique integers).
"""
from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, RunError
from .labels import natural_key, short_list, to_strings

F32_MAX = float(np.finfo(np.float32).max)
CLIP = 1e6  # standardised values beyond this would only overflow float32 downstream
_INDEX_NAMES = {"id", "index", "row", "row_id", "rowid", "row_number"}
_NUMERIC_SHARE = 0.98  # a text column whose values are >= 98 % numbers is a numeric column with typos
_MIN_ROWS_ID = 10  # a text column unique in every one of at least this many rows is an id
_TEXT_CHUNK = 8192
_SHORT = 20_000  # rows up to which per-column work is done in plain Python (wide, short tables)
_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
_DAY_NS = 86_400e9


def _looks_like_prose(values: np.ndarray) -> bool:
    """Whether string values read as sentences (a median of 3 or more words) rather than codes or ids."""
    sample = values[:: max(1, len(values) // 1000)]
    return float(np.median([len(str(v).split()) for v in sample])) >= 3


class TableEncoder:
    """Fitted table -> float32 matrix transform.

    Args:
        text: name of a free-text column to turn into TF-IDF features, or None.
        max_categories: one-hot width cap per categorical column.
        max_vocabulary: TF-IDF vocabulary cap.
        scale: standardise numeric columns with the training mean and std.

    Example:
        >>> enc = TableEncoder().fit(train_frame)
        >>> X_new = enc.transform(new_frame)          # same columns as train_frame
        >>> enc2 = TableEncoder.from_dict(enc.to_dict())
    """

    type_name = "table"

    def __init__(self, text: str | None = None, max_categories: int = 50, max_vocabulary: int = 2000,
                 scale: bool = True) -> None:
        self.text = text
        self.max_categories = int(max_categories)
        self.max_vocabulary = int(max_vocabulary)
        self.scale = bool(scale)
        self.columns_: list[dict[str, Any]] = []
        self.dropped_: dict[str, str] = {}
        self.fit_notes_: dict[str, Any] = {}

    # ------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame, source: str = "data") -> "TableEncoder":
        """Learn the column kinds, fill values, scales, categories and vocabulary from ``frame``."""
        frame = _as_frame(frame, source)
        if self.text is not None and self.text not in frame.columns:
            raise DataError(f"{source}: text column {self.text!r} not found; columns are {short_list(frame.columns)}")
        self.columns_, self.dropped_ = [], {}
        self.fit_notes_ = {"coerced": {}, "constant": [], "categorical": {}, "other_bucket": []}
        specs = []
        for name, col in frame.items():
            if name == self.text:
                specs.append(self._fit_text(name, col, source))
            else:
                specs.append(self._fit_column(name, col))
        numeric = [s for s in specs if s is not None and s["kind"] == "numeric"]
        if numeric:
            self._fit_numeric(numeric, frame)
        self.columns_ = [s for s in specs if s is not None and not s.pop("_drop", False)]
        if not self.columns_:
            reasons = "; ".join(f"{k}: {v}" for k, v in list(self.dropped_.items())[:5]) or "no columns besides the target"
            raise DataError(f"{source}: no usable feature columns ({reasons})")
        return self

    def _fit_column(self, name: str, col: pd.Series) -> dict[str, Any] | None:
        """The spec of one non-text column (numeric stats are filled in later, for all at once)."""
        dtype = col.dtype
        numeric = {"name": name, "kind": "numeric", "datetime": False, "fill": 0.0, "mean": 0.0, "std": 1.0}
        if pd.api.types.is_complex_dtype(dtype):
            self.dropped_[name] = "complex numbers are not supported"
            return None
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return {**numeric, "datetime": True}
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            if _looks_like_index(name):
                values = col.to_numpy(dtype=np.float64, na_value=np.nan)
                if np.isfinite(values).all() and np.all(values == np.round(values)) \
                        and len(np.unique(values)) == len(values):
                    self.dropped_[name] = "row index / id column (unique integers)"
                    return None
            return numeric
        strings, missing = to_strings(col)
        present = strings[~missing]
        if len(present) == 0:
            self.dropped_[name] = "all values missing"
            return None
        if _maybe_numbers(present):
            n_ok = int(np.count_nonzero(~np.isnan(_parse_numbers(present))))
            if n_ok and n_ok >= _NUMERIC_SHARE * len(present):
                if n_ok < len(present):
                    self.fit_notes_["coerced"][name] = len(present) - n_ok
                return numeric
        if len(present) <= _SHORT:  # plain Python beats pandas' per-call overhead on short columns
            counts = Counter(present).most_common()
        else:
            vc = pd.Series(present).value_counts()
            counts = list(zip(vc.index.tolist(), vc.to_numpy().tolist()))
        n_unique = len(counts)
        all_unique = n_unique == len(present) >= _MIN_ROWS_ID
        if all_unique or (n_unique > self.max_categories and n_unique > 0.5 * len(present)):
            self.dropped_[name] = (f"free text, not a category: {n_unique} distinct values in {len(present)} rows "
                                   f"(give it as the text column: --text {name}, text={name!r} in Python)"
                                   if _looks_like_prose(present) else
                                   f"id-like text: {n_unique} distinct values in {len(present)} rows "
                                   f"(if it is free text, give --text {name})")
            return None
        other = n_unique > self.max_categories
        n_keep = self.max_categories - 1 if other else n_unique
        # Most frequent first; ties broken by natural order so the choice never depends on hashing.
        cutoff = counts[n_keep - 1][1]
        candidates = [(int(c), str(v)) for v, c in counts if c >= cutoff]
        kept = [v for _, v in sorted(candidates, key=lambda cv: (-cv[0], natural_key(cv[1])))[:n_keep]]
        self.fit_notes_["categorical"][name] = len(kept) + int(other)
        if other:
            self.fit_notes_["other_bucket"].append(name)
        if n_unique == 1:
            self.fit_notes_["constant"].append(name)
        return {"name": name, "kind": "categorical", "categories": sorted(kept, key=natural_key),
                "other": other, "fill": kept[0]}

    def _fit_numeric(self, specs: list[dict[str, Any]], frame: pd.DataFrame) -> None:
        """Fill value (median), mean and std of every numeric column, vectorised over columns."""
        values, _ = _numeric_matrix(frame, specs)
        bad = ~np.isfinite(values) | (np.abs(values) > F32_MAX)
        values[bad] = np.nan
        sample = values if len(values) <= 200_000 else values[:: len(values) // 100_000]
        # A median of an evenly strided 100k-row sample is plenty for an imputation value, and a
        # full partition of 10^6 rows per column would dominate load time.
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are handled below
            fill = np.nanmedian(sample, axis=0) if len(sample) else np.full(len(specs), np.nan)
        empty = bad.all(axis=0)
        for j in np.flatnonzero(np.isnan(fill) & ~empty):  # present values all missed by the sample
            fill[j] = np.nanmedian(values[:, j])
        fill = np.where(np.isnan(fill), 0.0, fill)
        np.copyto(values, fill[None, :], where=bad)
        mean = values.mean(axis=0) if len(values) else np.zeros(len(specs))
        std = values.std(axis=0) if len(values) else np.ones(len(specs))
        constant = values.min(axis=0) == values.max(axis=0) if len(values) else np.ones(len(specs), bool)
        for j, spec in enumerate(specs):
            if empty[j]:
                self.dropped_[spec["name"]] = "all values missing or not finite"
                spec["_drop"] = True
                continue
            spec["fill"] = float(fill[j])
            if self.scale:
                ok = np.isfinite(std[j]) and std[j] > 0
                spec["mean"], spec["std"] = float(mean[j]), float(std[j]) if ok else 1.0
            if constant[j]:
                self.fit_notes_["constant"].append(spec["name"])

    def _fit_text(self, name: str, col: pd.Series, source: str) -> dict[str, Any]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        strings, _ = to_strings(col)
        vectorizer = TfidfVectorizer(max_features=self.max_vocabulary, lowercase=True,
                                     token_pattern=_TOKEN_PATTERN, dtype=np.float64)
        try:
            vectorizer.fit(strings)
        except ValueError:  # sklearn: "empty vocabulary; perhaps the documents only contain stop words"
            raise DataError(f"{source}: text column {name!r} has no words of two or more letters") from None
        vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
        return {"name": name, "kind": "text", "vocabulary": vocabulary,
                "idf": [float(v) for v in vectorizer.idf_], "lowercase": True,
                "token_pattern": _TOKEN_PATTERN, "sublinear_tf": False}

    # ------------------------------------------------------------ transform
    @property
    def input_columns(self) -> list[str]:
        """The columns ``transform`` needs."""
        return [spec["name"] for spec in self.columns_]

    @property
    def feature_names_(self) -> list[str]:
        """One name per output column: ``col``, ``col=value``, ``col=<other>``, ``col:word``."""
        names: list[str] = []
        for spec in self.columns_:
            if spec["kind"] == "numeric":
                names.append(spec["name"])
            elif spec["kind"] == "categorical":
                names += [f"{spec['name']}={c}" for c in spec["categories"]]
                if spec["other"]:
                    names.append(f"{spec['name']}=<other>")
            else:
                names += [f"{spec['name']}:{w}" for w in spec["vocabulary"]]
        return names

    @property
    def feature_names(self) -> list[str]:
        """Alias of :attr:`feature_names_`."""
        return self.feature_names_

    def _width(self, spec: dict[str, Any]) -> int:
        if spec["kind"] == "numeric":
            return 1
        if spec["kind"] == "categorical":
            return len(spec["categories"]) + int(spec["other"])
        return len(spec["vocabulary"])

    def transform(self, frame: pd.DataFrame | np.ndarray, info: dict[str, Any] | None = None,
                  source: str = "new data") -> np.ndarray:
        """Encode rows of the fitted schema as float32 features.

        Args:
            frame: a DataFrame with (at least) ``input_columns``, or a 2-D array with exactly
                those columns in that order. Extra columns (e.g. the target) are ignored.
            info: if given, filled with per-column counts: ``missing`` (imputed values),
                ``nonfinite``, ``unparsed`` (text in a numeric column), ``unseen`` (new categories).
            source: names the data in error messages.
        """
        if not self.columns_:
            raise RunError("TableEncoder.transform called before fit")
        frame = _as_frame(frame, source, self.input_columns)
        absent = [name for name in self.input_columns if name not in frame.columns]
        if absent:
            more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
            raise DataError(f"{source}: missing column {absent[0]!r}{more}; the model was trained with it - "
                            f"expected columns {short_list(self.input_columns)}")
        n = len(frame)
        X = np.zeros((n, sum(self._width(s) for s in self.columns_)), dtype=np.float32)
        counts: dict[str, dict[str, int]] = {"missing": {}, "nonfinite": {}, "unparsed": {}, "unseen": {}}
        numeric, numeric_at = [], []
        start = 0
        columns = dict(frame.items())  # one pass: frame[name] costs more than a dict lookup
        for spec in self.columns_:
            stop = start + self._width(spec)
            if spec["kind"] == "numeric":
                numeric.append(spec)
                numeric_at.append(start)
            elif spec["kind"] == "categorical":
                self._transform_categorical(spec, columns[spec["name"]], X[:, start:stop], counts)
            else:
                self._transform_text(spec, columns[spec["name"]], X[:, start:stop], counts)
            start = stop
        if numeric:
            X[:, numeric_at] = self._transform_numeric(numeric, frame, counts)
        if info is not None:
            for key, per_column in counts.items():
                info[key] = {k: v for k, v in per_column.items() if v}
            info["missing_total"] = int(sum(info["missing"].values()))
        return X

    def fit_transform(self, frame: pd.DataFrame, info: dict[str, Any] | None = None,
                      source: str = "data") -> np.ndarray:
        """``fit(frame)`` then ``transform(frame)``."""
        return self.fit(frame, source).transform(frame, info, source)

    def _transform_numeric(self, specs: list[dict[str, Any]], frame: pd.DataFrame, counts: dict) -> np.ndarray:
        values, unparsed = _numeric_matrix(frame, specs)
        absent = np.isnan(values)
        bad = ~np.isfinite(values) | (np.abs(values) > F32_MAX)
        n_bad, n_nonfinite = bad.sum(axis=0), (bad & ~absent).sum(axis=0)
        for j, spec in enumerate(specs):
            counts["missing"][spec["name"]] = int(n_bad[j])
            counts["nonfinite"][spec["name"]] = int(n_nonfinite[j])
            counts["unparsed"][spec["name"]] = int(unparsed[j])
        np.copyto(values, np.array([s["fill"] for s in specs])[None, :], where=bad)
        if self.scale:
            values -= np.array([s["mean"] for s in specs])
            values /= np.array([s["std"] for s in specs])
        return np.clip(values, -CLIP, CLIP, out=values)

    def _transform_categorical(self, spec: dict[str, Any], col: pd.Series, out: np.ndarray, counts: dict) -> None:
        strings, missing = to_strings(col)
        strings[missing] = spec["fill"]
        if len(strings) <= _SHORT:  # a dict lookup beats building a pandas Index for short columns
            lookup = {c: i for i, c in enumerate(spec["categories"])}
            codes = np.fromiter((lookup.get(v, -1) for v in strings), dtype=np.int64, count=len(strings))
        else:
            codes = pd.Index(spec["categories"], dtype=object).get_indexer(strings)
        unseen = codes < 0
        counts["missing"][spec["name"]] = int(np.count_nonzero(missing))
        counts["unseen"][spec["name"]] = int(np.count_nonzero(unseen))
        if spec["other"]:
            codes[unseen] = len(spec["categories"])
        rows = np.flatnonzero(codes >= 0)
        out[rows, codes[rows]] = 1.0

    def _transform_text(self, spec: dict[str, Any], col: pd.Series, out: np.ndarray, counts: dict) -> None:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        strings, missing = to_strings(col)
        counts["missing"][spec["name"]] = int(np.count_nonzero(missing))
        vocabulary = {w: i for i, w in enumerate(spec["vocabulary"])}
        counter = CountVectorizer(vocabulary=vocabulary, lowercase=spec["lowercase"],
                                  token_pattern=spec["token_pattern"], dtype=np.float64)
        idf = np.asarray(spec["idf"], dtype=np.float64)
        # Same arithmetic as TfidfVectorizer: tf * idf, then unit L2 norm per row; densified in
        # chunks so a large corpus never holds an n x vocabulary float64 matrix.
        for lo in range(0, len(strings), _TEXT_CHUNK):
            tf = counter.transform(strings[lo:lo + _TEXT_CHUNK]).tocsr()
            if spec.get("sublinear_tf"):
                np.log(tf.data, out=tf.data)
                tf.data += 1.0
            tf.data *= idf[tf.indices]
            out[lo:lo + _TEXT_CHUNK] = normalize(tf, norm="l2", copy=False).toarray()

    # ---------------------------------------------------------- serialise
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (column specs, fill values, scales, categories, vocabulary + idf)."""
        return {"type": self.type_name, "version": 1, "text": self.text,
                "max_categories": self.max_categories, "max_vocabulary": self.max_vocabulary,
                "scale": self.scale, "columns": [dict(s) for s in self.columns_],
                "dropped": dict(self.dropped_)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "TableEncoder":
        """Rebuild a fitted encoder from :meth:`to_dict` output."""
        if not isinstance(state, dict) or state.get("type") != cls.type_name or "columns" not in state:
            raise RunError(f"not a table encoder state (type={state.get('type') if isinstance(state, dict) else None!r})")
        enc = cls(state.get("text"), state.get("max_categories", 50), state.get("max_vocabulary", 2000),
                  state.get("scale", True))
        enc.columns_ = [dict(s) for s in state["columns"]]
        enc.dropped_ = dict(state.get("dropped", {}))
        return enc

    def __repr__(self) -> str:
        kinds = pd.Series([s["kind"] for s in self.columns_]).value_counts().to_dict() if self.columns_ else {}
        return f"TableEncoder({kinds}, dropped={len(self.dropped_)})"


def _looks_like_index(name: str) -> bool:
    key = name.strip().lower()
    return key in _INDEX_NAMES or key.startswith("unnamed:")


def _maybe_numbers(strings: np.ndarray, sample: int = 64) -> bool:
    """Cheap exact pre-check: False if the first values already hold more non-numbers than the
    2 % a numeric column may have (so the full parse can be skipped for ordinary text columns)."""
    limit = (1 - _NUMERIC_SHARE) * len(strings)
    failed = 0
    for v in strings[:sample]:
        try:
            float(v)
        except (ValueError, OverflowError):
            failed += str(v).lower() not in ("true", "false")
            if failed > limit:
                return False
    return True


def _parse_numbers(strings: np.ndarray) -> np.ndarray:
    """Strings -> float64 (NaN where not a number); "true"/"false" count as 1/0."""
    parsed = np.asarray(pd.to_numeric(pd.Series(strings, dtype=object), errors="coerce"), dtype=np.float64)
    if np.isnan(parsed).any():
        lowered = pd.Series(strings, dtype=object).str.lower()
        parsed = np.where(lowered == "true", 1.0, np.where(lowered == "false", 0.0, parsed))
    return parsed


def _numeric_values(col: pd.Series, spec: dict[str, Any]) -> tuple[np.ndarray, int]:
    """A column as float64 (NaN where missing) and the count of present values that are not numbers."""
    if spec.get("datetime"):
        stamps = pd.to_datetime(col, errors="coerce", utc=True)
        ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
        ns[pd.isna(stamps).to_numpy()] = np.nan
        return ns / _DAY_NS, 0
    dtype = col.dtype
    if (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)) \
            and not pd.api.types.is_complex_dtype(dtype):
        return col.to_numpy(dtype=np.float64, na_value=np.nan), 0
    strings, missing = to_strings(col)
    parsed = np.full(len(strings), np.nan)
    parsed[~missing] = _parse_numbers(strings[~missing])
    lowered_nan = np.char.lower(strings[~missing].astype(str)) == "nan" if (~missing).any() else np.zeros(0, bool)
    unparsed = int(np.count_nonzero(np.isnan(parsed[~missing]) & ~lowered_nan))
    return parsed, unparsed


def _numeric_matrix(frame: pd.DataFrame, specs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The numeric columns of ``specs`` as one float64 (n, k) matrix (NaN where missing) and the
    count of non-number text per column. Columns already numeric are converted in one call."""
    dtypes = frame.dtypes
    direct = [j for j, s in enumerate(specs) if not s["datetime"]
              and (pd.api.types.is_numeric_dtype(dtypes[s["name"]]) or pd.api.types.is_bool_dtype(dtypes[s["name"]]))
              and not pd.api.types.is_complex_dtype(dtypes[s["name"]])]
    values = np.empty((len(frame), len(specs)), dtype=np.float64)
    unparsed = np.zeros(len(specs), dtype=np.int64)
    if direct:
        block = frame[[specs[j]["name"] for j in direct]].to_numpy(dtype=np.float64, na_value=np.nan)
        if len(direct) == len(specs):  # we fill in place: never a view of the caller's frame
            values = block if block.base is None and block.flags.writeable else block.copy()
        else:
            values[:, direct] = block
    done = set(direct)
    for j, spec in enumerate(specs):
        if j not in done:
            values[:, j], unparsed[j] = _numeric_values(frame[spec["name"]], spec)
    return values, unparsed


def _as_frame(frame: Any, source: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A DataFrame with unique string column names (a 2-D array gets ``columns``)."""
    if isinstance(frame, np.ndarray):
        if frame.ndim != 2 or columns is None or frame.shape[1] != len(columns):
            raise DataError(f"{source}: expected a table with {len(columns or [])} columns, got an array of shape {frame.shape}")
        frame = pd.DataFrame(frame, columns=columns)
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{source}: expected a table (pandas DataFrame), got {type(frame).__name__}")
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.rename(columns=str)
    if not frame.columns.is_unique:
        dup = frame.columns[frame.columns.duplicated()][0]
        raise DataError(f"{source}: column {dup!r} appears more than once; rename one of them")
    return frame


def encoder_from_dict(state: dict[str, Any]) -> Any:
    """Rebuild any Trainyard encoder (table, image folder, array) from its ``to_dict()`` output."""
    kind = state.get("type") if isinstance(state, dict) else None
    if kind == TableEncoder.type_name:
        return TableEncoder.from_dict(state)
    if kind == "image_folder":
        from .images import ImageEncoder

        return ImageEncoder.from_dict(state)
    if kind == "image_array":
        from .arrays import ImageArrayEncoder

        return ImageArrayEncoder.from_dict(state)
    raise RunError(f"unknown encoder type {kind!r} (expected table, image_folder or image_array)")
