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
from ..registry import Registry, check_fields


@dataclass
class MetricResult:
    """values: (B,) float; curves: optional (B,T); extras: other (B,) per-image values."""

    values: Tensor
    curves: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)


class ImageMetric:
    """Scores maps per image. Subclasses are dataclasses whose fields are their parameters
    (`param(default, help=..., ge=...)`), checked when the metric is built (bounds here,
    cross-field checks in a subclass's `__post_init__`, which calls this one).

    `needs` lists the annotation keys required ("boxes", "mask") and "explain" when the metric
    must re-run the explainer (the runner passes `explain=callable(model, x, target) -> maps`).
    `seeds` (B,) int64 key each image's random choices (tie-breaks, ROAD's noise): the runner
    passes `ordering.image_seeds(run seed, image ids)`; None keys images by their batch position.
    """

    registry_name: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = True
    extra_directions: ClassVar[dict[str, bool]] = {}  # extras whose direction differs from the metric's
    needs: ClassVar[frozenset[str]] = frozenset()
    class_mean: ClassVar[str | None] = None  # when set, summary.csv also has `<name>:class_mean`, described so

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def name(self) -> str:
        return self.registry_name

    def resolved_protocol(self) -> dict[str, Any]:
        """The resolved protocol parameters recorded in run.json and summary.csv."""
        import dataclasses

        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} if dataclasses.is_dataclass(self) else {}

    def available(self, boxes: list[Tensor | None], masks: Tensor | None) -> Tensor:
        """(B,) bool: the images that have every annotation this metric needs (a non-empty box
        list, a non-empty mask); the others are skipped and counted."""
        ok = torch.ones(len(boxes), dtype=torch.bool)
        if "boxes" in self.needs:
            ok &= torch.tensor([bx is not None and len(bx) > 0 for bx in boxes], dtype=torch.bool)
        if "mask" in self.needs:
            ok &= masks.flatten(1).any(1).cpu() if masks is not None else torch.zeros_like(ok)
        return ok

    def __call__(
        self,
        model: ModelAdapter,
        x: Tensor,
        maps: Tensor,
        target: Tensor,
        annotation: dict[str, Any] | None = None,
        explain: Callable[[ModelAdapter, Tensor, Tensor], Tensor] | None = None,
        seeds: Tensor | None = None,
    ) -> MetricResult:
        raise NotImplementedError


METRICS: Registry[ImageMetric] = Registry("metric")


@dataclass(frozen=True)
class DerivedScore:
    """A per-image score computed from other metrics' scores of the same image (e.g. `overall` =
    insertion − deletion), declared by the metrics' module and applied by the store to any run
    that has every input."""

    name: str
    inputs: tuple[str, ...]
    higher_is_better: bool
    definition: str
    combine: Callable[..., Any]  # combine(*input value arrays) -> value array

    def applies(self, metric_names: list[str]) -> bool:
        return all(m in metric_names for m in self.inputs)


DERIVED: list[DerivedScore] = []


def derived_scores(metric_names: list[str]) -> list[DerivedScore]:
    """The derived scores whose inputs are all among `metric_names`."""
    return [d for d in DERIVED if d.applies(list(metric_names))]


def clean_maps(maps: Tensor) -> Tensor:
    """Replace NaN/±inf in maps by 0 so that every metric has a defined value on them."""
    return torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0)
