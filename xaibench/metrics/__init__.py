"""Image metrics: every module of this package registers its metrics in `METRICS`."""

from ..plugins import import_submodules
from .base import METRICS, DerivedScore, ImageMetric, MetricResult, derived_scores

import_submodules(__name__, __path__)

__all__ = ["METRICS", "DerivedScore", "ImageMetric", "MetricResult", "derived_scores"]
