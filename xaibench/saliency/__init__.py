"""Saliency explainers: every module of this package registers its methods in `EXPLAINERS`."""

from ..plugins import import_submodules
from .base import EXPLAINERS, Explainer

import_submodules(__name__, __path__)

__all__ = ["EXPLAINERS", "Explainer"]
