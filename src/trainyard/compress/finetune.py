"""A short training loop for students and pruned models: custom loss, cosine LR, best-on-val kept.

The main Trainer trains on hard labels only; distillation needs the teacher's logits per batch,
and pruning needs the masks' forward hooks left alone, so this small loop serves both.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..explain._common import accuracy, device_of

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, _soft: torch.Tensor | None = None) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def train_epochs(model: nn.Module, X: np.ndarray, y: np.ndarray, *, epochs: int, lr: float = 1e-3,
                 batch_size: int = 128, weight_decay: float = 0.0, seed: int = 0, loss_fn: LossFn = cross_entropy,
                 soft: np.ndarray | None = None, X_val: np.ndarray | None = None,
                 y_val: np.ndarray | None = None) -> list[dict]:
    """Train ``model`` in place for ``epochs``; with a validation split the best epoch's weights are kept.

    ``soft`` (one row per training row, e.g. teacher logits) is passed to ``loss_fn`` batch by batch.
    """
    history: list[dict] = []
    if epochs <= 0:
        return history
    dev = device_of(model)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    st = None if soft is None else torch.as_tensor(np.asarray(soft, dtype=np.float32))
    n = len(yt)
    bs = max(2, min(batch_size, n))
    steps = epochs * int(np.ceil(n / bs))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    has_val = X_val is not None and y_val is not None and len(y_val) > 0
    best_acc, best_state = -1.0, None
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for b in range(0, n, bs):
            idx = perm[b:b + bs]
            if len(idx) < 2:  # a batch of one breaks BatchNorm
                continue
            logits = model(Xt[idx].to(dev))
            loss = loss_fn(logits, yt[idx].to(dev), None if st is None else st[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        row = {"epoch": epoch, "train_loss": total / n}
        if has_val:
            row["val_acc"] = accuracy(model, X_val, y_val)
            if row["val_acc"] > best_acc:
                best_acc, best_state = row["val_acc"], copy.deepcopy(model.state_dict())
        history.append(row)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
