"""Datasets: every module of this package registers its data sources in `DATASETS`."""

from ..plugins import import_submodules
from .base import DATASETS, Batch, Sample, collate

import_submodules(__name__, __path__)

__all__ = ["DATASETS", "Batch", "Sample", "collate"]
