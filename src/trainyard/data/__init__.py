"""Loading data into a Dataset: tables, text columns, arrays, image folders, built-ins; splits and noise.

Example:
    >>> from trainyard.data import load, make_splits
    >>> ds = load("sklearn:wine")
    >>> splits = make_splits(ds.y, (0.7, 0.2, 0.1), seed=0)
"""
from .arrays import ImageArrayEncoder
from .builtins import BUILTIN_NAMES, make_synthetic
from .dataset import Dataset
from .encoder import TableEncoder, encoder_from_dict
from .images import ImageEncoder
from .loader import load, load_features, load_with_test
from .noise import inject_label_noise
from .split import Splits, kfold, make_splits, stratified_sample
from .tables import read_table

__all__ = [
    "BUILTIN_NAMES",
    "Dataset",
    "ImageArrayEncoder",
    "ImageEncoder",
    "Splits",
    "TableEncoder",
    "encoder_from_dict",
    "inject_label_noise",
    "kfold",
    "load",
    "load_features",
    "load_with_test",
    "make_splits",
    "make_synthetic",
    "read_table",
    "stratified_sample",
]
