"""xaibench: benchmark saliency explainers for image classifiers — faithfulness, localization,
sanity and speed, from one YAML file (`xai run`) to a leaderboard (`xai compare`)."""

from .api import compare, evaluate, explain, load_model, probe, run, visualize  # noqa: E402
from .errors import XaiError  # noqa: E402
from .models.adapter import ModelAdapter  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ["__version__", "ModelAdapter", "XaiError", "compare", "evaluate", "explain", "load_model", "probe", "run", "visualize"]
