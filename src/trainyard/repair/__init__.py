"""Repair: fix the training data from a diagnosis (relabel, drop, reweight, rebalance, augment,
forward loss correction, a robust loss, or ``auto``), retrain, and prove the gain on held-out data.

>>> from trainyard.repair import repair
>>> res = repair("data.csv", target="label", out="runs/fixed")   # doctest: +SKIP
>>> res.report["accuracy_before"], res.report["accuracy_after"]  # doctest: +SKIP
"""
from .augment import ImageAugment, Mixup, augment
from .auto import auto
from .candidates import POLICIES
from .correct import ForwardCorrection, correct
from .drop import drop
from .loop import RepairResult, repair
from .plan import Plan, RoundInput
from .rebalance import rebalance
from .relabel import relabel
from .reviewed import read_reviewed
from .robust import GeneralizedCrossEntropy, robust
from .reweight import reweight

__all__ = ["repair", "RepairResult", "POLICIES", "Plan", "RoundInput", "relabel", "drop", "reweight", "rebalance",
           "augment", "correct", "robust", "auto", "ImageAugment", "Mixup", "ForwardCorrection",
           "GeneralizedCrossEntropy", "read_reviewed"]
