"""scores.csv's rows from one batch's arrays: one row per image a score was computed for (status 1, or
a finite value where a score has no status), with the image's fields, explainer, metric and value."""

import numpy as np
import pandas as pd

from xaibench.results import keys
from xaibench.results.summary import SCORE_COLUMNS, tidy


def test_tidy_keeps_the_computed_scores_with_their_images():
    arrays = {keys.INDEX: np.array([10, 11, 12]), keys.sample("id"): np.array(["a", "b", "c"]),
              keys.sample("label"): np.array([0, 1, 2]), keys.sample("target"): np.array([0, 1, 1]),
              keys.sample("pred"): np.array([0, 2, 1]),
              keys.score("gradcam", "deletion"): np.array([0.1, 0.2, 0.3], dtype=np.float32),
              keys.status("gradcam", "deletion"): np.array([1, -1, 1]),  # image b skipped
              keys.score("gradcam", "deletion", "auc_raw"): np.array([1.0, 2.0, 3.0]),  # its metric's status
              keys.score("saliency", "complexity"): np.array([np.nan, 5.0, 6.0]),  # no status: the finite ones
              keys.score("saliency", "insertion"): np.array([7.0, 8.0, 9.0]),
              keys.status("saliency", "insertion"): np.array([0, 0, 0]),  # none computed: no rows
              keys.map_key("gradcam"): np.zeros((3, 2, 2))}
    out = tidy(arrays)
    assert list(out.columns) == SCORE_COLUMNS
    want = pd.DataFrame({"index": [10, 12, 10, 12, 11, 12], "id": ["a", "c", "a", "c", "b", "c"],
                         "label": [0, 2, 0, 2, 1, 2], "target": [0, 1, 0, 1, 1, 1], "pred": [0, 1, 0, 1, 2, 1],
                         "explainer": ["gradcam"] * 4 + ["saliency"] * 2,
                         "metric": ["deletion", "deletion", "deletion:auc_raw", "deletion:auc_raw", "complexity",
                                    "complexity"],
                         "value": [np.float32(0.1), np.float32(0.3), 1.0, 3.0, 5.0, 6.0]})
    pd.testing.assert_frame_equal(out, want)
    assert tidy({k: v for k, v in arrays.items() if not k.startswith("scores/")}).empty
