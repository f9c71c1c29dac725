"""Augment: label-preserving image augmentation (kornia) or mixup (tables), as Trainer callbacks.

Both change ``state.xb`` in ``before_batch`` and nothing else about the batch, so the ledger still
records one row per training sample (``state.batch_idx`` is untouched).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..train.callback import Callback, Control, State
from .plan import Plan, RoundInput

THIN_CLASS = 10  # a class with fewer training rows than this (or a fifth of the median class) is thin


class ImageAugment(Callback):
    """Random small rotations, shifts and zooms of each training image (no flips: digits and text
    are not mirror-symmetric). Uses kornia on whatever device the batch is on."""

    order = 5  # before everything that reads the batch

    def __init__(self, degrees: float = 10.0, translate: float = 0.1, scale: tuple[float, float] = (0.9, 1.1),
                 p: float = 0.8):
        self.degrees, self.translate, self.scale, self.p = degrees, translate, scale, p
        self._aug = None

    def before_batch(self, state: State, control: Control) -> None:
        if self._aug is None:
            import kornia.augmentation as K

            self._aug = K.RandomAffine(degrees=self.degrees, translate=(self.translate, self.translate),
                                       scale=self.scale, p=self.p)
        with torch.no_grad():
            state.xb = self._aug(state.xb.float()).to(state.xb.dtype)


class Mixup(Callback):
    """mixup (Zhang et al., 2018) for tables: each batch is mixed with a shuffled copy of itself,
    ``x = lam * x + (1 - lam) * x[perm]``, and the loss is mixed the same way.

    The second loss term is plain cross-entropy: per-row and class weights apply to the first term only.

    Args:
        alpha: the Beta(alpha, alpha) the mixing weight is drawn from.
        clean_logits: after the loss, replace ``state.logits`` by the model's (eval-mode, no-grad)
            logits of the *unmixed* batch, so that what reads them later (the ledger, the training
            accuracy) sees each row's own prediction, not that of a blend of two rows. Costs one
            forward pass without gradients per batch; the label detector of a repair round needs it.
    """

    order = 5

    def __init__(self, alpha: float = 0.2, clean_logits: bool = True):
        self.alpha, self.clean_logits = alpha, clean_logits
        self._perm: torch.Tensor | None = None
        self._lam = 1.0
        self._clean: torch.Tensor | None = None

    def before_batch(self, state: State, control: Control) -> None:
        n = len(state.xb)
        # torch's generator, which the Trainer seeds per epoch: a rerun (or a resume) mixes the same way
        self._lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        self._perm = torch.randperm(n, device=state.xb.device)
        self._clean = state.xb if self.clean_logits else None
        state.xb = self._lam * state.xb + (1 - self._lam) * state.xb[self._perm]

    def after_loss(self, state: State, control: Control) -> None:
        if self._perm is None:
            return
        # a loss-correcting callback (``correct.ForwardCorrection``) publishes its loss for the second term
        loss_fn = getattr(state, "extra", {}).get("target_loss") or F.cross_entropy
        other = loss_fn(state.logits.float(), state.yb[self._perm])
        state.loss = self._lam * state.loss + (1 - self._lam) * other / state.config.accumulate
        if self._clean is not None:
            # eval mode: a second training-mode pass would move BatchNorm's running statistics
            model = state.model
            was_training = model.training
            model.eval()
            with torch.no_grad():
                state.logits = model(self._clean)
            model.train(was_training)
            self._clean = None


def thin_classes(inp: RoundInput) -> list[str]:
    """Classes with fewer than ``THIN_CLASS`` training rows, or fewer than a fifth of the median class,
    in the data as given (rows a repair quarantined do not make a class thin)."""
    counts = np.bincount(inp.given[~inp.is_val], minlength=inp.n_classes)
    limit = max(THIN_CLASS, 0.2 * float(np.median(counts)))
    return [inp.classes[c] for c in np.flatnonzero(counts < limit)]


def overfits(inp: RoundInput) -> bool:
    """True when the model-health diagnosis found over-fitting in the diagnosed run."""
    mh = inp.model_health or {}
    return any(isinstance(f, dict) and f.get("issue") == "overfitting" for f in mh.get("findings") or [])


def augment(inp: RoundInput) -> Plan:
    """Add augmentation to training: kornia affine transforms for images, mixup for tables and text."""
    plan = Plan.unchanged(inp)
    if inp.kind == "image":
        plan.callbacks.append(ImageAugment())
        plan.notes.append("image augmentation (random rotation <= 10 deg, shift <= 10 %, zoom 0.9-1.1)")
    else:
        plan.callbacks.append(Mixup())
        plan.notes.append("mixup (alpha 0.2)")
    return plan
