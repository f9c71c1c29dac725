"""Shared helpers of the benchmark scripts: machine description, atomic JSON output, mean ± std."""
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
