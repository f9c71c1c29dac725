"""The command line: one sub-command per public verb. Thin: parses, calls the API, prints.

Every command exits 0 on success and 2 with a one-line reason on bad input (a TrainyardError).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

from .errors import TrainyardError

TRAIN_FLAGS = ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "schedule", "precision", "clip", "l1",
               "label_smoothing", "patience", "accumulate", "class_weight", "model", "hidden", "dropout",
               "activation", "device", "seed")


def _add_data(p: argparse.ArgumentParser, optional: bool = False) -> None:
    if optional:
        p.add_argument("data", nargs="?", help="a .csv/.parquet/.npz file, an image folder, or sklearn:NAME")
    else:
        p.add_argument("data", help="a .csv/.parquet/.npz file, an image folder, or sklearn:NAME")
    p.add_argument("--target", help="label column (tables)")
    p.add_argument("--text", help="text column turned into TF-IDF features (tables)")
    p.add_argument("--test", help="a separate test file (same columns); default: hold out a stratified split")
    p.add_argument("--split", default="0.7,0.2,0.1", help="train,val,test fractions (default 0.7,0.2,0.1)")


def _add_train(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--config", help="YAML or JSON file holding any of these options (flags win)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--optimizer", choices=["adamw", "sgd", "adafactor"])
    g.add_argument("--schedule", choices=["cosine", "onecycle", "step", "none"])
    g.add_argument("--precision", choices=["32", "bf16", "16"])
    g.add_argument("--clip", help="norm:1.0 (clip by global norm) or agc:0.01 (adaptive, unit-wise)")
    g.add_argument("--l1", type=float, help="L1 penalty on weights")
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--patience", type=int, help="early stopping patience in epochs (validation accuracy)")
    g.add_argument("--accumulate", type=int, help="gradient accumulation steps")
    g.add_argument("--class-weight", choices=["balanced"])
    g.add_argument("--model", choices=["auto", "mlp", "cnn", "linear"])
    g.add_argument("--hidden", help="MLP widths, e.g. 256,128")
    g.add_argument("--dropout", type=float)
    g.add_argument("--activation", choices=["relu", "gelu", "leaky_relu", "silu", "tanh", "sigmoid"])
    g.add_argument("--device", help="auto (default), cpu, cuda")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run directory (default runs/<command>-<time>)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, less output")


def _overrides(a: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(a, k, None) for k in TRAIN_FLAGS if getattr(a, k, None) is not None}


def _split(a: argparse.Namespace) -> tuple[float, ...]:
    from .errors import ConfigError

    try:
        parts = tuple(float(x) for x in a.split.split(","))
    except ValueError:
        raise ConfigError(f"--split must be three fractions like 0.7,0.2,0.1, got {a.split!r}") from None
    if len(parts) != 3 or any(x < 0 for x in parts) or abs(sum(parts) - 1) > 1e-6 or parts[0] <= 0:
        raise ConfigError(f"--split must be three non-negative fractions summing to 1, got {a.split!r}")
    return parts


def _console():
    from rich.console import Console

    return Console(stderr=False)


# -- commands -----------------------------------------------------------------------------------
def cmd_fit(a: argparse.Namespace) -> int:
    from .fitting import fit
    from .summary import print_fit

    if a.cv:
        from .crossval import cross_validate

        res = cross_validate(a.data, k=a.cv, target=a.target, text=a.text, config=a.config, out=a.out,
                             quiet=a.quiet, **_overrides(a))
        _console().print(f"{a.cv}-fold accuracy {res['acc_mean']:.4f} ± {res['acc_std']:.4f} "
                         f"(macro F1 {res['macro_f1_mean']:.4f} ± {res['macro_f1_std']:.4f})")
        return 0
    if a.auto_fix:
        from .train.autofix import auto_fix

        report = auto_fix(fit, a.data, target=a.target, text=a.text, test=a.test, out=a.out, config=a.config,
                          split=_split(a), quiet=a.quiet, **_overrides(a))
        from .summary import print_autofix

        print_autofix(report, _console())
        return 0
    res = fit(a.data, target=a.target, text=a.text, test=a.test, out=a.out, config=a.config, split=_split(a),
              resume=a.resume, quiet=a.quiet, init=a.init, **_overrides(a))
    from .train.distributed import is_main

    if is_main():
        print_fit(res, _console(), quiet=a.quiet)
    return 0


def cmd_diagnose(a: argparse.Namespace) -> int:
    from .diagnose import diagnose, diagnose_online
    from .summary import print_diagnosis, print_online

    if a.online:
        if not a.data:
            raise TrainyardError("diagnose --online needs RUN and NEW_DATA: trainyard diagnose --online RUN NEW.csv")
        res = diagnose_online(a.online, a.data, out=a.out)
        print_online(res, _console())
        return 0
    if a.data is None:
        raise TrainyardError("diagnose needs DATA (a file, folder, sklearn:NAME) or --run RUN")
    res = diagnose(a.data, target=a.target, text=a.text, test=a.test, out=a.out, config=a.config,
                   split=_split(a), quiet=a.quiet, top=a.top, **_overrides(a))
    print_diagnosis(res, _console(), top=a.top)
    return 0


def cmd_repair(a: argparse.Namespace) -> int:
    from .repair import repair
    from .summary import print_repair

    res = repair(a.data, target=a.target, text=a.text, test=a.test, out=a.out, config=a.config, split=_split(a),
                 policy=a.policy, rounds=a.rounds, reviewed=a.reviewed, quiet=a.quiet,
                 crossfit_folds=a.crossfit_folds, mixup=a.mixup, resume=a.resume, **_overrides(a))
    print_repair(res, _console())
    return 0


def cmd_tune(a: argparse.Namespace) -> int:
    from .tune import tune
    from .summary import print_tune

    res = tune(a.data, target=a.target, text=a.text, test=a.test, trials=a.trials, timeout=a.timeout,
               storage=a.storage, study=a.study, out=a.out, sampler=a.sampler, pruner=a.pruner, space=a.space,
               warm_start=a.warm_start, diagnose_first=a.diagnose, config=a.config, split=_split(a),
               quiet=a.quiet, **_overrides(a))
    print_tune(res, _console())
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out=a.out or "runs/demo", seed=a.seed or 0, quiet=a.quiet, noise=a.noise)
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from .report import write_report

    path = write_report(a.run)
    print(path)
    return 0


def cmd_review(a: argparse.Namespace) -> int:
    from .report import serve_review

    serve_review(a.run, port=a.port)
    return 0


def _json_print(obj: Any) -> None:
    import json

    print(json.dumps(obj, indent=2, default=str))


def cmd_explain(a: argparse.Namespace) -> int:
    from .explain import explain_run

    res = explain_run(a.run, samples=a.samples.split(",") if a.samples else None)
    perm = res.get("permutation") or {}
    if perm.get("ranking"):
        score = dict(zip(perm["features"], perm["importance_mean"]))
        print("most important features (accuracy drop when shuffled, validation split):")
        for name in perm["ranking"][:10]:
            print(f"  {name}: {score[name]:.4f}")
    print(f"wrote {a.run}/explain.json ({len(res.get('flagged', []))} flagged samples explained)")
    return 0


def cmd_robust(a: argparse.Namespace) -> int:
    from .explain import robust_run

    _json_print(robust_run(a.run, eps=[float(x) for x in a.eps.split(",")]))
    return 0


def cmd_distill(a: argparse.Namespace) -> int:
    from .compress import distill_run

    _json_print(distill_run(a.run, student=a.student, temperature=a.temperature, alpha=a.alpha, epochs=a.epochs))
    return 0


def cmd_prune(a: argparse.Namespace) -> int:
    from .compress import prune_run

    _json_print(prune_run(a.run, amount=a.amount, structured=a.structured, finetune_epochs=a.epochs))
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from .compress import export_run

    _json_print(export_run(a.run, format=a.format, int8=a.int8))
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from .predicting import predict

    out = predict(a.model, a.data, out=a.out)
    print(out)
    return 0


def cmd_ensemble(a: argparse.Namespace) -> int:
    from .compress import ensemble_runs

    _json_print(ensemble_runs(a.runs, method=a.method, out=a.out))
    return 0


EXAMPLES = {
    "demo": "trainyard demo\n  trainyard demo --noise 0.4",
    "fit": "trainyard fit data.csv --target label --out runs/first\n  trainyard fit sklearn:digits --epochs 20\n"
           "  trainyard fit runs/first --resume   (continue a killed run: trainyard fit DATA --out RUN --resume)",
    "diagnose": "trainyard diagnose data.csv --target label --out runs/diag\n"
                "  trainyard diagnose --online runs/diag new_batch.csv",
    "repair": "trainyard repair data.csv --target label --policy auto --out runs/fixed\n"
              "  trainyard repair data.csv --target label --reviewed runs/diag/reviewed.csv",
    "tune": "trainyard tune sklearn:digits --trials 30 --out runs/tune\n"
            "  trainyard tune data.csv --target y --trials 50 --storage sqlite:///study.db --study mine",
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="trainyard", description="Train a model, find what is wrong with the data "
                                     "and the model from the training run itself, repair it, and prove the gain.")
    parser.add_argument("--version", action="version", version=f"trainyard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_,
                           epilog=("examples:\n  " + EXAMPLES[name]) if name in EXAMPLES else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(fn=fn)
        return p

    p = add("demo", cmd_demo, "digits with injected label noise: train, diagnose, repair, report")
    p.add_argument("--noise", type=float, default=0.2, help="fraction of training labels flipped (default 0.2)")
    _common(p)

    p = add("fit", cmd_fit, "train a model and keep the training ledger")
    _add_data(p)
    _add_train(p)
    _common(p)
    p.add_argument("--resume", action="store_true", help="continue the killed run in --out from its last checkpoint")
    p.add_argument("--cv", type=int, help="K-fold cross-validation: report mean ± std")
    p.add_argument("--init", help="start from another run's weights (fine-tuning)")
    p.add_argument("--auto-fix", action="store_true", help="diagnose the model, apply the recommended fix once, retrain")

    p = add("diagnose", cmd_diagnose, "fit with the ledger on, then find wrong labels, outliers, duplicates, drift")
    _add_data(p, optional=True)
    _add_train(p)
    _common(p)
    p.add_argument("--online", metavar="RUN", help="inference-time monitoring of DATA against a trained RUN")
    p.add_argument("--top", type=int, default=15, help="how many worst samples to print")

    p = add("repair", cmd_repair, "diagnose, fix the data, retrain and measure the gain on held-out data")
    _add_data(p)
    _add_train(p)
    _common(p)
    p.add_argument("--policy", default="auto",
                   choices=["auto", "relabel", "drop", "reweight", "rebalance", "augment", "correct", "robust"])
    p.add_argument("--rounds", type=int, default=2, help="diagnose-repair-retrain rounds (default 2)")
    p.add_argument("--crossfit-folds", type=int, default=4,
                   help="auto policy: first round also tries quarantining what this many cross-fitted models "
                        "flag out of fold (about folds-1 extra fits; 0 = off; default 4)")
    p.add_argument("--mixup", type=float, default=0.2,
                   help="repair rounds train with mixup of this alpha against the wrong labels a repair leaves "
                        "(0 = off; default 0.2)")
    p.add_argument("--reviewed", help="CSV of id,decision from the review page, applied first")
    p.add_argument("--resume", action="store_true",
                   help="continue the killed repair in --out: finished rounds are read back, the cut-off round "
                        "continues from its last checkpoint, the stored options are used")

    p = add("tune", cmd_tune, "hyperparameter search with Optuna (TPE + pruning, warm start, shared storage)")
    _add_data(p)
    _add_train(p)
    _common(p)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--timeout", type=float, help="stop after this many seconds")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///OUT/study.db)")
    p.add_argument("--study", help="study name (rerun with the same name to resume)")
    p.add_argument("--sampler", default="tpe", choices=["tpe", "gp", "cmaes", "random"])
    p.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"])
    p.add_argument("--space", help="YAML file narrowing or widening the search space")
    p.add_argument("--warm-start", default="auto", help="auto | off | STUDY")
    p.add_argument("--diagnose", action="store_true", help="diagnose and repair first, then search on repaired data")

    p = add("report", cmd_report, "write report.html for a run")
    p.add_argument("run")
    p = add("review", cmd_review, "local review page (127.0.0.1) to accept or reject suggested label fixes")
    p.add_argument("run")
    p.add_argument("--port", type=int, default=8765)
    p = add("explain", cmd_explain, "feature importance and per-sample attributions of a run's model")
    p.add_argument("run")
    p.add_argument("--samples", help="comma-separated ids to explain (default: the flagged ones)")
    p = add("robust", cmd_robust, "accuracy under FGSM / PGD attacks and Gaussian noise")
    p.add_argument("run")
    p.add_argument("--eps", default="0.01,0.03,0.1")
    p = add("distill", cmd_distill, "train a smaller student on the model's soft targets")
    p.add_argument("run")
    p.add_argument("--student", default="mlp:64")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.7)
    p.add_argument("--epochs", type=int, default=30)
    p = add("prune", cmd_prune, "global magnitude pruning with a short fine-tune")
    p.add_argument("run")
    p.add_argument("--amount", type=float, default=0.5)
    p.add_argument("--structured", action="store_true")
    p.add_argument("--epochs", type=int, default=3, help="fine-tune epochs")
    p = add("export", cmd_export, "export to ONNX (optionally int8) or TorchScript with a parity check")
    p.add_argument("run")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument("--int8", action="store_true")
    p = add("predict", cmd_predict, "predict with a run or an exported model on new data")
    p.add_argument("model", help="a run directory or a .onnx file")
    p.add_argument("data")
    p.add_argument("--out", help="predictions CSV (default predictions.csv beside the model)")
    p = add("ensemble", cmd_ensemble, "combine several runs: vote, average or stack")
    p.add_argument("runs", nargs="+")
    p.add_argument("--method", default="average", choices=["vote", "average", "stack"])
    p.add_argument("--out")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "quiet", False):
        os.environ.setdefault("TRAINYARD_QUIET", "1")
    try:
        return int(args.fn(args) or 0)
    except TrainyardError as e:
        print(f"trainyard {args.command}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trainyard {args.command}: interrupted (resume with --resume)", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure: one line, the traceback only on request
        if os.environ.get("TRAINYARD_DEBUG"):
            raise
        print(f"trainyard {args.command}: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
              " (set TRAINYARD_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
