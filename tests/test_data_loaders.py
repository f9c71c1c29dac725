"""Loaders, encoder, splits and noise on small data with known answers."""
from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pandas as pd
import pytest

from trainyard.data import (Dataset, ImageArrayEncoder, ImageEncoder, Splits, TableEncoder, encoder_from_dict,
                            inject_label_noise, kfold, load, load_features, load_with_test, make_splits, make_synthetic,
                            read_table, stratified_sample)
from trainyard.data.builtins import FASHION_ENV
from trainyard.data.labels import natural_sorted
from trainyard.errors import ConfigError, DataError


# ----------------------------------------------------------------------------- tables
@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, n).astype(float),
        "city": rng.choice(["paris", "rome", "oslo"], n),
        "zip": rng.choice([f"z{i}" for i in range(60)], n),  # 60 values: capped to 49 + <other>
        "user": [f"user{i}" for i in range(n)],  # unique per row: id-like, dropped
        "label": rng.choice(["10", "2", "b"], n),
    })
    frame.loc[[3, 7, 11], "age"] = np.nan
    frame.loc[[5], "age"] = np.inf
    frame.loc[[2, 4], "city"] = None
    return frame


def test_csv_loader_encodes_imputes_and_counts(tmp_path, table):
    path = tmp_path / "people.csv"
    table.to_csv(path, index=False)
    ds = load(path, target="label")
    assert ds.kind == "tabular" and ds.X.dtype == np.float32 and ds.X.shape[0] == 600
    assert ds.classes == ["2", "10", "b"]  # natural order: numbers numerically, then text
    assert ds.ids[:3].tolist() == ["0", "1", "2"]
    assert ds.info["missing"] == {"age": 4, "city": 2}
    assert ds.info["nonfinite"] == {"age": 1}
    assert "user" in ds.info["dropped"] and "user" not in ds.encoder.input_columns
    names = ds.feature_names
    assert names[:4] == ["age", "city=oslo", "city=paris", "city=rome"]
    assert sum(n.startswith("zip=") for n in names) == 50 and "zip=<other>" in names
    # imputed rows hold the standardised median of the present ages
    ages = table["age"].to_numpy()
    present = ages[np.isfinite(ages)]
    filled = np.where(np.isfinite(ages), ages, np.median(present))
    expected = (np.median(present) - filled.mean()) / filled.std()
    assert ds.X[[3, 5, 7, 11], 0] == pytest.approx([expected] * 4, rel=1e-5)
    city = ds.X[:, 1:4]
    assert (city.sum(axis=1) == 1).all()
    assert city[2].argmax() == ["oslo", "paris", "rome"].index(table["city"].mode()[0])
    assert isinstance(ds.raw, pd.DataFrame) and ds.raw.shape == table.shape
    assert (ds.y == pd.Series(table["label"]).map({"2": 0, "10": 1, "b": 2}).to_numpy()).all()


def test_parquet_matches_csv(tmp_path, table):
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet")
    a, b = load(tmp_path / "t.csv", target="label"), load(tmp_path / "t.parquet", target="label")
    assert a.feature_names == b.feature_names and a.classes == b.classes
    np.testing.assert_allclose(a.X, b.X, atol=1e-6)


def test_delimiters_and_nested_parquet(tmp_path):
    (tmp_path / "t.tsv").write_text("a\tb\ty\n1\tx\tp\n2\ty\tq\n")
    assert load(tmp_path / "t.tsv", target="y").feature_names == ["a", "b=x", "b=y"]
    (tmp_path / "semi.csv").write_text("a;y\n1;p\n2;q\n")
    assert load(tmp_path / "semi.csv", target="y").X.shape == (2, 1)
    pd.DataFrame({"a": [1.0, 2.0], "tags": [[1], [2, 3]], "y": ["p", "q"]}).to_parquet(tmp_path / "n.parquet")
    ds = load(tmp_path / "n.parquet", target="y")
    assert ds.feature_names == ["a"] and "tags" in ds.info["dropped"]


def test_text_column_is_tfidf(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["good movie", "bad film", "great good fun", "awful bad", "", "nice movie, nice cast"]
    frame = pd.DataFrame({"review": texts, "stars": [5, 1, 4, 1, 3, 5], "y": ["pos", "neg"] * 3})
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    ds = load(tmp_path / "reviews.csv", target="y", text="review")
    assert ds.kind == "text"
    cols = [i for i, n in enumerate(ds.feature_names) if n.startswith("review:")]
    reference = TfidfVectorizer().fit_transform([t for t in texts]).toarray()
    np.testing.assert_allclose(ds.X[:, cols], reference, atol=1e-6)
    assert ds.info["missing"] == {"review": 1}
    small = TableEncoder(text="review", max_vocabulary=3).fit(frame.drop(columns="y"))
    assert sum(n.startswith("review:") for n in small.feature_names_) == 3


def test_encoder_round_trip_and_new_data(table):
    enc = TableEncoder().fit(table.drop(columns="label"))
    X = enc.transform(table)
    state = json.loads(json.dumps(enc.to_dict()))
    again = encoder_from_dict(state)
    np.testing.assert_array_equal(again.transform(table), X)
    new = table.head(4).copy()
    new["city"] = ["tokyo", "rome", None, "oslo"]
    info: dict = {}
    X_new = again.transform(new, info=info)
    assert info["unseen"] == {"city": 1} and info["missing"]["city"] == 1
    assert X_new[0, 1:4].sum() == 0  # unseen category: all-zero one-hot
    with pytest.raises(DataError, match="missing column 'city'"):
        again.transform(table.drop(columns="city"), source="new.csv")


def test_encoder_text_round_trip():
    frame = pd.DataFrame({"t": ["a cat sat", "the dog ran", "a cat ran fast"], "v": [1.0, 2.0, 3.0]})
    enc = TableEncoder(text="t").fit(frame)
    again = TableEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    np.testing.assert_allclose(again.transform(frame), enc.transform(frame), atol=0)
    assert again.transform(pd.DataFrame({"t": ["unknown words only"], "v": [0.0]}))[0, :-1].sum() == 0


def test_dataframe_source_and_mixed_labels():
    frame = pd.DataFrame({"x": [1, 2, 3, 4, 5, 6], "y": [1, "b", 2, "b", 10, 1]})
    ds = load(frame, target="y")
    assert ds.classes == ["1", "2", "10", "b"] and ds.y.tolist() == [0, 3, 1, 3, 2, 0]


def test_natural_sort():
    assert natural_sorted(["img10", "img2", "b", "10", "2", "-1", "A"]) == ["-1", "2", "10", "A", "b", "img2", "img10"]


# ----------------------------------------------------------------------------- arrays
def test_npz_images_scaled_and_layouts(tmp_path):
    X = np.arange(4 * 3 * 2, dtype=np.uint8).reshape(4, 3, 2) * 10
    np.savez(tmp_path / "gray.npz", X=X, y=np.array([0, 1, 0, 1]))
    ds = load(tmp_path / "gray.npz")
    assert ds.kind == "image" and ds.X.shape == (4, 1, 3, 2)
    np.testing.assert_allclose(ds.X[:, 0], X / 255.0, rtol=1e-6)
    nhwc = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", X=nhwc, y=np.array(["cat", "dog", "cat", "dog"]),
             ids=np.array(["a", "b", "c", "d"]))
    ds = load(tmp_path / "rgb.npz")
    assert ds.X.shape == (4, 3, 5, 6) and ds.ids.tolist() == ["a", "b", "c", "d"]
    np.testing.assert_allclose(ds.X[1, 2], nhwc[1, :, :, 2] / 255.0, rtol=1e-6)
    assert ds.encoder.transform(nhwc[:1]).shape == (1, 3, 5, 6)
    again = ImageArrayEncoder.from_dict(json.loads(json.dumps(ds.encoder.to_dict())))
    np.testing.assert_array_equal(again.transform(nhwc), ds.X)


def test_npz_table_with_classes(tmp_path):
    X = np.random.default_rng(1).standard_normal((30, 4))
    np.savez(tmp_path / "t.npz", X=X, y=np.arange(30) % 3, classes=np.array(["low", "mid", "high"]))
    ds = load(tmp_path / "t.npz")
    assert ds.kind == "tabular" and ds.classes == ["low", "mid", "high"]
    assert ds.y.tolist() == (np.arange(30) % 3).tolist() and ds.feature_names == ["x0", "x1", "x2", "x3"]
    np.testing.assert_allclose(ds.X.mean(axis=0), 0, atol=1e-5)


# ----------------------------------------------------------------------------- image folders
def _save(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_sizes_modes_and_ids(tmp_path):
    white = np.full((6, 4, 3), 255, np.uint8)
    for i in range(3):
        _save(tmp_path / "ants" / f"{i}.png", white)
    _save(tmp_path / "bees" / "big.jpg", np.zeros((12, 8), np.uint8))  # other size, grayscale
    _save(tmp_path / "bees" / "sub" / "x.png", np.zeros((6, 4, 3), np.uint8))
    (tmp_path / "bees" / "notes.txt").write_text("not an image")
    ds = load(tmp_path)
    assert ds.kind == "image" and ds.X.shape == (5, 3, 6, 4)  # most common size (H=6, W=4), RGB
    assert ds.classes == ["ants", "bees"] and ds.ids.tolist() == [
        "ants/0.png", "ants/1.png", "ants/2.png", "bees/big.jpg", "bees/sub/x.png"]
    assert ds.X[:3].min() == 1.0 and ds.X[3:].max() == 0.0
    assert ds.info["skipped"] == {"bees/notes.txt": "not an image file"}
    small = load(tmp_path, image_size=3)
    assert small.X.shape == (5, 3, 3, 3)
    again = ImageEncoder.from_dict(json.loads(json.dumps(ds.encoder.to_dict())))
    np.testing.assert_array_equal(again.transform([str(tmp_path / "ants" / "0.png")]), ds.X[:1])


def test_image_folder_all_gray_stays_one_channel(tmp_path):
    for cls in ("a", "b"):
        _save(tmp_path / cls / "0.png", np.full((5, 5), 51, np.uint8))
    ds = load(tmp_path)
    assert ds.X.shape == (2, 1, 5, 5) and np.allclose(ds.X, 0.2)


# ----------------------------------------------------------------------------- built-ins
def test_sklearn_builtins():
    from sklearn.datasets import load_digits, load_iris

    digits = load("sklearn:digits")
    assert digits.X.shape == (1797, 1, 8, 8) and digits.X.max() == 1.0 and digits.kind == "image"
    assert (digits.y == load_digits().target).all()
    np.testing.assert_allclose(digits.X[0, 0], load_digits().images[0] / 16.0, rtol=1e-6)
    iris = load("sklearn:iris")
    assert iris.X.shape == (150, 4) and iris.classes == ["setosa", "versicolor", "virginica"]
    assert (iris.y == load_iris().target).all()
    assert load("sklearn:wine").X.shape == (178, 13)
    assert load("sklearn:breast_cancer").X.shape == (569, 30)


def _fake_fashion(folder, n_train=200, n_test=50):
    rng = np.random.default_rng(0)
    folder.mkdir()
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 2049, n) + labels.tobytes())
    return folder


def test_fashion_mnist_subset_and_test(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_ENV, str(_fake_fashion(tmp_path / "fm")))
    ds = load("fashion-mnist:50")
    assert ds.X.shape == (50, 1, 28, 28) and np.bincount(ds.y).tolist() == [5] * 10
    assert ds.classes[0] == "T-shirt/top" and len(load("fashion-mnist")) == 200
    both, splits = load_with_test("fashion-mnist:100", "fashion-mnist:test")
    assert len(both) == 150 and splits.test.tolist() == list(range(100, 150))
    assert both.ids[100] == "test:0"


def test_fashion_mnist_missing_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_ENV, str(tmp_path / "absent"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load("fashion-mnist:10")


def test_synthetic():
    a, b = make_synthetic(300, n_features=12, n_classes=3, seed=4), make_synthetic(300, 12, 3, seed=4)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.X.shape == (300, 12) and a.n_classes == 3 and np.bincount(a.y).min() >= 95
    assert load("synthetic:200:8:4").X.shape == (200, 8)


# ----------------------------------------------------------------------------- splits
def test_make_splits_stratified_disjoint():
    y = np.repeat(np.arange(4), [100, 50, 30, 20])
    s = make_splits(y, (0.7, 0.2, 0.1), seed=0)
    assert s.sizes() == {"train": 140, "val": 40, "test": 20}
    s.check(len(y))
    assert sorted(np.concatenate([s.train, s.val, s.test]).tolist()) == list(range(200))
    for part, share in ((s.train, 0.7), (s.val, 0.2), (s.test, 0.1)):
        per_class = np.bincount(y[part], minlength=4)
        assert np.all(np.abs(per_class - share * np.bincount(y)) <= 1)
    assert make_splits(y, seed=0).val.tolist() == s.val.tolist()
    assert make_splits(y, seed=1).val.tolist() != s.val.tolist()


def test_make_splits_tiny_classes_keep_a_training_row():
    y = np.array([0] * 20 + [1, 2, 2])
    s = make_splits(y, (0.6, 0.2, 0.2), seed=3)
    s.check(len(y))
    assert 20 in s.train and set(np.flatnonzero(y == 2)) & set(s.train)
    assert len(s.train) + len(s.val) + len(s.test) == len(y)


def test_splits_npz_round_trip(tmp_path):
    s = make_splits(np.arange(50) % 2, seed=0)
    s.to_npz(tmp_path / "splits.npz")
    back = Splits.from_npz(tmp_path / "splits.npz")
    for a, b in ((s.train, back.train), (s.val, back.val), (s.test, back.test)):
        np.testing.assert_array_equal(a, b)


def test_kfold_each_row_held_out_once():
    y = np.repeat([0, 1, 2], [50, 30, 3])
    folds = kfold(y, k=5, seed=0)
    held = np.concatenate([h for _, h in folds])
    assert sorted(held.tolist()) == list(range(len(y)))
    assert max(len(h) for _, h in folds) - min(len(h) for _, h in folds) <= 1
    for train, heldout in folds:
        assert not set(train) & set(heldout)
        assert np.bincount(y[heldout], minlength=3)[0] == 10 and np.bincount(y[heldout], minlength=3)[1] == 6


def test_stratified_sample():
    y = np.repeat([0, 1], [900, 100])
    idx = stratified_sample(y, 100, seed=0)
    assert len(idx) == 100 and np.bincount(y[idx]).tolist() == [90, 10]


# ----------------------------------------------------------------------------- noise
@pytest.mark.parametrize("rate", [0.1, 0.2, 0.4])
def test_noise_exact_count_symmetric(rate):
    y = np.arange(1000) % 5
    noisy, flipped = inject_label_noise(y, rate, "symmetric", n_classes=5, seed=0)
    assert flipped.sum() == round(rate * 1000)
    assert (noisy[flipped] != y[flipped]).all() and (noisy[~flipped] == y[~flipped]).all()


def test_noise_symmetric_goes_to_each_other_class_evenly():
    y = np.zeros(40_000, dtype=np.int64)
    noisy, flipped = inject_label_noise(y, 0.5, "symmetric", n_classes=5, seed=1)
    counts = np.bincount(noisy[flipped], minlength=5)
    assert counts[0] == 0 and np.all(np.abs(counts[1:] - 5000) < 250)


def test_noise_class_conditional_and_idx():
    y = np.arange(100) % 4
    idx = np.arange(50)
    noisy, flipped = inject_label_noise(y, 0.2, "class_conditional", n_classes=4, seed=2, idx=idx)
    assert flipped.sum() == 10 and not flipped[50:].any()
    assert (noisy[flipped] == (y[flipped] + 1) % 4).all()


def test_noise_instance_flips_hard_rows_to_their_confusion():
    # half the rows are "easy" (p(true) 0.99), half "hard" (p(true) 0.4, the rest on one rival class)
    rng = np.random.default_rng(0)
    n, k = 4000, 4
    y = rng.integers(0, k, n)
    rival = (y + 1 + rng.integers(0, k - 1, n)) % k
    hard = np.arange(n) < n // 2
    probs = np.full((n, k), 0.0)
    probs[np.arange(n), y] = np.where(hard, 0.4, 0.99)
    probs[np.arange(n), rival] += np.where(hard, 0.5, 0.005)
    probs += (1 - probs.sum(1, keepdims=True)) / k
    idx = np.arange(n - 500)  # the last 500 rows (a test split) keep their labels
    noisy, flipped = inject_label_noise(y, 0.2, "instance", n_classes=k, seed=3, idx=idx, probs=probs)
    assert flipped.sum() == round(0.2 * len(idx)) and not flipped[idx[-1] + 1:].any()
    assert (noisy[flipped] == rival[flipped]).all() and (noisy[~flipped] == y[~flipped]).all()
    # weight 0.6 against 0.01: the hard rows take almost all of the flips
    assert flipped[hard].sum() / flipped.sum() > 0.95


def test_noise_instance_needs_probs_of_the_right_shape():
    y = np.arange(100) % 4
    with pytest.raises(ConfigError, match="needs probs"):
        inject_label_noise(y, 0.2, "instance", n_classes=4)
    with pytest.raises(ConfigError, match=r"\(100, 4\)"):
        inject_label_noise(y, 0.2, "instance", n_classes=4, probs=np.ones((100, 3)) / 3)


# ----------------------------------------------------------------------------- separate test file
def test_load_with_test_uses_train_encoder(tmp_path):
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.standard_normal(60), "c": rng.choice(["x", "y"], 60), "y": ["p", "q"] * 30})
    test = pd.DataFrame({"a": [0.0, 100.0], "c": ["x", "z"], "y": ["q", "p"]})
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    ds, splits = load_with_test(tmp_path / "train.csv", tmp_path / "test.csv", target="y", fractions=(0.6, 0.2, 0.2))
    assert isinstance(ds, Dataset) and len(ds) == 62
    assert splits.sizes() == {"train": 45, "val": 15, "test": 2} and splits.test.tolist() == [60, 61]
    assert ds.ids[-2:].tolist() == ["test:0", "test:1"] and ds.y[-2:].tolist() == [1, 0]
    np.testing.assert_array_equal(ds.X[60:], ds.encoder.transform(test))
    assert ds.info["test"]["unseen"] == {"c": 1}
    pd.DataFrame({"a": [1.0], "c": ["x"], "y": ["r"]}).to_csv(tmp_path / "bad_test.csv", index=False)
    with pytest.raises(DataError, match="bad_test.csv.*'r'"):
        load_with_test(tmp_path / "train.csv", tmp_path / "bad_test.csv", target="y")


# ----------------------------------------------------------------------------- new data for prediction
def test_load_features_for_prediction(tmp_path, table):
    table.to_csv(tmp_path / "train.csv", index=False)
    ds = load(tmp_path / "train.csv", target="label")
    table.head(5).drop(columns="label").to_csv(tmp_path / "new.csv", index=False)
    X, ids, info = load_features(tmp_path / "new.csv", ds.encoder)
    np.testing.assert_array_equal(X, ds.X[:5])
    np.testing.assert_array_equal(ds.encoder.transform(read_table(tmp_path / "new.csv")), X)
    assert ids.tolist() == ["0", "1", "2", "3", "4"] and info["missing"] == {"age": 1, "city": 2}
    table.head(2).drop(columns=["label", "zip"]).to_csv(tmp_path / "lacking.csv", index=False)
    with pytest.raises(DataError, match="lacking.csv: missing column 'zip'"):
        load_features(tmp_path / "lacking.csv", ds.encoder)

    images = np.random.default_rng(0).integers(0, 256, (6, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "img.npz", X=images, y=np.arange(6) % 2)
    np.savez(tmp_path / "unlabelled.npz", X=images[:2])
    img = load(tmp_path / "img.npz")
    X, ids, _ = load_features(tmp_path / "unlabelled.npz", img.encoder)
    np.testing.assert_array_equal(X, img.X[:2])

    for name in ("pics/a/0.png", "pics/b/0.png", "new/x.png", "new/deeper/y.png"):
        _save(tmp_path / name, np.full((3, 3), 255, np.uint8))
    pics = load(tmp_path / "pics")
    X, ids, _ = load_features(tmp_path / "new", pics.encoder)
    assert X.shape == (2, 1, 3, 3) and X.min() == 1.0 and ids.tolist() == ["x.png", "deeper/y.png"]
