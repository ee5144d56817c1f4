"""The probe contract and its registry: a `Probe` analyses a model once over a dataset (not per
explainer) and returns named tables and arrays.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ..models.adapter import ModelAdapter
from ..registry import Registry


class Probe:
    """A model-level analysis: `probe(model, batches) -> {table name: DataFrame or array}`.

    Subclasses are dataclasses whose fields are their typed parameters."""

    registry_name: ClassVar[str] = "probe"

    @property
    def name(self) -> str:
        return self.registry_name

    def __call__(self, model: ModelAdapter, data: Iterable[Any]) -> dict[str, Any]:
        raise NotImplementedError


PROBES: Registry[Probe] = Registry("probe")
