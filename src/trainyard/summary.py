"""What the CLI prints: short rich tables summarising a result object."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def print_fit(res, console: Console, quiet: bool = False) -> None:
    m = res.test_metrics
    meta = res.run.meta
    d = meta.get("data", {})
    console.print(f"[bold]run[/] {res.run.path}  [dim]({d.get('kind')}, {d.get('n_rows')} rows, "
                  f"{d.get('n_classes')} classes, model {meta.get('model', {}).get('name')}, "
                  f"{meta.get('epochs_run')} epochs, best epoch {meta.get('best_epoch', -1) + 1})[/]")
    if m:
        console.print("test  " + "  ".join(f"{k} {_fmt(m[k])}" for k in ("acc", "macro_f1", "auc") if k in m))
    if not quiet and res.history:
        h = res.history[-1]
        console.print("last epoch  " + "  ".join(f"{k} {_fmt(h[k])}" for k in
                                                ("train_loss", "train_acc", "val_loss", "val_acc") if k in h))


def print_diagnosis(res, console: Console, top: int = 15) -> None:
    s = res.samples
    console.print(f"[bold]run[/] {res.run.path}  ({len(s)} rows checked)")
    counts = {
        "label issues": int(s["label_issue"].sum()),
        "outliers": int(s["outlier"].sum()),
        "near/exact duplicates": int((s["duplicate_of"].fillna("").astype(str) != "").sum()),
        "ambiguous": int(s["ambiguous"].sum()),
    }
    console.print("found  " + "  ".join(f"{k}: [bold]{v}[/]" for k, v in counts.items()))
    est = res.summary.get("labels", {}).get("estimated_noise_rate")
    if est is not None:
        console.print(f"estimated label noise rate: {est:.3f}")
    learnt = res.summary.get("labels", {}).get("heldout_agreement")
    if learnt and not learnt["learnt"]:
        console.print(f"[yellow]labels:[/] the model's predictions on held-out rows agree with their labels no better "
                      f"than chance ({learnt['agreement']:.3f} vs {learnt['chance_agreement']:.3f} on "
                      f"{learnt['rows']} rows): it did not learn the classes, so its label findings are no evidence "
                      "of wrong labels; check the target column, the features and the model's health")
    flagged = s[s["issue"].fillna("") != ""].copy()
    if len(flagged):
        flagged["_rank"] = flagged[["label_score", "outlier_score"]].max(axis=1)
        flagged = flagged.sort_values("_rank", ascending=False).head(top)
        t = Table(title=f"worst {len(flagged)} samples")
        for c in ("id", "issue", "given_label", "suggested_label", "label_score", "outlier_score", "duplicate_of"):
            t.add_column(c)
        for _, r in flagged.iterrows():
            t.add_row(*[_fmt(r[c]) if r[c] == r[c] else "" for c in
                        ("id", "issue", "given_label", "suggested_label", "label_score", "outlier_score", "duplicate_of")])
        console.print(t)
    h = res.data_health
    imb = h.get("imbalance", {})
    if imb:
        console.print(f"class imbalance ratio {imb.get('ratio') or float('nan'):.2f}"
                      + (f"; minority classes: {', '.join(map(str, imb['minority_classes']))}"
                         if imb.get("minority_classes") else ""))
    drift = (h.get("drift") or {}).get("table") or []
    if drift:
        d0 = drift[0]
        console.print(f"train vs test drift: {h['drift'].get('n_drifted', 0)} feature(s) flagged; largest "
                      f"{d0.get('feature')} (PSI {d0.get('psi') or 0:.3f}, KS {d0.get('ks') or 0:.3f}); "
                      f"two-sample AUC {(h.get('two_sample') or {}).get('auc') or float('nan'):.3f}")
    for f in (res.model_health or {}).get("findings", [])[:5]:
        console.print(f"[yellow]model:[/] {f.get('issue')} {f.get('layer') or ''}: {f.get('explanation', '')}")
    console.print(f"wrote {res.run.path / 'samples.csv'}, data_health.json, report.html")


def print_online(res: dict, console: Console) -> None:
    console.print(f"{res['n_rows']} new rows: {res['n_low_confidence']} low-confidence predictions "
                  f"(threshold {res['confidence_threshold']:.3f}); two-sample AUC vs training data "
                  f"{res.get('two_sample', {}).get('auc', float('nan')):.3f}")
    for d in res.get("drift", [])[:5]:
        console.print(f"  drift {d['feature']}: PSI {d['psi']:.3f} KS {d['ks']:.3f}")
    console.print(f"wrote {res['out']}")


def print_repair(res, console: Console) -> None:
    r = res.report
    console.print(f"[bold]repair[/] policy {r['policy']}: test accuracy {r['accuracy_before']:.4f} -> "
                  f"[bold]{r['accuracy_after']:.4f}[/] (macro F1 {r['macro_f1_before']:.4f} -> {r['macro_f1_after']:.4f})")
    for rd in r.get("rounds", []):
        console.print(f"  round {rd['round']}: relabelled {rd.get('relabelled', 0)}, dropped {rd.get('dropped', 0)}, "
                      f"re-weighted {rd.get('reweighted', 0)}, val acc {rd.get('val_acc', float('nan')):.4f}")
    console.print(f"wrote {res.out}/repair.json, repaired.csv, quarantine.csv")
    if r.get("stopped"):  # the flags are no evidence: reviewing them is not the next step
        console.print(f"[yellow]no repair:[/] {r['stopped']}")
        return
    todo = (r.get("validation_review") or {}).get("flagged_unreviewed", 0)
    if todo:
        console.print(f"[dim]{todo} validation rows are flagged as possibly mislabelled, and the rounds were chosen on "
                      f"the validation labels: review the validation rows (trainyard review {res.out}, filter "
                      f"'validation rows') and rerun with --reviewed {res.out}/reviewed.csv --out NEW_DIR to choose "
                      "on trusted labels[/]")


def print_tune(res, console: Console) -> None:
    console.print(f"[bold]tune[/] study {res.study_name}: {res.n_trials} trials, best validation {res.best_value:.4f}"
                  + (f", test {res.test_score:.4f}" if res.test_score is not None else ""))
    if getattr(res, "warm_started", None):
        console.print(f"warm-started from: {', '.join(map(str, res.warm_started))}")
    for k, v in res.best_params.items():
        console.print(f"  {k} = {v}")
    console.print(f"wrote {res.out}/best.json (rerun with: trainyard fit DATA --config {res.out}/best.json)")


def print_autofix(rep: dict, console: Console) -> None:
    b, a, fix = rep.get("before", {}), rep.get("after", {}), rep.get("fix") or {}
    console.print(f"[bold]auto-fix[/] for {fix.get('issue', 'no finding')}: {fix.get('overrides', {})} "
                  f"[dim]({fix.get('why', '')})[/]")
    console.print(f"  before: test acc {b.get('acc', float('nan')):.4f}  after: test acc {a.get('acc', float('nan')):.4f}")
