"""The repair loop and its policies (issue 5).

End-to-end tests use digits as a 64-column table (1,000 rows, MLP) with 20 % symmetric flips in the
training and validation rows; the test rows keep their true labels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trainyard.data import Dataset, inject_label_noise, load, make_splits
from trainyard.errors import DataError
from trainyard.repair import Mixup, ImageAugment, RoundInput, drop, rebalance, relabel, repair, reweight
from trainyard.repair.evidence import (blended_noise, corrected_accuracy, noise_transition, reliability_curve, row_scores,
                                      unreviewed_noise, usable, usable_transition)
from trainyard.repair.candidates import restrict
from trainyard.repair.reviewed import apply_reviewed

OPTS = {"model": "mlp", "epochs": 20, "hidden": (128,), "monitor": False, "seed": 0}


@pytest.fixture(scope="module")
def noisy_digits():
    d = load("sklearn:digits")
    keep = np.sort(np.random.default_rng(0).choice(len(d), 1000, replace=False))
    ds = Dataset(d.X[keep].reshape(1000, -1), d.y[keep], d.classes, np.arange(1000), "tabular")
    splits = make_splits(ds.y, (0.5, 0.2, 0.3), seed=0)
    labelled = np.concatenate([splits.train, splits.val])
    noisy_y, flipped = inject_label_noise(ds.y, 0.2, "symmetric", ds.n_classes, seed=0, idx=labelled)
    return ds, ds.with_labels(noisy_y), splits, flipped


@pytest.fixture(scope="module")
def fixed(noisy_digits, tmp_path_factory):
    _, noisy, splits, _ = noisy_digits
    return repair(noisy, splits=splits, out=tmp_path_factory.mktemp("repair") / "fixed", rounds=1, **OPTS)


def _csv(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _decisions(rounds: list[dict]) -> list[dict]:
    """A repair's rounds without test scores, timings and folder names: what it decided and why."""
    def keep(d):
        return {k: [keep(c) for c in v] if k == "candidates" else v for k, v in d.items()
                if not k.startswith("test_") and k not in ("seconds", "run")}
    return [keep(r) for r in rounds]


# -- end to end -----------------------------------------------------------------------------------
def test_repair_raises_test_accuracy(fixed):
    r = fixed.report
    assert r["selected_round"] == 1
    assert r["accuracy_after"] >= r["accuracy_before"] + 0.01, r
    assert r["macro_f1_after"] > r["macro_f1_before"]
    for name in ("repair.json", "repaired.csv", "quarantine.csv", "round0/run.json", "round1/run.json"):
        assert (fixed.out / name).exists(), name
    # the baseline keeps its best epoch: it is compared on the cross-fitted score, and the score as
    # chosen is kept beside it (here the curve is flat at its end, so the two are close)
    base = r["rounds"][0]
    assert abs(base["val_acc_corrected_as_chosen"] - base["val_acc_corrected"]) < 0.05, base


def test_relabels_are_mostly_true_flips(fixed, noisy_digits):
    truth, _, splits, flipped = noisy_digits
    rep = _csv(fixed.out / "repaired.csv")
    changed = rep[rep["changed"] == "True"]
    ids = changed["id"].astype(int).to_numpy()
    assert len(changed) >= 30
    assert set(changed["split"]) == {"train"}  # validation and test rows are never relabelled
    assert flipped[ids].mean() >= 0.9  # relabelled rows were truly flipped
    assert (changed["label"].astype(int).to_numpy() == truth.y[ids]).mean() >= 0.9  # ... back to their class
    assert fixed.report["relabelled"] == len(changed)


def test_every_dropped_row_is_in_quarantine(fixed, noisy_digits):
    ds, _, splits, _ = noisy_digits
    rep, q = _csv(fixed.out / "repaired.csv"), _csv(fixed.out / "quarantine.csv")
    missing = set(ds.ids) - set(rep["id"])  # rows the clean data set lost
    assert len(missing) == fixed.report["dropped"] > 0
    assert missing == set(q["id"])
    assert (q["reason"].str.len() > 0).all() and set(q["label"]) <= set(ds.classes)
    assert len(fixed.dataset) == len(ds) - len(missing)  # the returned repaired Dataset agrees


def test_test_labels_are_not_read_before_the_final_evaluation(fixed, noisy_digits, tmp_path, monkeypatch):
    """Run again with every test label replaced by one constant class. If anything before the final
    evaluation read them (diagnosis, noise estimate, round selection), a decision or a validation
    score would change. The final evaluation gets the true labels back, so even the test scores match."""
    import trainyard.fitting
    import trainyard.repair.loop as loop

    _, noisy, splits, _ = noisy_digits
    true_test = noisy.y[splits.test].copy()
    blind = noisy.with_labels(noisy.y.copy())
    blind.y[splits.test] = 0
    events: list[str] = []
    real_fit, real_final = trainyard.fitting.fit, loop._final_evaluation

    def fit(*a, **k):
        events.append("fit")
        return real_fit(*a, **k)

    def final(ds, sp, models):
        events.append("final")
        assert (ds.y[sp.test] == 0).all()  # nothing restored the labels earlier
        ds.y[sp.test] = true_test
        return real_final(ds, sp, models)

    monkeypatch.setattr(trainyard.fitting, "fit", fit)
    monkeypatch.setattr(loop, "_final_evaluation", final)
    again = repair(blind, splits=splits, out=tmp_path / "blind", rounds=1, **OPTS)
    assert events[-1] == "final" and events.count("final") == 1 and len(events) >= 3  # baseline, candidates

    assert _decisions(again.report["rounds"]) == _decisions(fixed.report["rounds"])
    assert again.report["selected_round"] == fixed.report["selected_round"]
    assert again.report["accuracy_after"] == fixed.report["accuracy_after"]
    for name in ("repaired.csv", "quarantine.csv"):
        assert _csv(again.out / name).equals(_csv(fixed.out / name)), name


def test_a_killed_repair_resumes_to_the_same_result(fixed, noisy_digits, tmp_path, monkeypatch):
    """Kill the repair after two epochs of its second first-round candidate, then run it again with
    ``resume`` and no options: the finished baseline, cross-fit and first candidate are read back, not
    retrained; the cut-off candidate continues from its checkpoint; the stored options are used; and
    every decision, score and output is the uninterrupted repair's (``fixed``, same data and options)."""
    import trainyard.fitting
    from trainyard.errors import RunError
    from trainyard.run import Run
    from trainyard.train.callback import Callback

    _, noisy, splits, _ = noisy_digits
    real_fit = trainyard.fitting.fit
    calls: list[tuple[str, bool]] = []

    class Kill(Callback):
        def after_epoch(self, state, control):
            if state.epoch == 2:
                raise KeyboardInterrupt

    def fit(*a, out=None, **k):
        name = out.name if out.parent.name != "crossfit" else "crossfit/" + out.name
        calls.append((name, bool(k.get("resume"))))
        if name == "round1-prune" and not k.get("resume"):
            k["callbacks"] = [*k.get("callbacks", []), Kill()]
        return real_fit(*a, out=out, **k)

    monkeypatch.setattr(trainyard.fitting, "fit", fit)
    import trainyard.diagnose

    real_diagnose = trainyard.diagnose.diagnose_run

    def diagnose_run(path, **k):
        calls.append(("diagnose " + Path(path).name, False))
        return real_diagnose(path, **k)

    monkeypatch.setattr(trainyard.diagnose, "diagnose_run", diagnose_run)
    out = tmp_path / "killed"
    with pytest.raises(RunError, match="nothing to resume"):
        repair(noisy, splits=splits, out=out, resume=True)
    with pytest.raises(KeyboardInterrupt):
        repair(noisy, splits=splits, out=out, rounds=1, **OPTS)
    assert Run(out).meta["status"] == "failed" and not (out / "repair.json").exists()
    assert calls[-1] == ("round1-prune", False) and ("round1", False) in calls
    calls.clear()
    again = repair(noisy, splits=splits, out=out, resume=True)
    assert calls[0] == ("round1-prune", True)  # nothing before it was trained or diagnosed again
    assert all(not r for _, r in calls[1:]) and len(calls) >= 3  # the candidates after it: fresh
    assert _decisions(again.report["rounds"]) == _decisions(fixed.report["rounds"])
    assert again.report["accuracy_after"] == fixed.report["accuracy_after"]
    for name in ("repaired.csv", "quarantine.csv", "samples.csv"):
        assert _csv(again.out / name).equals(_csv(fixed.out / name)), name
    assert again.diagnosis.summary == fixed.diagnosis.summary
    # a round folder trained on other labels is refused, not silently reused
    other = noisy.with_labels(np.roll(noisy.y, 1))
    with pytest.raises(RunError, match="other rows or labels"):
        repair(other, splits=splits, out=out, resume=True)


def test_reviewed_decisions_are_applied_first(fixed, noisy_digits, tmp_path):
    ds, noisy, splits, _ = noisy_digits
    s = fixed.diagnosis.samples
    rep = _csv(fixed.out / "repaired.csv").set_index("id")
    auto_changed = [i for i in rep.index if rep.loc[i, "changed"] == "True"]
    flagged = s[s["label_issue"] & (s["split"] == "train")]["id"].astype(str).tolist()
    rejected = auto_changed[0]  # auto relabelled it; the reviewer says the given label is right
    accepted = next(i for i in flagged if i not in auto_changed)  # auto did not take its suggestion
    unflagged = s[~s["label_issue"] & (s["split"] == "train")]["id"].astype(str).iloc[0]
    val_row = s[s["split"] == "val"]["id"].astype(str).iloc[0]
    test_row = str(ds.ids[splits.test[0]])
    given = dict(zip(ds.ids, np.asarray(ds.classes)[noisy.y]))
    other = lambda i: next(c for c in ds.classes if c != given[i])  # noqa: E731
    path = tmp_path / "reviewed.csv"
    path.write_text("id,decision\n"
                    f"{rejected},reject\n{accepted},accept\n{unflagged},{other(unflagged)}\n"
                    f"{val_row},{other(val_row)}\n{test_row},{other(test_row)}\n")
    res = repair(noisy, splits=splits, out=tmp_path / "reviewed", rounds=1, reviewed=path, **OPTS)
    out = _csv(res.out / "repaired.csv").set_index("id")
    suggested = dict(zip(s["id"].astype(str), s["suggested_label"].astype(str)))
    assert out.loc[rejected, "label"] == given[rejected] and out.loc[rejected, "reviewed"] == "True"
    assert out.loc[accepted, "label"] == suggested[accepted] != given[accepted]
    assert out.loc[unflagged, "label"] == other(unflagged)
    assert out.loc[val_row, "label"] == other(val_row)  # a person's label applies to validation rows too
    assert out.loc[test_row, "label"] == given[test_row]  # ... never to test rows
    assert res.report["reviewed"]["skipped_test_rows"] == 1
    assert res.report["reviewed"]["accepted"] == 1 and res.report["reviewed"]["rejected"] == 1
    # one validation row reviewed; the flagged validation rows left for a reviewer are counted
    flagged_val = set(s[s["label_issue"] & (s["split"] == "val")]["id"].astype(str))
    assert res.report["validation_review"] == {"flagged": len(flagged_val), "reviewed": 1,
                                               "flagged_unreviewed": len(flagged_val - {val_row})}


def test_reviewed_file_errors_name_the_file_and_line(tmp_path):
    ids, labels = np.array(["a", "b", "c"]), np.array([0, 1, 0])
    suggested, classes = np.array([1, 0, 1]), ["x", "y"]
    bad_id = tmp_path / "r1.csv"
    bad_id.write_text("id,decision\na,accept\nzz,reject\n")
    with pytest.raises(DataError, match=r"r1\.csv, line 3: unknown id 'zz'"):
        apply_reviewed(bad_id, ids, labels, suggested, classes, np.array(["t"]))
    bad_class = tmp_path / "r2.csv"
    bad_class.write_text("id,decision\nb,zebra\n")
    with pytest.raises(DataError, match=r"r2\.csv, line 2: unknown class 'zebra'"):
        apply_reviewed(bad_class, ids, labels, suggested, classes, np.array(["t"]))
    bad_head = tmp_path / "r3.csv"
    bad_head.write_text("row,label\na,x\n")
    with pytest.raises(DataError, match="r3.csv"):
        apply_reviewed(bad_head, ids, labels, suggested, classes, np.array(["t"]))
    ok = tmp_path / "r4.csv"
    ok.write_text("id,decision\na,accept\nb,reject\nc,y\nt,x\n")
    new, exempt, outcome = apply_reviewed(ok, ids, labels, suggested, classes, np.array(["t"]))
    assert new.tolist() == [1, 1, 1] and exempt.all() and outcome.skipped_test == ["t"]


# -- the validation yardstick ------------------------------------------------------------------------
def test_corrected_accuracy_recovers_the_clean_accuracy():
    """Class-conditional noise k -> k+1 at 30 %: the plain accuracy against noisy labels says 0.56,
    the corrected one recovers the true 0.8."""
    rng = np.random.default_rng(0)
    n, k = 40_000, 5
    truth = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.8, truth, (truth + rng.integers(1, k, n)) % k)
    given = np.where(rng.random(n) < 0.3, (truth + 1) % k, truth)
    T = noise_transition(truth, given, k, prior=0)
    assert abs(float((pred == given).mean()) - 0.8 * 0.7 - 0.2 * 0.3 / 4) < 0.01
    assert abs(corrected_accuracy(pred, given, T) - 0.8) < 0.01
    assert corrected_accuracy(pred, given, None) == float((pred == given).mean())
    # symmetric noise: the correction is increasing and affine, so it ranks models like the plain score
    sym = np.full((k, k), 0.1) + np.eye(k) * 0.5
    better = np.where(rng.random(n) < 0.9, truth, pred)
    assert row_scores(better, given, sym).mean() > row_scores(pred, given, sym).mean()


def test_reviewed_validation_rows_are_scored_as_they_are():
    """Half the validation rows carry a reviewer's (true) labels, half the 30 % k -> k+1 noise: the
    reviewed rows are scored 0/1, the rest corrected, and the mean recovers the true accuracy. Correcting
    the reviewed rows too (as if they were noisy) would put it far off."""
    rng = np.random.default_rng(1)
    n, k = 40_000, 5
    truth = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.8, truth, (truth + rng.integers(1, k, n)) % k)
    trusted = np.arange(n) < n // 2
    given = np.where(~trusted & (rng.random(n) < 0.3), (truth + 1) % k, truth)
    T = noise_transition(truth[~trusted], given[~trusted], k, prior=0)
    scores = row_scores(pred, given, T, trusted)
    assert np.array_equal(scores[trusted], (pred == given)[trusted].astype(float))
    assert abs(scores.mean() - float((pred == truth).mean())) < 0.01
    assert abs(row_scores(pred, given, T).mean() - float((pred == truth).mean())) > 0.05


def test_rows_left_unreviewed_are_corrected_for_the_noise_left_in_them():
    """30 % k -> k+1 noise, flagged exactly: a reviewer fixes all, then half, of the flagged rows. The
    noise assumed for the unreviewed rest shrinks with the flags left (none: no correction), and the
    mixed score recovers the true accuracy; keeping the full-rate correction on them would not."""
    rng = np.random.default_rng(2)
    n, k = 40_000, 5
    truth = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.8, truth, (truth + rng.integers(1, k, n)) % k)
    noisy = rng.random(n) < 0.3
    given = np.where(noisy, (truth + 1) % k, truth)
    T = noise_transition(truth, given, k, prior=0)  # what perfect flags estimate
    true_acc = float((pred == truth).mean())
    assert unreviewed_noise(T, noisy, np.zeros(n, bool)) is T  # nothing reviewed: unchanged
    for reviewed in (noisy, noisy & (rng.random(n) < 0.5)):
        labels = np.where(reviewed, truth, given)
        left = unreviewed_noise(T, noisy, reviewed)
        assert abs(row_scores(pred, labels, left, reviewed).mean() - true_acc) < 0.01
        assert abs(row_scores(pred, labels, T, reviewed).mean() - true_acc) > 0.03
    assert np.allclose(unreviewed_noise(T, noisy, noisy), np.eye(k))


def test_reliability_of_a_half_reviewed_validation_split_uses_the_blended_noise():
    """Half the validation rows carry a reviewer's (true) labels, half 30 % symmetric noise. The model's
    top class is right with probability q at confidence q. Corrected for the blended noise the curve
    recovers q; corrected for the full noise (as if no row were reviewed) it overshoots."""
    rng = np.random.default_rng(3)
    n, k = 60_000, 5
    q = rng.uniform(0.3, 1.0, n)
    truth = rng.integers(0, k, n)
    top = np.where(rng.random(n) < q, truth, (truth + rng.integers(1, k, n)) % k)
    trusted = rng.random(n) < 0.5
    given = np.where(~trusted & (rng.random(n) < 0.3), (truth + rng.integers(1, k, n)) % k, truth)
    T = np.full((k, k), 0.3 / (k - 1)) + np.eye(k) * (0.7 - 0.3 / (k - 1))
    grid = np.array([0.4, 0.6, 0.8, 0.95])
    right = reliability_curve(q, top == given, blended_noise(T, trusted.mean()))(grid)
    assert np.abs(right - grid).max() < 0.04
    assert (reliability_curve(q, top == given, T)(grid) - grid).min() > 0.04
    assert blended_noise(T, 0.0) is not None and np.array_equal(blended_noise(T, 0.0), T)


def test_the_noise_a_round_finds_leaves_reviewed_rows_out():
    """40 % k -> k+1 noise on the training rows; the validation rows were reviewed (true labels). A model
    that predicts the true class re-estimates the noise at 0.6 on the diagonal from the noisy rows; the
    reviewed rows, counted in, would dilute it to 0.7 (a weaker correction where it matters most)."""
    from types import SimpleNamespace

    import torch

    from trainyard.repair.fits import RoundState, noise_after

    rng = np.random.default_rng(4)
    n, k = 4000, 4
    truth = rng.integers(0, k, n)
    is_val = np.arange(n) >= 3000
    labels = np.where(~is_val & (rng.random(n) < 0.4), (truth + 1) % k, truth)
    model = torch.nn.Linear(k, k)
    with torch.no_grad():
        model.weight.copy_(torch.eye(k) * 10)
        model.bias.zero_()
    fr, dev, state = SimpleNamespace(model=model), SimpleNamespace(X=np.eye(k, dtype=np.float32)[truth]), \
        RoundState(labels, ~is_val)
    assert abs(np.diag(noise_after(fr, dev, state, is_val, k, is_val)).mean() - 0.6) < 0.03
    assert abs(np.diag(noise_after(fr, dev, state, is_val, k)).mean() - 0.7) < 0.03


def test_a_transition_just_under_the_line_is_shrunk_not_dropped():
    """Class-conditional noise estimated at 40 % with one class at 54 %: the raw estimate is not usable
    (that class mostly mislabelled), the least shrinkage towards the identity is, and the corrected
    accuracy it gives is still far nearer the truth than the plain accuracy on the noisy labels."""
    rng = np.random.default_rng(1)
    n, k = 40_000, 5
    truth = rng.integers(0, k, n)
    rate = np.where(truth == 2, 0.54, 0.4)
    given = np.where(rng.random(n) < rate, (truth + 1) % k, truth)
    pred = np.where(rng.random(n) < 0.9, truth, (truth + 1) % k)
    T = noise_transition(truth, given, k, prior=0)
    assert not usable(T)
    S = usable_transition(T)
    assert usable(S) and np.diag(S).min() >= 0.5 and np.diag(S).min() < 0.55  # the least shrinkage
    assert np.allclose(S.sum(1), 1)
    plain = float((pred == given).mean())
    assert abs(corrected_accuracy(pred, given, S) - 0.9) < abs(plain - 0.9) / 3
    good = noise_transition(truth, np.where(rng.random(n) < 0.2, (truth + 1) % k, truth), k)
    assert usable_transition(good) is good


# -- policies on a hand-made round ---------------------------------------------------------------------
def _round(kind: str = "tabular") -> RoundInput:
    """8 rows, 2 classes: rows 0-5 train, 6-7 validation. Rows 1, 2 and 6 are flagged; row 1 with a
    clear suggestion, row 2 without one; row 3 was reviewed."""
    n = 8
    X = np.arange(n * 2, dtype=np.float32).reshape(n, 2) if kind == "tabular" else np.zeros((n, 1, 4, 4), np.float32)
    labels = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    samples = pd.DataFrame({"label_issue": [False, True, True, False, False, False, True, False],
                            "label_score": [0.1, 0.95, 0.92, 0.2, 0.1, 0.1, 0.99, 0.1],
                            "suggested_code": [1, 1, 0, 0, 1, 0, 1, 0], "outlier": [False] * 7 + [True],
                            "outlier_score": [0.1] * 7 + [0.9], "ambiguous": False, "issue": ""})
    cons = np.array([[.9, .1], [.2, .8], [.38, .62], [.5, .5], [.9, .1], [.1, .9], [.1, .9], [.2, .8]], np.float32)
    return RoundInput(X=X, labels=labels, given=labels.copy(), in_train=np.arange(n) < 6, is_val=np.arange(n) >= 6,
                      exempt=np.arange(n) == 3, samples=samples, consensus=cons, classes=["a", "b"], kind=kind)


def test_relabel_takes_only_clear_suggestions():
    inp = _round()
    plan = restrict(relabel(inp), inp)
    assert np.flatnonzero(plan.labels != inp.labels).tolist() == [1]  # row 2: the model gives its suggestion only 0.38
    assert plan.labels[1] == 1 and not plan.drop.any()


def test_auto_variants_split_flagged_rows_between_relabel_and_quarantine():
    from trainyard.repair.auto import auto

    inp = _round()
    gentle = restrict(auto(inp), inp)  # row 2: no clear suggestion and label_score >= 0.9, so quarantined
    assert np.flatnonzero(gentle.labels != inp.labels).tolist() == [1] and np.flatnonzero(gentle.drop).tolist() == [2]
    trust = restrict(auto(inp, prune=True, trust=True), inp)  # every flagged row takes its suggestion
    assert np.flatnonzero(trust.labels != inp.labels).tolist() == [1, 2] and trust.labels[2] == 0
    assert not trust.drop.any()
    pruned = restrict(auto(inp, prune=True, relabel=False), inp)
    assert (pruned.labels == inp.labels).all() and np.flatnonzero(pruned.drop).tolist() == [1, 2]


def test_revisit_rejudges_only_what_earlier_rounds_changed():
    from trainyard.repair.auto import auto

    inp = _round()
    inp.given = np.array([0, 1, 1, 1, 0, 1, 0, 1])  # an earlier round relabelled row 1 (1 -> 0) ...
    inp.labels = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    inp.in_train = np.array([True, True, True, True, False, True, False, False])  # ... and quarantined row 4
    # the retrained model: disagrees with the relabel of row 1 (back to its given class) and with the
    # untouched rows 2 and 5 (its own errors, or new flips: revisit leaves them alone); predicts the
    # quarantined row 4 with 0.95
    inp.model_probs = np.array([[.9, .1], [.3, .7], [.8, .2], [.4, .6], [.05, .95], [.7, .3], [np.nan] * 2,
                                [np.nan] * 2], np.float32)
    plan = restrict(auto(inp, revisit=True), inp)
    assert np.flatnonzero(plan.labels != inp.labels).tolist() == [1, 4] and plan.labels[1] == 1
    assert np.flatnonzero(plan.restore).tolist() == [4] and plan.labels[4] == 1 and not plan.drop.any()
    inp.model_probs[4] = [0.4, 0.6]  # not sure enough of the quarantined row: it stays out
    plan = restrict(auto(inp, revisit=True), inp)
    assert not plan.restore.any() and np.flatnonzero(plan.labels != inp.labels).tolist() == [1]
    inp.exempt = np.arange(8) == 1  # a reviewer's decision is never revisited
    assert (restrict(auto(inp, revisit=True), inp).labels == inp.labels).all()
    inp.model_probs = None  # round 1 has no earlier model: nothing to revisit
    plan = restrict(auto(inp, revisit=True), inp)
    assert (plan.labels == inp.labels).all() and not plan.restore.any() and not plan.drop.any()


def test_later_rounds_try_revisiting_after_a_cleaning_round():
    from trainyard.repair.candidates import VARIANTS, round_candidates

    inp = _round()
    first = [name for name, _ in round_candidates("auto", 1, {}, inp)]
    assert first == ["gentle", "prune", "drop", "trust", "correct"]  # no cross-fit evidence given
    for cleaning in ("gentle", "prune", "drop", "trust"):
        assert round_candidates("auto", 2, VARIANTS[cleaning], inp) == [("", VARIANTS[cleaning]),
                                                                          ("revisit", {"revisit": True})]
    assert round_candidates("auto", 2, VARIANTS["correct"], inp) == [("", VARIANTS["correct"]), ("drop", VARIANTS["drop"])]
    assert round_candidates("auto", 3, {"revisit": True}, inp) == [("", {"revisit": True})]
    assert round_candidates("relabel", 2, {}, inp) == [("", {})]


def test_drop_and_reweight_touch_only_editable_training_rows():
    inp = _round()
    d = restrict(drop(inp), inp)
    assert np.flatnonzero(d.drop).tolist() == [1, 2]  # not the flagged validation row 6, not outlier row 7 (val)
    assert set(d.reasons) == {1, 2} and all("label_score" in r for r in d.reasons.values())
    w = restrict(reweight(inp), inp)
    assert w.weights[1] == pytest.approx(0.05) and w.weights[2] == pytest.approx(0.08)
    assert (w.weights[[0, 3, 4, 5, 6, 7]] == 1).all()


def test_restrict_protects_validation_and_reviewed_rows():
    inp = _round()
    plan = relabel(inp)
    plan.labels[:] = 1 - inp.labels  # a misbehaving policy flips everything
    plan.drop[:] = True
    plan = restrict(plan, inp)
    changed = np.flatnonzero(plan.labels != inp.labels).tolist()
    assert changed == [0, 1, 2, 4, 5] and np.flatnonzero(plan.drop).tolist() == [0, 1, 2, 4, 5]


def test_rebalance_smote_for_tables_class_weights_for_images():
    inp = _round()
    inp.labels = np.array([0, 0, 0, 0, 1, 1, 0, 1])
    plan = rebalance(inp)
    Xs, ys = plan.synthetic
    assert len(ys) == 2 and (ys == 1).all() and Xs.shape == (2, 2)
    img = _round("image")
    assert rebalance(img).config == {"class_weight": "balanced"} and rebalance(img).synthetic is None


def test_augment_callbacks_change_the_batch_not_its_shape():
    from types import SimpleNamespace

    from trainyard.train import Control, TrainConfig

    torch.manual_seed(0)
    xb = torch.rand(16, 1, 8, 8)
    state = SimpleNamespace(xb=xb.clone(), yb=torch.randint(0, 3, (16,)), config=TrainConfig())
    ImageAugment(p=1.0).before_batch(state, Control())
    assert state.xb.shape == xb.shape and not torch.allclose(state.xb, xb)
    mix = Mixup(alpha=1.0, clean_logits=False)
    state.xb = torch.rand(16, 4)
    before = state.xb.clone()
    mix.before_batch(state, Control())
    state.logits = torch.randn(16, 3)
    state.loss = torch.nn.functional.cross_entropy(state.logits, state.yb)
    plain = float(state.loss)
    mix.after_loss(state, Control())
    assert state.xb.shape == before.shape and not torch.allclose(state.xb, before)
    assert float(state.loss) != plain


def test_mixup_hands_each_rows_own_logits_to_the_ledger():
    from types import SimpleNamespace

    from trainyard.train import Control, TrainConfig

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3)).train()
    clean = torch.rand(16, 4)
    state = SimpleNamespace(xb=clean.clone(), yb=torch.randint(0, 3, (16,)), config=TrainConfig(), model=model)
    mix = Mixup(alpha=1.0)
    mix.before_batch(state, Control())
    assert not torch.allclose(state.xb, clean)
    state.logits = model(state.xb)  # the training forward, on the mixed batch
    state.loss = torch.nn.functional.cross_entropy(state.logits, state.yb)
    running = model[1].running_mean.clone()
    mix.after_loss(state, Control())
    assert state.loss.requires_grad  # the mixed loss still trains the model
    assert model.training and torch.equal(model[1].running_mean, running)  # the extra pass moved no statistics
    with torch.no_grad():
        own = model.eval()(clean)
    assert torch.allclose(state.logits, own)  # what the ledger reads: each row's own prediction


def test_repair_rounds_train_with_mixup_unless_turned_off(monkeypatch, tmp_path):
    import trainyard.fitting as fitting
    from trainyard.repair.fits import RoundState, fit_round
    from trainyard.repair.plan import Plan

    seen = []
    monkeypatch.setattr(fitting, "fit", lambda *a, callbacks=(), **k: seen.append(list(callbacks)))
    ds = Dataset(np.random.default_rng(0).random((20, 3), dtype=np.float32), np.arange(20) % 2, ["a", "b"],
                 np.arange(20), "tabular")
    state, is_val = RoundState(ds.y.copy(), np.arange(20) < 15), np.arange(20) >= 15
    from trainyard.train import TrainConfig

    for alpha in (0.2, 0.0):
        fit_round(tmp_path, ds, state, is_val, TrainConfig(), Plan(ds.y.copy(), np.zeros(20, bool)), True, alpha)
    plan = Plan(ds.y.copy(), np.zeros(20, bool))
    plan.callbacks.append(Mixup(1.0))  # the augment policy's own mixup is not doubled
    fit_round(tmp_path, ds, state, is_val, TrainConfig(), plan, True, 0.2)
    assert [[type(c).__name__ for c in cbs] for cbs in seen] == [["Mixup"], [], ["Mixup"]]
    assert seen[0][0].alpha == 0.2 and seen[2][0].alpha == 1.0
    with pytest.raises(Exception, match="--mixup"):
        repair(ds, splits=make_splits(ds.y, (0.6, 0.2, 0.2), seed=0), out=tmp_path / "bad", mixup=-1)


# -- round selection ----------------------------------------------------------------------------
def test_a_round_is_kept_only_if_it_beats_the_best_on_validation():
    from trainyard.repair.selection import beats

    rng = np.random.default_rng(1)
    base = (rng.random(400) < 0.8).astype(float)
    assert not beats(base, base.copy())  # a tie keeps the earlier round (no repair)
    wrong, right = np.flatnonzero(base == 0), np.flatnonzero(base == 1)
    clearly = base.copy()
    clearly[wrong[:12]] = 1  # 12 rows better, none worse: several standard errors
    assert beats(base, clearly)
    assert not beats(clearly, base)
    mixed = clearly.copy()  # the same 12 better but 10 others worse: a lead of 2 rows, 0.43 standard errors
    mixed[right[:10]] = 0
    assert not beats(base, mixed)


def test_repair_rounds_use_the_final_epoch_unless_validation_says_it_is_worse():
    from trainyard.repair.selection import prefer_last

    rng = np.random.default_rng(0)
    best = (rng.random(400) < 0.8).astype(float)
    assert prefer_last(best, best.copy())  # equal: the final epoch
    mixed = best.copy()  # 6 rows worse, 5 better: within one standard error of the paired difference
    mixed[np.flatnonzero(best == 1)[:6]] = 0
    mixed[np.flatnonzero(best == 0)[:5]] = 1
    assert prefer_last(best, mixed)
    much = best.copy()
    much[np.flatnonzero(best == 1)[:40]] = 0  # 40 rows worse: clearly worse
    assert not prefer_last(best, much)


def test_a_best_epoch_is_scored_without_the_optimism_of_choosing_it():
    from trainyard.repair.selection import cross_fitted_rows

    rng = np.random.default_rng(0)
    n, k, epochs = 360, 10, 30
    labels = rng.integers(0, k, n)

    def probs_of(right_share):  # one epoch: each row right with this chance, else a random other class
        pred = np.where(rng.random(n) < right_share, labels, (labels + rng.integers(1, k, n)) % k)
        p = np.full((n, k), 0.02, np.float32)
        p[np.arange(n), pred] = 0.82
        return p

    def plain(pred):
        return (pred == labels).astype(float)

    # 30 epochs of the same model quality (70 %): the best of them on these rows reads several points high
    same = np.stack([probs_of(0.7) for _ in range(epochs)])
    acc = (same.argmax(-1) == labels).mean(1)
    assert acc.max() - acc.mean() > 0.02
    fair = cross_fitted_rows(same, labels, plain)
    assert fair.shape == (n,)
    assert abs(fair.mean() - acc.mean()) < 0.015 < acc.max() - fair.mean()
    # one truly better epoch among them is still found: its score, not the average
    better = same.copy()
    better[12] = probs_of(0.9)
    assert cross_fitted_rows(better, labels, plain).mean() > 0.85
    # the per-row scores are whatever score_rows gives for the epoch chosen without that row
    assert set(np.unique(cross_fitted_rows(better, labels, lambda p: 2 * plain(p), repeats=1))) <= {0.0, 2.0}


def test_the_best_of_a_rounds_candidates_is_scored_without_the_optimism_of_choosing_it():
    from trainyard.repair.selection import beats, cross_fitted_choice

    n = 360

    def models(rng, count):  # retrained models of one quality: they share most right and wrong rows
        common = (rng.random(n) < 0.9).astype(float)
        out = []
        for _ in range(count):
            m = common.copy()
            redraw = rng.random(n) < 0.1
            m[redraw] = (rng.random(redraw.sum()) < 0.9).astype(float)
            out.append(m)
        return out

    # a baseline and ten candidates no better than it, 40 times: the best candidate clears the keep
    # margin by luck most of the time, the choice scored on rows it was not made on about a third
    kept_best = kept_choice = 0
    for seed in range(40):
        base, *same = models(np.random.default_rng(seed), 11)
        kept_best += beats(base, max(same, key=lambda r: r.mean()))
        fair = cross_fitted_choice(same)
        assert fair.shape == (n,)
        kept_choice += beats(base, fair)
    assert kept_best >= 26 and kept_choice <= 18, (kept_best, kept_choice)
    # one truly better candidate among them is still found, and scored as itself
    rng = np.random.default_rng(0)
    base, *same = models(rng, 11)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:20]] = 1
    fair_better = cross_fitted_choice([*same, better])
    assert abs(fair_better.mean() - better.mean()) < 0.003 and beats(base, fair_better)
    assert np.array_equal(cross_fitted_choice([better]), better)  # one candidate: nothing chosen


# -- out-of-fold evidence ---------------------------------------------------------------------------
def test_confident_flags_find_planted_flips_and_skip_unseen_rows():
    from trainyard.repair.crossfit import confident_flags

    rng = np.random.default_rng(0)
    n, k = 600, 3
    true = rng.integers(0, k, n)
    probs = np.full((n, k), 0.1)
    probs[np.arange(n), true] = 0.8
    probs += rng.uniform(0, 0.05, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    labels = true.copy()
    flipped = rng.choice(n, 60, replace=False)
    labels[flipped] = (true[flipped] + 1) % k  # class-conditional: k -> k+1
    probs[:10] = np.nan  # rows no fold predicted
    flags = confident_flags(probs, labels, k)
    truth = labels != true
    assert not flags[:10].any()
    seen = np.arange(n) >= 10
    precision = truth[flags].mean()
    recall = flags[truth & seen].mean()
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)


def test_out_of_fold_flags_need_a_model_that_beats_chance():
    """Confident learning counts every disagreement of an uninformed model as a wrong label: a model
    that guesses disagrees with half of two classes. Such predictions flag nothing; weak but real
    ones (two classes, 40 % of the labels flipped, the model right on 90 % of true classes) still do."""
    from trainyard.diagnose.chance import CHANCE_Z, agreement_over_chance
    from trainyard.repair.crossfit import confident_flags

    rng = np.random.default_rng(1)
    n = 400
    labels = rng.integers(0, 2, n)
    guess = rng.dirichlet([1, 1], n)  # unrelated to the rows
    observed, chance, z = agreement_over_chance(guess, labels)
    assert abs(observed - chance) < 0.08 and z < CHANCE_Z
    assert not confident_flags(guess, labels, 2).any()
    true = rng.integers(0, 2, n)
    noisy = np.where(rng.random(n) < 0.4, 1 - true, true)
    right = rng.random(n) < 0.9
    pred = np.where(right, true, 1 - true)
    probs = np.where(np.arange(2) == pred[:, None], 0.8, 0.2)
    assert agreement_over_chance(probs, noisy)[2] > CHANCE_Z
    flags = confident_flags(probs, noisy, 2)
    assert flags.sum() > 50 and (noisy != true)[flags].mean() > 0.75


def test_a_repair_does_not_quarantine_rows_a_model_could_not_learn(tmp_path):
    """300 rows, 2,000 columns, the class is the sign of the first: more columns than rows, and the
    network learns nothing it can carry to unseen rows. Its out-of-sample predictions (cross-fit and
    validation) agree with the labels no better than chance, so the repair changes nothing and says
    why. Before this check a cross-fit candidate quarantined 112 of the 210 training rows."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2000)).astype(np.float32)
    ds = Dataset(X, (X[:, 0] > 0).astype(int), ["neg", "pos"], np.arange(300), "tabular")
    res = repair(ds, out=tmp_path / "r", rounds=1, **OPTS)
    r = res.report
    assert r["crossfit"]["flags_used"] is False and r["label_evidence"]["usable"] is False, r["label_evidence"]
    assert abs(r["label_evidence"]["agreement"] - r["label_evidence"]["chance_agreement"]) < 0.1
    assert r["label_evidence"]["rows"] == r["n_train"] + r["n_val"]
    assert r["selected_round"] == 0 and len(r["rounds"]) == 1 and "no better than chance" in r["stopped"]
    assert r["relabelled"] == r["dropped"] == 0 and r["accuracy_after"] == r["accuracy_before"]
    assert not (res.out / "round1").exists()  # no repair round was trained
    from rich.console import Console

    from trainyard.summary import print_repair

    console = Console(record=True, width=200)
    print_repair(res, console)
    text = console.export_text()
    assert "no repair:" in text and "review the validation rows" not in text  # the flags are no evidence


def test_crossfit_probs_are_out_of_fold_and_flag_class_conditional_flips(blobs, tmp_path):
    from trainyard.repair.crossfit import confident_flags, crossfit_probs
    from trainyard.train import TrainConfig

    ds, splits = blobs  # well separated: a model that never saw a row predicts its true class
    dev = ds.subset(np.concatenate([splits.train, splits.val]))
    is_val = np.arange(len(dev)) >= len(splits.train)
    noisy, flipped = inject_label_noise(dev.y, 0.2, "class_conditional", 4, seed=0, idx=np.flatnonzero(~is_val))
    cfg = TrainConfig(model="mlp", epochs=15, hidden=(64,), monitor=False, seed=0)
    oof = crossfit_probs(dev, noisy, ~is_val, is_val, cfg, tmp_path / "cf", folds=3)
    assert np.isfinite(oof[~is_val]).all() and np.isnan(oof[is_val]).all()
    assert not (tmp_path / "cf").exists()  # fold runs are removed
    flags = confident_flags(oof, noisy, 4)
    assert not flags[is_val].any()
    precision, recall = flipped[flags].mean(), flags[flipped].mean()
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_a_killed_crossfit_refits_only_its_unfinished_folds_from_their_checkpoints(blobs, tmp_path, monkeypatch):
    import trainyard.fitting
    from trainyard.repair.crossfit import crossfit_probs
    from trainyard.train import Callback, TrainConfig

    ds, splits = blobs
    dev = ds.subset(np.concatenate([splits.train, splits.val]))
    is_val = np.arange(len(dev)) >= len(splits.train)
    cfg = TrainConfig(model="mlp", epochs=5, hidden=(32,), monitor=False, seed=0)
    whole = crossfit_probs(dev, dev.y, ~is_val, is_val, cfg, tmp_path / "whole", folds=3)
    real_fit, calls, epochs = trainyard.fitting.fit, [], []

    class Count(Callback):
        def after_epoch(self, state, control):
            epochs.append(state.epoch)
            if len(calls) == 3 and not calls[-1][1] and state.epoch == 1:
                raise KeyboardInterrupt  # killed in the last fold, after its second epoch's checkpoint

    Count.order = 95  # after the checkpoint callback

    def fit(*a, out=None, resume=False, **k):
        calls.append((out.name, resume))
        return real_fit(*a, out=out, resume=resume, callbacks=[Count()], **k)

    monkeypatch.setattr(trainyard.fitting, "fit", fit)
    with pytest.raises(KeyboardInterrupt):
        crossfit_probs(dev, dev.y, ~is_val, is_val, cfg, tmp_path / "cut", folds=3)
    assert calls == [("fold0", False), ("fold1", False), ("fold2", False)]
    calls.clear()
    epochs.clear()
    again = crossfit_probs(dev, dev.y, ~is_val, is_val, cfg, tmp_path / "cut", folds=3, resume=True)
    assert calls == [("fold2", True)]  # folds 0 and 1 read back; fold 2 continues from its checkpoint
    assert epochs == [2, 3, 4]
    np.testing.assert_array_equal(again, whole)
    assert not (tmp_path / "cut").exists()


def test_auto_repair_tries_the_crossfit_candidates_in_round_one(fixed):
    r1 = fixed.report["rounds"][1]
    names = [c["variant"] for c in r1.get("candidates", [])]
    assert {"crossfit", "trust", "correct", "correct-reestimated"} <= set(names), names
    assert not (fixed.out / "crossfit").exists()


def test_forward_correction_fits_the_labels_through_the_transition():
    from types import SimpleNamespace

    from trainyard.repair.correct import ForwardCorrection
    from trainyard.train import Control, TrainConfig

    torch.manual_seed(0)
    logits, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    t = np.array([[0.6, 0.4, 0.0], [0.0, 0.7, 0.3], [0.2, 0.0, 0.8]])
    w = torch.linspace(0.5, 1.5, 8)
    state = SimpleNamespace(logits=logits, yb=y, config=TrainConfig(), extra={"batch_weight": w, "class_weight": None})
    ForwardCorrection(t).after_loss(state, Control())
    noisy = torch.softmax(logits, 1) @ torch.as_tensor(t, dtype=torch.float32)
    expected = -torch.log(noisy[torch.arange(8), y]) * w
    assert torch.allclose(state.loss_per_sample, expected, atol=1e-5)
    assert torch.isclose(state.loss, expected.mean(), atol=1e-5)
    # the identity is plain cross-entropy, and mixup's second term goes through the same transition
    state.extra["batch_weight"] = None
    ForwardCorrection(np.eye(3)).after_loss(state, Control())
    assert torch.isclose(state.loss, torch.nn.functional.cross_entropy(logits, y), atol=1e-5)
    mix = Mixup(alpha=1.0, clean_logits=False)
    state.xb = torch.rand(8, 4)
    mix.before_batch(state, Control())
    fc = ForwardCorrection(t)
    fc.after_loss(state, Control())
    first = state.loss.clone()
    mix.after_loss(state, Control())
    second = -torch.log(noisy[torch.arange(8), y[mix._perm]]).mean()
    assert torch.isclose(state.loss, mix._lam * first + (1 - mix._lam) * second, atol=1e-5)
    assert fc.key != ForwardCorrection(np.eye(3)).key  # rounds through different T are different trainings


def _repair_noisy_digits(out, kind: str, policy: str, rounds: int) -> dict:
    """repair.json of ``policy`` on digits (split 50/20/30) with 40 % ``kind`` noise in training and validation."""
    d = load("sklearn:digits")
    ds = Dataset(d.X.reshape(len(d), -1), d.y, d.classes, np.arange(len(d)), "tabular")
    splits = make_splits(ds.y, (0.5, 0.2, 0.3), seed=0)
    noisy_y, _ = inject_label_noise(ds.y, 0.4, kind, ds.n_classes, seed=0,
                                    idx=np.concatenate([splits.train, splits.val]))
    return repair(ds.with_labels(noisy_y), splits=splits, out=out, policy=policy, rounds=rounds, crossfit_folds=0,
                  **{**OPTS, "hidden": (256, 128), "epochs": 30}).report


def test_correct_policy_undoes_class_conditional_noise(tmp_path):
    """40 % of every class relabelled as the next class: the model trained on it confuses k with k+1;
    trained through the estimated transition it mostly does not, with no label changed and no row lost."""
    r = _repair_noisy_digits(tmp_path / "c", "class_conditional", "correct", rounds=2)
    assert r["accuracy_after"] >= r["accuracy_before"] + 0.15, r
    assert r["relabelled"] == 0 and r["dropped"] == 0
    assert r["selected_round"] >= 1 and "forward loss correction" in " ".join(r["rounds"][1]["notes"])


def test_generalized_cross_entropy_is_the_lq_loss_with_the_trainers_weights():
    from types import SimpleNamespace

    from trainyard.repair.robust import GeneralizedCrossEntropy
    from trainyard.train import Control, TrainConfig

    torch.manual_seed(0)
    logits, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    w, cw = torch.linspace(0.5, 1.5, 8), torch.tensor([1.0, 2.0, 0.5])
    state = SimpleNamespace(logits=logits, yb=y, config=TrainConfig(), extra={"batch_weight": w, "class_weight": cw})
    GeneralizedCrossEntropy(0.7).after_loss(state, Control())
    p = torch.softmax(logits, 1)[torch.arange(8), y]
    expected = (1 - p ** 0.7) / 0.7 * cw[y] * w
    assert torch.allclose(state.loss_per_sample, expected, atol=1e-6)
    assert torch.isclose(state.loss, expected.mean(), atol=1e-6)
    # q -> 0 is cross-entropy; q = 1 is the mean absolute error of the label's probability
    state.extra = {}
    GeneralizedCrossEntropy(1e-4).after_loss(state, Control())
    assert torch.isclose(state.loss, torch.nn.functional.cross_entropy(logits, y), atol=1e-3)
    GeneralizedCrossEntropy(1.0).after_loss(state, Control())
    assert torch.isclose(state.loss, (1 - p).mean(), atol=1e-6)
    with pytest.raises(ValueError, match="q must be in"):
        GeneralizedCrossEntropy(0.0)


def test_robust_policy_resists_symmetric_noise_without_changing_a_label(tmp_path):
    """40 % of digits' training and validation labels replaced by a random other class: the robust
    loss alone (no label changed, no row dropped) beats the model trained with cross-entropy."""
    r = _repair_noisy_digits(tmp_path / "r", "symmetric", "robust", rounds=1)
    assert r["relabelled"] == 0 and r["dropped"] == 0
    assert r["rounds"][1]["robust_loss"] and "generalized cross-entropy" in " ".join(r["rounds"][1]["notes"])
    assert r["accuracy_after"] >= r["accuracy_before"] + 0.01, r
