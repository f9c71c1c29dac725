"""``trainyard demo``: digits with 20 % known flips, diagnosed and repaired end to end."""
from __future__ import annotations

from trainyard.demo import run_demo


def test_demo_finds_the_planted_flips_and_the_repair_does_not_lose(tmp_path, capsys):
    res = run_demo(out=tmp_path / "demo", quiet=True, noise=0.2, epochs=20)
    r, d = res.report, res.report["demo"]
    printed = capsys.readouterr().out
    assert d["flipped"] > 250  # 20 % of the 1,617 training/validation rows
    assert d["flag_precision"] >= 0.9 and d["flag_recall"] >= 0.85, d
    assert r["accuracy_after"] >= r["accuracy_before"], r
    assert "precision" in printed and "test accuracy" in printed and "top 10 flagged samples" in printed
    assert (res.out / "repair.json").exists() and (res.out / "repaired.csv").exists()
