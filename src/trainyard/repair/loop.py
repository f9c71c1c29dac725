"""The repair loop: train a baseline, diagnose it, repair the training data, retrain; repeat while the
validation score improves; then, once, measure the baseline and the chosen round on the test split.

Who may change what:

* Only training rows are edited by a policy. Validation rows are judged (the diagnosis covers them
  with out-of-sample predictions) but keep their given labels: the rounds are compared on them, and
  relabelling them with the model's own suggestions would grade each model against its own beliefs,
  favouring whatever the diagnosing model thinks. Instead the comparison corrects the plain validation
  accuracy for the label noise the baseline diagnosis estimates (``evidence.corrected_accuracy``); a
  reviewer's decisions, being the user's own labels, do apply to validation rows.
* Test rows are held out of every round (no training, no diagnosis, no selection): the rounds' runs
  contain only training and validation rows. The test labels are read in one place,
  ``_final_evaluation``, after the chosen round is fixed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from ..data.dataset import Dataset
from ..diagnose.chance import CHANCE_Z, agreement_over_chance, chance_agreement, pooled_z
from ..errors import ConfigError, RunError
from ..run import Run
from .augment import Mixup, augment
from .auto import auto
from .correct import ForwardCorrection, correct, transition_from
from .crossfit import FOLDS, confident_flags, crossfit_probs, load_probs, save_probs
from .diagnosis import diagnose_labels, diagnose_round, model_health, model_probs, reliability_of, round_evidence
from .drop import drop
from .evidence import (blended_noise, noise_transition, paired_difference, row_scores, unreviewed_noise,
                       usable_transition)
from .losses import ReplacedLoss
from .outputs import build_report, validation_review, write_outputs, write_samples
from .plan import Plan, RoundInput
from .rebalance import rebalance
from .relabel import relabel
from .reweight import reweight
from .robust import GeneralizedCrossEntropy, robust
from .selection import clears_margin, cross_fitted_choice, cross_fitted_rows, last_model, prefer_last

# mixup's alpha in repair rounds. Why mixup: a repair leaves some wrong labels behind (on digits at
# 20 % class-conditional noise, 9 in 850 training rows cost ~1 point of test accuracy against the
# same rows with true labels), and mixup keeps a network from memorising them (Zhang et al., 2018,
# sec. 3.4); 0.2 is the paper's value for tables and small images
MIXUP_ALPHA = 0.2

# the first round's auto variants (``auto``'s options); later rounds repeat the kept one
VARIANTS: dict[str, dict] = {"gentle": {}, "prune": {"prune": True}, "drop": {"prune": True, "relabel": False},
                             "trust": {"prune": True, "trust": True}, "correct": {"correct": True}}

POLICIES: dict[str, Callable[[RoundInput], Plan]] = {
    "auto": auto, "relabel": relabel, "drop": drop, "reweight": reweight, "rebalance": rebalance, "augment": augment,
    "correct": correct, "robust": robust}


@dataclass
class RepairResult:
    """What ``repair`` returns."""

    report: dict  # the content of repair.json
    out: Path  # the output folder
    diagnosis: Any  # the Diagnosis of the baseline (round 0)
    model: Any  # the model of the chosen round (the baseline's if no round beat it)
    dataset: Dataset | None = None  # the repaired data: every row not quarantined, corrected labels
    fits: list = field(default_factory=list)  # FitResult of each round, round 0 first


@dataclass
class _State:
    """The development rows' labels and membership before/after a round."""

    labels: np.ndarray
    in_train: np.ndarray
    weights: np.ndarray | None = None


def repair(data: Dataset | str, target: str | None = None, text: str | None = None, test: str | None = None,
           out: str | Path | None = None, config: Any = None, split: Sequence[float] = (0.7, 0.2, 0.1),
           policy: str = "auto", rounds: int = 2, reviewed: str | Path | None = None, quiet: bool = True,
           splits: Any = None, crossfit_folds: int = FOLDS, mixup: float = MIXUP_ALPHA, resume: bool = False,
           **train_overrides: Any) -> RepairResult:
    """Diagnose, repair the training labels, retrain, and measure the gain on held-out data.

    Args:
        data: a path, built-in name or Dataset (like ``fit``); ``target``/``text``/``test``/``split`` too.
        out: output folder: ``repair.json``, ``repaired.csv``, ``quarantine.csv``, ``report.html`` and one
            run folder per round (``round0`` = the baseline on the given labels); ``crossfit_oof.npy``
            keeps the cross-fit's out-of-fold probabilities for ``resume``.
        policy: ``auto`` (relabel clear cases, quarantine ambiguous ones and outliers, rebalance/augment
            when called for; or train through the estimated noise, whichever validation prefers),
            ``relabel``, ``drop``, ``reweight``, ``rebalance``, ``augment``, ``correct`` (forward loss
            correction: no label changed, no row dropped) or ``robust`` (the generalized cross-entropy,
            no label changed, no row dropped).
        rounds: at most this many diagnose-repair-retrain rounds; stops when validation stops improving.
        reviewed: a CSV of ``id,decision`` (accept / reject / class name) applied before automatic changes.
        splits: explicit train/val/test row indices (overrides ``split``).
        crossfit_folds: with ``auto``, the first round also tries quarantining the rows that out-of-fold
            probabilities of this many cross-fitted models call mislabelled (``repair.crossfit``;
            costs about ``crossfit_folds - 1`` extra fits); 0 turns it off.
        mixup: the repair rounds (not the baseline) train with mixup of this alpha, which keeps a
            network from memorising the wrong labels a repair leaves behind; 0 turns it off.
        resume: continue a killed repair in ``out``: rounds that finished are read back, not retrained,
            the round that was cut off continues from its last checkpoint, and the policy, rounds,
            review file, mixup, cross-fit folds and training options are the stored ones (as
            ``fit --resume``); the data must give the same training and validation rows. The result
            is the one the uninterrupted repair would have given.
        train_overrides: training options (``epochs=20``, ``model="mlp"``, ...).

    Returns:
        RepairResult with ``report`` (repair.json), ``out``, ``diagnosis`` (baseline), ``model`` (chosen).

    >>> res = repair("sklearn:digits", out="runs/fixed", epochs=20)   # doctest: +SKIP
    >>> res.report["accuracy_after"] - res.report["accuracy_before"]  # doctest: +SKIP
    """
    from ..fitting import default_out, make_config, resolve_data

    if resume:
        if out is None:
            raise ConfigError("--resume needs --out: the folder of the repair to continue")
        if not (Path(out) / "run.json").exists():
            raise RunError(f"{out}: nothing to resume (no run.json); start the repair without --resume")
        stored = Run(out).meta.get("config", {})
        if "repair" not in stored:
            raise RunError(f"{out}: not a repair folder (its run.json has no repair options)")
        opts = stored["repair"]
        policy, rounds, reviewed, mixup = opts["policy"], opts["rounds"], opts["reviewed"], opts["mixup"]
        crossfit_folds = opts.get("crossfit_folds", crossfit_folds)
        config, train_overrides = stored["train"], {}
    if policy not in POLICIES:
        raise ConfigError(f"--policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if int(rounds) < 1:
        raise ConfigError(f"--rounds must be >= 1, got {rounds}")
    if int(crossfit_folds) == 1 or int(crossfit_folds) < 0:
        raise ConfigError(f"--crossfit-folds must be 0 (off) or >= 2, got {crossfit_folds}")
    if not float(mixup) >= 0:
        raise ConfigError(f"--mixup must be >= 0 (0 = off), got {mixup}")
    cfg = make_config(config, **train_overrides)
    ds, splits = resolve_data(data, target, text, test, split, cfg.seed, splits)
    if len(splits.val) == 0:
        raise ConfigError(f"{ds.source or 'data'}: repair needs a validation split to compare rounds; "
                          "give --split with a validation share, e.g. 0.7,0.2,0.1")
    out = Path(out) if out is not None else default_out("repair")
    run = Run.create(out, {"train": cfg.to_dict(), "repair": {"policy": policy, "rounds": int(rounds),
                                                               "reviewed": str(reviewed) if reviewed else None,
                                                               "mixup": float(mixup),
                                                               "crossfit_folds": int(crossfit_folds)}},
                     resume=resume)
    try:
        return _repair(run, ds, splits, cfg, policy, int(rounds), reviewed, quiet, target, test, int(crossfit_folds),
                       float(mixup), resume)
    except BaseException as e:
        run.finish("failed", error=f"{type(e).__name__}: {e}")
        raise


@dataclass
class _Grading:
    """What every round is graded on: the validation rows' given (or a reviewer's) labels, scored row by
    row (``evidence.row_scores``) through the noise the baseline diagnosis estimated; ``trusted`` rows
    (a reviewer's) are scored as they are."""

    X: np.ndarray
    labels: np.ndarray
    transition: np.ndarray | None
    trusted: np.ndarray

    def rows_of(self, model) -> tuple[np.ndarray, np.ndarray]:
        """A model's validation predictions and their per-row scores."""
        from ..train.trainer import predict_proba

        pred = predict_proba(model, self.X).argmax(1)
        return pred, row_scores(pred, self.labels, self.transition, self.trusted)

    def score(self, fr, repaired: bool = True, heldout: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
        """A round's validation scores and per-row scores. A repair round switches ``fr.model`` to its
        final epoch unless that scores worse (``selection.prefer_last``); the baseline keeps its best epoch.
        A best epoch's rows are scored without the optimism of having been chosen on them
        (``selection.cross_fitted_rows``, from the ledger's per-epoch validation probabilities:
        ``heldout`` where the caller has read them already)."""
        pred, rows = self.rows_of(fr.model)
        extra = {}
        if repaired:
            last = last_model(fr)
            if last is not None:
                pred_l, rows_l = self.rows_of(last)
                # the checkpoint is chosen on the plain rows: ``prefer_last``'s tolerance allows for their optimism
                if prefer_last(rows, rows_l):
                    fr.model.load_state_dict(last.state_dict())
                    fr.run.update_meta(repair_uses="checkpoints/last.pt (the final epoch; see repair.json)")
                    return self._scores(pred_l, rows_l, checkpoint="last"), rows_l
                extra["checkpoint"] = "best"
        heldout = _heldout_probs(fr, len(self.labels)) if heldout is None else heldout
        if heldout is not None:
            extra["val_acc_corrected_as_chosen"] = float(np.clip(rows.mean(), 0, 1))  # before the cross-fit
            rows = cross_fitted_rows(heldout, self.labels,
                                     lambda p: row_scores(p, self.labels, self.transition, self.trusted))
        return self._scores(pred, rows, **extra), rows

    def _scores(self, pred: np.ndarray, rows: np.ndarray, **extra) -> dict:
        return {"val_acc": float((pred == self.labels).mean()),
                "val_acc_corrected": float(np.clip(rows.mean(), 0, 1)), **extra}


# policies that act on the diagnosis' label flags or on the noise estimated from them
FLAG_POLICIES = ("auto", "relabel", "drop", "reweight", "correct")


def _label_evidence(base, grading: "_Grading", k: int, heldout: np.ndarray | None, crossfit: dict | None) -> dict:
    """Whether the baseline's model family learnt the classes at all: its out-of-sample predictions
    (validation rows, each scored by an epoch chosen without it from ``heldout``, the ledger's per-epoch
    validation probabilities; the cross-fit's training rows, ``crossfit`` being its agreement summary)
    must agree with the given labels more than chance (``chance.pooled_z`` >= ``CHANCE_Z``).

    Why: a model that learnt nothing disagrees with about as many labels as chance does, its
    diagnosis flags them, the noise estimated from the flags is an artefact of them, and a candidate
    that adopts the flags' suggestions then predicts what that estimate rewards, so the noise-corrected
    validation score favours it. On data with random labels, repairs kept rounds that relabelled or
    quarantined up to 80 % of the training rows (``benchmarks/null_data.py``)."""
    parts = []
    val = grading.labels
    if len(val):
        pred, _ = grading.rows_of(base.model)
        correct = (pred == val).astype(float)
        if heldout is not None:  # the best epoch's own agreement reads high: it was chosen on these rows
            correct = cross_fitted_rows(heldout, val, lambda p: (p == val).astype(float))
        parts.append((float(correct.mean()), chance_agreement(val, pred, k), len(val)))
    if crossfit and crossfit["rows"]:
        parts.append((crossfit["agreement"], crossfit["chance_agreement"], crossfit["rows"]))
    rows = sum(n for _, _, n in parts)
    z = pooled_z(parts)
    return {"rows": rows, "agreement": sum(o * n for o, _, n in parts) / max(rows, 1),
            "chance_agreement": sum(c * n for _, c, n in parts) / max(rows, 1), "z_over_chance": z,
            # no out-of-sample row at all: nothing to judge by, so the repair goes on as before
            "usable": bool(z >= CHANCE_Z) if rows else True}


def _heldout_probs(fr, n_val: int) -> np.ndarray | None:
    """A round's per-epoch validation probabilities from its ledger (None without a ledger)."""
    from ..monitor import read_ledger

    try:
        led = read_ledger(fr.run.path)
    except (RunError, OSError, ValueError):  # no ledger (turned off) or an unreadable one: score as before
        return None
    hp = led.heldout_probs
    if hp is None or hp.ndim != 3 or hp.shape[1] < n_val or len(hp) == 0 or n_val < 2:  # nothing to halve
        return None
    return np.asarray(hp[:, :n_val])


class _Candidate(NamedTuple):
    """One model a round trained: its name, plan, training state, change counts, fit and validation scores."""

    name: str
    plan: Plan
    state: _State
    counts: dict
    fit: Any
    scores: dict
    rows: np.ndarray
    options: dict


@dataclass
class _Loop:
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


def _repair(run: Run, ds: Dataset, splits: Any, cfg: Any, policy: str, rounds: int, reviewed: Any, quiet: bool,
            target: str | None, test: Any, crossfit_folds: int = FOLDS, mixup: float = MIXUP_ALPHA,
            resume: bool = False) -> RepairResult:
    t_start = time.time()
    log = _Log(quiet)
    n_tr, n_va = len(splits.train), len(splits.val)
    dev_idx = np.concatenate([splits.train, splits.val])
    dev = ds.subset(dev_idx)  # reads the labels of these rows only
    n_dev, k = len(dev), ds.n_classes
    is_val = np.arange(n_dev) >= n_tr
    run.update_meta(data={"source": ds.source, "kind": ds.kind, "n_rows": len(ds), "n_classes": k,
                          "classes": ds.classes, "n_train": n_tr, "n_val": n_va, "n_test": len(splits.test),
                          "target": target, "test": str(test) if test else None}, classes=ds.classes, kind=ds.kind)

    state = _State(dev.y.copy(), ~is_val)
    log(f"round 0: baseline on the given labels ({n_tr} training, {n_va} validation rows)")
    base = _fit_round(run.path / "round0", dev, state, is_val, cfg, Plan(state.labels.copy(), np.zeros(n_dev, bool)),
                      quiet, resume=resume)
    diag0 = diagnose_round(base, quiet, resume)
    evidence = round_evidence(base, diag0, dev, n_dev, k)
    state, exempt, reviewed_labels, review_summary = _apply_review(reviewed, dev, ds, splits, state, evidence, log)
    # the noise estimate every round's validation score is corrected with, fixed from the baseline
    s0 = evidence["samples"]
    flagged0 = s0["label_issue"].to_numpy(bool) & (s0["suggested_code"].to_numpy(np.int64) >= 0)
    estimated = noise_transition(np.where(flagged0, s0["suggested_code"].to_numpy(np.int64), dev.y), dev.y, k)
    transition = usable_transition(estimated)
    oof, crossfit_summary = None, None
    if policy == "auto" and crossfit_folds >= 2 and (state.in_train & ~exempt).any():
        # out-of-fold probabilities for the first round's crossfit candidates. They are not used for
        # the noise estimate above: their confident joint over-counted the noise on digits at 20 %
        # (corrected validation accuracy clipped at 1 for every round) and was unusable at 40 %
        log(f"round 1: {crossfit_folds}-fold cross-fit for out-of-fold label evidence")
        oof = _crossfit(run, dev, state.labels, state.in_train & ~exempt, is_val, cfg, crossfit_folds, quiet, resume)
        agree, chance, z = agreement_over_chance(oof, state.labels)
        crossfit_summary = {"folds": crossfit_folds, "rows": int(np.isfinite(oof).all(1).sum()), "agreement": agree,
                            "chance_agreement": chance, "z_over_chance": z, "flags_used": bool(z >= CHANCE_Z)}
        if not z >= CHANCE_Z:
            log(f"round 1: the cross-fitted models agree with the given labels no better than chance ({agree:.3f} "
                f"vs {chance:.3f}): they did not learn the classes, so their flags are not used")
    val_trusted = exempt[is_val]  # a reviewer's validation labels are scored as they are, not corrected
    # ... and the rest for the noise the reviewer left them (none, where every flagged row was reviewed)
    grading = _Grading(dev.X[is_val], state.labels[is_val], unreviewed_noise(transition, flagged0[is_val], val_trusted),
                       val_trusted)
    # the reliability curve is one fit over all validation rows: reviewed and unreviewed noise blended
    rel_transition = blended_noise(grading.transition, float(val_trusted.mean()))  # val is never empty here
    loop = _Loop(run, dev, is_val, cfg, policy, exempt, quiet, mixup, resume, log)
    review_changed = review_summary is not None and bool(review_summary["changed"])

    fits = [base]
    states = [_State(dev.y.copy(), ~is_val)]
    quarantine: dict[int, tuple[str, int]] = {}
    heldout0 = _heldout_probs(base, n_va)  # read once: the baseline's score and its evidence check use them
    scores0, rows0 = grading.score(base, repaired=False, heldout=heldout0)  # the plain fit: its best epoch
    val_rows = [rows0]  # each kept round's per-row corrected validation score
    records = [{"round": 0, "relabelled": 0, "dropped": 0, "reweighted": 0, **scores0,
                "train_rows": n_tr, "flagged": int(s0["label_issue"].to_numpy(bool).sum()),
                "best_epoch": base.state.best_epoch, "seconds": round(base.run.meta.get("seconds", 0.0), 2),
                "notes": ["the baseline: given labels"]}]
    log(f"round 0: val acc {records[0]['val_acc']:.4f} (noise-corrected {records[0]['val_acc_corrected']:.4f})")
    label_evidence = _label_evidence(base, grading, k, heldout0, crossfit_summary)
    stopped = None
    if policy in FLAG_POLICIES and not label_evidence["usable"] and not review_changed:
        stopped = ("the models' out-of-sample predictions agree with the given labels no better than chance "
                   f"({label_evidence['agreement']:.3f} vs {label_evidence['chance_agreement']:.3f} on "
                   f"{label_evidence['rows']} rows): they did not learn the classes, so their flags are no "
                   "evidence of wrong labels")
        log(f"round 1: {stopped}; nothing is repaired (check the target column and the model's health)")
    chosen = 0
    prev_fit, prev_evidence = base, evidence
    variant = {}  # the auto variant chosen in round 1, used in later rounds
    last_signature = None  # what the last kept round trained on
    noise = estimated  # the current labels' noise, for ``correct``: from the baseline's flags at first
    for r in range(1, (0 if stopped else rounds) + 1):
        inp = RoundInput(X=dev.X, labels=state.labels.copy(), given=dev.y, in_train=state.in_train.copy(),
                         is_val=is_val, exempt=exempt, samples=prev_evidence["samples"],
                         consensus=prev_evidence["consensus"], classes=ds.classes, kind=ds.kind,
                         # round 1 has nothing quarantined and nothing to revisit: skip the pass
                         model_probs=model_probs(prev_fit, dev, is_val) if r > 1 else None,
                         reliability=reliability_of(prev_evidence["consensus"], is_val, grading.labels, rel_transition),
                         history=list(prev_fit.history), model_health=model_health(prev_fit), round=r,
                         transition=noise)
        tried = _train_candidates(loop, grading, r, round_candidates(policy, r, variant, inp, oof), inp, state,
                                  last_signature, review_changed=r == 1 and review_changed)
        if not tried:
            log(f"round {r}: nothing left to repair; stopping")
            break
        # among candidates, the better validation score (ties to the first, gentler one)
        best_c = tried[max(range(len(tried)), key=lambda i: (tried[i].rows.mean(), -i))]
        variant = best_c.options  # later rounds: the same policy options on their own diagnosis' flags
        last_signature = _signature(best_c.state, best_c.plan)
        for i in np.flatnonzero(best_c.plan.drop):
            quarantine[int(i)] = (best_c.plan.reasons.get(int(i), "flagged"), r)
        rec = _round_record(r, best_c, tried, review_summary if r == 1 else None)
        # the round is compared by the score of choosing among its candidates, not of the one chosen
        chosen_rows = cross_fitted_choice([t.rows for t in tried])
        if len(tried) > 1:
            rec["val_acc_corrected_choice"] = float(np.clip(chosen_rows.mean(), 0, 1))
        records.append(rec)
        fits.append(best_c.fit)
        states.append(best_c.state)
        val_rows.append(chosen_rows)
        state = best_c.state
        log(f"round {r}: val acc {rec['val_acc']:.4f} (noise-corrected {rec['val_acc_corrected']:.4f})")
        # paired, row by row, with the best round so far. A round is kept only if it scores better
        # on validation by more than the noise of the comparison (``clears_margin``); a tie or worse
        # stops the rounds and the best earlier round stays (the baseline when no round beat it).
        # Keeping ties because "the data is cleaner by the diagnosis' evidence" made Fashion-MNIST at
        # 20 % noise worse than no repair: where the flags are ~70 % precise, the evidence is exactly
        # what cannot be trusted.
        best = int(np.argmax([v.mean() for v in val_rows[:-1]]))
        diff, se = paired_difference(val_rows[best], val_rows[-1])
        rec["val_vs_best"], rec["val_vs_best_se"], rec["compared_with_round"] = diff, se, best
        if not clears_margin(diff, se):
            log(f"round {r}: validation is not better than round {best}; stopping")
            chosen = best
            break
        chosen = r
        if r < rounds:
            rows_r = _round_rows(state, is_val)
            diag = diagnose_labels(best_c.fit, evidence["samples"].iloc[rows_r])
            prev_fit, prev_evidence = best_c.fit, round_evidence(best_c.fit, diag, dev, n_dev, k, rows=rows_r)
            noise = _noise_after(best_c.fit, dev, state, is_val, k, exempt)

    # -- the only place the test labels are read -------------------------------------------------
    test_metrics = _final_evaluation(ds, splits, [f.model for f in fits])
    for rec, fr, tm in zip(records, fits, test_metrics):
        if tm:
            rec["test_acc"] = tm["acc"]
            rec["test_macro_f1"] = tm["macro_f1"]
            fr.run.update_meta(test_metrics=tm, test_metrics_note="measured by repair after the rounds were chosen")
    final = states[chosen]
    if chosen == 0:  # no automatic change is kept; a reviewer's decisions still are
        final = _State(np.where(exempt, reviewed_labels, dev.y), states[0].in_train)
    kept_out = {int(i): quarantine[int(i)] for i in np.flatnonzero(~final.in_train & ~is_val)}
    report = build_report(policy, chosen, records, test_metrics, fits, kept_out, final, dev, is_val, review_summary,
                          estimated, splits, time.time() - t_start)
    report["mixup"] = mixup  # the alpha the repair rounds trained with (0: none)
    report["crossfit"] = crossfit_summary
    report["label_evidence"] = label_evidence
    if stopped:
        report["policy"] = "none (no evidence to repair on)"
        report["stopped"] = stopped
    report["validation_review"] = validation_review(s0["label_issue"].to_numpy(bool), is_val, exempt)
    repaired = write_outputs(run, ds, splits, dev_idx, final.labels, ~(final.in_train | is_val), kept_out, exempt,
                             evidence["samples"], target, test is not None)
    write_samples(run, diag0.samples)
    run.write_json("repair.json", report)
    run.finish("finished", test_metrics=test_metrics[chosen] or {}, repair={k_: report[k_] for k_ in (
        "policy", "selected_round", "accuracy_before", "accuracy_after")}, seconds=time.time() - t_start)
    from ..fitting import _try_report

    _try_report(run)
    log(f"wrote {run.path}")
    return RepairResult(report, run.path, diag0, fits[chosen].model, repaired, fits)


def _apply_review(reviewed: Any, dev: Dataset, ds: Dataset, splits: Any, state: _State, evidence: dict, log):
    """A reviewer's decisions applied to the development rows before any automatic change: the new
    state, the rows they exempt from the policies, the reviewed labels and the review's summary
    (``state`` itself, nothing exempt and no summary without ``reviewed``)."""
    if reviewed is None:
        return state, np.zeros(len(dev), dtype=bool), dev.y.copy(), None
    from .reviewed import apply_reviewed

    labels, exempt, outcome = apply_reviewed(reviewed, dev.ids, state.labels,
                                             evidence["samples"]["suggested_code"].to_numpy(np.int64),
                                             ds.classes, ds.ids[splits.test])
    summary = outcome.to_dict()
    summary["file"] = str(reviewed)
    if outcome.skipped_test:
        log(f"review: {len(outcome.skipped_test)} decisions on test rows were not applied (the test split "
            "measures the repair)")
    return _State(labels, state.in_train.copy()), exempt, labels, summary


def _train_candidates(loop: _Loop, grading: _Grading, r: int, candidates: list[tuple[str, dict]], inp: RoundInput,
                      state: _State, last_signature: tuple | None, review_changed: bool) -> list[_Candidate]:
    """Train round ``r``'s candidates on what each one's policy plan changes, skipping a plan that
    changes nothing or repeats a training already run; each is scored on validation."""
    tried: list[_Candidate] = []
    for name, options in candidates:  # may grow while it runs: see "correct" below
        cand_inp, options = _candidate_input(inp, options)
        plan = _restrict(POLICIES[loop.policy](cand_inp, **options), inp)
        new = _State(plan.labels, (state.in_train & ~plan.drop) | plan.restore, plan.weights)
        counts = {"relabelled": int(((new.labels != state.labels) & new.in_train).sum()),
                  "dropped": int(plan.drop.sum()), "restored": int(plan.restore.sum()),
                  "reweighted": int((np.abs(plan.weights - 1) > 1e-6).sum()) if plan.weights is not None else 0}
        changed_data = any(counts.values()) or plan.config or plan.callbacks or plan.synthetic or review_changed
        sig = _signature(new, plan)
        if not changed_data or sig == last_signature or any(sig == _signature(t.state, t.plan) for t in tried):
            continue  # nothing to repair, or the same training as one already run
        loop.log(f"round {r}{' (' + name + ')' if name else ''}: relabelled {counts['relabelled']}, quarantined "
                 f"{counts['dropped']}, re-weighted {counts['reweighted']}; retraining")
        path = loop.run.path / (f"round{r}" if not tried else f"round{r}-{name}")
        fr = _fit_round(path, loop.dev, new, loop.is_val, loop.cfg, plan, loop.quiet, loop.mixup, loop.resume)
        scores, rows = grading.score(fr)
        tried.append(_Candidate(name, plan, new, counts, fr, scores, rows, options))
        if loop.policy == "auto" and r == 1 and name == "correct":
            # the same candidate once more through the noise its own predictions find: the
            # baseline's flags under-count class-dependent flips, and a first-round correction
            # that loses to the cleaning variants for that reason would never get a later round
            candidates.append(("correct-reestimated",
                               {**VARIANTS["correct"], "transition": _noise_after(
                                   fr, loop.dev, new, loop.is_val, loop.dev.n_classes, loop.exempt)}))
    return tried


def _round_record(r: int, kept: _Candidate, tried: list[_Candidate], review_summary: dict | None) -> dict:
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
        return list(VARIANTS.items()) + _crossfit_candidates(inp, oof)
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


def _crossfit_candidates(inp: RoundInput, oof: np.ndarray | None) -> list[tuple[str, dict]]:
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


def _noise_after(fr, dev: Dataset, state: _State, is_val: np.ndarray, k: int,
                 reviewed: np.ndarray | None = None) -> np.ndarray:
    """The noise transition of ``state``'s labels with a round's predictions standing in for the true
    classes, on the rows it trained and validated on, a reviewer's rows left out (their labels carry no
    noise, and counting them would dilute the estimate for the rest). After a forward-corrected round
    this is a better estimate than the baseline's flags gave (see ``correct``); the next ``correct``
    round uses it."""
    from ..train.trainer import predict_proba

    rows = _round_rows(state, is_val)
    if reviewed is not None and (~reviewed[rows]).any():
        rows = rows[~reviewed[rows]]
    pred = np.full(len(state.labels), -1, dtype=np.int64)
    pred[rows] = predict_proba(fr.model, dev.X[rows]).argmax(1)
    return transition_from(pred, state.labels, rows, k)


def _candidate_input(inp: RoundInput, options: dict) -> tuple[RoundInput, dict]:
    """``inp`` with a candidate's own label ``flags`` and noise ``transition`` where its options carry
    them (everything else as diagnosed), and the options left for the policy."""
    options = dict(options)
    flags, transition = options.pop("flags", None), options.pop("transition", None)
    if flags is not None:
        inp = replace(inp, samples=inp.samples.assign(label_issue=np.asarray(flags, bool)))
    if transition is not None:
        inp = replace(inp, transition=transition)
    return inp, options


def _signature(state: _State, plan: Plan) -> tuple:
    """What a round trains on: two rounds with equal signatures train the same model."""
    w = None if state.weights is None else np.round(state.weights, 6).tobytes()
    return (state.labels.tobytes(), state.in_train.tobytes(), w, tuple(sorted(plan.config.items())),
            tuple(getattr(c, "key", type(c).__name__) for c in plan.callbacks),
            None if plan.synthetic is None else len(plan.synthetic[1]))


def _round_rows(state: _State, is_val: np.ndarray) -> np.ndarray:
    """Development rows a round trains/validates on, in the order of its dataset: training, validation."""
    return np.concatenate([np.flatnonzero(state.in_train), np.flatnonzero(is_val)])


def _fit_round(path: Path, dev: Dataset, state: _State, is_val: np.ndarray, cfg: Any, plan: Plan, quiet: bool,
               mixup: float = 0.0, resume: bool = False):
    """Train one round on ``state``; a repair round (``mixup`` > 0) adds mixup unless the plan already mixes.
    With ``resume``, a round that finished in ``path`` is read back and one that was cut off continues
    (``_resumed_fit``)."""
    from ..data import Splits
    from ..fitting import fit

    rows = _round_rows(state, is_val)
    n_train = int(state.in_train.sum())
    sub = dev.subset(rows).with_labels(state.labels[rows])
    train = np.arange(n_train)
    weights = None if state.weights is None else np.asarray(state.weights, np.float32)[rows]
    if plan.synthetic is not None and len(plan.synthetic[1]):
        Xs, ys = plan.synthetic
        sub = Dataset(np.concatenate([sub.X, Xs]), np.concatenate([sub.y, ys]), sub.classes,
                      np.concatenate([sub.ids, [f"synthetic:{i}" for i in range(len(ys))]]), sub.kind,
                      sub.feature_names, sub.source, dict(sub.info), sub.encoder, None)
        train = np.concatenate([train, np.arange(len(rows), len(rows) + len(ys))])
        if weights is not None:
            weights = np.concatenate([weights, np.ones(len(ys), np.float32)])
    splits = Splits(train, np.arange(n_train, len(rows)), np.zeros(0, np.int64))
    round_cfg = cfg.replace(**plan.config) if plan.config else cfg
    callbacks = list(plan.callbacks)
    if mixup > 0 and not any(isinstance(c, Mixup) for c in callbacks):
        callbacks.append(Mixup(mixup))
    if resume and (path / "run.json").exists():
        done = _resumed_fit(path, sub, splits, callbacks, weights, quiet)
        if done is not None:
            return done
    return fit(sub, splits=splits, out=path, config=round_cfg, callbacks=callbacks, sample_weight=weights,
               quiet=quiet, write_report=False)


def _resumed_fit(path: Path, sub: Dataset, splits: Any, callbacks: list, weights: np.ndarray | None, quiet: bool):
    """A round's fit from an earlier, killed repair: the finished run read back (its best-epoch model,
    history and best epoch, exactly what ``fit`` returned then), or the cut-off run continued from its
    last checkpoint; None (folder cleared) when it stopped before its first checkpoint. Refuses a
    folder trained on other rows or labels than this round's."""
    import shutil

    from ..fitting import FitResult, fit, load_model, make_config
    from ..train.checkpoint import load_checkpoint

    run = Run(path)
    meta = run.meta
    seen = (meta.get("data") or {}).get("fingerprint")
    if seen is not None and seen != sub.fingerprint():
        raise RunError(f"{path}: trained on other rows or labels than this repair gives that round (different data, "
                       "split or review file?); cannot resume: start the repair without --resume in a new --out")
    last = run.checkpoint_dir / "last.pt"
    if not last.exists():
        shutil.rmtree(path, ignore_errors=True)
        return None
    if meta.get("status") != "finished":
        return fit(sub, splits=splits, out=path, callbacks=callbacks, sample_weight=weights, quiet=quiet,
                   write_report=False, resume=True)
    payload = load_checkpoint(last)
    state = SimpleNamespace(best_epoch=payload["best_epoch"], history=list(payload["history"]), extra={})
    cfg = make_config(meta.get("config", {}).get("train"))
    return FitResult(run, load_model(path), sub, splits, list(payload["history"]), {}, cfg, state)


def _crossfit(run: Run, dev: Dataset, labels: np.ndarray, rows: np.ndarray, is_val: np.ndarray, cfg: Any,
              folds: int, quiet: bool, resume: bool) -> np.ndarray:
    """``crossfit_probs``, kept in the repair folder (``crossfit_oof.npy``) so a resumed repair reads
    them back instead of refitting the folds (a cross-fit killed part-way keeps its finished folds and
    continues the one it was fitting from its checkpoint)."""
    path = run.path / "crossfit_oof.npy"
    oof = load_probs(path, (len(dev), dev.n_classes)) if resume else None
    if oof is not None:
        return oof
    oof = crossfit_probs(dev, labels, rows, is_val, cfg, run.path / "crossfit", folds, quiet, resume)
    save_probs(path, oof)
    return oof


def _restrict(plan: Plan, inp: RoundInput) -> Plan:
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


def _final_evaluation(ds: Dataset, splits: Any, models: list) -> list[dict]:
    """Test metrics of each model. Runs once, after the chosen round is fixed: the only read of the
    test labels in the whole repair."""
    from ..train.metrics import classification_metrics
    from ..train.trainer import predict_proba

    if len(splits.test) == 0:
        return [{} for _ in models]
    X_test = ds.X[splits.test]
    y_test = ds.y[splits.test]
    return [classification_metrics(y_test, predict_proba(m, X_test)) for m in models]


class _Log:
    def __init__(self, quiet: bool):
        self.console = None
        if not quiet:
            from rich.console import Console

            self.console = Console(stderr=True)

    def __call__(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(f"[dim]repair[/] {msg}")
