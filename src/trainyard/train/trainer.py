"""The training loop. Short on purpose: every extra (mixed precision, clipping, schedules, early
stopping, checkpoints, the ledger, the model monitor) is a callback in its own file."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .callback import Callback, Control, State
from .config import TrainConfig
from .metrics import classification_metrics


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # no weight decay on biases and normalisation parameters
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    if cfg.optimizer == "adafactor":
        return torch.optim.Adafactor(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _epoch_seed(seed: int, epoch: int) -> int:
    # each epoch's randomness (shuffle, dropout) depends only on (seed, epoch): resume replays it exactly
    return (int(seed) * 1_000_003 + int(epoch) * 7919) % (2**31 - 1)


class Trainer:
    """Trains ``model`` with ``config`` and ``callbacks``.

    >>> trainer = Trainer(model, TrainConfig(epochs=5))          # doctest: +SKIP
    >>> state = trainer.fit(X_train, y_train, X_val, y_val)      # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, config: TrainConfig | None = None,
                 callbacks: Iterable[Callback] = (), run=None):
        self.config = config or TrainConfig()
        self.device = pick_device(self.config.device)
        self.model = model.to(self.device)
        self.callbacks: list[Callback] = sorted(callbacks, key=lambda c: c.order)
        self.run = run
        self.state = State(model=self.model, config=self.config, run=run, device=self.device)
        self.control = Control()

    # -- events -----------------------------------------------------------------------------
    def _emit(self, event: str) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self.state, self.control)

    # -- checkpoint payload -------------------------------------------------------------------
    def resume_payload(self) -> dict:
        s = self.state
        return {"model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(),
                "scheduler": s.scheduler.state_dict() if s.scheduler is not None else None,
                "epoch": s.epoch, "step": s.step, "history": s.history, "best_score": s.best_score,
                "best_epoch": s.best_epoch,
                "callbacks": {type(cb).__name__: cb.state_dict() for cb in self.callbacks}}

    def _load_resume(self, payload: dict) -> int:
        s = self.state
        s.model.load_state_dict(payload["model"])
        s.optimizer.load_state_dict(payload["optimizer"])
        if s.scheduler is not None and payload.get("scheduler") is not None:
            s.scheduler.load_state_dict(payload["scheduler"])
        s.step, s.history = payload["step"], list(payload["history"])
        s.best_score, s.best_epoch = payload["best_score"], payload["best_epoch"]
        for cb in self.callbacks:
            d = payload.get("callbacks", {}).get(type(cb).__name__)
            if d:
                cb.load_state_dict(d)
        return int(payload["epoch"]) + 1

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
            sample_weight: np.ndarray | None = None, X_extra: np.ndarray | None = None,
            resume_from: str | Path | None = None) -> State:
        """Train on (X, y); evaluate on (X_val, y_val) each epoch. ``X_extra`` are further rows
        (e.g. the test split) whose predictions — never labels — the ledger records each epoch."""
        cfg, s, dev = self.config, self.state, self.device
        torch.manual_seed(cfg.seed)
        Xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
        yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
        n = len(yt)
        s.n_train, s.n_classes = n, int(getattr(self.model, "spec", {}).get("n_classes", int(yt.max()) + 1))
        w = None if sample_weight is None else torch.as_tensor(np.asarray(sample_weight, dtype=np.float32))
        class_w = None
        if cfg.class_weight == "balanced":
            counts = np.bincount(np.asarray(y), minlength=s.n_classes).astype(np.float64)
            class_w = torch.as_tensor(n / (s.n_classes * np.maximum(counts, 1)), dtype=torch.float32, device=dev)
        from . import distributed

        parallel = distributed.init(dev)
        own = distributed.own_rows(n) if parallel else np.arange(n)
        _, world_size = distributed.world()
        net = self.model
        if parallel:  # same global batch size: each of the processes takes its share of it
            net = torch.nn.parallel.DistributedDataParallel(self.model)
        from .config import auto_batch_size

        s.extra["batch_size"] = cfg.batch_size or auto_batch_size(n)
        bs = max(1, min(s.extra["batch_size"] // (world_size if parallel else 1), len(own)))
        # every process must make the same number of steps (DDP all-reduces at each one)
        s.batches_per_epoch = int(np.ceil(int(np.ceil(n / world_size)) / bs)) if parallel else int(np.ceil(n / bs))
        s.max_epochs = cfg.epochs
        s.optimizer = make_optimizer(self.model, cfg)
        n_heldout = (len(X_val) if X_val is not None and y_val is not None else 0) + (len(X_extra) if X_extra is not None else 0)
        s.extra.update(trainer=self, train_X=Xt, train_y=yt, n_heldout=n_heldout, own_rows=own)
        own_t = torch.as_tensor(own)
        start_epoch = 0
        s.epoch = 0
        resuming = resume_from is not None and Path(resume_from).exists()
        s.extra["resuming"] = resuming  # callbacks keep their files; their state is restored just below
        self._emit("before_fit")
        if resuming:
            from .checkpoint import load_checkpoint

            start_epoch = self._load_resume(load_checkpoint(resume_from))
            s.epoch = start_epoch
        scaler = s.extra.get("grad_scaler")
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            s.epoch = epoch
            torch.manual_seed(_epoch_seed(cfg.seed, epoch))
            gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
            perm = own_t[torch.randperm(len(own_t), generator=gen)]
            self.model.train()
            self._emit("before_epoch")
            loss_sum, correct, seen, gn_sum, gn_count = 0.0, 0, 0, 0.0, 0
            s.optimizer.zero_grad(set_to_none=True)
            for b in range(s.batches_per_epoch):
                idx = perm[b * bs:(b + 1) * bs]
                if len(idx) == 0:  # a process with one row fewer than the others repeats a batch
                    idx = perm[-bs:]
                elif len(idx) < 2 and len(perm) > 1 and b > 0:
                    idx = perm[(b - 1) * bs:]  # a batch of one breaks BatchNorm: fold it into a full batch
                s.batch_in_epoch, s.batch_idx, s.batch_index = b, idx.numpy(), idx
                s.xb, s.yb = Xt[idx].to(dev, non_blocking=True), yt[idx].to(dev, non_blocking=True)
                self._emit("before_batch")
                s.logits = net(s.xb)
                lps = F.cross_entropy(s.logits.float(), s.yb, weight=class_w, reduction="none",
                                      label_smoothing=cfg.label_smoothing)
                if w is not None:
                    lps = lps * w[idx].to(dev)
                # for callbacks that reshape the loss (mixup, forward correction) with the same weights
                s.extra["batch_weight"] = w[idx].to(dev) if w is not None else None
                s.extra["class_weight"] = class_w
                s.loss_per_sample = lps
                s.loss = lps.mean() / cfg.accumulate
                self._emit("after_loss")
                with torch.no_grad():
                    loss_sum += float(lps.detach().sum())
                    correct += int((s.logits.detach().argmax(1) == s.yb).sum())
                    seen += len(idx)
                (scaler.scale(s.loss) if scaler is not None else s.loss).backward()
                s.extra["stepped"] = False
                if (b + 1) % cfg.accumulate == 0 or b == s.batches_per_epoch - 1:
                    if scaler is not None:
                        scaler.unscale_(s.optimizer)
                    s.grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf")))
                    if np.isfinite(s.grad_norm):
                        gn_sum, gn_count = gn_sum + s.grad_norm, gn_count + 1
                    self._emit("before_step")
                    if not self.control.skip_step:
                        if scaler is not None:
                            scaler.step(s.optimizer)
                            scaler.update()
                        else:
                            s.optimizer.step()
                        s.step += 1
                        s.extra["stepped"] = True
                    self.control.skip_step = False
                    s.optimizer.zero_grad(set_to_none=True)
                self._emit("after_batch")
            loss_sum, correct, seen = distributed.all_sum([loss_sum, correct, seen])
            row = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1)}
            if X_val is not None and y_val is not None and len(y_val):
                pv = self.predict_proba(X_val)
                s.extra["val_probs"] = pv
                row.update(classification_metrics(y_val, pv, prefix="val_"))
            if X_extra is not None and len(X_extra):
                s.extra["extra_probs"] = self.predict_proba(X_extra)
            row["lr"] = float(s.optimizer.param_groups[0]["lr"])
            row["grad_norm"] = gn_sum / gn_count if gn_count else float("nan")
            row["seconds"] = time.perf_counter() - t0
            s.metrics = row
            s.history.append(row)
            self._emit("after_epoch")
            row["seconds"] = time.perf_counter() - t0  # include callback time
            if not np.isfinite(row["train_loss"]):
                s.extra["diverged_at"] = epoch
                self.control.should_stop = True
            if self.control.should_stop:
                break
        self._emit("after_fit")
        return s

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        return predict_proba(self.model, X, batch_size, self.device, self.config.precision)


@torch.no_grad()
def predict_proba(model: nn.Module, X: np.ndarray, batch_size: int = 2048, device: torch.device | None = None,
                  precision: str = "32") -> np.ndarray:
    """Eval-mode softmax probabilities in batches, as float32 numpy."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    out = []
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
    for i in range(0, len(Xt), batch_size):
        xb = Xt[i:i + batch_size].to(device)
        if precision == "bf16":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                logits = model(xb)
        else:
            logits = model(xb)
        out.append(torch.softmax(logits.float(), 1).cpu().numpy())
    model.train(was_training)
    if not out:
        return np.zeros((0, model.spec["n_classes"]), np.float32)
    return np.concatenate(out).astype(np.float32)


@torch.no_grad()
def embed(model: nn.Module, X: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """Penultimate features (``model.embed``) in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
    out: np.ndarray | None = None
    # filled in place: a list of batches plus np.concatenate would hold the features twice
    for i in range(0, len(Xt), batch_size):
        part = model.embed(Xt[i:i + batch_size].to(device)).float().cpu().numpy()
        if out is None:
            out = np.empty((len(Xt),) + part.shape[1:], dtype=np.float32)
        out[i:i + len(part)] = part
    model.train(was_training)
    return out if out is not None else np.zeros((0, 0), np.float32)


def default_callbacks(cfg: TrainConfig, run=None, quiet: bool = True, extra: Sequence[Callback] = (),
                      main: bool = True) -> list[Callback]:
    """The callbacks ``fit`` uses for a config. ``main=False`` (a data-parallel process other than
    rank 0) keeps only what changes training and the process's own ledger shard."""
    from .amp import MixedPrecision
    from .clipping import clip_callback
    from .early_stop import EarlyStopping
    from .penalties import L1Penalty
    from .schedule import LRSchedule

    cbs: list[Callback] = [LRSchedule(cfg.schedule, cfg.warmup)]
    if cfg.precision != "32":
        cbs.append(MixedPrecision(cfg.precision))
    clip = clip_callback(cfg.clip)
    if clip is not None:
        cbs.append(clip)
    if cfg.l1 > 0:
        cbs.append(L1Penalty(cfg.l1))
    if cfg.patience:
        cbs.append(EarlyStopping(cfg.patience))
    if run is not None:
        if cfg.ledger:
            from ..monitor.ledger import Ledger

            cbs.append(Ledger(run.ledger_dir, keep_probs=cfg.ledger_probs))
        if cfg.monitor and main:
            try:
                from ..monitor.model_monitor import ModelMonitor
            except ImportError:  # pragma: no cover - monitor module optional during development
                ModelMonitor = None
            if ModelMonitor is not None:
                cbs.append(ModelMonitor())
        if cfg.checkpoint and main:
            from .checkpoint import Checkpoint

            cbs.append(Checkpoint(run.checkpoint_dir))
    if not quiet and main:
        from .progress import ProgressBar

        cbs.append(ProgressBar())
    cbs.extend(extra)
    return cbs
