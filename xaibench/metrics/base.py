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
    """values: (B,) float; curves: optional (B,T); extras: other (B,) per-image values; skipped:
    optional (B,) bool, the images the metric did not score (value NaN; the runner counts them in
    `n_skipped`): a non-finite map, an empty ground-truth region, a target without annotation."""

    values: Tensor
    curves: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)
    skipped: Tensor | None = None


class ImageMetric:
    """Scores maps per image. Subclasses are dataclasses whose fields are their parameters
    (`param(default, help=..., ge=...)`), checked when the metric is built (bounds here,
    cross-field checks in a subclass's `__post_init__`, which calls this one).

    `needs` lists the annotation keys required ("boxes", "mask", or "region": either, as the metric's
    `region` parameter says) and "explain" when the metric
    must re-run the explainer (the runner passes `explain=callable(model, x, target) -> maps`).
    `seeds` (B,) int64 key each image's random choices (tie-breaks, ROAD's noise): the runner
    passes `ordering.image_seeds(run seed, image ids)`; None keys images by their batch position.
    """

    registry_name: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = True
    extra_directions: ClassVar[dict[str, bool]] = {}  # extras whose direction differs from the metric's
    needs: ClassVar[frozenset[str]] = frozenset()
    class_mean: ClassVar[str | None] = None  # when set, summary.csv also has `<name>:class_mean`, described so
    # a dataset-level figure of the per-image curves that is not a mean of the values (MaxBoxAcc:
    # the best threshold of the hit rate): summary.csv's `<name>:dataset` row (results/summary.py
    # CURVE_AGGREGATES names the formulas; `dataset_aggregate()` gives the name and its parameters)
    curve_aggregate: ClassVar[str | None] = None

    def dataset_aggregate(self) -> dict[str, Any] | None:
        """{"name": one of results.summary.CURVE_AGGREGATES, "params": {...}} or None."""
        return None if self.curve_aggregate is None else {"name": self.curve_aggregate, "params": {}}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        call = cls.__dict__.get("__call__")
        if call is not None and not getattr(call, "finite_guarded", False):
            cls.__call__ = finite_maps_only(call)  # every metric: a non-finite map earns nothing

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
        if "region" in self.needs:  # boxes or a mask, as the metric's `region` says
            region = getattr(self, "region", "auto")
            use_mask = region == "mask" or (region == "auto" and masks is not None)
            needs = {"mask"} if use_mask else {"boxes"}
        else:
            needs = self.needs
        if "boxes" in needs:
            ok &= torch.tensor([bx is not None and len(bx) > 0 for bx in boxes], dtype=torch.bool)
        if "mask" in needs:
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
    insertion − deletion), made by a rule in `DERIVED` from the configured metrics and applied by
    the store to every image that has all its inputs (`inputs`: the metrics' display names)."""

    name: str
    inputs: tuple[str, ...]
    higher_is_better: bool
    definition: str
    combine: Callable[..., Any]  # combine(*input value arrays) -> value array

    def applies(self, metric_names: list[str]) -> bool:
        return all(m in metric_names for m in self.inputs)


# Rules declared by the metrics' modules: (display name, metric) pairs of a run → its derived scores.
DERIVED: list[Callable[[list[tuple[str, ImageMetric]]], list[DerivedScore]]] = []


def derived_scores(metrics: list[tuple[str, ImageMetric]]) -> list[DerivedScore]:
    """The derived scores the configured metrics (display name, built metric) allow."""
    return [d for rule in DERIVED for d in rule(list(metrics))]


def clean_maps(maps: Tensor) -> Tensor:
    """The maps as float32. Non-finite maps never reach a metric (`finite_maps_only` scores them
    NaN before); NaN/±inf are still zeroed here so that no arithmetic can propagate them."""
    return torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0)


def select_rows(annotation: dict[str, Any] | None, rows: Tensor) -> dict[str, Any] | None:
    """The annotation of the images `rows` (lists and tensors indexed per image; other values kept)."""
    if annotation is None:
        return None
    idx = rows.tolist()
    out: dict[str, Any] = {}
    for key, value in annotation.items():
        if isinstance(value, Tensor) and value.dim() > 0:
            out[key] = value[rows.to(value.device)]
        elif isinstance(value, (list, tuple)):
            out[key] = [value[i] for i in idx]
        else:
            out[key] = value
    return out


def scatter_rows(part: Tensor, rows: Tensor, b: int) -> Tensor:
    """(b, …) float tensor, NaN but at `rows`, which hold `part`."""
    out = torch.full((b, *part.shape[1:]), float("nan"), dtype=torch.float32, device=part.device)
    out[rows.to(part.device)] = part.float()
    return out


def finite_maps_only(call: Callable[..., MetricResult]) -> Callable[..., MetricResult]:
    """Wrap a metric's `__call__` so that an image whose map holds NaN or ±inf is not scored: its
    value, extras and curve are NaN and `skipped` is True (docs/metrics.md "Failed maps"). The
    metric runs on the other images only; without `seeds` they keep their batch positions as keys,
    so their tie-breaks and noise are the same as in the whole batch."""
    import functools

    @functools.wraps(call)
    def guarded(self, model, x, maps, target, annotation=None, explain=None, seeds=None) -> MetricResult:
        failed = ~torch.isfinite(maps).flatten(1).all(1)
        if not bool(failed.any()):
            return call(self, model, x, maps, target, annotation=annotation, explain=explain, seeds=seeds)
        b = maps.shape[0]
        rows = torch.nonzero(~failed.cpu()).squeeze(1)
        skipped = failed.cpu().clone()
        if rows.numel() == 0:
            return MetricResult(values=torch.full((b,), float("nan"), device=maps.device), skipped=skipped)
        keys = seeds[rows.to(seeds.device)] if seeds is not None else rows.to(torch.int64)
        part = call(self, model, None if x is None else x[rows.to(x.device)], maps[rows.to(maps.device)],
                    target[rows.to(target.device)], annotation=select_rows(annotation, rows), explain=explain,
                    seeds=keys)
        if part.skipped is not None:
            skipped[rows] |= part.skipped.cpu().bool()
        return MetricResult(
            values=scatter_rows(part.values, rows, b),
            curves=None if part.curves is None else scatter_rows(part.curves, rows, b),
            extras={k: scatter_rows(v, rows, b) for k, v in part.extras.items()},
            skipped=skipped,
        )

    guarded.finite_guarded = True  # type: ignore[attr-defined]
    return guarded
