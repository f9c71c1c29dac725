"""Export to ONNX (dynamic batch) and TorchScript, int8 quantization, and the parity check.

With torch 2.13 the dynamo exporter (``torch.onnx.export(dynamo=True)``, onnxscript) is the
supported path; the legacy TorchScript exporter is deprecated and only used if dynamo fails.
The exported graph outputs logits; :func:`predict_onnx` turns them into probabilities.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError, RunError
from ..explain._common import load_finished_run, pick_split, predict_logits, require, softmax, split_indices
from ..run import atomic_write
from .model_file import load_model, model_size_bytes

EXPORT_JSON = "export.json"
INPUT_NAME, OUTPUT_NAME = "x", "logits"
INT8_TARGET_RATIO = 0.30  # int8 should be at most 30 % of the float file, else try static quantization


@contextlib.contextmanager
def _quiet_export():
    """The dynamo exporter prints progress and warns about torchvision ops we never use."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int], *,
                metadata: dict[str, Any] | None = None, exporter: str = "auto") -> dict:
    """Write ``model`` as a single-file ONNX model with a dynamic batch dimension.

    ``exporter``: ``auto`` (dynamo, then legacy on failure), ``dynamo`` or ``legacy``.
    ``metadata`` is stored as JSON strings in the model's ``metadata_props`` (``trainyard.*``).
    """
    onnx = require("onnx")
    if exporter not in ("auto", "dynamo", "legacy"):
        raise ConfigError(f"exporter must be auto, dynamo or legacy, got {exporter!r}")
    kinds = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter is built on it)
    except ImportError:
        if exporter == "dynamo":
            require("onnxscript")
        kinds = ["legacy"]
    net = copy.deepcopy(model).cpu().eval()
    example = (torch.rand(2, *[int(s) for s in input_shape]),)  # batch 2: a batch of 1 gets specialised
    tried: list[str] = []

    def write(tmp: str) -> None:
        errors = []
        for kind in kinds:
            try:
                with _quiet_export():
                    if kind == "dynamo":
                        torch.onnx.export(net, example, tmp, dynamo=True, external_data=False, verbose=False,
                                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                          dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
                    else:
                        torch.onnx.export(net, example, tmp, dynamo=False, input_names=[INPUT_NAME],
                                          output_names=[OUTPUT_NAME],
                                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
                tried.append(kind)
                break
            except Exception as e:  # the exporter raises many types; record and try the next
                errors.append(f"{kind}: {str(e).splitlines()[0][:300]}")
        else:
            raise ConfigError("ONNX export failed: " + " | ".join(errors))
        proto = onnx.load(tmp)
        for key, value in {"output": OUTPUT_NAME, **(metadata or {})}.items():
            prop = proto.metadata_props.add()
            prop.key, prop.value = f"trainyard.{key}", json.dumps(value)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)

    path = atomic_write(path, write)
    return {"file": path.name, "exporter": tried[-1], "size_bytes": path.stat().st_size,
            "opset": int(next((o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")), 0))}


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The ``trainyard.*`` metadata of an exported model (classes, input_shape, output)."""
    onnx = require("onnx")
    proto = onnx.load(str(path), load_external_data=False)
    out = {}
    for prop in proto.metadata_props:
        if prop.key.startswith("trainyard."):
            try:
                out[prop.key[len("trainyard."):]] = json.loads(prop.value)
            except json.JSONDecodeError:
                out[prop.key[len("trainyard."):]] = prop.value
    return out


def quantize_onnx(float_path: str | os.PathLike, out_path: str | os.PathLike, *, method: str = "dynamic",
                  calibration: np.ndarray | None = None) -> dict:
    """int8 quantization with onnxruntime: ``dynamic`` (weights int8, activations quantized on the fly;
    covers MatMul/Gemm and Conv) or ``static`` (QDQ, activation ranges from ``calibration`` rows)."""
    require("onnxruntime")
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in ("dynamic", "static"):
        raise ConfigError(f"quantization method must be dynamic or static, got {method!r}")
    if method == "static" and (calibration is None or len(calibration) == 0):
        raise ConfigError("static quantization needs calibration rows (e.g. 256 training samples)")
    float_path, out_path = Path(float_path), Path(out_path)

    def write(tmp: str) -> None:
        pre = tmp + ".pre.onnx"
        source = str(float_path)
        try:  # shape inference + graph clean-up, as onnxruntime recommends before quantizing
            with _quiet_export():
                quant_pre_process(source, pre, skip_symbolic_shape=False)
            source = pre
        except Exception:
            pass
        try:
            if method == "dynamic":
                quantize_dynamic(source, tmp, weight_type=QuantType.QInt8)
            else:
                class Calibration(CalibrationDataReader):
                    def __init__(self, X: np.ndarray, batch_size: int = 64):
                        self._it = iter([{INPUT_NAME: X[i:i + batch_size]} for i in range(0, len(X), batch_size)])

                    def get_next(self):
                        return next(self._it, None)

                reader = Calibration(np.ascontiguousarray(calibration, dtype=np.float32))
                quantize_static(source, tmp, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                                weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        finally:
            if os.path.exists(pre):
                os.unlink(pre)

    atomic_write(out_path, write)
    return {"file": out_path.name, "method": method, "size_bytes": out_path.stat().st_size}


def _session(path: str | os.PathLike, threads: int | None = None):
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise RunError(f"{path}: onnxruntime cannot load this model ({str(e).splitlines()[0][:200]})") from None


def onnx_logits(path_or_session, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Raw outputs (logits) of an ONNX model on ``X``, in batches."""
    sess = path_or_session if hasattr(path_or_session, "run") else _session(path_or_session)
    X = np.ascontiguousarray(X, dtype=np.float32)
    name = sess.get_inputs()[0].name
    out = [sess.run(None, {name: X[i:i + batch_size]})[0] for i in range(0, len(X), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, sess.get_outputs()[0].shape[-1]), np.float32)


def predict_onnx(model_path: str | os.PathLike, X, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities of an exported model (``trainyard predict MODEL.onnx DATA``).

    ``X`` is an array or a Dataset whose features are already encoded like the training data.
    """
    X = getattr(X, "X", X)
    X = np.asarray(X, dtype=np.float32)
    sess = _session(model_path)
    expected = sess.get_inputs()[0].shape[1:]
    if len(expected) != X.ndim - 1 or any(isinstance(e, int) and e != s for e, s in zip(expected, X.shape[1:])):
        raise DataError(f"{model_path}: the model expects inputs of shape (N, {', '.join(map(str, expected))}), "
                        f"the data has shape {X.shape}; encode it like the training data")
    logits = onnx_logits(sess, X, batch_size)
    meta = read_onnx_metadata(model_path)
    return logits.astype(np.float32) if meta.get("output") == "probs" else softmax(logits)


def onnx_parity(model: nn.Module, onnx_path: str | os.PathLike, X: np.ndarray, y: np.ndarray | None = None) -> dict:
    """Largest absolute difference of ONNX Runtime vs PyTorch logits on ``X``, and both accuracies."""
    ref = predict_logits(model, X)
    got = onnx_logits(onnx_path, X)
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64)) if len(ref) else np.zeros(1)
    out = {"n": int(len(X)), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
           "same_class": float((ref.argmax(1) == got.argmax(1)).mean()) if len(ref) else float("nan")}
    if y is not None and len(y):
        out["torch_accuracy"] = float((ref.argmax(1) == y).mean())
        out["onnx_accuracy"] = float((got.argmax(1) == y).mean())
    return out


def speed_ratio(model: nn.Module, onnx_path: str | os.PathLike, X: np.ndarray, *, batch_size: int = 256,
                repeats: int = 5, threads: int = 1) -> dict:
    """onnxruntime vs PyTorch inference throughput on the same rows, same thread count, alternating."""
    sess = _session(onnx_path, threads)
    X = np.ascontiguousarray(X[:max(batch_size, 1)], dtype=np.float32)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = {"torch": [], "onnx": []}
    try:
        xt = torch.as_tensor(X)
        with torch.inference_mode():
            model.eval()
            model(xt)
            onnx_logits(sess, X, len(X))  # warm-up both
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(xt)
                times["torch"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                onnx_logits(sess, X, len(X))
                times["onnx"].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    t_torch, t_onnx = float(np.median(times["torch"])), float(np.median(times["onnx"]))
    return {"batch_size": int(len(X)), "threads": threads, "repeats": repeats,
            "onnx_over_torch_throughput": t_torch / max(t_onnx, 1e-12)}


def export_torchscript(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int]) -> dict:
    """Trace ``model`` to TorchScript (deprecated upstream in favour of torch.export, still loadable)."""
    net = copy.deepcopy(model).cpu().eval()
    example = torch.rand(2, *[int(s) for s in input_shape])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, example)
        path = atomic_write(path, lambda tmp: torch.jit.save(traced, tmp))
    return {"file": Path(path).name, "size_bytes": Path(path).stat().st_size}


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in model.modules())


def export(model: nn.Module, data, splits: Any, out_dir: str | os.PathLike, *, formats: Sequence[str] = ("onnx",),
           int8: bool = False, quantization: str = "auto", name: str = "model", measure_speed: bool = True,
           seed: int = 0) -> dict:
    """Export ``model`` into ``out_dir`` and check each file against PyTorch on the test split.

    Writes ``{name}.onnx`` (float), ``{name}.int8.onnx`` (with ``int8``) and ``{name}.ts``
    (``torchscript`` in ``formats``). ``quantization``: ``dynamic``, ``static`` or ``auto`` (dynamic;
    if the result is above 30 % of the float file and the model has conv layers, static QDQ is
    tried too and the smaller file that keeps accuracy within 1 point is kept; both are reported).
    """
    bad = [f for f in formats if f not in ("onnx", "torchscript")]
    if bad:
        raise ConfigError(f"unknown export format(s) {bad}; choose onnx or torchscript")
    if int8 and "onnx" not in formats:
        raise ConfigError("--int8 quantizes the ONNX model: add --format onnx")
    out_dir = Path(out_dir)
    n = len(data)
    te = pick_split(splits, n, "test", "val")
    tr = split_indices(splits, "train", n) if splits is not None else np.arange(n)
    X_te, y_te = data.X[te], data.y[te]
    rng = np.random.default_rng(seed)
    calib = data.X[np.sort(rng.choice(tr, min(256, len(tr)), replace=False))] if len(tr) else X_te[:256]
    model = copy.deepcopy(model).cpu().eval()
    report: dict = {"name": name, "n_test": int(len(te)), "pytorch_size_bytes": model_size_bytes(model),
                    "input_shape": list(data.input_shape), "files": {}}
    meta = {"classes": list(data.classes), "input_shape": list(data.input_shape), "kind": data.kind}
    if "onnx" in formats:
        info = export_onnx(model, out_dir / f"{name}.onnx", data.input_shape, metadata=meta)
        info.update(onnx_parity(model, out_dir / info["file"], X_te, y_te))
        if measure_speed and len(X_te):
            info.update(speed_ratio(model, out_dir / info["file"], X_te))
        report["onnx"] = info
        report["files"]["onnx"] = info["file"]
        if int8:
            report["int8"] = _quantize_best(model, out_dir, name, info, quantization, calib, X_te, y_te)
            report["files"]["int8"] = report["int8"]["file"]
    if "torchscript" in formats:
        ts = export_torchscript(model, out_dir / f"{name}.ts", data.input_shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load is deprecated upstream; the check still matters
            loaded = torch.jit.load(str(out_dir / ts["file"])).eval()
        with torch.inference_mode():
            got = loaded(torch.as_tensor(X_te)).numpy() if len(X_te) else np.zeros((0, 1))
        ref = predict_logits(model, X_te)
        ts["max_abs_diff"] = float(np.abs(got - ref).max()) if len(ref) else 0.0
        ts["note"] = "torch.jit is deprecated upstream; prefer the ONNX file for deployment"
        report["torchscript"] = ts
        report["files"]["torchscript"] = ts["file"]
    return report


def _quantize_best(model: nn.Module, out_dir: Path, name: str, float_info: dict, quantization: str,
                   calib: np.ndarray, X_te: np.ndarray, y_te: np.ndarray) -> dict:
    if quantization not in ("auto", "dynamic", "static"):
        raise ConfigError(f"--quantization must be auto, dynamic or static, got {quantization!r}")
    methods = ["dynamic"] if quantization == "auto" else [quantization]
    final = out_dir / f"{name}.int8.onnx"
    attempts = []

    def attempt(method: str, path: Path) -> dict:
        info = quantize_onnx(out_dir / float_info["file"], path, method=method, calibration=calib)
        info.update(onnx_parity(model, path, X_te, y_te))
        info["size_ratio"] = info["size_bytes"] / max(float_info["size_bytes"], 1)
        info["accuracy_drop"] = info.get("torch_accuracy", 0.0) - info.get("onnx_accuracy", 0.0)
        return info

    first = attempt(methods[0], final)
    attempts.append(first)
    chosen = first
    if quantization == "auto" and first["size_ratio"] > INT8_TARGET_RATIO and _has_conv(model):
        alt_path = out_dir / f".{name}.int8.static.onnx"
        try:
            alt = attempt("static", alt_path)
            attempts.append(alt)
            ok = lambda a: a["accuracy_drop"] <= 0.01  # noqa: E731
            if (ok(alt) and (not ok(first) or alt["size_bytes"] < first["size_bytes"])) or \
                    (not ok(first) and alt["accuracy_drop"] < first["accuracy_drop"]):
                os.replace(alt_path, final)
                alt["file"] = final.name
                chosen = alt
        except Exception as e:  # static quantization is a best-effort improvement
            attempts.append({"method": "static", "error": str(e).splitlines()[0][:300]})
        finally:
            if alt_path.exists():
                alt_path.unlink()
    result = dict(chosen)
    result["attempts"] = [{k: a.get(k) for k in ("method", "size_bytes", "size_ratio", "max_abs_diff",
                                                  "onnx_accuracy", "accuracy_drop", "error") if k in a}
                          for a in attempts]
    result["meets_size_target"] = result["size_ratio"] <= INT8_TARGET_RATIO
    return result


def export_run(run_dir: str | os.PathLike, *, format: str | Sequence[str] = "onnx", int8: bool = False,
               model_file: str | None = None, **options: Any) -> dict:
    """Export a finished run's model (or ``model_file`` in the run, e.g. ``student.pt``) into the run
    directory and write export.json. ``format``: ``onnx``, ``torchscript`` or both (a list or
    ``"onnx,torchscript"``). Files: ``model.onnx``, ``model.int8.onnx``, ``model.ts``
    (``student.onnx`` ... when exporting ``student.pt``)."""
    formats = [f.strip() for f in format.split(",")] if isinstance(format, str) else list(format)
    run, model, data, splits = load_finished_run(run_dir)
    name = "model"
    if model_file:
        model = load_model(run.file(model_file))
        name = Path(model_file).stem
    report = export(model, data, splits, run.path, formats=formats, int8=int8, name=name, **options)
    report["source_model"] = model_file or "run model"
    run.write_json(EXPORT_JSON, report)
    return report
