"""Metrics and model-level probes: every module of this package registers itself."""

from ..plugins import import_submodules
from .base import METRICS, PROBES, ImageMetric, MetricResult, Probe

import_submodules(__name__, __path__)

__all__ = ["METRICS", "PROBES", "ImageMetric", "MetricResult", "Probe"]
