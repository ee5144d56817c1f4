"""Models: the zoo of loadable classifiers and the ModelAdapter that wraps them."""

from . import zoo  # noqa: F401
from .adapter import ModelAdapter
from .zoo import MODELS, load_model

__all__ = ["MODELS", "ModelAdapter", "load_model"]
