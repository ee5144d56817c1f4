"""The image-metric contract and its registry: an `ImageMetric` scores a batch of maps, one value
per image and optional curves, given the model, the inputs, the targets and the annotations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..models.adapter import ModelAdapter
from ..registry import Registry


@dataclass
class MetricResult:
    """values: (B,) float; curves: optional (B,T); extras: other (B,) per-image values."""

    values: Tensor
    curves: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)


class ImageMetric:
    """Scores maps per image. Subclasses are dataclasses whose fields are their parameters.

    `needs` lists the annotation keys required ("boxes", "mask") and "explain" when the metric
    must re-run the explainer (the runner passes `explain=callable(model, x, target) -> maps`).
    """

    registry_name: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = True
    extra_directions: ClassVar[dict[str, bool]] = {}  # extras whose direction differs from the metric's
    needs: ClassVar[frozenset[str]] = frozenset()

    @property
    def name(self) -> str:
        return self.registry_name

    def resolved_protocol(self) -> dict[str, Any]:
        """The resolved protocol parameters recorded in run.json and summary.csv."""
        import dataclasses

        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} if dataclasses.is_dataclass(self) else {}

    def __call__(
        self,
        model: ModelAdapter,
        x: Tensor,
        maps: Tensor,
        target: Tensor,
        annotation: dict[str, Any] | None = None,
        explain: Callable[[ModelAdapter, Tensor, Tensor], Tensor] | None = None,
    ) -> MetricResult:
        raise NotImplementedError


METRICS: Registry[ImageMetric] = Registry("metric")


def clean_maps(maps: Tensor) -> Tensor:
    """Replace NaN/±inf in maps by 0 so that every metric has a defined value on them."""
    return torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0)
