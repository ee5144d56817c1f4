"""Self-contained HTML reports: `report.html` of a run and the comparison page of several runs,
built from the run folders alone (results.h5, CSVs, run.json) with Jinja2 templates.
"""

from __future__ import annotations

from .comparison import render_comparison
from .page import render_run

__all__ = ["render_comparison", "render_run"]
