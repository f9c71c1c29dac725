"""Shrinking and shipping a trained model: distillation, pruning, int8 quantization, ONNX and
TorchScript export with a parity check, ensembles, and warm starts. onnx/onnxruntime are optional
(``trainyard[export]``)."""
from .distill import distill, distill_run, distillation_loss
from .ensemble import ensemble, ensemble_probs, ensemble_runs
from .model_file import load_model, model_size_bytes, n_parameters, save_model
from .onnx_export import (export, export_onnx, export_run, export_torchscript, onnx_parity, predict_onnx,
                          quantize_onnx, read_onnx_metadata)
from .prune import prune, prune_run, zero_fraction
from .students import build_student
from .transfer import init_from

__all__ = ["distill", "distill_run", "distillation_loss", "prune", "prune_run", "zero_fraction", "export",
           "export_run", "export_onnx", "export_torchscript", "quantize_onnx", "onnx_parity", "predict_onnx",
           "read_onnx_metadata", "ensemble", "ensemble_probs", "ensemble_runs", "init_from", "build_student",
           "save_model", "load_model", "model_size_bytes", "n_parameters"]
