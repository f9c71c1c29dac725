"""Shared helpers of the benchmark scripts: machine description, atomic JSON output, mean ± std, and the
generated data two scripts share (instance-dependent noise probabilities, short topic texts)."""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import sklearn
    import torch

    import trainyard

    return {"cpu_cores": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
            "python": sys.version.split()[0], "torch": torch.__version__, "sklearn": sklearn.__version__,
            "trainyard": trainyard.__version__, "device": "cuda" if torch.cuda.is_available() else "cpu",
            "torch_threads": torch.get_num_threads()}


def write_result(name: str, obj: dict) -> Path:
    from trainyard.run import write_json

    RESULTS.mkdir(parents=True, exist_ok=True)
    return write_json(RESULTS / f"{name}.json", obj)


def mean_std(values) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    return {"mean": float(np.mean(v)) if len(v) else None, "std": float(np.std(v)) if len(v) else None,
            "n": int(len(v))}


def fmt(ms: dict, digits: int = 3) -> str:
    if ms.get("mean") is None:
        return "n/a"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def dump(obj) -> str:
    return json.dumps(obj, indent=2, default=str)


def clean_probs(ds, rows: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-fold class probabilities of a logistic regression on the *true* labels of ``rows`` (zeros
    elsewhere): the annotator whose confusions the ``instance`` noise copies. Another model family than
    the MLP every method trains, so the noise is not shaped by the model that has to find it."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = ds.X[rows].reshape(len(rows), -1)
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    p = np.zeros((len(ds.y), ds.n_classes))
    with warnings.catch_warnings():
        # on Fashion-MNIST lbfgs stops at max_iter short of its tolerance; the probabilities only pick
        # which rows flip and to what, so a looser fit is as good an annotator
        warnings.simplefilter("ignore", ConvergenceWarning)
        p[rows] = cross_val_predict(lr, X, ds.y[rows], cv=StratifiedKFold(3, shuffle=True, random_state=seed),
                                    method="predict_proba")
    return p


TOPICS = {"sport": "goal match team score player coach league win season ball referee stadium",
          "tech": "software chip code cloud server data network app device update bug model",
          "food": "recipe taste cook oven flavor dish bake spice fresh meal sauce kitchen",
          "money": "market stock price bank loan rate invest fund profit trade budget tax"}
FILLER = "the a of and to in is for on with new today report people big small great".split()


def topic_texts(n: int, seed: int):
    """``n`` short texts of four topics as a DataFrame (``text``, ``topic``). Each text draws about a
    third of its words from its own topic, a quarter from a random topic (possibly another) and the
    rest from common filler words, so some texts are genuinely ambiguous."""
    import pandas as pd

    rng = np.random.default_rng(1_000 + seed)
    names = list(TOPICS)
    words = {t: v.split() for t, v in TOPICS.items()}
    texts, topics = [], []
    for c in rng.integers(0, len(names), n):
        m = int(rng.integers(6, 14))
        own = rng.choice(words[names[c]], size=max(2, m // 3))
        other = rng.choice(words[names[rng.integers(len(names))]], size=m // 4)
        w = np.concatenate([own, other, rng.choice(FILLER, size=m - len(own) - len(other))])
        rng.shuffle(w)
        texts.append(" ".join(w))
        topics.append(names[c])
    return pd.DataFrame({"text": texts, "topic": topics})


def topic_dataset(n: int, seed: int):
    """``topic_texts(n, seed)`` loaded as trainyard loads a CSV with ``--target topic --text text``
    (TF-IDF features): the text data set of B1 and B2."""
    from trainyard.data import load

    return load(topic_texts(n, seed), target="topic", text="text")
