"""Model-level probes (feature purity, neuron similarity): every module of this package registers
its probes in `PROBES`."""

from ..plugins import import_submodules
from .base import PROBES, Probe

import_submodules(__name__, __path__)

__all__ = ["PROBES", "Probe"]
