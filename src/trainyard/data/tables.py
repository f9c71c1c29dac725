"""CSV and Parquet files (and in-memory DataFrames) with a target column -> RawData.

CSV goes through pyarrow's multi-threaded reader (a 10^6 x 40 file reads in seconds) after a
streaming UTF-8/NUL check; rows with too many or too few fields are errors, never padded.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import DataError
from .file_checks import MAX_COLUMNS, check_utf8_text, guess_delimiter, read_header, require_file
from .labels import short_list, to_strings
from .rawdata import RawData

CSV_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")


def read_frame(source: str | Path | pd.DataFrame, target: str | None, text: str | None = None,
               labelled: bool = True) -> tuple[pd.DataFrame, dict[str, Any], str]:
    """A CSV/Parquet file or DataFrame as ``(frame, notes, name)``, validated.

    ``labelled=False`` reads new rows for prediction: the target may be absent.
    """
    notes: dict[str, Any] = {}
    if isinstance(source, pd.DataFrame):
        name = "<DataFrame>"
        frame = source.rename(columns=str) if not all(isinstance(c, str) for c in source.columns) else source
        _check_columns(name, frame.columns, target, text, labelled)
    else:
        path = require_file(source)
        name = str(source)
        if path.suffix.lower() in PARQUET_SUFFIXES:
            frame, notes = read_parquet_frame(path, target, text, labelled)
        else:
            frame = read_csv_frame(path, target, text, labelled)
    if len(frame) == 0:
        raise DataError(f"{name}: the table has a header but no data rows")
    return frame, notes, name


def read_table(source: str | Path | pd.DataFrame, target: str | None = None, text: str | None = None) -> pd.DataFrame:
    """A CSV/Parquet file as a validated DataFrame (same checks as ``load``); the target may be absent.

    For new rows to predict on: ``encoder.transform(read_table("new.csv"))``.
    """
    return read_frame(source, target, text, labelled=False)[0]


def read_labelled_table(source: str | Path | pd.DataFrame, target: str | None, text: str | None = None) -> RawData:
    """Read a CSV/Parquet file or a DataFrame; the target column becomes the labels, the rest the inputs."""
    frame, notes, name = read_frame(source, target, text)
    labels, missing = to_strings(frame[target])
    inputs = frame.drop(columns=[target])
    if inputs.shape[1] == 0:
        raise DataError(f"{name}: only the target column {target!r}; there are no feature columns")
    notes.update({"target": target, "text": text, "n_columns": int(frame.shape[1])})
    ids = np.arange(len(frame)).astype(str)
    return RawData(inputs, labels, missing, ids, "text" if text else "tabular", name,
                   f"target {target!r}", raw=frame, notes=notes)


def _check_columns(name: str, columns: Any, target: str | None, text: str | None, labelled: bool = True) -> None:
    columns = [str(c) for c in columns]
    if target is None and labelled:
        raise DataError(f"{name}: no target given; pass target=COLUMN (--target), one of {short_list(columns)}")
    for role, col in (("target", target if labelled else None), ("text", text)):
        if col is not None and col not in columns:
            close = difflib.get_close_matches(col, columns, n=1) or [c for c in columns if c.strip().lower() == col.strip().lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(f"{name}: {role} column {col!r} not found{hint}; columns are {short_list(columns)}")
    if text is not None and text == target:
        raise DataError(f"{name}: the text column and the target are the same column {text!r}")
    if len(columns) > MAX_COLUMNS:
        raise DataError(f"{name}: {len(columns)} columns; at most {MAX_COLUMNS} are supported - select the columns you need")


def read_csv_frame(path: Path, target: str | None, text: str | None = None, labelled: bool = True) -> pd.DataFrame:
    """Parse a CSV/TSV into a DataFrame; target and text columns are kept as strings."""
    import pyarrow.csv as pacsv

    check_utf8_text(path)
    delimiter = guess_delimiter(path)
    header, header_lines = read_header(path, delimiter)
    _check_columns(str(path), header, target, text, labelled)
    bad_rows: list[Any] = []
    # pyarrow's cost per block grows with the column count: give wide files blocks of ~1000 rows.
    with open(path, "rb") as f:
        line_bytes = len(f.readline(1 << 26))
    block_size = int(min(max(line_bytes * 1000, 1 << 20), 1 << 26))

    def on_bad_row(row: Any) -> str:
        bad_rows.append(row)
        return "skip"

    # Quoted newlines must parse (free text has them); an empty/NA field is missing in every column.
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_bad_row)
    string_cols = {c: pa.string() for c in (target, text) if c is not None and c in header}

    def read(column_types: dict[str, Any], threads: bool = True) -> pa.Table:
        convert = pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=True,
                                       timestamp_parsers=[], quoted_strings_can_be_null=True)
        # We name the columns ourselves (empty names fixed), so skip the header's lines.
        opts = pacsv.ReadOptions(use_threads=threads, column_names=header, skip_rows=header_lines,
                                 block_size=block_size)
        return pacsv.read_csv(path, read_options=opts, parse_options=parse, convert_options=convert)

    try:
        try:
            table = read(string_cols)
        except pa.ArrowInvalid as e:
            if "conversion error" not in str(e).lower():
                raise
            # Type inference saw only the first block; a later text value in a "numeric" column
            # fails the whole read. Re-read everything as text; the encoder decides per column.
            bad_rows.clear()
            table = read({c: pa.string() for c in header})
    except pa.ArrowException as e:
        raise DataError(f"{path}: cannot parse as CSV: {_first_line(str(e))}") from None
    if bad_rows:
        _raise_ragged(path, bad_rows, string_cols, read, len(header))
    return table.to_pandas()


def _raise_ragged(path: Path, bad_rows: list[Any], string_cols: dict, read: Any, width: int) -> None:
    first = bad_rows[0]
    number = first.number
    if number is None:  # row numbers are only known when parsing on one thread
        bad_rows.clear()
        try:
            read({c: pa.string() for c in string_cols}, threads=False)
        except pa.ArrowException:
            pass
        if bad_rows and bad_rows[0].number is not None:
            first = bad_rows[0]
            number = first.number
    where = f"line {number}" if number is not None else "a row"
    text = first.text if len(first.text) <= 60 else first.text[:57] + "..."
    raise DataError(f"{path}: {where} has {first.actual_columns} field{'s' if first.actual_columns != 1 else ''}, the header has {width} "
                    f"({len(bad_rows)} such row{'s' if len(bad_rows) > 1 else ''}; first: {text!r}); "
                    "fix the quoting or the delimiter")


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return line if len(line) <= 200 else line[:197] + "..."


def read_parquet_frame(path: Path, target: str | None, text: str | None = None,
                       labelled: bool = True) -> tuple[pd.DataFrame, dict]:
    """Read a Parquet file with pyarrow; nested/binary columns are dropped and reported."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file: {_first_line(str(e))}") from None
    names = list(schema.names)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{path}: column {dup!r} appears more than once; rename one of them")
    _check_columns(str(path), names, target, text, labelled)
    dropped = {}
    keep = []
    for fld in schema:
        t = fld.type
        if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t) \
                or pa.types.is_fixed_size_binary(t) or pa.types.is_dictionary(t) and not pa.types.is_string(t.value_type):
            if fld.name in (target, text):
                raise DataError(f"{path}: column {fld.name!r} has type {t}; it must hold plain values")
            dropped[fld.name] = f"unsupported Parquet type {t}"
        else:
            keep.append(fld.name)
    try:
        table = pq.read_table(path, columns=keep)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot read Parquet data: {_first_line(str(e))}") from None
    # column by column, freeing each Arrow buffer once converted: the peak is one copy of the data, not two
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    if frame.columns.duplicated().any() or not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index(drop=True)
    return frame, ({"dropped": dropped} if dropped else {})
