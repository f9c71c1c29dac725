"""The HTML report: sections, gallery counts, data map numbers, self-containment, and a real browser."""
from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from trainyard.errors import RunError
from trainyard.report import render_report, write_report
from trainyard.report import data_map as data_map_module
from trainyard.report.data_map import build_data_map
from trainyard.report.run_files import normalise_samples

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# What the synthetic image run below plants: the gallery must show exactly these.
N, N_TRAIN = 200, 160
LABEL_ROWS = list(range(0, 12))           # 12 label errors, row 5 the worst
OUTLIER_ROWS = list(range(20, 25))        # 5 outliers, row 22 the most extreme
DUP_ROWS = {40: 41, 42: 43, 44: 45, 46: 47}  # 4 duplicates (row -> the row it copies)
AMBIGUOUS_ROWS = [60, 61, 3]              # 3 ambiguous; row 3 is also a label error
EXPECTED = {"label": 12, "outlier": 5, "duplicate": 4, "ambiguous": 3}
N_FLAGGED = 12 + 5 + 4 + 3 - 1


def dump_json(obj, path: Path) -> None:
    path.write_text(json.dumps(obj), encoding="utf-8")


def browser_or_skip():
    """Playwright's sync API, or a skip saying what is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser test needs Debian's chromium at {CHROMIUM} (run `make browser`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser test needs the playwright package (pip install -e '.[browser]')")
    return sync_playwright


def digit_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 8×8 digit images (rendered glyphs, jittered, noisy) shaped (n, 1, 8, 8), and their digits."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=15)
    y = np.arange(n) % 10
    X = np.empty((n, 1, 8, 8), np.float32)
    for i, k in enumerate(y):
        im = Image.new("L", (16, 16), 0)
        draw = ImageDraw.Draw(im)
        left, top, right, bottom = draw.textbbox((0, 0), str(k), font=font)
        draw.text(((16 - right + left) / 2 - left + rng.uniform(-1, 1), (16 - bottom + top) / 2 - top + rng.uniform(-1, 1)),
                  str(k), fill=255, font=font)
        a = np.asarray(im.resize((8, 8), Image.BILINEAR), np.float32) / 255
        X[i, 0] = np.clip(a / max(a.max(), 1e-6) + rng.normal(0, 0.03, a.shape), 0, 1)
    return X, y.astype(np.int64)


def make_image_run(path: Path, seed: int = 0) -> Path:
    """A finished, diagnosed, repaired and tuned run on 200 digit-like 8×8 images."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    X, y = digit_images(N, rng)
    classes = [str(c) for c in range(10)]
    ids = np.array([f"img_{i:03d}" for i in range(N)])
    for dup, src in DUP_ROWS.items():
        X[dup] = X[src]
    for i in OUTLIER_ROWS:
        X[i] = rng.random((1, 8, 8), dtype=np.float32)
    np.savez(path / "data.npz", X=X, y=y, ids=ids, classes=np.array(classes))

    given = y.copy()
    given[LABEL_ROWS] = (y[LABEL_ROWS] + 1) % 10
    label_score = rng.uniform(0.0, 0.3, N)
    label_score[LABEL_ROWS] = np.linspace(0.6, 0.9, len(LABEL_ROWS))
    label_score[5] = 0.99
    outlier_score = rng.uniform(0, 1, N)
    outlier_score[OUTLIER_ROWS] = [3.0, 3.5, 9.0, 4.0, 2.5]
    split = np.array(["train"] * N_TRAIN + ["val"] * 20 + ["test"] * 20)
    confidence = rng.uniform(0.7, 1.0, N)
    confidence[LABEL_ROWS] = rng.uniform(0.0, 0.2, len(LABEL_ROWS))
    variability = rng.uniform(0.0, 0.2, N)
    variability[AMBIGUOUS_ROWS] = 0.45
    samples = pd.DataFrame({
        "id": ids, "given_label": [classes[g] for g in given],
        "label_issue": np.isin(np.arange(N), LABEL_ROWS), "label_score": label_score.round(4),
        "suggested_label": [classes[t] if i in LABEL_ROWS else "" for i, t in enumerate(y)],
        "outlier": np.isin(np.arange(N), OUTLIER_ROWS), "outlier_score": outlier_score.round(4),
        "duplicate_of": [ids[DUP_ROWS[i]] if i in DUP_ROWS else "" for i in range(N)],
        "ambiguous": np.isin(np.arange(N), AMBIGUOUS_ROWS), "split": split,
        "confidence": confidence.round(4), "variability": variability.round(4),
    })
    issue = np.full(N, "", dtype=object)
    issue[AMBIGUOUS_ROWS] = "ambiguous"
    issue[list(DUP_ROWS)] = "duplicate"
    issue[OUTLIER_ROWS] = "outlier"
    issue[LABEL_ROWS] = "label"
    samples["issue"] = issue
    samples.to_csv(path / "samples.csv", index=False)

    epochs = np.arange(1, 13)
    pd.DataFrame({"epoch": epochs, "train_loss": 2.3 * np.exp(-epochs / 4), "train_acc": 1 - 0.9 * np.exp(-epochs / 3),
                  "val_loss": 2.3 * np.exp(-epochs / 5) + 0.1, "val_acc": 1 - 0.9 * np.exp(-epochs / 4) - 0.03,
                  "val_macro_f1": 1 - 0.9 * np.exp(-epochs / 4) - 0.05, "lr": 1e-3 * np.cos(epochs / 13 * np.pi / 2),
                  "grad_norm": 3 * np.exp(-epochs / 6), "seconds": 0.4}).to_csv(path / "metrics.csv", index=False)
    cm = np.diag(rng.integers(2, 5, 10))
    cm[3, 5] = 1
    cm[8, 1] = 2
    dump_json({
        "status": "finished", "created": 1_700_000_000.0, "finished": 1_700_000_042.5, "seed": 0,
        "config": {"epochs": 12, "batch_size": 32, "lr": 1e-3, "optimizer": "adamw", "model": "cnn",
                   "hidden": [64, 32]},
        "versions": {"trainyard": "0.1.0", "torch": "2.13.0"}, "fingerprint": "ab" * 32,
        "timings": {"fit": 30.1, "diagnose": 2.2}, "kind": "image", "classes": classes,
        "confusion_matrix": cm.tolist(), "test_metrics": {"accuracy": 0.91, "macro_f1": 0.90},
        "model": {"name": "cnn", "input_shape": [1, 8, 8], "n_classes": 10, "params": 12345},
        "data": {"source": "sklearn:digits", "n_samples": N, "kind": "image"},
    }, path / "run.json")
    dump_json({
        "imbalance": {"counts": {c: int((given == k).sum()) for k, c in enumerate(classes)}, "ratio": 1.4,
                      "minority": "8"},
        "missing": {}, "constant": ["pixel_0"], "leakage": [],
        "duplicates": {"exact": 4, "near": 0},
        "drift": [{"feature": "pixel_10", "psi": 0.05, "ks": 0.1, "kl": 0.02},
                  {"feature": "pixel_33", "psi": 0.41, "ks": 0.3, "kl": 0.2},
                  {"feature": "pixel_20", "psi": 0.12, "ks": 0.2, "kl": 0.05}],
        "two_sample": {"auc": 0.53},
        "labels": {"n_label_issues": 12, "threshold": 0.5},
    }, path / "data_health.json")
    # ModelMonitor's format: weight layers under "layers", activation outputs under "features"
    dump_json({
        "format": "trainyard.model_health/1",
        "epochs": [{"epoch": e, "probed": e % 4 == 0 or e == 11,
                    "layers": {n: {"grad_norm": float((j + 1) * np.exp(-e / 5)), "update_ratio": 1e-3 * (j + 1),
                                   "weight_norm": 5.0 + j} for j, n in enumerate(["conv1", "conv2", "fc"])},
                    **({"features": {n: {"width": [16, 32, 64][j], "dead_fraction": [0.02, 0.4, 0.05][j],
                                         "effective_rank": [10.0, 6.0, 20.0][j], "kind": "relu"}
                                     for j, n in enumerate(["act1", "act2", "act3"])}}
                       if e % 4 == 0 or e == 11 else {})} for e in range(12)],
        "findings": [{"issue": "dead_units", "layer": "act2", "severity": "warning",
                      "evidence": {"dead_fraction": 0.4},
                      "explanation": "40% of act2's ReLU units never fire on any training sample.",
                      "fix": "lower the learning rate or use LeakyReLU"}],
        "summary": "1 warning: dead units in act2.",
        "explain": {"dead_fraction": "share of the layer's units that never switched on"},
    }, path / "model_health.json")
    dump_json({"accuracy_before": 0.86, "accuracy_after": 0.91, "macro_f1_before": 0.85, "macro_f1_after": 0.90,
               "policy": "auto", "rounds": [{"round": 1, "relabelled": 9, "dropped": 3, "reweighted": 0, "val_acc": 0.9},
                                            {"round": 2, "relabelled": 1, "dropped": 0, "reweighted": 2, "val_acc": 0.91}]},
              path / "repair.json")
    trials = pd.DataFrame({"number": range(12), "value": rng.uniform(0.7, 0.92, 12), "state": "COMPLETE",
                           "params_lr": 10 ** rng.uniform(-4, -2, 12), "params_dropout": rng.uniform(0, 0.5, 12),
                           "params_optimizer": rng.choice(["adamw", "sgd"], 12)})
    trials.to_csv(path / "trials.csv", index=False)
    best = trials.loc[trials["value"].idxmax()]
    dump_json({"value": best["value"], "number": int(best["number"]), "direction": "maximize",
               "params": {"lr": best["params_lr"], "dropout": best["params_dropout"]}}, path / "best.json")
    return path


def gallery_cards(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<div class="sample" data-id="([^"]*)" data-issue="(\w+)">', html)


@pytest.fixture(scope="module")
def image_report(tmp_path_factory) -> tuple[Path, str]:
    run = make_image_run(tmp_path_factory.mktemp("report") / "digits")
    out = write_report(run)
    return out, out.read_text(encoding="utf-8")


def test_report_has_every_section_and_exact_gallery(image_report):
    out, html = image_report
    assert out.name == "report.html" and out.parent.name == "digits"
    for section in ("summary", "training", "confusion", "data-map", "flagged", "data-health", "model-health",
                    "repair", "tune"):
        assert f'<section class="card" id="{section}">' in html, section
    cards = gallery_cards(html)
    assert Counter(issue for _, issue in cards) == EXPECTED
    assert len({sid for sid, _ in cards}) == N_FLAGGED
    assert f'data-issue="label" data-total="12"' in html
    # worst first within a type: row 5 has the top label score, row 22 the top outlier score
    assert [sid for sid, t in cards if t == "label"][0] == "img_005"
    assert [sid for sid, t in cards if t == "outlier"][0] == "img_022"
    # one thumbnail per card (row 3 has two) plus the twin of each duplicate
    assert html.count('<img class="thumb" src="data:image/png;base64,') == sum(EXPECTED.values()) + len(DUP_ROWS)
    assert "the model says &#39;" in html or "the model says '" in html
    # the drift table is sorted by PSI
    drift = html[html.index('id="drift-table"'):]
    assert drift.index("pixel_33") < drift.index("pixel_20") < drift.index("pixel_10")
    assert "40% of act2" in html and "lower the learning rate" in html and "1 warning: dead units in act2." in html
    health = html[html.index('id="model-health"'):html.index('id="repair"')]
    assert "Layer outputs (last probed epoch)" in health and "Layer weights (last epoch)" in health
    assert health.count("<td>act2</td>") == 1 and health.count("<td>conv2</td>") == 1
    assert "0.86 → 0.91" in html
    assert "<h3>Labels</h3>" in html and "<th>n_label_issues</th><td>12</td>" in html


def test_report_is_self_contained(image_report):
    _, html = image_report
    assert html.count("* plotly.js v") == 1  # the library is inlined exactly once
    assert html.count("Plotly.newPlot(") >= 8
    assert not re.search(r"<script[^>]+src=", html)
    assert re.findall(r"<link[^>]*>", html) == ['<link rel="icon" href="data:,">']
    assert not re.search(r"<img[^>]+src=\"(?!data:)", html)


def test_fit_only_run_skips_missing_sections(tmp_path):
    full = make_image_run(tmp_path / "full")
    run = tmp_path / "fit_only"
    run.mkdir()
    for name in ("run.json", "metrics.csv"):
        shutil.copy(full / name, run / name)
    html = render_report(run)
    assert '<section class="card" id="summary">' in html and '<section class="card" id="training">' in html
    for absent in ("data-map", "flagged", "data-health", "model-health", "repair", "tune"):
        assert f'id="{absent}"' not in html, absent
    assert gallery_cards(html) == []


def test_tune_folder_report_uses_saved_importances(tmp_path):
    full = make_image_run(tmp_path / "full")
    study = tmp_path / "tune-digits"
    study.mkdir()
    shutil.copy(full / "trials.csv", study / "trials.csv")
    dump_json({"params": {"lr": 0.003, "epochs": 12}, "searched": {"lr": 0.003}, "value": 0.93, "trial": 4,
               "metric": "val_acc", "test_score": 0.91}, study / "best.json")
    dump_json({"importances": {"lr": 0.7, "dropout": 0.2, "optimizer": 0.1}, "importances_note": "fANOVA"},
              study / "tune.json")
    html = render_report(study)  # no run.json: a study folder still gets its tuning section
    assert 'id="tune"' in html and 'id="flagged"' not in html
    assert "best val_acc (maximize), trial 4" in html and "fANOVA" in html
    tune = html[html.index('id="tune"'):]
    assert "<th>lr</th><td>0.003</td>" in tune and "<th>epochs</th>" not in tune  # only what was searched


def test_not_a_run_dir_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="not a Trainyard run directory"):
        write_report(tmp_path)


def test_broken_optional_file_is_noted_not_fatal(tmp_path):
    run = make_image_run(tmp_path / "r")
    (run / "data_health.json").write_text("{not json")
    html = render_report(run)
    assert "data_health.json could not be read" in html and 'id="data-health"' not in html
    assert 'id="flagged"' in html


def test_tabular_rows_show_deciding_features(tmp_path):
    rng = np.random.default_rng(1)
    run = tmp_path / "tab"
    run.mkdir()
    X = rng.normal(size=(100, 6)).astype(np.float32)
    X[7, 4] = 12.0  # row 7 is an outlier because of feature "f4"
    names = [f"f{j}" for j in range(6)]
    np.savez(run / "data.npz", X=X, y=np.zeros(100, int), ids=np.arange(100).astype(str), feature_names=np.array(names))
    pd.DataFrame({"id": np.arange(100), "given_label": "a", "label_issue": False, "label_score": 0.1,
                  "suggested_label": "", "outlier": np.arange(100) == 7, "outlier_score": np.r_[np.zeros(7), 5, np.zeros(92)],
                  "duplicate_of": "", "ambiguous": False, "issue": ""}).to_csv(run / "samples.csv", index=False)
    dump_json({"status": "finished", "kind": "tabular", "classes": ["a", "b"]}, run / "run.json")
    html = render_report(run)
    card = html[html.index('data-id="7" data-issue="outlier"'):]
    card = card[:card.index("</div>\n</div>") if "</div>\n</div>" in card else 2000]
    first = re.search(r"<table class=\"feat\">\s*<tr><td>([^<]+)</td><td><b>([^<]+)</b></td><td class=\"muted\">z ([^<]+)</td>", card)
    assert first and first.group(1) == "f4" and first.group(2) == "12" and float(first.group(3)) > 5
    # explain.json: global permutation importance decides which features are shown ...
    dump_json({"permutation": {"features": names, "importance_mean": [0.5, 0.0, 0.9, 0.1, 0.01, -0.02]}},
              run / "explain.json")
    html = render_report(run)
    card = html[html.index('data-id="7" data-issue="outlier"'):]
    assert re.findall(r"<tr><td>(f\d)</td>", card)[:3] == ["f2", "f0", "f3"]
    assert 'id="explain"' in html and "permutation importance" in html
    # ... and the per-sample "why flagged" attributions win over it for that sample
    dump_json({"permutation": {"features": names, "importance_mean": [0.5, 0.0, 0.9, 0.1, 0.01, -0.02]},
               "flagged": [{"id": "7", "given_label": "a", "suggested_label": "b", "p_given": 0.1, "p_suggested": 0.85,
                            "top_features": [{"feature": "f5", "value": 0.3, "attribution": 0.7},
                                             {"feature": "f1", "value": 0.2, "attribution": 0.2}]}]},
              run / "explain.json")
    card = render_report(run)
    card = card[card.index('data-id="7" data-issue="outlier"'):]
    assert re.findall(r"<tr><td>(f\d)</td>", card)[:2] == ["f5", "f1"]
    assert "→ +0.7" in card and "the model gives &#39;a&#39; p=0.10 and &#39;b&#39; p=0.85" in card


def test_text_rows_are_shown_escaped(tmp_path):
    run = tmp_path / "txt"
    run.mkdir()
    texts = ["a fine review"] * 9 + ["<script>alert(1)</script> terrible"]
    pd.DataFrame({"id": range(10), "given_label": "pos", "label_issue": [False] * 9 + [True],
                  "label_score": [0.1] * 9 + [0.95], "suggested_label": [""] * 9 + ["neg"], "outlier": False,
                  "outlier_score": 0.0, "duplicate_of": "", "ambiguous": False, "issue": [""] * 9 + ["label"],
                  "text": texts}).to_csv(run / "samples.csv", index=False)
    dump_json({"status": "finished", "kind": "text", "classes": ["neg", "pos"]}, run / "run.json")
    html = render_report(run)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; terrible" in html
    assert "<script>alert(1)" not in html


def test_data_map_from_ledger_numbers(tmp_path, monkeypatch):
    # p(given label) per epoch for 3 training rows (dataset rows 0, 2, 3)
    p_given = np.array([[0.9, 0.1, 0.5], [0.7, 0.3, 0.5], [0.8, 0.2, 0.5]], dtype=np.float32)
    led = SimpleNamespace(p_given=p_given, train_idx=np.array([0, 2, 3]), y=np.array([0, 1, 1, 0]),
                          pred=np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]]))
    monkeypatch.setattr(data_map_module, "read_ledger_or_none", lambda run_dir: led)
    samples = normalise_samples(pd.DataFrame({"id": list("abcd"), "given_label": ["x", "y", "y", "x"],
                                              "label_issue": [False, False, True, False]}))
    dm = build_data_map(tmp_path, samples)
    assert dm.source == "ledger" and dm.total == 3
    np.testing.assert_allclose(dm.points["confidence"], [0.8, 0.2, 0.5], atol=1e-6)
    np.testing.assert_allclose(dm.points["variability"], [np.std([0.9, 0.7, 0.8]), np.std([0.1, 0.3, 0.2]), 0], atol=1e-6)
    assert dm.points["id"].tolist() == ["a", "c", "d"]
    assert dm.points["correct"].tolist() == [True, False, True]  # last epoch predicts 0, 0, 0
    assert dm.points["flagged"].tolist() == [False, True, False]
    # with diagnose's confidence columns the numbers come from samples.csv, correctness from the ledger
    samples["confidence"] = [0.7, np.nan, 0.3, 0.6]
    samples["variability"] = [0.1, np.nan, 0.2, 0.05]
    samples["split"] = ["train", "val", "train", "train"]
    dm = build_data_map(tmp_path, samples)
    assert dm.source == "samples.csv" and dm.points["id"].tolist() == ["a", "c", "d"]
    assert dm.points["confidence"].tolist() == [0.7, 0.3, 0.6]
    assert dm.points["correct"].tolist() == [True, False, True]
    assert dm.correct_rule == "final-epoch prediction equals the given label"


def test_data_map_subsamples_big_runs_keeping_flagged():
    n = 25_000
    rng = np.random.default_rng(0)
    samples = normalise_samples(pd.DataFrame({
        "id": np.arange(n).astype(str), "given_label": "a", "label_issue": np.arange(n) % 100 == 0,
        "confidence": rng.random(n), "variability": rng.random(n) * 0.5}))
    dm = build_data_map("/nonexistent", samples)
    assert dm.total == n and len(dm.points) == 20_000 and dm.subsampled
    assert dm.points["flagged"].sum() == 250  # every flagged sample kept
    assert dm.points["id"].is_unique


def test_report_opens_in_chromium_without_errors(image_report, tmp_path):
    sync_playwright = browser_or_skip()
    out, html = image_report
    n_figures = html.count("Plotly.newPlot(")
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto(out.as_uri(), wait_until="load")
            page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {n_figures}",
                                   timeout=20_000)
            # no chart spills out of its column (plotly sizes charts while the page is still laid out)
            overflowing = page.evaluate("""[...document.querySelectorAll('.js-plotly-plot')].filter(p =>
                p.querySelector('.main-svg').getBoundingClientRect().right
                > p.closest('.card').getBoundingClientRect().right + 1
                || (p.closest('.grid2 > *') && p.querySelector('.main-svg').getBoundingClientRect().right
                    > p.closest('.grid2 > *').getBoundingClientRect().right + 1)).map(p => p.id)""")
            assert overflowing == []
            # the data map really drew its dots
            assert page.locator("#fig-datamap .scatterlayer .point").count() >= N_TRAIN
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert requests == []  # no network needed or attempted
    assert shot.stat().st_size > 100_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
