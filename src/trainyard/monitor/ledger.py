"""The ledger: per training sample, per epoch, the loss, margin, probability of the given label and
predicted class (plus, optionally, the full probability vector), taken from the forward pass the
training step already makes. Held-out rows (validation, test) get their eval-mode probabilities.

Storage: one raw float16 file per quantity under ``ledger/``, one row per epoch, appended at the end
of each epoch from an in-memory buffer of one epoch. So memory does not grow with epochs, and files
are read back as memory maps shaped (epochs, samples[, classes]).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import RunError
from ..run import read_json, write_json
from ..train.callback import Callback, Control, State

META = "meta.json"
PER_SAMPLE = {"loss": np.float16, "margin": np.float16, "p_given": np.float16, "pred": np.int16}


@dataclass
class LedgerArrays:
    """The ledger read back. Arrays are (epochs, n_train) unless noted."""

    loss: np.ndarray
    margin: np.ndarray
    p_given: np.ndarray
    pred: np.ndarray
    probs: np.ndarray | None  # (epochs, n_train, K) or None if not kept
    heldout_probs: np.ndarray | None  # (epochs, n_heldout, K)
    train_idx: np.ndarray  # dataset row of each ledger column
    heldout_idx: np.ndarray  # dataset row of each held-out column (validation rows, then test rows)
    y: np.ndarray | None  # labels of the whole dataset (as trained on), if the run saved them

    @property
    def n_epochs(self) -> int:
        return self.loss.shape[0]


class Ledger(Callback):
    """Records per-sample training dynamics. Cost: a softmax and a few gathers per batch."""

    order = 80

    def __init__(self, directory: str | os.PathLike, keep_probs: bool = True):
        self.dir = Path(directory)
        self.keep_probs = keep_probs
        self.epochs_done = 0

    # -- files ----------------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.bin"

    def _truncate(self, rows: int) -> None:
        """Drop epochs written after the last checkpoint (a killed run may have appended one)."""
        for name, size in self._row_bytes.items():
            p = self._path(name)
            if p.exists() and p.stat().st_size > rows * size:
                with open(p, "r+b") as f:
                    f.truncate(rows * size)

    def before_fit(self, state: State, control: Control) -> None:
        from ..train import distributed

        rank, size = distributed.world()
        own = np.asarray(state.extra.get("own_rows", np.arange(state.n_train)))
        if size > 1:  # each process keeps the rows it trains on, in its own shard
            self.dir = self.dir / f"rank{rank}"
        self.dir.mkdir(parents=True, exist_ok=True)
        n, k = len(own), state.n_classes
        self.own = own
        pos = np.full(state.n_train, -1, dtype=np.int64)
        pos[own] = np.arange(n)
        self._pos = torch.as_tensor(pos)
        if size > 1:
            np.save(self.dir / "rows.npy", own)
        self.n, self.k = n, k
        self.n_heldout = int(state.extra.get("n_heldout", 0))
        self.buf = {name: np.zeros(n, dtype=dt) for name, dt in PER_SAMPLE.items()}
        if self.keep_probs:
            self.buf["probs"] = np.zeros((n, k), dtype=np.float16)
        self._row_bytes = {name: b.nbytes for name, b in self.buf.items()}
        if not state.extra.get("resuming"):
            for name in list(self._row_bytes) + ["heldout_probs"]:
                if self._path(name).exists():
                    self._path(name).unlink()
        self._write_meta()

    def _write_meta(self) -> None:
        write_json(self.dir / META, {"n_train": self.n, "n_classes": self.k, "n_heldout": self.n_heldout,
                                     "epochs_done": self.epochs_done, "keep_probs": self.keep_probs,
                                     "source": "training forward pass"}, fsync=False)

    # -- recording ------------------------------------------------------------------------------
    def before_epoch(self, state: State, control: Control) -> None:
        # one float32 logit row per sample for this epoch; filled by one index_copy per batch, reduced to
        # loss/margin/probabilities once at the end of the epoch (far cheaper than per-batch reductions)
        if getattr(self, "_logits", None) is None or self._logits.device != state.device:
            self._logits = torch.zeros(self.n, self.k, device=state.device)
            self._y = state.extra["train_y"][torch.as_tensor(self.own)].to(state.device)
        self._logits.zero_()

    def after_loss(self, state: State, control: Control) -> None:
        self._logits.index_copy_(0, self._pos[state.batch_index].to(state.device), state.logits.detach().float())

    @torch.no_grad()
    def _reduce(self) -> None:
        logits, y = self._logits, self._y[:, None]
        logp = torch.log_softmax(logits, 1)
        given = logp.gather(1, y)[:, 0]
        other = logits.scatter(1, y, float("-inf")).max(1).values
        self.buf["loss"][:] = (-given).cpu().numpy()
        self.buf["p_given"][:] = given.exp().cpu().numpy()
        self.buf["margin"][:] = (logits.gather(1, y)[:, 0] - other).cpu().numpy()
        self.buf["pred"][:] = logits.argmax(1).cpu().numpy()
        if self.keep_probs:
            self.buf["probs"][:] = logp.exp().cpu().numpy()

    def after_epoch(self, state: State, control: Control) -> None:
        self._reduce()
        self._truncate(self.epochs_done)
        for name, b in self.buf.items():
            with open(self._path(name), "ab") as f:
                f.write(np.ascontiguousarray(b).tobytes())
        held = [state.extra[k] for k in ("val_probs", "extra_probs") if state.extra.get(k) is not None]
        if held:
            hp = np.concatenate(held).astype(np.float16)
            self.n_heldout = len(hp)
            p = self._path("heldout_probs")
            if p.exists() and p.stat().st_size > self.epochs_done * hp.nbytes:
                with open(p, "r+b") as f:
                    f.truncate(self.epochs_done * hp.nbytes)
            with open(p, "ab") as f:
                f.write(hp.tobytes())
        self.epochs_done = state.epoch + 1
        self._write_meta()

    def state_dict(self) -> dict:
        return {"epochs_done": self.epochs_done}

    def load_state_dict(self, d: dict) -> None:
        self.epochs_done = int(d["epochs_done"])
        self._truncate(self.epochs_done)
        self._write_meta()


def read_ledger(run_dir: str | os.PathLike, mmap: bool = True) -> LedgerArrays:
    """Read a run's ledger back as arrays shaped (epochs, samples) (memory-mapped, read-only).

    A data-parallel run's shards (``ledger/rank<r>/``) are merged into one ledger."""
    run_dir = Path(run_dir)
    d = run_dir / "ledger"
    shards = sorted(d.glob("rank*/" + META))
    if shards and not (d / META).exists():
        return _merge_shards(run_dir, [s.parent for s in shards])
    return _read_dir(run_dir, d, mmap)


def _merge_shards(run_dir: Path, dirs: list[Path]) -> LedgerArrays:
    parts = [(_read_dir(run_dir, p, mmap=True), np.load(p / "rows.npy", allow_pickle=False)) for p in dirs]
    e = min(p.n_epochs for p, _ in parts)
    n = sum(len(rows) for _, rows in parts)
    first = parts[0][0]

    def merge(name: str):
        if getattr(first, name) is None:
            return None
        a0 = getattr(first, name)
        out = np.zeros((e, n) + a0.shape[2:], dtype=a0.dtype)
        for p, rows in parts:
            out[:, rows] = getattr(p, name)[:e]
        return out

    return LedgerArrays(loss=merge("loss"), margin=merge("margin"), p_given=merge("p_given"), pred=merge("pred"),
                        probs=merge("probs"), heldout_probs=None if first.heldout_probs is None else first.heldout_probs[:e],
                        train_idx=first.train_idx if len(first.train_idx) == n else first.train_idx,
                        heldout_idx=first.heldout_idx, y=first.y)


def _read_dir(run_dir: Path, d: Path, mmap: bool) -> LedgerArrays:
    if not (d / META).exists():
        raise RunError(f"{run_dir}: this run has no ledger (train with the ledger on)")
    meta = read_json(d / META)
    e, n, k, m = meta["epochs_done"], meta["n_train"], meta["n_classes"], meta.get("n_heldout", 0)

    def arr(name: str, dtype, shape) -> np.ndarray | None:
        p = d / f"{name}.bin"
        if not p.exists() or e == 0 or 0 in shape:
            return None
        count = int(np.prod(shape))
        if p.stat().st_size < count * np.dtype(dtype).itemsize:
            raise RunError(f"{p}: ledger file is shorter than its meta.json says (run killed? use --resume)")
        if mmap:
            return np.memmap(p, dtype=dtype, mode="r", shape=shape)
        return np.fromfile(p, dtype=dtype, count=count).reshape(shape)

    out = {name: arr(name, dt, (e, n)) for name, dt in PER_SAMPLE.items()}
    probs = arr("probs", np.float16, (e, n, k)) if meta.get("keep_probs") else None
    held = arr("heldout_probs", np.float16, (e, m, k)) if m else None
    train_idx, heldout_idx, y = np.arange(n), np.zeros(0, np.int64), None
    splits = run_dir / "splits.npz"
    if splits.exists():
        with np.load(splits, allow_pickle=False) as z:
            train_idx = z["train"]
            heldout_idx = np.concatenate([z["val"], z["test"]])[:m] if m else np.zeros(0, np.int64)
    data = run_dir / "labels.npy"
    if data.exists():
        y = np.load(data, allow_pickle=False)
    return LedgerArrays(loss=out["loss"], margin=out["margin"], p_given=out["p_given"], pred=out["pred"],
                        probs=probs, heldout_probs=held, train_idx=train_idx, heldout_idx=heldout_idx, y=y)
