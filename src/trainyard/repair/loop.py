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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.dataset import Dataset
from ..diagnose.chance import CHANCE_Z, agreement_over_chance
from ..errors import ConfigError, RunError
from ..run import Run
from .candidates import POLICIES, RoundContext, round_candidates, round_record, signature, train_candidates
from .crossfit import FOLDS
from .diagnosis import diagnose_labels, diagnose_round, model_health, model_probs, reliability_of, round_evidence
from .evidence import blended_noise, noise_transition, paired_difference, unreviewed_noise, usable_transition
from .fits import RoundState, crossfit_oof, fit_round, noise_after, round_rows
from .grading import Grading, check_label_evidence, heldout_probs
from .outputs import build_report, validation_review, write_outputs, write_samples
from .plan import Plan, RoundInput
from .selection import clears_margin, cross_fitted_choice

# mixup's alpha in repair rounds. Why mixup: a repair leaves some wrong labels behind (on digits at
# 20 % class-conditional noise, 9 in 850 training rows cost ~1 point of test accuracy against the
# same rows with true labels), and mixup keeps a network from memorising them (Zhang et al., 2018,
# sec. 3.4); 0.2 is the paper's value for tables and small images
MIXUP_ALPHA = 0.2


@dataclass
class RepairResult:
    """What ``repair`` returns."""

    report: dict  # the content of repair.json
    out: Path  # the output folder
    diagnosis: Any  # the Diagnosis of the baseline (round 0)
    model: Any  # the model of the chosen round (the baseline's if no round beat it)
    dataset: Dataset | None = None  # the repaired data: every row not quarantined, corrected labels
    fits: list = field(default_factory=list)  # FitResult of each round, round 0 first


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


# policies that act on the diagnosis' label flags or on the noise estimated from them
FLAG_POLICIES = ("auto", "relabel", "drop", "reweight", "correct")


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

    state = RoundState(dev.y.copy(), ~is_val)
    log(f"round 0: baseline on the given labels ({n_tr} training, {n_va} validation rows)")
    base = fit_round(run.path / "round0", dev, state, is_val, cfg, Plan(state.labels.copy(), np.zeros(n_dev, bool)),
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
        oof = crossfit_oof(run, dev, state.labels, state.in_train & ~exempt, is_val, cfg, crossfit_folds, quiet, resume)
        agree, chance, z = agreement_over_chance(oof, state.labels)
        crossfit_summary = {"folds": crossfit_folds, "rows": int(np.isfinite(oof).all(1).sum()), "agreement": agree,
                            "chance_agreement": chance, "z_over_chance": z, "flags_used": bool(z >= CHANCE_Z)}
        if not z >= CHANCE_Z:
            log(f"round 1: the cross-fitted models agree with the given labels no better than chance ({agree:.3f} "
                f"vs {chance:.3f}): they did not learn the classes, so their flags are not used")
    val_trusted = exempt[is_val]  # a reviewer's validation labels are scored as they are, not corrected
    # ... and the rest for the noise the reviewer left them (none, where every flagged row was reviewed)
    grading = Grading(dev.X[is_val], state.labels[is_val], unreviewed_noise(transition, flagged0[is_val], val_trusted),
                      val_trusted)
    # the reliability curve is one fit over all validation rows: reviewed and unreviewed noise blended
    rel_transition = blended_noise(grading.transition, float(val_trusted.mean()))  # val is never empty here
    ctx = RoundContext(run, dev, is_val, cfg, policy, exempt, quiet, mixup, resume, log)
    review_changed = review_summary is not None and bool(review_summary["changed"])

    fits = [base]
    states = [RoundState(dev.y.copy(), ~is_val)]
    quarantine: dict[int, tuple[str, int]] = {}
    heldout0 = heldout_probs(base, n_va)  # read once: the baseline's score and its evidence check use them
    scores0, rows0 = grading.score(base, repaired=False, heldout=heldout0)  # the plain fit: its best epoch
    val_rows = [rows0]  # each kept round's per-row corrected validation score
    records = [{"round": 0, "relabelled": 0, "dropped": 0, "reweighted": 0, **scores0,
                "train_rows": n_tr, "flagged": int(s0["label_issue"].to_numpy(bool).sum()),
                "best_epoch": base.state.best_epoch, "seconds": round(base.run.meta.get("seconds", 0.0), 2),
                "notes": ["the baseline: given labels"]}]
    log(f"round 0: val acc {records[0]['val_acc']:.4f} (noise-corrected {records[0]['val_acc_corrected']:.4f})")
    label_evidence = check_label_evidence(base, grading, k, heldout0, crossfit_summary)
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
        tried = train_candidates(ctx, grading, r, round_candidates(policy, r, variant, inp, oof), inp, state,
                                 last_signature, review_changed=r == 1 and review_changed)
        if not tried:
            log(f"round {r}: nothing left to repair; stopping")
            break
        # among candidates, the better validation score (ties to the first, gentler one)
        best_c = tried[max(range(len(tried)), key=lambda i: (tried[i].rows.mean(), -i))]
        variant = best_c.options  # later rounds: the same policy options on their own diagnosis' flags
        last_signature = signature(best_c.state, best_c.plan)
        for i in np.flatnonzero(best_c.plan.drop):
            quarantine[int(i)] = (best_c.plan.reasons.get(int(i), "flagged"), r)
        rec = round_record(r, best_c, tried, review_summary if r == 1 else None)
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
            rows_r = round_rows(state, is_val)
            diag = diagnose_labels(best_c.fit, evidence["samples"].iloc[rows_r])
            prev_fit, prev_evidence = best_c.fit, round_evidence(best_c.fit, diag, dev, n_dev, k, rows=rows_r)
            noise = noise_after(best_c.fit, dev, state, is_val, k, exempt)

    # -- the only place the test labels are read -------------------------------------------------
    test_metrics = _final_evaluation(ds, splits, [f.model for f in fits])
    for rec, fr, tm in zip(records, fits, test_metrics):
        if tm:
            rec["test_acc"] = tm["acc"]
            rec["test_macro_f1"] = tm["macro_f1"]
            fr.run.update_meta(test_metrics=tm, test_metrics_note="measured by repair after the rounds were chosen")
    final = states[chosen]
    if chosen == 0:  # no automatic change is kept; a reviewer's decisions still are
        final = RoundState(np.where(exempt, reviewed_labels, dev.y), states[0].in_train)
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


def _apply_review(reviewed: Any, dev: Dataset, ds: Dataset, splits: Any, state: RoundState, evidence: dict, log):
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
    return RoundState(labels, state.in_train.copy()), exempt, labels, summary

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
