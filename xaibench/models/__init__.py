"""Models: the zoo of loadable classifiers and the ModelAdapter that wraps them; every module
of this package (and of `builtin/`) registers its model families in `MODELS`."""

from ..plugins import import_submodules
from .adapter import ModelAdapter
from .zoo import MODELS, load_model

import_submodules(__name__, __path__)

__all__ = ["MODELS", "ModelAdapter", "load_model"]
