"""A repair round's candidates: which models a round trains (``round_candidates``), training and
scoring each on what its policy plan changes (``train_candidates``), and the round's record in
repair.json."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, NamedTuple

import numpy as np

from ..data.dataset import Dataset
from ..run import Run
from .augment import augment
from .auto import auto
from .correct import ForwardCorrection, correct
from .crossfit import confident_flags
from .drop import drop
from .fits import RoundState, fit_round, noise_after
from .grading import Grading
from .losses import ReplacedLoss
from .plan import Plan, RoundInput
from .rebalance import rebalance
from .relabel import relabel
from .reweight import reweight
from .robust import GeneralizedCrossEntropy, robust

# the first round's auto variants (``auto``'s options); later rounds repeat the kept one
VARIANTS: dict[str, dict] = {"gentle": {}, "prune": {"prune": True}, "drop": {"prune": True, "relabel": False},
                             "trust": {"prune": True, "trust": True}, "correct": {"correct": True}}

POLICIES: dict[str, Callable[[RoundInput], Plan]] = {
    "auto": auto, "relabel": relabel, "drop": drop, "reweight": reweight, "rebalance": rebalance, "augment": augment,
    "correct": correct, "robust": robust}


class Candidate(NamedTuple):
    """One model a round trained: its name, plan, training state, change counts, fit and validation scores."""

    name: str
    plan: Plan
    state: RoundState
    counts: dict
    fit: Any
    scores: dict
    rows: np.ndarray
    options: dict


@dataclass
class RoundContext:
    """What stays fixed over a repair's rounds."""

    run: Run
    dev: Dataset  # training rows first, then validation rows; test rows stay outside
    is_val: np.ndarray
    cfg: Any
    policy: str
    exempt: np.ndarray  # rows a reviewer decided: no policy changes them
    quiet: bool
    mixup: float
    resume: bool
    log: Callable[[str], None]


def train_candidates(ctx: RoundContext, grading: Grading, r: int, candidates: list[tuple[str, dict]],
                     inp: RoundInput, state: RoundState, last_signature: tuple | None,
                     review_changed: bool) -> list[Candidate]:
    """Train round ``r``'s candidates on what each one's policy plan changes, skipping a plan that
    changes nothing or repeats a training already run; each is scored on validation."""
    tried: list[Candidate] = []
    for name, options in candidates:  # may grow while it runs: see "correct" below
        cand_inp, options = candidate_input(inp, options)
        plan = restrict(POLICIES[ctx.policy](cand_inp, **options), inp)
        new = RoundState(plan.labels, (state.in_train & ~plan.drop) | plan.restore, plan.weights)
        counts = {"relabelled": int(((new.labels != state.labels) & new.in_train).sum()),
                  "dropped": int(plan.drop.sum()), "restored": int(plan.restore.sum()),
                  "reweighted": int((np.abs(plan.weights - 1) > 1e-6).sum()) if plan.weights is not None else 0}
        changed_data = any(counts.values()) or plan.config or plan.callbacks or plan.synthetic or review_changed
        sig = signature(new, plan)
        if not changed_data or sig == last_signature or any(sig == signature(t.state, t.plan) for t in tried):
            continue  # nothing to repair, or the same training as one already run
        ctx.log(f"round {r}{' (' + name + ')' if name else ''}: relabelled {counts['relabelled']}, quarantined "
                 f"{counts['dropped']}, re-weighted {counts['reweighted']}; retraining")
        path = ctx.run.path / (f"round{r}" if not tried else f"round{r}-{name}")
        fr = fit_round(path, ctx.dev, new, ctx.is_val, ctx.cfg, plan, ctx.quiet, ctx.mixup, ctx.resume)
        scores, rows = grading.score(fr)
        tried.append(Candidate(name, plan, new, counts, fr, scores, rows, options))
        if ctx.policy == "auto" and r == 1 and name == "correct":
            # the same candidate once more through the noise its own predictions find: the
            # baseline's flags under-count class-dependent flips, and a first-round correction
            # that loses to the cleaning variants for that reason would never get a later round
            candidates.append(("correct-reestimated",
                               {**VARIANTS["correct"], "transition": noise_after(
                                   fr, ctx.dev, new, ctx.is_val, ctx.dev.n_classes, ctx.exempt)}))
    return tried


def round_record(r: int, kept: Candidate, tried: list[Candidate], review_summary: dict | None) -> dict:
    """A round's entry in repair.json: the kept candidate's counts, scores and training, and every
    candidate's when there were several."""
    plan, fr = kept.plan, kept.fit
    rec = {"round": r, **kept.counts, **kept.scores,
           "train_rows": int(kept.state.in_train.sum()) + (len(plan.synthetic[1]) if plan.synthetic else 0),
           "synthetic_rows": len(plan.synthetic[1]) if plan.synthetic else 0,
           "best_epoch": fr.state.best_epoch,
           "seconds": round(sum(t.fit.run.meta.get("seconds", 0.0) for t in tried), 2),
           "config": plan.config,
           "augmentation": [type(c).__name__ for c in plan.callbacks if not isinstance(c, ReplacedLoss)],
           "loss_correction": any(isinstance(c, ForwardCorrection) for c in plan.callbacks),
           "robust_loss": any(isinstance(c, GeneralizedCrossEntropy) for c in plan.callbacks),
           "notes": plan.notes, "run": str(fr.run.path)}
    if len(tried) > 1:
        rec["variant"] = kept.name
        rec["candidates"] = [{"variant": t.name, **t.counts, **t.scores, "run": str(t.fit.run.path)} for t in tried]
    if review_summary is not None:
        rec["reviewed"] = review_summary
    return rec


# -- rounds ---------------------------------------------------------------------------------------
def round_candidates(policy: str, r: int, variant: dict, inp: RoundInput,
                     oof: np.ndarray | None = None) -> list[tuple[str, dict]]:
    """(name, policy options) of each model round ``r`` trains; the loop keeps the best on validation.

    ``variant``: the options of the round kept last (empty in round 1). Only ``auto`` has several.
    """
    if policy != "auto":
        return [("", variant)]
    if r == 1:
        return list(VARIANTS.items()) + crossfit_candidates(inp, oof)
    if variant.get("correct"):
        # a model trained through the noise predicts the true class, so its diagnosis' flags are a
        # better detector than the baseline's: quarantine them, or correct once more
        return [("", variant), ("drop", VARIANTS["drop"])]
    if not variant.get("revisit"):
        # after a cleaning round the new flags are mostly the cleaner model's own errors where data is
        # plentiful, and the rows it changed are what is left to get right (``revisit``); on small
        # data the repeated round still finds missed flips: try both
        return [("", variant), ("revisit", {"revisit": True})]
    return [("", variant)]


def crossfit_candidates(inp: RoundInput, oof: np.ndarray | None) -> list[tuple[str, dict]]:
    """First-round candidates from out-of-fold evidence: quarantine what cross-fitted models flag
    (``crossfit``), and that together with the diagnosis' flags (``crossfit+diagnosis``)."""
    if oof is None:
        return []
    cl = confident_flags(oof, inp.labels, inp.n_classes) & inp.editable
    if not cl.any():
        return []
    both = cl | inp.flagged()
    out = [("crossfit", {**VARIANTS["drop"], "flags": cl})]
    if (both != cl).any():
        out.append(("crossfit+diagnosis", {**VARIANTS["drop"], "flags": both}))
    return out


def candidate_input(inp: RoundInput, options: dict) -> tuple[RoundInput, dict]:
    """``inp`` with a candidate's own label ``flags`` and noise ``transition`` where its options carry
    them (everything else as diagnosed), and the options left for the policy."""
    options = dict(options)
    flags, transition = options.pop("flags", None), options.pop("transition", None)
    if flags is not None:
        inp = replace(inp, samples=inp.samples.assign(label_issue=np.asarray(flags, bool)))
    if transition is not None:
        inp = replace(inp, transition=transition)
    return inp, options


def signature(state: RoundState, plan: Plan) -> tuple:
    """What a round trains on: two rounds with equal signatures train the same model."""
    w = None if state.weights is None else np.round(state.weights, 6).tobytes()
    return (state.labels.tobytes(), state.in_train.tobytes(), w, tuple(sorted(plan.config.items())),
            tuple(getattr(c, "key", type(c).__name__) for c in plan.callbacks),
            None if plan.synthetic is None else len(plan.synthetic[1]))


def restrict(plan: Plan, inp: RoundInput) -> Plan:
    """Whatever a policy returns, only editable rows change (validation, reviewed and quarantined rows
    never), except that quarantined rows may be restored to training."""
    plan.restore = (plan.restore & inp.quarantined & ~inp.exempt) if plan.restore is not None \
        else np.zeros(len(inp.labels), dtype=bool)
    keep = ~(inp.editable | plan.restore)
    plan.labels = np.where(keep, inp.labels, plan.labels).astype(np.int64)
    plan.drop = plan.drop & inp.editable
    plan.reasons = {i: r for i, r in plan.reasons.items() if plan.drop[i]}
    if plan.weights is not None:
        plan.weights = np.where(inp.editable, plan.weights, 1.0).astype(np.float32)
    return plan
