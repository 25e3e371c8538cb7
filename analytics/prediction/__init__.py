"""Failure prediction: remaining useful life and failure probability from run-to-failure history."""

from analytics.prediction.features import ConditionNormalizer, WindowFeatures, rul_from_failures
from analytics.prediction.rul import RULRegressor

__all__ = ["ConditionNormalizer", "RULRegressor", "WindowFeatures", "rul_from_failures"]
