"""B6: model size and test accuracy after distillation, pruning and int8 quantization; ONNX parity
and onnxruntime vs PyTorch throughput (a ratio measured in the same process, 1 thread each).

Teachers are trained with ``trainyard.fit`` (the real pipeline; ledger and monitor off because this
benchmark measures compression, not diagnosis). Configurations: sklearn digits with an MLP and
with the zoo CNN, and a stratified Fashion-MNIST subset with the zoo CNN. 3 seeds, mean ± std.

    python benchmarks/compress.py [--quick] [--fashion-n 4000] [--seeds 0 1 2]

Targets: int8 file <= 30 % of the float ONNX file within 1 accuracy point; student <= 25 % of the
teacher's parameters within 2 points; float ONNX parity (max |logit difference|) <= 1e-4.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, machine, mean_std, write_result  # noqa: E402

import trainyard  # noqa: E402
from trainyard.compress import distill, export, prune  # noqa: E402

TARGETS = {"int8_size_ratio": 0.30, "int8_accuracy_drop_points": 1.0, "student_param_ratio": 0.25,
           "student_accuracy_drop_points": 2.0, "onnx_max_abs_diff": 1e-4}


def configs(fashion_n: int, quick: bool) -> list[dict]:
    ep = 3 if quick else None
    return [
        {"name": "digits-mlp", "data": "sklearn:digits", "model": "mlp", "fit": {"hidden": (256, 128), "epochs": ep or 30},
         "student": "mlp:64", "distill_epochs": ep or 40},
        {"name": "digits-cnn", "data": "sklearn:digits", "model": "cnn", "fit": {"epochs": ep or 20},
         "student": "cnn:8,16,32", "distill_epochs": ep or 30},
        {"name": f"fashion{fashion_n}-cnn", "data": f"fashion-mnist:{fashion_n}", "model": "cnn",
         "fit": {"epochs": ep or 12}, "student": "cnn:16,32,48", "distill_epochs": ep or 20},
    ]


# one distillation setting for every config; more weight on the hard labels than Hinton's 0.9 helps
# when the teacher itself is far from perfect (Fashion-MNIST subset: ~83 % test accuracy)
DISTILL = {"temperature": 2.0, "alpha": 0.5}


def one_seed(cfg: dict, seed: int, workdir: Path, prune_amount: float) -> dict:
    t0 = time.perf_counter()
    res = trainyard.fit(cfg["data"], out=workdir / f"{cfg['name']}-s{seed}", model=cfg["model"], seed=seed,
                        split=(0.6, 0.2, 0.2), ledger=False, monitor=False, write_report=False, **cfg["fit"])
    teacher, data, splits = res.model.eval(), res.dataset, res.splits
    t_fit = time.perf_counter() - t0
    student, d = distill(teacher, data, splits, student=cfg["student"], epochs=cfg["distill_epochs"], seed=seed,
                         **DISTILL)
    _, p = prune(teacher, data, splits, amount=prune_amount, finetune_epochs=3, seed=seed)
    e = export(teacher, data, splits, workdir / f"{cfg['name']}-s{seed}", int8=True, quantization="auto", seed=seed)
    t_acc = d["teacher"]["test_accuracy"]
    return {
        "seed": seed, "n_train": len(splits.train), "n_test": len(splits.test),
        "teacher_params": d["teacher"]["n_params"], "teacher_size_bytes": d["teacher"]["size_bytes"],
        "teacher_accuracy": t_acc,
        "student_params": d["student"]["n_params"], "student_size_bytes": d["student"]["size_bytes"],
        "student_accuracy": d["student"]["test_accuracy"], "student_param_ratio": d["param_ratio"],
        "student_accuracy_drop_points": 100 * (t_acc - d["student"]["test_accuracy"]),
        "student_agreement": d["agreement_with_teacher"],
        "pruned_zero_fraction": p["zero_fraction"], "pruned_accuracy": p["after"]["test_accuracy"],
        "pruned_accuracy_no_finetune": p["accuracy_without_finetune"],
        "pruned_accuracy_drop_points": 100 * (p["before"]["test_accuracy"] - p["after"]["test_accuracy"]),
        "pruned_gzip_size_ratio": p["after"]["size_bytes_gzip"] / p["before"]["size_bytes_gzip"],
        "onnx_exporter": e["onnx"]["exporter"], "onnx_size_bytes": e["onnx"]["size_bytes"],
        "onnx_max_abs_diff": e["onnx"]["max_abs_diff"], "onnx_accuracy": e["onnx"]["onnx_accuracy"],
        "onnx_same_class": e["onnx"]["same_class"],
        "onnx_over_torch_throughput": e["onnx"]["onnx_over_torch_throughput"],
        "int8_method": e["int8"]["method"], "int8_size_bytes": e["int8"]["size_bytes"],
        "int8_size_ratio": e["int8"]["size_ratio"], "int8_accuracy": e["int8"]["onnx_accuracy"],
        "int8_accuracy_drop_points": 100 * (e["onnx"]["torch_accuracy"] - e["int8"]["onnx_accuracy"]),
        "int8_max_abs_diff": e["int8"]["max_abs_diff"], "int8_attempts": e["int8"]["attempts"],
        "seconds_fit": t_fit, "seconds_total": time.perf_counter() - t0,
    }


def summarize(rows: list[dict]) -> dict:
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seed"]
    return {k: mean_std([r[k] for r in rows]) for k in keys}


def check_targets(s: dict) -> dict:
    """Each target judged on the mean over seeds (worst seed reported beside it)."""
    def m(k):
        return s[k]["mean"]

    return {
        "int8_size_ratio<=0.30": m("int8_size_ratio") <= TARGETS["int8_size_ratio"],
        "int8_accuracy_drop<=1pt": m("int8_accuracy_drop_points") <= TARGETS["int8_accuracy_drop_points"],
        "student_param_ratio<=0.25": m("student_param_ratio") <= TARGETS["student_param_ratio"],
        "student_accuracy_drop<=2pt": m("student_accuracy_drop_points") <= TARGETS["student_accuracy_drop_points"],
        "onnx_parity<=1e-4": m("onnx_max_abs_diff") <= TARGETS["onnx_max_abs_diff"],
    }


def print_table(results: dict) -> None:
    cols = [("teacher acc", "teacher_accuracy", 3), ("student acc", "student_accuracy", 3),
            ("student params", "student_param_ratio", 3), ("pruned acc", "pruned_accuracy", 3),
            ("zeros", "pruned_zero_fraction", 3), ("int8 acc", "int8_accuracy", 3),
            ("int8 size", "int8_size_ratio", 3), ("parity", "onnx_max_abs_diff", "e"),
            ("ORT/torch", "onnx_over_torch_throughput", 2)]

    def cell(ms: dict, d) -> str:
        if d == "e" and ms.get("mean") is not None:
            return f"{ms['mean']:.1e} ± {ms['std']:.0e}"
        return fmt(ms, d)

    print()
    print(f"{'config':<20}" + "".join(f"{c[0]:>20}" for c in cols))
    for name, r in results.items():
        s = r["summary"]
        print(f"{name:<20}" + "".join(f"{cell(s[k], d):>20}" for _, k, d in cols))
    print("\nsizes are ratios: student/teacher parameters, int8/float ONNX file bytes; ORT/torch = throughput ratio")
    for name, r in results.items():
        missed = [k for k, ok in r["targets"].items() if not ok]
        print(f"{name}: int8 via {sorted(set(r['int8_methods']))}; targets "
              + ("all met" if not missed else "NOT met: " + ", ".join(missed)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 epochs, 1 seed, small Fashion-MNIST subset (smoke test)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fashion-n", type=int, default=4000, help="stratified Fashion-MNIST training images used")
    ap.add_argument("--prune", type=float, default=0.5, help="fraction of weights to prune")
    ap.add_argument("--only", nargs="*", help="config names to run (default all)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    seeds = a.seeds[:1] if a.quick else a.seeds
    cfgs = configs(1000 if a.quick else a.fashion_n, a.quick)
    if a.only:
        cfgs = [c for c in cfgs if c["name"] in a.only]
    t0 = time.perf_counter()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in cfgs:
            rows = []
            for seed in seeds:
                row = one_seed(cfg, seed, Path(tmp), a.prune)
                rows.append(row)
                print(f"{cfg['name']} seed {seed}: teacher {row['teacher_accuracy']:.3f} student "
                      f"{row['student_accuracy']:.3f} pruned {row['pruned_accuracy']:.3f} int8 {row['int8_accuracy']:.3f} "
                      f"({row['int8_method']}, {row['int8_size_ratio']:.2f} of float) parity {row['onnx_max_abs_diff']:.1e} "
                      f"[{row['seconds_total']:.0f}s]", flush=True)
            summary = summarize(rows)
            results[cfg["name"]] = {"data": cfg["data"], "teacher_model": cfg["model"], "fit": cfg["fit"],
                                    "student": cfg["student"], "distill_epochs": cfg["distill_epochs"],
                                    "distill": DISTILL,
                                    "prune_amount": a.prune, "per_seed": rows, "summary": summary,
                                    "int8_methods": [r["int8_method"] for r in rows],
                                    "targets": check_targets(summary)}
    out = {"benchmark": "B6 compression and export", "script": "benchmarks/compress.py", "machine": machine(),
           "seeds": seeds, "quick": a.quick, "targets": TARGETS,
           "notes": ["teachers trained with trainyard.fit, split 60/20/20 (seeded), ledger and monitor off",
                     "accuracy is on the test split; distillation and pruning fine-tune keep the best validation epoch",
                     "int8: onnxruntime dynamic quantization, static QDQ tried when dynamic is above 30 % for a CNN",
                     "throughput ratio: onnxruntime / PyTorch, batch 256, 1 thread each, median of 5 alternating runs",
                     "pruned models are stored dense: the zeros only shrink the file once compressed (gzip ratio)"],
           "configs": results, "wall_seconds": time.perf_counter() - t0}
    path = write_result("tmp/compress-quick" if a.quick else "compress", out)
    print_table(results)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
