"""The names of the arrays a batch file holds (and, but for costs and previews, results.h5 too):
built and parsed here only, so the runner that writes them and the store that reads them agree.
"""

from __future__ import annotations

from typing import NamedTuple

INDEX = "index"
SAMPLE_FIELDS = ("id", "label", "target", "pred", "error")
# arrays of the batch files that are not per-image datasets of results.h5
NOT_PER_IMAGE = ("cost/", "preview/")


def sample(field: str) -> str:
    """`samples/<field>`: id, label, target, pred or error of each image."""
    return f"samples/{field}"


def map_key(explainer: str) -> str:
    return f"maps/{explainer}"


def map_scale(explainer: str) -> str:
    """Where results.h5 keeps the per-image scale of a float16 map."""
    return f"map_scale/{explainer}"


def diagnostic(explainer: str, name: str) -> str:
    return f"diagnostics/{explainer}/{name}"


def score(explainer: str, metric: str, extra: str | None = None) -> str:
    """`scores/<explainer>/<metric>` or, for a metric's extra value, `…/<metric>:<extra>`."""
    return f"scores/{explainer}/{metric}" + (f":{extra}" if extra else "")


def curve(explainer: str, metric: str) -> str:
    return f"curves/{explainer}/{metric}"


def status(explainer: str, metric: str) -> str:
    """Per image: 1 scored, 0 not asked (limits, failed image), −1 skipped (no annotation), −2 the
    explainer or the metric raised (`on_error: skip`; the reason is under `failure`)."""
    return f"status/{explainer}/{metric}"


def failure(explainer: str, metric: str | None = None) -> str:
    """`failures/<explainer>[/<metric>]`: per image, why the explainer (or the metric on its maps)
    raised on the image's batch; '' where it did not."""
    return f"failures/{explainer}" + (f"/{metric}" if metric else "")


def cost(plugin: str) -> str:
    """A plug-in's (seconds, images, forward images, backward images) for one batch."""
    return f"cost/{plugin}"


class Key(NamedTuple):
    """A parsed array name: its kind (`scores`, `curves`, `status`, `maps`, …) and the rest."""

    kind: str
    explainer: str = ""
    metric: str = ""  # for scores, possibly `metric:extra`

    @property
    def base_metric(self) -> str:
        return self.metric.split(":")[0]


def parse(name: str) -> Key:
    kind, _, rest = name.partition("/")
    if kind in ("scores", "curves", "status", "diagnostics", "failures"):
        explainer, _, metric = rest.partition("/")
        return Key(kind, explainer, metric)
    if kind == "cost":
        return Key(kind, rest)
    return Key(kind, rest)
