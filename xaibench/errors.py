"""User-facing errors of xaibench.

Every mistake a user can make (config, data, model, layer, output) raises a subclass of
`XaiError` whose message says what was wrong and what is valid; the CLI prints it and exits 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class XaiError(Exception):
    """Base class of every error a user can cause."""


class ConfigError(XaiError):
    """A bad config key, value, type or plug-in name."""


class DataError(XaiError):
    """A missing, unreadable or malformed dataset file or annotation."""


class ModelError(XaiError):
    """A model that cannot be built, loaded or explained as asked."""


class LayerError(ModelError):
    """A layer name that does not exist in the model or does not fit the method."""


class OutputError(XaiError):
    """An output folder that exists, cannot be written, or is not a run."""


class PluginError(XaiError):
    """An explainer or metric that raised during a run with `on_error: fail` (names it and the batch)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean X?' for the closest of `choices` to `name`, or ''."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> str:
    """A message for an unknown name: what was given, the close match, and every valid choice."""
    choices = sorted(choices)
    return f"unknown {kind} '{name}'.{did_you_mean(name, choices)} Valid: {', '.join(choices)}"
