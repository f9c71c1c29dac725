import os

import numpy as np
import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("TRAINYARD_QUIET", "1")


@pytest.fixture(scope="session")
def digits():
    """sklearn digits as a 1x8x8 image Dataset with a fixed stratified split."""
    from types import SimpleNamespace

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from trainyard.data.dataset import Dataset

    d = load_digits()
    ds = Dataset((d.data / 16).reshape(-1, 1, 8, 8), d.target, [str(i) for i in range(10)],
                 np.arange(len(d.target)), "image")
    idx = np.arange(len(ds))
    tr, rest = train_test_split(idx, test_size=0.3, stratify=ds.y, random_state=0)
    va, te = train_test_split(rest, test_size=1 / 3, stratify=ds.y[rest], random_state=0)
    return ds, SimpleNamespace(train=tr, val=va, test=te)


@pytest.fixture
def blobs():
    """Well-separated 4-class Gaussian blobs (tabular), 600 rows, with a split."""
    from types import SimpleNamespace

    from trainyard.data.dataset import Dataset

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 6, size=(4, 5))
    y = np.repeat(np.arange(4), 150)
    X = centers[y] + rng.normal(0, 1, size=(600, 5))
    perm = rng.permutation(600)
    ds = Dataset(X, y, ["a", "b", "c", "d"], np.arange(600), "tabular", [f"f{i}" for i in range(5)])
    return ds, SimpleNamespace(train=perm[:420], val=perm[420:540], test=perm[540:])
