"""``load``: any supported source -> Dataset; ``load_with_test``: a train source plus a separate test file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .arrays import ImageArrayEncoder, read_npz
from .builtins import BUILTIN_NAMES, is_builtin, read_builtin
from .dataset import Dataset
from .encoder import TableEncoder
from .images import IMAGE_SUFFIXES, ImageEncoder, read_image_folder
from .rawdata import RawData, build_dataset, encode
from .split import Splits, make_splits
from .tables import CSV_SUFFIXES, PARQUET_SUFFIXES, read_frame, read_labelled_table

SUPPORTED = "a .csv/.tsv or .parquet file (with target=), an .npz with X and y, a folder root/<class>/<image>, or " \
            + ", ".join(BUILTIN_NAMES)


def _read(source: Any, target: str | None, text: str | None, image_size: Any) -> tuple[RawData, Any]:
    """Read any source: its RawData and a fresh encoder for it."""
    if isinstance(source, pd.DataFrame):
        return read_labelled_table(source, target, text), TableEncoder(text=text)
    if is_builtin(source):
        _no_text(source, text)
        return read_builtin(source)
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"cannot load a {type(source).__name__}; pass {SUPPORTED}")
    path = Path(source)
    if path.is_dir():
        _no_text(source, text)
        return read_image_folder(path), ImageEncoder(image_size)
    suffix = path.suffix.lower()
    if not path.exists() and not path.is_symlink():
        raise DataError(f"{source}: file not found; check the path (supported: {SUPPORTED})")
    if suffix in CSV_SUFFIXES or suffix in PARQUET_SUFFIXES:
        return read_labelled_table(path, target, text), TableEncoder(text=text)
    if suffix == ".npz":
        _no_text(source, text)
        data = read_npz(path)
        return data, (TableEncoder() if data.kind == "tabular" else ImageArrayEncoder())
    if suffix == ".npy":
        raise DataError(f"{source}: a single .npy array has no labels; save X and y together with numpy.savez(path, X=X, y=y)")
    if suffix in IMAGE_SUFFIXES:
        raise DataError(f"{source}: a single image; pass the folder that holds root/<class>/<image>")
    raise DataError(f"{source}: unsupported file type {suffix or '(no extension)'!r}; expected {SUPPORTED}")


def _no_text(source: Any, text: str | None) -> None:
    if text is not None:
        raise DataError(f"{source}: text= applies only to a column of a CSV/Parquet file")


def load(source: Any, target: str | None = None, text: str | None = None,
         image_size: int | Sequence[int] | None = None) -> Dataset:
    """Load a data set.

    Args:
        source: a ``.csv``/``.tsv``/``.parquet`` path (needs ``target``), an ``.npz`` with arrays
            ``X`` and ``y``, an image folder ``root/<class>/<image>``, a built-in name
            (``sklearn:digits``, ``fashion-mnist:5000``, ``synthetic:50000``, ...) or a DataFrame.
        target: the label column of a table.
        text: a free-text column of a table, encoded as TF-IDF (``kind='text'``).
        image_size: resize folder images to this size (int or (H, W)); default the most common size.

    Returns:
        A Dataset with a fitted ``encoder`` for new data; ``info`` counts imputed values per column
        (``missing``) and lists dropped columns with the reason (``dropped``).

    Raises:
        DataError: a one-line reason naming the file (and column/row) at fault.

    Example:
        >>> ds = load("sklearn:iris")
        >>> ds.X.shape, ds.classes
        ((150, 4), ['setosa', 'versicolor', 'virginica'])
    """
    if isinstance(source, Dataset):
        return source
    data, encoder = _read(source, target, text, image_size)
    return build_dataset(data, encoder)


def load_with_test(train_source: Any, test_source: Any, target: str | None = None, text: str | None = None,
                   image_size: int | Sequence[int] | None = None, val_fraction: float = 0.2,
                   seed: int = 0, fractions: Sequence[float] | None = None) -> tuple[Dataset, Splits]:
    """Load a training source and a separate test source as one Dataset plus Splits.

    The test rows are encoded with the encoder fitted on the training rows only, and their labels
    must be training classes. Train rows are split stratified into train/val (``val_fraction``, or
    the train:val ratio of ``fractions`` = (train, val, test) when given; its test share is
    ignored since the test file is the test split); ``splits.test`` are the test rows, appended
    after the training rows, with ids ``test:<id>``. ``info['test']`` holds the test file's
    missing/unseen counts.
    """
    if fractions is not None:
        f = [float(v) for v in fractions]
        if len(f) < 2 or f[0] <= 0 or f[1] < 0:
            raise ConfigError(f"fractions must be (train, val[, test]) with train > 0, got {tuple(fractions)}")
        val_fraction = f[1] / (f[0] + f[1])
    train_data, encoder = _read(train_source, target, text, image_size)
    train = build_dataset(train_data, encoder)
    test_data, _ = _read(test_source, target, text, image_size)
    if test_data.kind != train_data.kind or type(test_data.inputs) is not type(train_data.inputs):
        raise DataError(f"{test_data.source}: the test data is {test_data.kind} data but {train_data.source} is "
                        f"{train_data.kind}; give the same kind of source for both")
    X_test, y_test, _, test_info = encode(test_data, encoder, train.classes)
    n_train = len(train)
    test_ids = np.asarray([f"test:{i}" for i in test_data.ids], dtype=object)
    raw = None
    if isinstance(train.raw, pd.DataFrame) and isinstance(test_data.raw, pd.DataFrame):
        raw = pd.concat([train.raw, test_data.raw], ignore_index=True)
    info = dict(train.info)
    info["test"] = {"source": test_data.source, "n_rows": len(y_test), **test_info}
    dataset = Dataset(np.concatenate([train.X, X_test]), np.concatenate([train.y, y_test]), train.classes,
                      np.concatenate([train.ids, test_ids]), train.kind, train.feature_names,
                      train.source, info, encoder, raw)
    inner = make_splits(train.y, (1.0 - val_fraction, val_fraction, 0.0), seed=seed)
    return dataset, Splits(inner.train, inner.val, np.arange(n_train, n_train + len(y_test)))


def load_features(source: Any, encoder: Any) -> tuple[np.ndarray, np.ndarray, dict]:
    """New rows, labelled or not, encoded with a fitted ``encoder`` (prediction, online monitoring).

    ``source`` is a table (CSV/Parquet/DataFrame with the training columns; a target column is
    ignored), an ``.npz`` with ``X`` (``y`` optional) or an image folder (class folders optional).
    Returns ``(X, ids, info)``; ``info`` counts imputed and unseen values per column.

    Example:
        >>> ds = load("train.csv", target="y")
        >>> X_new, ids, info = load_features("new.csv", ds.encoder)
    """
    is_frame = isinstance(source, pd.DataFrame)
    if not is_frame and not isinstance(source, (str, os.PathLike)):
        raise DataError(f"cannot read new data from a {type(source).__name__}")
    suffix = "" if is_frame else Path(source).suffix.lower()
    if suffix == ".npz":
        data = read_npz(source, labelled=False)
        inputs, ids, name = data.inputs, data.ids, data.source
    elif isinstance(encoder, TableEncoder):
        if not is_frame and suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
            raise DataError(f"{source}: the model was trained on a table; give a .csv/.tsv/.parquet file")
        frame, _, name = read_frame(source, None, encoder.text, labelled=False)
        inputs, ids = frame, np.arange(len(frame)).astype(str)
    elif isinstance(encoder, ImageEncoder):
        if is_frame or not Path(source).is_dir():
            raise DataError(f"{source}: the model was trained on an image folder; give a folder of images")
        data = read_image_folder(source, labelled=False)
        inputs, ids, name = data.inputs, data.ids, data.source
    else:
        raise DataError(f"{source}: cannot encode this with a {type(encoder).__name__}; give an .npz with X")
    info: dict[str, Any] = {"n_rows": int(len(ids))}
    X = encoder.transform(inputs, info=info, source=name)
    return X, np.asarray(ids, dtype=object), info
