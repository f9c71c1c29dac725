"""Render the B1 (label errors) and B2 (repair, repair ceiling) tables of BENCHMARKS.md from the result files.

    python benchmarks/tables.py            # prints markdown
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, mean_std  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("trainyard", "loss_rank", "cleanlab_lr", "cleanlab_gb", "cleanlab_model")


def _ms(v) -> str:
    return f"{v[0]:.3f} ± {v[1]:.3f}" if isinstance(v, list) else f"{v:.3f}"


def label_table(name: str = "label_errors.json") -> str:
    """The B1 table of ``name`` (``label_errors.json``: the protocol's grid; ``label_errors_instance.json``:
    instance-dependent noise, beyond it)."""
    rows, wins, margins, behind = [], 0, [], []
    merged = RESULTS / name  # the parts merged into one table, when present
    files = [merged] if merged.exists() or name != "label_errors.json" else sorted(RESULTS.glob("label_errors_*.json"))
    n_results = n_copied = 0
    methods_seen: set[str] = set()
    for f in files:
        d = json.loads(f.read_text())
        for r in d.get("results", []):
            n_results += 1
            n_copied += any("from" in v for m, v in r["methods"].items() if m.startswith("cleanlab"))
            methods_seen.add(r["methods"].get("trainyard", {}).get("summary", {}).get("method", "?"))
        args = [d["args"]] if "args" in d else [m["args"] for m in d.get("merged_from", [])]
        sizes = {ds: a.get(f"{ds}_n") for a in args for ds in a["datasets"].split(",")}
        # a merged file lists a setting where its first run came from; keep data sets in file order and
        # each data set's settings symmetric first, rate ascending, as the protocol lists them
        first = {}
        for r in d["table"]:
            first.setdefault((r["dataset"], r.get("n_train")), len(first))
        table = sorted(d["table"], key=lambda r: (first[(r["dataset"], r.get("n_train"))],
                                                  r["noise"] != "symmetric", r["rate"]))
        for r in table:
            present = [m for m in METHODS if m in r]
            f1 = {m: r[m]["f1"][0] for m in present}
            best_cl = max((f1[m] for m in present if m.startswith("cleanlab")), default=float("nan"))
            wins += f1.get("trainyard", 0) >= best_cl
            if f1.get("trainyard", 0) < best_cl:
                behind.append(f"{r['dataset']} ({r.get('n_train', '?')} training rows) {r['noise']} {r['rate']:.0%}: "
                              f"{f1.get('trainyard', 0):.3f} vs {best_cl:.3f}")
            margins.append(f1.get("trainyard", 0) - best_cl)
            size = f"{r['n_train']:,} training rows" if "n_train" in r else \
                (sizes.get(r["dataset"]) if r["dataset"] != "digits" else 1797)
            rows.append(f"| {r['dataset']} ({size}) | {r['noise']} | {r['rate']:.0%} | {len(r['seeds'])} | "
                        + " | ".join(_ms(r[m]["f1"]) if m in r else "—" for m in METHODS)
                        + f" | {_ms(r['trainyard']['pr_auc'])} | "
                        + " / ".join(f"{r[m]['time_ratio'][0]:.2f}" for m in ("trainyard", "cleanlab_model") if m in r)
                        + f" | `{f.name}` |")
    head = ("| data (rows) | noise | rate | seeds | F1 trainyard | F1 loss rank | F1 cleanlab LR | F1 cleanlab GB | "
            "F1 cleanlab same MLP | PR-AUC trainyard | time / one training run: trainyard / cleanlab MLP | file |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    tail = (f"\nTrainyard's F1 ≥ the best cleanlab variant on {wins} of {len(rows)} settings; mean margin over the best "
            f"cleanlab variant {sum(margins) / max(len(margins), 1):+.3f} F1.")
    tail += (" **Behind the best cleanlab variant on the mean over the seeds:** " + "; ".join(behind) + "."
             if behind else " Behind on none of them (mean over the seeds).")
    if n_copied:
        tail += (f" On {n_copied} of {n_results} runs (setting × seed) the cleanlab columns were measured in an earlier run "
                 "of the same seeded split, flips and folds and copied (`--baselines`, marked `from` in the file).")
    if len(methods_seen) > 1:
        tail += f" The Trainyard rows mix {len(methods_seen)} versions of the method: " + "; ".join(sorted(methods_seen)) + "."
    return head + "\n" + "\n".join(rows) + tail


def macro_f1_table(name: str = "repair_general.json") -> str:
    """Macro F1 on the test split of the settings in ``name`` whose runs recorded it (``macro_f1``):
    mean ± std over seeds of the noisy model, the repair, cleanlab's CleanLearning and the oracle, and
    on how many runs the repair's is at least cleanlab's."""
    p = RESULTS / name
    if not p.exists():
        return f"(no results/{name} yet)"
    cols = ("noisy", "repaired", "cleanlab", "oracle")
    # a run that reused an earlier run's cleanlab and oracle columns has their F1 only if that run recorded it
    runs = [r for r in json.loads(p.read_text()).get("runs", [])
            if r.get("macro_f1") and all(r["macro_f1"].get(c) is not None for c in cols)]
    keys = sorted({(r["data"], r["noise"], r["rate"]) for r in runs}, key=lambda k: (k[0], k[2], k[1]))
    out = ["| data | noise | rate | seeds | " + " | ".join(f"macro F1 {c}" for c in cols) + " | repair >= cleanlab (runs) |",
           "|---|---|---|---|" + "---|" * len(cols) + "---|"]
    for key in keys:
        mine = [r["macro_f1"] for r in runs if (r["data"], r["noise"], r["rate"]) == key]
        ahead = sum(m["repaired"] >= m["cleanlab"] for m in mine)
        out.append(f"| {key[0]} | {key[1]} | {key[2]:.0%} | {len(mine)} | " + " | ".join(fmt(mean_std(m[c] for m in mine)) for c in cols)
                   + f" | {ahead} of {len(mine)} |")
    return "\n".join(out)


def repair_table(name: str = "repair.json") -> str:
    """The B2 table of ``name`` (``repair.json``, or ``repair_general.json`` for the settings the issue does
    not name)."""
    p = RESULTS / name
    if not p.exists():
        return f"(no results/{name} yet)"
    d = json.loads(p.read_text())
    out = ["| data | noise | rate | seeds | noisy | repaired | cleanlab CleanLearning | oracle | gap recovered | "
           "gap recovered cleanlab | target / > cleanlab | repair kept (seeds) | flag precision / recall | "
           "best of the repair's candidates (test-chosen) | runs below noisy |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    runs = d.get("runs", [])
    for r in d["summary"]:
        g = lambda k: f"{r[k]['mean']:.3f} ± {r[k]['std']:.3f}" if r.get(k) and r[k].get("mean") is not None else "—"  # noqa: E731
        mine = [x for x in runs if (x["data"], x["noise"], x["rate"]) == (r["data"], r["noise"], r["rate"])]
        kept = sum(1 for x in mine if x.get("selected_round", 0) > 0)
        verdict = f"{'yes' if r.get('meets_target') else 'no'} / {'yes' if r.get('beats_cleanlab') else 'no'}"
        out.append(f"| {r['data']} | {r['noise']} | {r['rate']:.0%} | {len(r['seeds'])} | {g('noisy')} | {g('repaired')} | "
                   f"{g('cleanlab')} | {g('oracle')} | {g('gap_recovered')} | {g('gap_recovered_cleanlab')} | "
                   f"{verdict} | {kept} of {len(mine)} | "
                   f"{r['flag_precision']['mean']:.2f} / {r['flag_recall']['mean']:.2f} | "
                   f"{g('gap_recovered_best_candidate')} | {sum(x['repaired'] < x['noisy'] for x in mine)} |")
    copied = sorted({x["baselines_from"] for x in runs if x.get("baselines_from")})
    n_copied = sum(1 for x in runs if x.get("baselines_from"))
    code = d.get("code") or {}
    note = f"\n(`results/{name}`, complete: {d.get('complete')}"
    if d.get("merged_from"):  # parts measured on different code: name each part's commit
        note += ", merged from " + ", ".join(
            f"`{Path(m['file']).name}` (commit {m.get('commit', '?')[:7]}"
            + (", with uncommitted changes" if m.get("modified") else "") + ")" for m in d["merged_from"])
    elif code.get("commit"):
        note += f", code at commit {code['commit'][:7]}"
        if code.get("modified"):
            note += f" with uncommitted changes to {', '.join(m.split()[-1] for m in code['modified'])}"
    note += ")"
    if n_copied:
        note += (f" On {n_copied} of {len(runs)} runs the cleanlab and oracle columns were measured in an earlier run of "
                 f"the same seeded split, noise and options ({', '.join('`' + c.split('/')[-1] + '`' for c in copied)}) "
                 "and reused; neither depends on the repair code.")
    out.append(note)
    return "\n".join(out)


def ceiling_table(name: str = "repair_ceiling.json") -> str:
    """The perfect-detector fits (``repair.py --ceiling``) beside the repair's own gap recovered."""
    p = RESULTS / name
    if not p.exists():
        return f"(no results/{name} yet)"
    runs = json.loads(p.read_text())["runs"]
    repaired = {}
    if (RESULTS / "repair.json").exists():
        repaired = {(r["data"], r["noise"], r["rate"]): r["gap_recovered"]["mean"]
                    for r in json.loads((RESULTS / "repair.json").read_text())["summary"]}

    def ms(rs, k):
        import numpy as np

        v = np.array([r[k] for r in rs if r.get(k) is not None], float)
        return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else "—"

    out = ["| data | noise | rate | seeds | noisy | oracle | flipped rows dropped | gap recovered | flipped rows "
           "relabelled with our suggestion | gap recovered | suggestion right | trained through the true noise "
           "transition | gap recovered | repair's gap recovered (B2) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["data"], r["noise"], r["rate"]) for r in runs}, key=lambda k: (k[0], k[2], k[1]))
    for key in keys:
        rs = [r for r in runs if (r["data"], r["noise"], r["rate"]) == key]
        rep = repaired.get(key)
        out.append(f"| {key[0]} | {key[1]} | {key[2]:.0%} | {len(rs)} | {ms(rs, 'noisy')} | {ms(rs, 'oracle')} | "
                   f"{ms(rs, 'drop_flipped')} | {ms(rs, 'gap_recovered_drop_flipped')} | "
                   f"{ms(rs, 'relabel_flipped_suggested')} | {ms(rs, 'gap_recovered_relabel_flipped_suggested')} | "
                   f"{ms(rs, 'suggestion_accuracy')} | {ms(rs, 'correct_true_transition')} | "
                   f"{ms(rs, 'gap_recovered_correct_true_transition')} | {'—' if rep is None else format(rep, '.3f')} |")
    return "\n".join(out)


if __name__ == "__main__":
    print("## B1\n" + label_table() + "\n\n## B2\n" + repair_table() + "\n\n## B2 ceiling\n" + ceiling_table()
          + "\n\n## B2 ceiling of the correct policy\n" + ceiling_table("repair_ceiling_correct.json")
          + "\n\n## B2 beyond the named settings\n" + repair_table("repair_general.json")
          + "\n\n## B1 beyond the grid: instance-dependent noise\n" + label_table("label_errors_instance.json"))
