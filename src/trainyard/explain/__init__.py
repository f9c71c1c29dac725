"""Explaining and stress-testing a trained model: feature importance, attributions, why-flagged
evidence, adversarial and noise robustness. shap and captum are optional (``trainyard[explain]``)."""
from .attribution import integrated_gradients, why_flagged
from .importance import permutation_importance, shap_importance
from .robust import fgsm, gaussian_noise, pgd, robust_run, robustness
from .summary import explain, explain_run

__all__ = ["explain", "explain_run", "permutation_importance", "shap_importance", "integrated_gradients",
           "why_flagged", "robustness", "robust_run", "fgsm", "pgd", "gaussian_noise"]
