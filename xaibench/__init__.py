"""xaibench: benchmark saliency explainers for image classifiers — faithfulness, localization,
sanity and speed, from one YAML file (`xai run`) to a leaderboard (`xai compare`)."""

__version__ = "0.1.0"

from .api import compare, evaluate, explain, load_model, probe, run, visualize  # noqa: E402
from .errors import XaiError  # noqa: E402
from .models.adapter import ModelAdapter  # noqa: E402

__all__ = ["ModelAdapter", "XaiError", "compare", "evaluate", "explain", "load_model", "probe", "run", "visualize"]
