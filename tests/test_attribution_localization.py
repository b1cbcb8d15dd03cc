"""Ground truth for localization: every method's energy inside the planted object, on 64 images (16 for five).

The model is ``zoo:resnet_textures``: it classifies the *texture* of the object, which is only visible
inside the object mask, and it was trained with random black/blur/mean occlusions, so masking a
background cell is in distribution and moves its score little (an all-black image gets a near-uniform
softmax). Its evidence is therefore inside the mask, which makes the mask a ground truth for "where".
For the shape CNN (``zoo:resnet_shapes``) the evidence is the contour, which straddles the mask, and
no cell-level map can put much more than half its mass strictly inside (see the closing note of the
attribution issue for its figures).

Energy = positive mass inside the mask / total positive mass, per image, averaged. A uniform map scores
the mask's area (about 0.16); the best grid-8 map (each cell's object fraction, upsampled bicubically)
scores about 0.77. Threshold 0.6 for Sobol, HSIC, RISE and Grad-CAM, as the issue asks.

Measured (seed 5000, 2 CPU cores, about 6 minutes): saliency 0.533, gradient_input 0.615,
integrated_gradients 0.727, smoothgrad 0.342, gradcam 0.673, gradcam_pp 0.657, occlusion 0.711,
rise 0.624, lime 0.581, kernel_shap 0.623, sobol 0.825 (0.836 at the default nb_design 32, 0.822 at the
nb_design 8 used here, measured 2026-12-03), hsic 0.698;
uniform map 0.156. (Measured with one seed for the whole sequence of methods; each method now starts from
seed 0 and its own images, so that the two pytest-xdist workers can share them: the asserts hold.)
"""

from __future__ import annotations

import pytest
import torch

import workbench.attribution as A
from workbench.metrics import energy_in_mask

# Budgets: the reference defaults, except RISE (1,000 masks instead of 4,000), KernelSHAP (256
# coalitions instead of 800) and Sobol (nb_design 8 instead of 32: 528 passes per image instead of
# 2,112), cut to keep this test within a few CPU minutes (at the defaults Sobol alone took 4.7 of its 10
# minutes). The three estimators are Monte-Carlo / quasi-Monte-Carlo averages: fewer samples add noise,
# not bias; Sobol's energy moves from 0.836 (32) to 0.825 (16) and 0.822 (8), far above 0.6.
METHODS = {
    "saliency": {},
    "gradient_input": {},
    "integrated_gradients": {},
    "smoothgrad": {},
    "gradcam": {},
    "gradcam_pp": {},
    "occlusion": {"patch_size": 8, "stride": 8},
    "rise": {"n_masks": 1000},
    "lime": {},
    "kernel_shap": {"n_samples": 256},
    "sobol": {"nb_design": 8},
    "hsic": {},
}
REQUIRED = ("sobol", "hsic", "rise", "gradcam")
# The methods the issue sets no threshold for only need to beat a uniform map (about 0.16): for the five
# costly ones of them 16 of the 64 images are enough (measured on those 16, uniform map 0.159: occlusion
# 0.72, LIME 0.602, KernelSHAP 0.635, integrated gradients 0.738, SmoothGrad 0.368; 2026-12-03). Every other
# method, the required four included, is measured on all 64.
FEWER_IMAGES = {"occlusion": 16, "lime": 16, "kernel_shap": 16, "integrated_gradients": 16, "smoothgrad": 16}
N_IMAGES = 64


@pytest.fixture(scope="module")
def texture_case():
    from workbench.data import planted_shapes
    from workbench.models import load_model

    model = load_model("zoo:resnet_textures")
    data = planted_shapes(N_IMAGES, size=64, seed=5000, rule="texture")  # a seed no zoo model trained on
    return model, data.images, data.labels, data.object_masks.float()


# One test per method, so that pytest-xdist's two workers share the methods (Sobol and RISE take about
# 4 minutes each on one thread).
@pytest.mark.slow
@pytest.mark.parametrize("name", list(METHODS))
def test_energy_in_object_mask(texture_case, name):
    model, x, y, masks = texture_case
    n = FEWER_IMAGES.get(name, N_IMAGES)
    x, y, masks = x[:n], y[:n], masks[:n]
    torch.manual_seed(0)
    kw = dict(METHODS[name])
    if "batch_size" in A.get_method(name).__code__.co_varnames:
        kw.setdefault("batch_size", 64)  # this CNN runs 440 rows/s at 64 a pass on 2 cores, 280 at 256
    maps = A.get_method(name)(model, x, y, **kw)
    assert maps.shape == (n, 64, 64) and torch.isfinite(maps).all(), name
    energy, area = float(energy_in_mask(maps, masks).mean()), float(masks.mean())
    print(f"energy in the object mask, {name}, {n} images: {energy:.3f} (uniform map: {area:.3f})")
    if name in REQUIRED:
        assert energy >= 0.6, (name, energy)
    assert energy > area, (name, energy, area)
