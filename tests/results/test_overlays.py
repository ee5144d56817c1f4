"""The overlay figure's pictures: each map in jet at alpha 0.5 over its image, the mask's outline,
maps at another resolution brought to the image's, NaN maps leaving the image bare."""

import matplotlib
import numpy as np
from PIL import Image

from xaibench.results.report import blend, outline, overlay_grid


def test_outline_is_the_masks_border_pixels():
    mask = np.zeros((8, 8))
    mask[2:6, 1:7] = 1
    edge = outline(mask)
    want = np.zeros((8, 8), dtype=bool)
    want[2:6, 1:7] = True
    want[3:5, 2:6] = False  # the interior
    assert np.array_equal(edge, want)
    full = outline(np.ones((4, 4)))  # the picture's border is no outline: nothing lies beyond it
    assert not full.any()


def test_blend_is_jet_at_half_alpha_over_the_image():
    jet = matplotlib.colormaps["jet"]
    base = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    sal = np.arange(20, dtype=np.float32).reshape(4, 5)
    np.testing.assert_allclose(blend(base, sal, jet), 0.5 * jet(sal / 19)[..., :3] + 0.5 * base, rtol=1e-6)
    assert blend(base, np.full((4, 5), np.nan), jet) is base
    coarse = blend(base, np.array([[0.0, 1.0]]), jet)  # a 1×2 map over a 4×5 image: left low, right high
    assert coarse.shape == (4, 5, 3)
    np.testing.assert_allclose(coarse[:, 0], 0.5 * np.array(jet(0.0)[:3]) + 0.5 * base[:, 0], rtol=1e-6)
    np.testing.assert_allclose(coarse[:, -1], 0.5 * np.array(jet(1.0)[:3]) + 0.5 * base[:, -1], rtol=1e-6)


def test_overlay_grid_draws_every_picture(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    masks = np.zeros((2, 32, 32))
    masks[:, 8:24, 8:24] = 1
    maps = {"a": rng.random((2, 32, 32)), "b": np.full((2, 32, 32), np.nan)}
    boxes = np.array([[[8, 8, 24, 24]], [[np.nan] * 4]], dtype=float)
    path = overlay_grid(images, maps, ["x", "y"], tmp_path / "o.png", boxes, masks)
    picture = Image.open(path)
    width, height = picture.size  # 3 pictures of 32 px and 2 gaps of 2 px by 2 × 32 and 1 gap, 1.7 in per 32 px,
    assert (width, height) == (int(110 * (0.25 + 100 * 1.7 / 32)), int(110 * (0.3 + 66 * 1.7 / 32)))  # + margins
    assert np.asarray(picture.convert("L")).std() > 20  # pictures drawn, not a blank page
