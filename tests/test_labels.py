"""Wrong-label and ambiguity detectors on ledgers from short real training runs with a known answer."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from trainyard.data import Dataset, Splits, inject_label_noise
from trainyard.diagnose.ambiguity import ambiguous_samples
from trainyard.diagnose.labels import (confident_joint_counts, error_threshold, label_issues, memorisation_window,
                                      separating_window, separation)

K = 4


def _blobs(n_per_class: int, seed: int, n_ambiguous: int = 0):
    """Well separated Gaussian classes in 8-D (centres 5.7 apart, each midpoint far from the other
    classes); optional rows planted midway between classes 0 and 1."""
    rng = np.random.default_rng(seed)
    centers = 4.0 * np.eye(K, 8)
    y = np.repeat(np.arange(K), n_per_class)
    X = centers[y] + rng.normal(scale=0.6, size=(len(y), 8))
    if n_ambiguous:
        mid = (centers[0] + centers[1]) / 2 + rng.normal(scale=0.1, size=(n_ambiguous, 8))
        X = np.vstack([X, mid])
        y = np.concatenate([y, np.arange(n_ambiguous) % 2])  # labelled 0 or 1, both defensible
    return X.astype(np.float32), y


def _fit(tmp, X, y, splits, seed=0):
    import trainyard as ty
    from trainyard.monitor import read_ledger

    ds = Dataset(X, y, [str(c) for c in range(K)], np.arange(len(y)))
    res = ty.fit(ds, splits=splits, out=tmp, epochs=20, seed=seed, quiet=True, write_report=False, monitor=False)
    return read_ledger(res.run.path, mmap=False)


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    X, y_true = _blobs(150, seed=0, n_ambiguous=24)
    n_blob = 150 * K
    rng = np.random.default_rng(0)
    order = rng.permutation(n_blob)
    val, test = np.sort(order[:90]), np.sort(order[90:120])
    train = np.setdiff1d(np.arange(len(y_true)), np.concatenate([val, test]))  # ambiguous rows train
    blob_train = train[train < n_blob]
    y, flipped = inject_label_noise(y_true, 0.2, "symmetric", K, seed=0, idx=blob_train)
    y, flipped_val = inject_label_noise(y, 0.1, "symmetric", K, seed=1, idx=val)
    ledger = _fit(tmp_path_factory.mktemp("noisy"), X, y, Splits(train, val, test))
    table, summary = label_issues(ledger, y, K)
    amb = ambiguous_samples(ledger, y, K)
    return SimpleNamespace(y=y, y_true=y_true, flipped=flipped, flipped_val=flipped_val, train=train, val=val,
                           test=test, ambiguous_rows=np.arange(n_blob, len(y)), table=table, summary=summary,
                           amb=amb, ledger=ledger)


def _f1(flag: np.ndarray, truth: np.ndarray) -> float:
    tp = np.sum(flag & truth)
    return 2 * tp / max(flag.sum() + truth.sum(), 1)


def test_flipped_training_labels_found(noisy_run):
    r = noisy_run
    rows = r.train[r.train < len(r.y) - len(r.ambiguous_rows)]
    f1 = _f1(r.table["label_issue"].to_numpy()[rows], r.flipped[rows])
    assert f1 >= 0.9, (f1, r.summary)
    assert 0.1 <= r.summary["estimated_noise_rate"] <= 0.3


def test_scores_are_probabilities_and_match_flags(noisy_run):
    t = noisy_run.table
    assert len(t) == len(noisy_run.y) and (t.index == np.arange(len(t))).all()
    s = t["label_score"].to_numpy()
    assert np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()
    assert ((s >= 0.5) == t["label_issue"].to_numpy()).all()
    assert set(t["split"]) == {"train", "heldout"}


def test_suggested_label_is_the_true_class(noisy_run):
    r = noisy_run
    hit = r.table["label_issue"].to_numpy() & r.flipped
    agree = r.table["suggested_label"].to_numpy()[hit] == r.y_true[hit]
    assert hit.sum() > 50 and agree.mean() >= 0.95


def test_heldout_rows_scored_out_of_sample(noisy_run):
    r = noisy_run
    flag = r.table["label_issue"].to_numpy()
    assert flag[r.flipped_val].mean() >= 0.8  # wrong validation labels are found too
    clean_heldout = np.setdiff1d(np.concatenate([r.val, r.test]), np.flatnonzero(r.flipped_val))
    assert flag[clean_heldout].mean() <= 0.05


def test_planted_ambiguous_rows_are_ambiguous_not_wrong(noisy_run):
    r = noisy_run
    amb = r.amb["ambiguous"].to_numpy()
    issue = r.table["label_issue"].to_numpy()
    planted = r.ambiguous_rows
    assert amb[planted].mean() >= 0.6, amb[planted].mean()
    assert issue[planted].mean() <= 0.2, issue[planted].mean()
    assert not (amb & issue).any()
    clean = np.setdiff1d(r.train, np.concatenate([planted, np.flatnonzero(r.flipped)]))
    assert amb[clean].mean() <= 0.03
    s = r.amb["ambiguity_score"].to_numpy()[r.train]
    assert (s >= 0).all() and (s <= 1).all()
    assert np.median(r.amb["ambiguity_score"].to_numpy()[planted]) > 0.5 > np.median(s)


def test_clean_data_has_few_flags(tmp_path):
    X, y = _blobs(120, seed=3)
    order = np.random.default_rng(3).permutation(len(y))
    splits = Splits(order[:340], order[340:440], order[440:])
    table, summary = label_issues(_fit(tmp_path, X, y, splits, seed=3), y, K)
    assert table["label_issue"].mean() <= 0.02, summary
    assert summary["estimated_noise_rate"] <= 0.03


def _fake_ledger(train_acc, heldout_acc, n=400, m=400, k=3):
    """A ledger whose per-epoch accuracies are the given ones (rows correct in order)."""
    e = len(train_acc)
    y = np.zeros(n + m, dtype=np.int64)
    pred = np.ones((e, n), dtype=np.int64)
    held = np.tile(np.array([0.1, 0.8, 0.1], np.float32), (e, m, 1))
    for i, (a, b) in enumerate(zip(train_acc, heldout_acc)):
        pred[i, :int(a * n)] = 0
        held[i, :int(b * m)] = [0.8, 0.1, 0.1]
    margin = np.where(pred == 0, 1.0, -1.0).astype(np.float32)
    return SimpleNamespace(margin=margin, pred=pred, probs=None, p_given=np.where(pred == 0, 0.8, 0.1),
                           heldout_probs=held, train_idx=np.arange(n), heldout_idx=np.arange(n, n + m)), y


def test_window_stops_when_heldout_accuracy_falls():
    ledger, y = _fake_ledger([.3, .6, .7, .72, .74, .76, .8, .9, .95, 1.0], [.8, .9, .9, .91, .9, .91, .8, .7, .7, .7])
    w = memorisation_window(ledger, y)
    assert (w.start, w.stop) == (1, 6)


def test_window_stops_when_training_rows_pass_heldout():
    # held-out labels as noisy as training labels: accuracy flat at 0.8, training climbs past it
    ledger, y = _fake_ledger([.5, .7, .78, .79, .8, .8, .85, .9, .97, 1.0], [.8] * 10)
    assert memorisation_window(ledger, y).stop == 6


def test_window_all_epochs_without_memorisation_and_half_without_heldout():
    ledger, y = _fake_ledger([.5, .7, .8, .85, .88, .9, .9, .9], [.9] * 8)
    assert memorisation_window(ledger, y).stop == 8
    ledger.heldout_probs, ledger.heldout_idx = None, np.zeros(0, np.int64)
    assert memorisation_window(ledger, y).stop == 4
    table, summary = label_issues(ledger, y, 3)  # no probabilities kept: predictions vote instead
    assert table["split"].iloc[-1] == "" and not table["label_issue"].iloc[-1]


def test_separating_window_runs_past_an_early_heldout_dip_and_stops_before_memorisation():
    """Held-out accuracy dips at epoch 4, yet the wrong labels' margins stay negative and grow more
    distinct from the right ones' until epoch 12; after it the model memorises them (their margins climb
    towards the right ones'). The separating window ends at 12 or 13, where the two groups are most apart,
    and the AUM over it ranks the wrong labels better than the memorisation window's."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    n, m, e_total = 2000, 400, 20
    wrong = np.zeros(n, bool)
    wrong[rng.permutation(n)[:400]] = True  # 20 % wrong labels, scattered
    epoch = np.arange(e_total)[:, None]
    right_mean = np.minimum(0.5 * epoch, 4.0)  # right labels: margin rises, then flat
    wrong_mean = np.where(epoch <= 12, -0.2 * epoch, np.minimum(-2.4 + 2.0 * (epoch - 12), 4.0))  # memorised
    # each row's own hardness persists over the epochs (averaging epochs does not remove it)
    margin = (np.where(wrong, wrong_mean, right_mean) + rng.normal(size=n)[None, :]
              + 0.5 * rng.normal(size=(e_total, n)))
    ledger, y = _fake_ledger([.5, .7, .8] + [.8] * (e_total - 3), [.85, .9, .9, .8] + [.8] * (e_total - 4),
                             n=n, m=m)
    ledger.margin = margin.astype(np.float32)
    base = memorisation_window(ledger, y)
    assert base.stop == 4  # the dip
    w = separating_window(ledger, y)
    # last epoch 12 or 13: at 13 the wrong labels' margin (-0.4) is still far below the right ones' (4)
    assert w.start == base.start and w.stop in (13, 14)
    aum = lambda win: margin[win.start:win.stop].mean(0)
    assert separation(aum(w)) > separation(aum(base)) + 1
    assert average_precision_score(wrong, -aum(w)) > average_precision_score(wrong, -aum(base)) + 0.01


def test_confident_joint_counts_known_matrix():
    y = np.array([0] * 10 + [1] * 10)
    p = np.zeros((20, 2), np.float32)
    p[:, 0] = np.where(y == 0, 0.9, 0.2)
    p[[0, 1], 0] = 0.1  # two rows given 0 that the model puts in class 1
    p[:, 1] = 1 - p[:, 0]
    cj = confident_joint_counts(p, y, 2)
    assert cj.sum() == pytest.approx(20)
    assert cj[0, 1] == pytest.approx(2) and cj[1, 0] == pytest.approx(0)


def test_empty_ledger_is_a_run_error():
    from trainyard.errors import RunError

    ledger, y = _fake_ledger([.5], [.5])
    ledger.margin = np.zeros((0, 400), np.float32)
    with pytest.raises(RunError, match="no finished epoch"):
        label_issues(ledger, y, 3)
    with pytest.raises(RunError, match="labels have 10 rows"):
        ambiguous_samples(_fake_ledger([.5], [.5])[0], np.zeros(10, np.int64), 3)


def test_error_threshold_moves_below_zero_when_confusable_rows_are_negative():
    # an under-fit model: many clean rows slightly below zero, the wrong labels far below
    rng = np.random.default_rng(0)
    clean, wrong = rng.normal(1.0, 1.0, 2000), rng.normal(-3.0, 0.7, 500)
    aum, truth = np.r_[clean, wrong], np.r_[np.zeros(2000, bool), np.ones(500, bool)]
    t = error_threshold(aum)
    assert t.aum < -1.0, t
    flag = aum < t.aum
    assert _f1(flag, truth) >= 0.95 > _f1(aum < 0, truth) + 0.1, (t, _f1(flag, truth), _f1(aum < 0, truth))


def test_error_threshold_is_zero_when_groups_overlap_or_sit_above_zero():
    rng = np.random.default_rng(1)
    assert error_threshold(rng.normal(0.5, 1.0, 3000)).aum == 0.0  # one group
    overlap = np.r_[rng.normal(-0.6, 0.9, 1200), rng.normal(0.3, 0.7, 1800)]  # groups within a spread of each other
    assert error_threshold(overlap).aum == 0.0
    above = np.r_[rng.normal(1.0, 0.4, 500), rng.normal(4.0, 0.4, 2000)]  # both groups prefer the given label
    t = error_threshold(above)
    assert t.aum == 0.0 and t.means[0] > 0, t
    assert error_threshold(np.ones(50)).aum == 0.0 and error_threshold(np.array([-1.0, 2.0])).aum == 0.0


def test_ties_from_a_learned_flip_are_flagged_when_the_confident_joint_counts_them():
    # class 0's region: 60 rows labelled 0 and 40 labelled 1 (a class-conditional flip the model has
    # learned as a 60/40 belief), so the flipped rows are near ties; class 1's region is clear
    from trainyard.diagnose.labels import Evidence, _flag, estimated_errors, wrong_labels

    p = np.array([[0.6, 0.4]] * 100 + [[0.1, 0.9]] * 100, np.float32)
    y = np.r_[np.zeros(60), np.ones(140)].astype(np.int64)
    aum = np.log(p[np.arange(200), y]) - np.log(p[np.arange(200), 1 - y])
    ev = Evidence(np.arange(200), y, aum.astype(np.float32), np.full(200, 3.0, np.float32), p, 3)
    flipped = np.r_[np.zeros(60, bool), np.ones(40, bool), np.zeros(100, bool)]
    assert not _flag(ev).any()  # all of them are near ties for the plain rule
    assert estimated_errors(ev, 2) == 40
    assert (wrong_labels(ev, 0.0, 2) == flipped).all()


def _window_ledger(wrong_mean, confusable_mean, later_heldout, seed=5, n=2000, m=400, e_total=20, row_sd=0.3):
    """A ledger with 20 % wrong labels and 15 % clean but confusable rows (margins given per epoch), right
    labels rising to a margin of 4, a held-out dip at epoch 4 that ends the memorisation window, and
    held-out accuracy ``later_heldout`` from epoch 6 on."""
    rng = np.random.default_rng(seed)
    kind = rng.permutation(np.r_[np.full(400, 2), np.full(300, 1), np.zeros(n - 700)].astype(int))
    epoch = np.arange(e_total)[:, None]
    means = np.hstack([np.minimum(0.5 * epoch, 4.0), confusable_mean(epoch), wrong_mean(epoch)])  # (epochs, 3)
    margin = means[:, kind]
    margin = margin + row_sd * rng.normal(size=n)[None, :] + 0.3 * rng.normal(size=(e_total, n))
    ledger, y = _fake_ledger([.5, .7, .8] + [.8] * (e_total - 3),
                             [.85, .9, .9, .8, .85] + [later_heldout] * (e_total - 5), n=n, m=m)
    ledger.margin = margin.astype(np.float32)
    ledger.pred = np.where(margin > 0, 0, 1).astype(np.int64)
    return ledger, y, kind == 2


def _memorisation_count(ledger, y):
    from trainyard.diagnose.labels import count_wrong, window_evidence

    _, ev, _ = window_evidence(ledger, y, 3)
    return count_wrong(ev, error_threshold(ev.aum).aum, 3).n


def test_count_read_over_the_ranking_window_when_the_memorisation_window_is_underfit():
    """A held-out dip stops the memorisation window at epoch 4, while the confusable clean rows still
    have a negative margin: counting there takes them for wrong labels. Later held-out accuracy climbs
    past the dip's (the model was under-fit, not memorising), the confusable rows are fitted while the
    wrong labels stay far below zero, the ranking window's groups are clearly apart, and its count holds."""
    ledger, y, wrong = _window_ledger(lambda e: -1.2 - 0.05 * e,
                                      lambda e: np.where(e <= 4, -1.0, np.minimum(0.8 * (e - 4), 3.0)), 0.95)
    assert _memorisation_count(ledger, y) >= 1.5 * wrong.sum()  # the old count: wrong + confusable
    table, summary = label_issues(ledger, y, 3)
    assert summary["rank_threshold"]["recounted"]
    flag = table["label_issue"].to_numpy()[:len(wrong)]
    assert abs(int(flag.sum()) - int(wrong.sum())) <= 0.05 * wrong.sum(), summary
    assert _f1(flag, wrong) >= 0.95


def test_count_kept_when_the_ranking_window_has_learnt_the_flips():
    """When the wrong labels are learnt as a pattern after the memorisation window (held-out accuracy
    never regains its best: memorisation, not a dip), the longer window's lower count is not used, even
    with its groups clearly apart; nor when its groups overlap. The count stays the memorisation window's."""
    wrong_mean = lambda e: np.where(e <= 4, -1.0, np.minimum(-1.0 + 0.6 * (e - 4), 3.0))
    confusable = lambda e: np.where(e <= 4, -1.0, np.minimum(0.8 * (e - 4), 3.0))
    for later, row_sd in ((0.8, 0.8), (0.95, 1.6)):
        ledger, y, wrong = _window_ledger(wrong_mean, confusable, later, row_sd=row_sd)
        table, summary = label_issues(ledger, y, 3)
        assert summary["rank_window"]["stop"] > summary["window"]["stop"]  # a longer window, not trusted
        assert not summary["rank_threshold"]["recounted"], summary
        assert int(table["label_issue"].to_numpy()[:len(wrong)].sum()) == _memorisation_count(ledger, y)
    # the same ledger with held-out accuracy rising later and groups apart is recounted, lower
    ledger, y, wrong = _window_ledger(wrong_mean, confusable, 0.95, row_sd=0.8)
    table, summary = label_issues(ledger, y, 3)
    assert summary["rank_threshold"]["recounted"]
    assert int(table["label_issue"].to_numpy()[:len(wrong)].sum()) < _memorisation_count(ledger, y)
