"""Knowledge distillation (Hinton, Vinyals & Dean 2015): a small student learns the teacher's soft targets."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..explain._common import accuracy, load_finished_run, pick_split, predict_logits, split_indices
from .finetune import cross_entropy, train_epochs
from .model_file import model_size_bytes, n_parameters, save_model
from .students import build_student

DISTILL_JSON = "distill.json"
STUDENT_PT = "student.pt"


def distillation_loss(student_logits: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.7) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, y).

    The T^2 factor keeps the soft-target gradients on the same scale as the hard-label ones when
    T changes (Hinton et al. 2015, section 2).
    """
    t = float(temperature)
    soft = F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, y)
    return alpha * t * t * soft + (1.0 - alpha) * hard


def fit_input_scaling(model: nn.Module, X: np.ndarray) -> None:
    """Fit a zoo model's input standardisation on training rows (MLPs see flattened inputs)."""
    std = getattr(model, "standardize", None)
    if std is None or not hasattr(std, "fit"):
        return
    std.fit(X.reshape(len(X), -1) if std.mean.ndim == 1 else X)


def _describe(model: nn.Module, X_val, y_val, X_test, y_test) -> dict:
    return {"n_params": n_parameters(model), "size_bytes": model_size_bytes(model),
            "val_accuracy": accuracy(model, X_val, y_val), "test_accuracy": accuracy(model, X_test, y_test)}


def distill(teacher: nn.Module, data, splits: Any = None, *, student: str = "mlp:64", temperature: float = 4.0,
            alpha: float = 0.7, epochs: int = 30, lr: float = 5e-3, batch_size: int = 64,
            weight_decay: float = 1e-4, seed: int = 0, scratch_baseline: bool = False) -> tuple[nn.Module, dict]:
    """Train a ``student`` (e.g. ``mlp:64``) on the teacher's soft targets of the training split.

    Returns ``(student_model, report)``; the report has parameter counts, sizes in bytes and
    validation/test accuracy of teacher and student, their ratios, and how often the student
    agrees with the teacher on the test split. ``scratch_baseline`` also trains the same student on
    hard labels only, to show what distillation adds.

    >>> student, report = distill(teacher, data, splits, student="mlp:64")   # doctest: +SKIP
    """
    n = len(data)
    tr = split_indices(splits, "train", n) if splits is not None else np.arange(n)
    va = split_indices(splits, "val", n) if splits is not None else np.zeros(0, dtype=np.int64)
    te = pick_split(splits, n, "test", "val")
    X_tr, y_tr = data.X[tr], data.y[tr]
    X_va, y_va, X_te, y_te = data.X[va], data.y[va], data.X[te], data.y[te]
    teacher_logits = predict_logits(teacher, X_tr)

    def make() -> nn.Module:
        torch.manual_seed(seed)
        net = build_student(student, data.input_shape, data.n_classes)
        fit_input_scaling(net, X_tr)
        return net

    net = make()
    history = train_epochs(net, X_tr, y_tr, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                           seed=seed, soft=teacher_logits, X_val=X_va, y_val=y_va,
                           loss_fn=lambda s, y, t: distillation_loss(s, y, t, temperature, alpha))
    t_info = _describe(teacher, X_va, y_va, X_te, y_te)
    s_info = _describe(net, X_va, y_va, X_te, y_te)
    agree = float((predict_logits(net, X_te).argmax(1) == predict_logits(teacher, X_te).argmax(1)).mean()) \
        if len(te) else float("nan")
    report = {"student_name": student, "temperature": float(temperature), "alpha": float(alpha), "epochs": int(epochs),
              "lr": float(lr), "seed": int(seed), "n_train": int(len(tr)), "n_test": int(len(te)),
              "teacher": t_info, "student": s_info,
              "param_ratio": s_info["n_params"] / max(t_info["n_params"], 1),
              "size_ratio": s_info["size_bytes"] / max(t_info["size_bytes"], 1),
              "accuracy_drop": t_info["test_accuracy"] - s_info["test_accuracy"],
              "agreement_with_teacher": agree, "history": history}
    if scratch_baseline:
        base = make()
        train_epochs(base, X_tr, y_tr, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                     seed=seed, loss_fn=cross_entropy, X_val=X_va, y_val=y_va)
        report["scratch_student_test_accuracy"] = accuracy(base, X_te, y_te)
    return net, report


def distill_run(run_dir: str | os.PathLike, *, student: str = "mlp:64", **options: Any) -> dict:
    """Distill a finished run's model; writes ``student.pt`` and ``distill.json`` into the run."""
    run, teacher, data, splits = load_finished_run(run_dir)
    net, report = distill(teacher, data, splits, student=student, **options)
    save_model(net, run.file(STUDENT_PT), classes=list(data.classes), source="distill", student=student)
    report["model_file"] = STUDENT_PT
    run.write_json(DISTILL_JSON, report)
    return report
