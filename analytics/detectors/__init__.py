"""Streaming anomaly detectors: one metric stream, one score per sample, past only."""

from analytics.detectors.base import StreamingDetector, score_to_surprise, surprise_to_score
from analytics.detectors.ensemble import NoveltyEnsembleDetector
from analytics.detectors.range import RangeNoveltyDetector
from analytics.detectors.seasonal import DailyProfileDetector
from analytics.detectors.shape import ShapeNoveltyDetector

__all__ = [
    "DailyProfileDetector",
    "NoveltyEnsembleDetector",
    "RangeNoveltyDetector",
    "ShapeNoveltyDetector",
    "StreamingDetector",
    "score_to_surprise",
    "surprise_to_score",
]
