"""xaibench: benchmark saliency explainers for image classifiers."""

__version__ = "0.1.0"
