"""Built-in data sets that ship with installed packages (no download at run time).

Names: ``sklearn:digits`` (1x8x8 images), ``sklearn:breast_cancer``, ``sklearn:wine``,
``sklearn:iris`` (tables), ``fashion-mnist`` / ``fashion-mnist:N`` (Debian's
``dataset-fashion-mnist``, training images; ``N`` = a stratified subset), ``fashion-mnist:test``
/ ``fashion-mnist:test:N`` (its test images), ``synthetic:N[:FEATURES[:CLASSES]]``.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from .arrays import ImageArrayEncoder
from .dataset import Dataset
from .encoder import TableEncoder
from .rawdata import RawData, build_dataset
from .split import stratified_sample

PREFIXES = ("sklearn:", "fashion-mnist", "synthetic:")
SKLEARN_TABLES = ("breast_cancer", "wine", "iris")
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_ENV = "TRAINYARD_FASHION_MNIST_DIR"  # another folder with the same four files (tests, other OSes)
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
BUILTIN_NAMES = ["sklearn:digits", "sklearn:breast_cancer", "sklearn:wine", "sklearn:iris",
                 "fashion-mnist[:N]", "fashion-mnist:test[:N]", "synthetic:N[:FEATURES[:CLASSES]]"]


def is_builtin(source: Any) -> bool:
    """True for a built-in name (a string starting with ``sklearn:``, ``fashion-mnist``, ``synthetic:``)."""
    return isinstance(source, str) and source.lower().startswith(PREFIXES) and not os.path.exists(source)


def _unknown(source: str) -> DataError:
    return DataError(f"{source}: unknown built-in data set; choose one of {', '.join(BUILTIN_NAMES)}")


def _count(text: str, source: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _unknown(source) from None
    if value < 1:
        raise DataError(f"{source}: the size must be a positive integer")
    return value


def read_builtin(source: str) -> tuple[RawData, Any]:
    """The RawData and a fresh (unfitted) encoder for a built-in name."""
    name = source.strip().lower()
    if name.startswith("sklearn:"):
        return _sklearn(name.split(":", 1)[1], source)
    if name.startswith("fashion-mnist"):
        parts = name.split(":")
        if parts[0] != "fashion-mnist" or len(parts) > 3:
            raise _unknown(source)
        test = len(parts) > 1 and parts[1] == "test"
        rest = parts[2:] if test else parts[1:]
        n = _count(rest[0], source) if rest else None
        return _fashion(test, n, source)
    if name.startswith("synthetic:"):
        parts = name.split(":")[1:]
        if not 1 <= len(parts) <= 3:
            raise _unknown(source)
        n, *more = (_count(p, source) for p in parts)
        data = _synthetic_raw(n, *(more + [40, 10][len(more):]), seed=0, source=source)
        return data, TableEncoder()
    raise _unknown(source)


def load_builtin(source: str) -> Dataset:
    """Load a built-in data set by name (see module docstring)."""
    data, encoder = read_builtin(source)
    return build_dataset(data, encoder)


def _sklearn(which: str, source: str) -> tuple[RawData, Any]:
    from sklearn import datasets

    if which == "digits":
        bunch = datasets.load_digits()
        images = bunch.images  # (1797, 8, 8), pixel values 0..16
        classes = [str(c) for c in bunch.target_names]
        labels = np.asarray(classes, dtype=object)[bunch.target]
        data = RawData(images, labels, np.zeros(len(labels), bool), np.arange(len(labels)).astype(str),
                       "image", "sklearn:digits", "target", classes, None, {"pixel_range": "0..16"})
        return data, ImageArrayEncoder(scale=16.0)
    if which not in SKLEARN_TABLES:
        raise _unknown(source)
    bunch = getattr(datasets, f"load_{which}")()
    frame = pd.DataFrame(bunch.data, columns=[str(c) for c in bunch.feature_names])
    classes = [str(c) for c in bunch.target_names]  # sklearn's order, so codes equal sklearn's targets
    labels = np.asarray(classes, dtype=object)[bunch.target]
    raw = frame.assign(target=labels)
    data = RawData(frame, labels, np.zeros(len(labels), bool), np.arange(len(labels)).astype(str),
                   "tabular", f"sklearn:{which}", "target", classes, raw, {"target": "target"})
    return data, TableEncoder()


def _read_idx(path: Path, source: str) -> np.ndarray:
    """An IDX file (gzip or plain): magic, dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            blob = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e}); reinstall with `apt-get install --reinstall dataset-fashion-mnist`") from None
    if len(blob) < 4 or blob[:2] != b"\x00\x00" or blob[2] != 0x08:
        raise DataError(f"{path}: not an IDX uint8 file; reinstall with `apt-get install --reinstall dataset-fashion-mnist`")
    ndim = blob[3]
    dims = struct.unpack(f">{ndim}I", blob[4:4 + 4 * ndim])
    data = np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated ({data.size} of {int(np.prod(dims))} bytes); reinstall the package")
    return data.reshape(dims)


def _fashion_file(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"fashion-mnist: {folder / (stem + '.gz')} not found; install it with "
                    f"`apt-get install dataset-fashion-mnist` (or set {FASHION_ENV} to a folder with the IDX files)")


def _fashion(test: bool, n: int | None, source: str) -> tuple[RawData, Any]:
    folder = Path(os.environ.get(FASHION_ENV) or FASHION_DIR)
    prefix = "t10k" if test else "train"
    images = _read_idx(_fashion_file(folder, f"{prefix}-images-idx3-ubyte"), source)
    codes = _read_idx(_fashion_file(folder, f"{prefix}-labels-idx1-ubyte"), source)
    if images.ndim != 3 or codes.ndim != 1 or len(images) != len(codes) or codes.max() >= len(FASHION_CLASSES):
        raise DataError(f"fashion-mnist: images {images.shape} and labels {codes.shape} in {folder} do not match")
    rows = stratified_sample(codes, n, seed=0) if n is not None else np.arange(len(codes))
    labels = np.asarray(FASHION_CLASSES, dtype=object)[codes[rows]]
    notes = {"subset": f"stratified {len(rows)} of {len(codes)} {prefix} images (seed 0)" if n else f"all {prefix} images",
             "folder": str(folder)}
    data = RawData(images[rows], labels, np.zeros(len(rows), bool), rows.astype(str), "image",
                   source, "labels", list(FASHION_CLASSES), None, notes)
    return data, ImageArrayEncoder()


def _synthetic_raw(n: int, n_features: int, n_classes: int, seed: int, source: str) -> RawData:
    from sklearn.datasets import make_classification

    if n_features < 2 or n_classes < 2 or n < 2 * n_classes:
        raise DataError(f"{source}: synthetic data needs >= 2 features, >= 2 classes and >= 2 rows per class")
    clusters = 1 if n_classes > 4 else 2
    informative = min(n_features, max(n_features // 2, int(np.ceil(np.log2(n_classes * clusters))) + 1))
    redundant = min(n_features // 4, n_features - informative)
    X, y = make_classification(n_samples=n, n_features=n_features, n_informative=informative,
                               n_redundant=redundant, n_classes=n_classes, n_clusters_per_class=clusters,
                               flip_y=0.0, class_sep=1.0, random_state=seed)
    frame = pd.DataFrame(X.astype(np.float32), columns=[f"x{i}" for i in range(n_features)], copy=False)
    classes = [str(c) for c in range(n_classes)]
    labels = np.asarray(classes, dtype=object)[y]
    notes = {"generator": "sklearn.datasets.make_classification", "n_informative": informative,
             "n_redundant": redundant, "n_clusters_per_class": clusters, "seed": seed, "flip_y": 0.0}
    return RawData(frame, labels, np.zeros(n, bool), np.arange(n).astype(str), "tabular", source,
                   "labels", classes, None, notes)


def make_synthetic(n: int, n_features: int = 40, n_classes: int = 10, seed: int = 0) -> Dataset:
    """A ``make_classification`` data set with clean labels (``flip_y=0``), for benchmarks.

    Half the features informative, a quarter redundant (linear mixes), the rest noise.

    Example:
        >>> ds = make_synthetic(1000, n_features=20, n_classes=3, seed=1)
        >>> ds.X.shape, ds.n_classes
        ((1000, 20), 3)
    """
    source = f"synthetic:{n}:{n_features}:{n_classes}" + (f" (seed {seed})" if seed else "")
    return build_dataset(_synthetic_raw(int(n), int(n_features), int(n_classes), int(seed), source), TableEncoder())
