"""Saliency explainers: every module here registers its methods in `EXPLAINERS` on import."""

from . import base, cam, gradient  # noqa: F401
from .base import EXPLAINERS, Explainer

__all__ = ["EXPLAINERS", "Explainer"]
