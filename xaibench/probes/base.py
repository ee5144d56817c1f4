"""The probe contract and its registry: a `Probe` analyses a model once over a dataset (not per
explainer) and returns named tables and arrays.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ..models.adapter import ModelAdapter
from ..registry import Registry, check_fields

LAYERS_HELP = ("layers probed: auto or blocks (every conv block; a vision transformer: every encoder block, Swin: "
               "every stage), convs (every convolution), stages (the C-marked blocks only) or a list of names")


class Probe:
    """A model-level analysis: `probe(model, batches) -> {table name: DataFrame or array}`.

    Subclasses are dataclasses whose fields are their typed parameters (`param(default, help=...,
    ge=...)`), checked when the probe is built (bounds here, cross-field checks in a subclass's
    `__post_init__`, which calls this one)."""

    registry_name: ClassVar[str] = "probe"

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def name(self) -> str:
        return self.registry_name

    def __call__(self, model: ModelAdapter, data: Iterable[Any]) -> dict[str, Any]:
        raise NotImplementedError


PROBES: Registry[Probe] = Registry("probe")
