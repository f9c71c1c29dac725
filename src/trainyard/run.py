"""The Run directory (``runs/<name>/``): create, write atomically, read back, resume.

Stages talk through these files (see shared/DESIGN.md), so each can be rerun or inspected alone.
Every write goes to a temporary file in the same folder and is renamed into place, so a killed
process never leaves a half-written file.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .errors import RunError

RUN_JSON = "run.json"
METRICS_CSV = "metrics.csv"
SAMPLES_CSV = "samples.csv"
DATA_HEALTH = "data_health.json"
MODEL_HEALTH = "model_health.json"
REPORT_HTML = "report.html"
LEDGER_DIR = "ledger"
CHECKPOINT_DIR = "checkpoints"


def atomic_write(path: str | os.PathLike, writer: Callable[[str], None] | bytes | str, fsync: bool = True) -> Path:
    """Write ``path`` atomically: ``writer`` gets a temp path (or pass bytes/str content).

    The rename alone already protects against a killed process; ``fsync`` also survives a power
    cut, at a few milliseconds a file (the ledger skips it: it writes every epoch)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if callable(writer):
            writer(tmp)
        else:
            mode = "wb" if isinstance(writer, bytes) else "w"
            with open(tmp, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
                f.write(writer)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean_floats(o: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(o, float):
        return o if o == o and o not in (float("inf"), float("-inf")) else None
    if isinstance(o, dict):
        return {str(k): _clean_floats(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean_floats(v) for v in o]
    return o


def write_json(path: str | os.PathLike, obj: Any, fsync: bool = True) -> Path:
    """Atomically write ``obj`` as pretty JSON (NaN/inf become null)."""
    text = json.dumps(_clean_floats(json.loads(json.dumps(obj, default=_json_default))), indent=2)
    return atomic_write(path, text + "\n", fsync=fsync)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not valid JSON ({e})") from None


def versions() -> dict[str, str]:
    import numpy
    import sklearn
    import torch

    from . import __version__

    return {"trainyard": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "sklearn": sklearn.__version__, "platform": platform.platform()}


class Run:
    """A run directory. ``Run.create(path)`` for a new run, ``Run(path)`` to read one back."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- creation -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, config: dict | None = None, *, resume: bool = False) -> "Run":
        """Create (or, with ``resume``, reopen) a run directory and mark it running."""
        run = cls(path)
        exists = (run.path / RUN_JSON).exists()
        run.path.mkdir(parents=True, exist_ok=True)
        if resume and exists:
            meta = run.meta
            meta["status"] = "running"
            meta.setdefault("resumed_at", []).append(time.time())
            run.write_meta(meta)
        else:
            run.write_meta({"status": "running", "created": time.time(), "config": config or {},
                            "versions": versions()})
        return run

    # -- metadata -------------------------------------------------------------------------
    @property
    def meta(self) -> dict:
        return read_json(self.path / RUN_JSON)

    def write_meta(self, meta: dict) -> None:
        write_json(self.path / RUN_JSON, meta)

    def update_meta(self, **fields: Any) -> dict:
        meta = self.meta if (self.path / RUN_JSON).exists() else {}
        meta.update(fields)
        self.write_meta(meta)
        return meta

    def finish(self, status: str = "finished", **fields: Any) -> None:
        self.update_meta(status=status, finished=time.time(), **fields)

    # -- files ------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def ledger_dir(self) -> Path:
        return self.path / LEDGER_DIR

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    def write_json(self, name: str, obj: Any) -> Path:
        return write_json(self.path / name, obj)

    def read_json(self, name: str) -> Any:
        return read_json(self.path / name)

    def write_csv(self, name: str, df) -> Path:
        """Atomically write a pandas DataFrame as CSV (no index)."""
        return atomic_write(self.path / name, lambda tmp: df.to_csv(tmp, index=False))

    def read_csv(self, name: str):
        import pandas as pd

        p = self.path / name
        if not p.exists():
            raise RunError(f"{p}: file not found (has this stage run?)")
        return pd.read_csv(p, keep_default_na=False, na_values=[""])

    def check(self) -> "Run":
        """Raise RunError if this is not a run directory."""
        if not (self.path / RUN_JSON).exists():
            raise RunError(f"{self.path}: not a Trainyard run directory (no {RUN_JSON})")
        return self

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"
