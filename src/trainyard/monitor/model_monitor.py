"""ModelMonitor: per-layer health of the model itself, recorded each epoch.

Per layer it records the fraction of dead units, the effective rank of the layer's output, the
gradient norm, the update-to-weight ratio and the weight norm, and writes them to
``model_health.json`` in the run directory (with the diagnosis from
:mod:`trainyard.diagnose.model_health` added at the end of training).

Cost is kept small on purpose (benchmark B3):

* activations are read through forward hooks that exist only during one extra no-grad forward pass
  of a fixed probe batch per epoch, so the training forward pass runs without hooks;
* gradient norms are read on about ``grad_samples`` batches per epoch (one fused norm per layer),
  and accumulated on the device, so there is no host sync per batch;
* update ratios come from one weight snapshot per epoch;
* the monitor times itself and skips the probe on epochs where it would push its total cost above
  ``budget`` of the epochs' time; the untrained model (before_fit) and the final model (after_fit,
  if the last epoch was skipped) are always probed, outside the epochs.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..run import MODEL_HEALTH, write_json
from ..train.callback import Callback, Control, State

FORMAT = "trainyard.model_health/1"

# How a unit is judged "dead" depends on its activation. ReLU-family units output exactly zero, and
# pass no gradient, whenever their input is <= 0; saturating units pass almost no gradient at the
# flat ends of their curve. Smooth or leaky activations always pass some gradient: their inactive
# units are recorded but never called dead.
RELU_FAMILY = (nn.ReLU, nn.ReLU6)
SATURATING = {nn.Sigmoid: (0.01, 0.99), nn.Tanh: (-0.99, 0.99), nn.Hardtanh: (-0.99, 0.99),
              nn.Hardsigmoid: (0.01, 0.99)}
SMOOTH = (nn.GELU, nn.SiLU, nn.ELU, nn.SELU, nn.CELU, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.Softplus, nn.Mish,
          nn.Hardswish)
ACTIVATION_TYPES = RELU_FAMILY + tuple(SATURATING) + SMOOTH
WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding, nn.Bilinear)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
MAX_RANK_ROWS = 4096  # rows of (samples x positions) used for the effective rank of conv outputs

EXPLAIN = {
    "dead_fraction": "share of the layer's units that never switched on for any of the probe samples "
                     "(ReLU: output <= 0 for every sample; sigmoid/tanh: stuck at the flat end of the curve). "
                     "A dead unit passes no gradient, so it stops learning and is wasted width.",
    "effective_rank": "how many independent directions the layer's outputs really use (exp of the entropy of "
                      "the normalised singular values of the centred outputs on the probe batch). Far below "
                      "the layer's width means the features have collapsed onto a few directions.",
    "grad_norm": "size of the gradient of the layer's weights, averaged over a few batches of the epoch. "
                 "Norms that differ by many orders of magnitude between layers mean vanishing or "
                 "exploding gradients.",
    "update_ratio": "how much the weights moved during the epoch, relative to their size "
                    "(||W_end - W_start|| / ||W_start||). Near zero: the layer is not learning; "
                    "near or above one: the steps are too big.",
    "weight_norm": "size (L2 norm) of the layer's weights at the end of the epoch.",
}


def effective_rank(features: torch.Tensor) -> float:
    """Effective rank (Roy & Vetterli, 2007) of a (rows, units) matrix after centring the columns.

    exp of the Shannon entropy of the singular values normalised to sum to one; between 1 and
    min(rows, units). A matrix with no variation at all has effective rank 0.

    >>> round(effective_rank(torch.eye(4) * 3), 6)  # 4 points, centred: 3 equal directions
    3.0
    """
    x = features.detach().float()
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        return float("nan")
    scale = x.abs().max()
    if not torch.isfinite(scale):
        return float("nan")
    x = x - x.mean(0, keepdim=True)
    # singular values from the smaller Gram matrix: faster than an SVD of x. In float64, because
    # squaring in float32 lifts the zero singular values to ~3e-4 of the largest, which inflates
    # the effective rank of exactly low-rank features by 10-20 %
    x = x.double()
    gram = x.T @ x if x.shape[0] >= x.shape[1] else x @ x.T
    s = torch.linalg.eigvalsh(gram).clamp_min(0).sqrt()
    # variation below float32 resolution of the values themselves is rounding noise, not features
    if float(s.max()) <= 1e-5 * float(scale) * math.sqrt(x.shape[0]) or float(s.sum()) == 0.0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """L2 norm of each tensor, in one fused call where torch offers it."""
    foreach = getattr(torch, "_foreach_norm", None)
    if foreach is not None:
        return list(foreach([t.float() if not t.is_floating_point() or t.dtype == torch.float16 else t
                             for t in tensors]))
    return [t.float().norm() for t in tensors]


def _as_units(t: torch.Tensor, channels_first: bool) -> torch.Tensor:
    """View an activation as a (rows, units) matrix: units are features, or conv channels."""
    if t.ndim == 2:
        return t
    if t.ndim >= 3 and channels_first:
        return t.movedim(1, -1).reshape(-1, t.shape[1])
    return t.reshape(-1, t.shape[-1])


def _activation_kind(m: nn.Module) -> str:
    if isinstance(m, RELU_FAMILY):
        return "relu"
    if isinstance(m, tuple(SATURATING)):
        return "saturating"
    return "smooth"


def _unit_stats(out: torch.Tensor, kind: str, module: nn.Module | None, channels_first: bool) -> dict[str, Any]:
    """Dead fraction and effective rank of one layer output on the probe batch."""
    u = _as_units(out.detach().float(), channels_first)
    width = int(u.shape[1])
    if kind == "saturating":
        lo, hi = next(v for k, v in SATURATING.items() if isinstance(module, k))
        dead = ((u <= lo).all(0) | (u >= hi).all(0))
    else:
        dead = (u <= 0).all(0)
    n_dead = int(dead.sum())
    rows = u
    if rows.shape[0] > MAX_RANK_ROWS:  # conv maps: a fixed, evenly spread subset of positions
        rows = rows[torch.linspace(0, rows.shape[0] - 1, MAX_RANK_ROWS, device=rows.device).long()]
    rows = rows[:, ~dead] if n_dead < width else rows[:, :0]
    erank = effective_rank(rows) if rows.shape[1] else 0.0
    return {"width": width, "dead_units": n_dead, "dead_fraction": n_dead / max(width, 1),
            "effective_rank": erank, "live_width": width - n_dead}


class ModelMonitor(Callback):
    """Per-layer model health each epoch: dead units, effective rank, gradient and weight norms.

    Args:
        probe_size: number of training rows in the fixed probe batch.
        grad_samples: number of batches per epoch whose per-layer gradient norms are read.
        budget: share of the training time the monitor may take; the probe is skipped on epochs
            where it would exceed it (the untrained and the final model are always probed).
        seed: picks the probe rows (falls back to the config's seed).

    Publishes each epoch's record at ``state.extra['model_monitor']`` and writes
    ``model_health.json`` (with the findings of :func:`trainyard.diagnose.model_health.diagnose_model`)
    when training ends.
    """

    order = 15  # after loss shaping (L1, order 5), before clipping (order 20): it reads raw gradients

    def __init__(self, probe_size: int = 256, grad_samples: int = 4, budget: float = 0.02,
                 seed: int | None = None, write_every_s: float = 60.0):
        self.probe_size, self.grad_samples, self.budget = int(probe_size), int(grad_samples), float(budget)
        self.seed, self.write_every_s = seed, float(write_every_s)
        self.epochs: list[dict[str, Any]] = []
        self.initial_loss: float | None = None
        self._probe_cost: float | None = None
        self.initial_features: dict[str, dict[str, Any]] | None = None
        self.class_prior: list[float] | None = None
        self._probe: torch.Tensor | None = None
        self._probe_source = ""

    # -- layers ---------------------------------------------------------------------------------
    def _find_layers(self, model: nn.Module) -> None:
        """Weight layers (Linear/Conv/Embedding) and activation modules, in registration order
        (for the zoo models this is forward order)."""
        self._weights: list[tuple[str, nn.Module, torch.Tensor]] = []
        self._acts: list[tuple[str, nn.Module, str, bool]] = []
        index: dict[str, int] = {}
        last_conv = False
        for i, (name, m) in enumerate(model.named_modules()):
            if isinstance(m, WEIGHT_TYPES) and getattr(m, "weight", None) is not None and m.weight.requires_grad:
                self._weights.append((name, m, m.weight))
                last_conv = isinstance(m, _CONV)
            elif isinstance(m, ACTIVATION_TYPES):
                self._acts.append((name, m, _activation_kind(m), last_conv))
            index[name] = i
        # models that apply activations as functions (F.relu) have no activation modules: read the
        # inputs of every weight layer but the first instead (they are the previous layer's features)
        self._inputs_as_features = not self._acts and len(self._weights) > 1
        info = [{"name": n, "type": type(m).__name__, "role": "weights", "index": index[n],
                 "shape": list(w.shape)} for n, m, w in self._weights]
        if self._inputs_as_features:
            info += [{"name": f"{n}:input", "type": type(m).__name__, "role": "features", "index": index[n] - 0.5}
                     for n, m, _ in self._weights[1:]]
        else:
            info += [{"name": n, "type": type(m).__name__, "role": "activation", "activation_kind": k,
                      "index": index[n]} for n, m, k, _ in self._acts]
        self.layer_info = sorted(info, key=lambda d: d["index"])  # forward order, for the zoo models

    # -- events -----------------------------------------------------------------------------------
    def before_fit(self, state: State, control: Control) -> None:
        t_setup = time.perf_counter()
        model = state.model
        self.epochs, self.initial_loss, self.initial_features, self._probe_cost = [], None, None, None
        self._find_layers(model)
        self._device = state.device or next(model.parameters()).device
        seed = self.seed if self.seed is not None else int(getattr(state.config, "seed", 0) or 0)
        X = state.extra.get("train_X")
        if X is not None and len(X):
            n = len(X)
            rng = np.random.default_rng(seed)
            idx = np.sort(rng.choice(n, size=min(self.probe_size, n), replace=False))
            Xp = X[torch.as_tensor(idx)] if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X)[idx])
            self._probe, self._probe_source = self._to_input(Xp), "train_X"
        else:
            self._probe, self._probe_source = None, "first_batches"
            self._probe_parts: list[torch.Tensor] = []
        y = state.extra.get("train_y")
        if y is not None and len(y) and state.n_classes:
            counts = np.bincount(np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y).astype(np.int64),
                                 minlength=int(state.n_classes))
            self.class_prior = (counts / counts.sum()).round(6).tolist()
        self._nonfinite_cpu = 0
        self.input_effective_rank = effective_rank(self._probe.flatten(1)) if self._probe is not None and \
            self._probe.is_floating_point() else None
        self._monitor_s = 0.0
        self._epoch_s: list[float] = []
        self._last_write = time.perf_counter()
        if self._probe is not None and self.initial_features is None:
            # the untrained model, outside any epoch: tells "dead from the start" (initialisation)
            # from "died during training" (steps too big), and measures what one probe costs
            t = time.perf_counter()
            self.initial_features = self._probe_features(model)
            self._probe_cost = time.perf_counter() - t
        self._setup_s = time.perf_counter() - t_setup

    def _to_input(self, X: Any) -> torch.Tensor:
        X = torch.as_tensor(X)
        if X.is_floating_point():
            X = X.float()
        return X.to(self._device)

    def before_epoch(self, state: State, control: Control) -> None:
        t = time.perf_counter()
        self._epoch_start = t
        with torch.no_grad():
            self._snapshot = [w.detach().clone() for _, _, w in self._weights]
        self._gsum = torch.zeros(len(self._weights), dtype=torch.float64, device=self._device)
        self._gcount = 0
        self._no_grad: set[int] = set()
        self._nonfinite_at_start = self._nonfinite_cpu
        self._loss_acc = torch.zeros((), device=self._device)
        bpe = max(int(state.batches_per_epoch or 1), 1)
        accumulate = max(int(getattr(state.config, "accumulate", 1) or 1), 1)
        self._grad_stride = max(1, math.ceil(bpe / accumulate / max(self.grad_samples, 1)))
        self._steps_in_epoch = 0
        self._monitor_s += time.perf_counter() - t

    def before_batch(self, state: State, control: Control) -> None:
        if self._probe is None and state.xb is not None:  # no train_X given: probe = first rows seen
            t = time.perf_counter()
            have = sum(len(p) for p in self._probe_parts)
            self._probe_parts.append(state.xb[: self.probe_size - have].detach().clone())
            last_batch = state.batch_in_epoch == state.batches_per_epoch - 1
            if have + len(self._probe_parts[-1]) >= self.probe_size or last_batch:
                self._probe = self._to_input(torch.cat(self._probe_parts))
                self._probe_parts = []
            self._monitor_s += time.perf_counter() - t

    def after_loss(self, state: State, control: Control) -> None:
        loss = state.loss
        if loss is None:
            return
        if loss.device.type == "cpu":  # reading a CPU scalar is cheaper than any tensor op
            if not math.isfinite(loss.item()):
                self._nonfinite_cpu += 1
        else:  # on an accelerator, no host sync per batch: NaN/inf survive the sum, checked per epoch
            self._loss_acc = self._loss_acc + loss.detach().float()
        if self.initial_loss is None and state.epoch == 0 and state.batch_in_epoch == 0:
            # the loss before any step: about ln(K) for a fresh classifier; the yardstick for
            # "the loss went up" and "the loss barely moved"
            lps = state.loss_per_sample
            self.initial_loss = float(lps.detach().float().mean()) if lps is not None else float(loss.detach())

    def before_step(self, state: State, control: Control) -> None:
        self._steps_in_epoch += 1
        if (self._steps_in_epoch - 1) % self._grad_stride:
            return
        t = time.perf_counter()
        with torch.no_grad():
            grads = []
            for i, (_, _, w) in enumerate(self._weights):
                if w.grad is None:  # not used in this forward pass: no gradient is not a small gradient
                    self._no_grad.add(i)
                    grads.append(torch.zeros((), device=w.device))
                else:
                    grads.append(w.grad.coalesce().values() if w.grad.is_sparse else w.grad)
            if grads:
                self._gsum += torch.stack(_norms(grads)).to(self._gsum.device, torch.float64)
                self._gcount += 1
        self._monitor_s += time.perf_counter() - t

    def after_epoch(self, state: State, control: Control) -> None:
        t = time.perf_counter()
        self._epoch_s.append(t - self._epoch_start)
        rec = self._weight_record(state)
        # probe when the budget allows it: the monitor's time stays under ``budget`` of the epochs'
        # time (the final model is probed in after_fit whatever the budget)
        spent = self._monitor_s + time.perf_counter() - t
        due = self._probe_cost is None or spent + self._probe_cost <= self.budget * sum(self._epoch_s)
        if self._probe is not None and due:
            tp = time.perf_counter()
            rec["features"] = self._probe_features(state.model)
            rec["probed"] = True
            self._probe_cost = time.perf_counter() - tp
        else:
            rec["probed"] = False
        self.epochs.append(rec)
        state.extra["model_monitor"] = rec
        self._monitor_s += time.perf_counter() - t
        if state.run is not None and time.perf_counter() - self._last_write > self.write_every_s:
            self._write(state, final=False)  # so a killed run still leaves its recent health behind

    def after_fit(self, state: State, control: Control) -> None:
        if self.epochs and not self.epochs[-1].get("probed") and self._probe is not None:
            # the diagnosis reads the final model: probe it if the budget skipped the last epoch
            t = time.perf_counter()
            self.epochs[-1]["features"] = self._probe_features(state.model)
            self.epochs[-1]["probed"] = True
            self._monitor_s += time.perf_counter() - t
        state.extra["model_health"] = self.record(state, final=True)
        if state.run is not None:
            self._write(state, final=True)

    # -- measurements -------------------------------------------------------------------------------
    @torch.no_grad()
    def _weight_record(self, state: State) -> dict[str, Any]:
        ws = [w.detach() for _, _, w in self._weights]
        if ws:  # one host transfer for all layers
            w_norm, w0_norm, moved = torch.stack(
                [torch.stack(_norms(ws)), torch.stack(_norms(self._snapshot)),
                 torch.stack(_norms(torch._foreach_sub(ws, self._snapshot)))]).double().cpu().tolist()
        grads = (self._gsum / max(self._gcount, 1)).cpu().tolist() if self._gcount else None
        layers: dict[str, dict[str, Any]] = {}
        for i, (name, _, _) in enumerate(self._weights):
            layers[name] = {"weight_norm": w_norm[i],
                            "update_ratio": moved[i] / w0_norm[i] if w0_norm[i] > 0 else float("nan"),
                            "grad_norm": grads[i] if grads is not None else float("nan")}
            if i in self._no_grad:
                layers[name]["no_grad"] = True
        self._snapshot = []
        nonfinite = self._nonfinite_cpu - self._nonfinite_at_start
        if self._loss_acc.device.type != "cpu" and not math.isfinite(float(self._loss_acc)):
            nonfinite = max(nonfinite, 1)  # at least one batch; the exact count is not kept on accelerators
        return {"epoch": int(state.epoch), "layers": layers, "grad_samples": self._gcount,
                "nonfinite_loss_batches": nonfinite}

    @torch.no_grad()
    def _probe_features(self, model: nn.Module) -> dict[str, dict[str, Any]]:
        """One eval-mode forward pass of the probe batch with temporary hooks."""
        outs: dict[str, Any] = {}
        hooks = []
        if self._inputs_as_features:
            for name, m, _ in self._weights[1:]:
                hooks.append(m.register_forward_hook(
                    lambda mod, inp, out, name=name: outs.__setitem__(f"{name}:input", inp[0])))
        else:
            for name, m, _, _ in self._acts:
                hooks.append(m.register_forward_hook(lambda mod, inp, out, name=name: outs.__setitem__(name, out)))
        was_training = model.training
        model.eval()
        try:
            model(self._probe)
        finally:
            for h in hooks:
                h.remove()
            model.train(was_training)
        feats: dict[str, dict[str, Any]] = {}
        if self._inputs_as_features:
            for name, m, _ in self._weights[1:]:
                x = outs.get(f"{name}:input")
                if isinstance(x, torch.Tensor) and x.ndim >= 2:
                    # only non-negative inputs look like ReLU outputs; otherwise "dead" is not defined
                    kind = "relu" if bool((x >= 0).all()) else "smooth"
                    feats[f"{name}:input"] = {**_unit_stats(x, kind, None, isinstance(m, _CONV)), "kind": kind}
        else:
            for name, m, kind, conv in self._acts:
                x = outs.get(name)
                if isinstance(x, torch.Tensor) and x.ndim >= 2:
                    feats[name] = {**_unit_stats(x, kind, m, conv), "kind": kind}
        return feats

    # -- output -----------------------------------------------------------------------------------
    def record(self, state: State | None = None, final: bool = False) -> dict[str, Any]:
        """The model-health record (what ``model_health.json`` holds)."""
        cfg = getattr(state, "config", None) if state is not None else None
        cfg_d = cfg.to_dict() if hasattr(cfg, "to_dict") else (dict(cfg) if isinstance(cfg, dict) else {})
        epoch_total = float(sum(self._epoch_s)) if getattr(self, "_epoch_s", None) else 0.0
        setup_s = getattr(self, "_setup_s", 0.0)
        rec: dict[str, Any] = {
            "format": FORMAT,
            "explain": EXPLAIN,
            "probe": {"n": int(len(self._probe)) if self._probe is not None else 0, "source": self._probe_source},
            "n_classes": int(state.n_classes) if state is not None and state.n_classes else None,
            "initial_loss": self.initial_loss,
            "input_effective_rank": getattr(self, "input_effective_rank", None),
            "class_prior": self.class_prior,
            "config": {k: cfg_d[k] for k in ("lr", "weight_decay", "optimizer", "epochs", "batch_size", "clip",
                                             "dropout", "activation", "norm", "hidden", "channels", "model",
                                             "patience", "schedule") if k in cfg_d},
            "model": dict(getattr(state.model, "spec", {}) or {}) if state is not None else {},
            "layers": self.layer_info,
            "initial_features": self.initial_features,
            "epochs": self.epochs,
            "history": list(state.history) if state is not None else [],
            "overhead": {"monitor_seconds": self._monitor_s, "setup_seconds": setup_s, "epoch_seconds": epoch_total,
                         "fraction": self._monitor_s / epoch_total if epoch_total > 0 else None,
                         "probes": sum(1 for e in self.epochs if e.get("probed"))},
            "final": final,
        }
        if final:
            from ..diagnose.model_health import diagnose_model, summarize

            rec["findings"] = diagnose_model(rec)
            rec["summary"] = summarize(rec["findings"])
        return rec

    def _write(self, state: State, final: bool) -> None:
        path = state.run.file(MODEL_HEALTH) if hasattr(state.run, "file") else state.run / MODEL_HEALTH
        write_json(path, state.extra.get("model_health") if final else self.record(state, final=False))
        self._last_write = time.perf_counter()

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "initial_loss": self.initial_loss, "initial_features": self.initial_features}

    def load_state_dict(self, d: dict) -> None:
        self.epochs = list(d.get("epochs", []))
        self.initial_loss = d.get("initial_loss")
        self.initial_features = d.get("initial_features")
