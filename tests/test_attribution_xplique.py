"""Peer agreement with Xplique 2.0.2 on ``zoo:resnet_textures`` (4 PlantedShapes texture images).

Ground truth: ``tests/data/xplique_resnet_textures.npz``, Xplique's own Sobol and HSIC grids, its exact
designs and the model's logits, produced in a separate TensorFlow environment (see
``/work/shared/peer-fixtures/README.md`` at the time of copying: Xplique 2.0.2, TensorFlow 2.20). With
Xplique's design (``sampler="sobol_xplique"``), variance (``variance="xplique"``) and bandwidth (the
default ``"median_output"``), our grids must rank the cells as Xplique does and match its values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from workbench.attribution import hsic, sobol
from workbench.attribution.sampling import binary_masks
from workbench.attribution.sobol_sensitivity import design_masks, sobol_design

FIXTURE = Path(__file__).parent / "data" / "xplique_resnet_textures.npz"


@pytest.fixture(scope="module")
def peer():
    from workbench.models import load_model

    z = np.load(FIXTURE)
    return {k: z[k] for k in z.files}, load_model("zoo:resnet_textures")


def _spearman(a: np.ndarray, b: np.ndarray) -> list[float]:
    return [float(spearmanr(u.ravel(), v.ravel())[0]) for u, v in zip(a, b, strict=True)]


def test_fixture_is_this_model_and_these_designs(peer):
    z, model = peer
    assert json.loads(str(z["meta"]))["versions"]["xplique"] == "2.0.2"
    with torch.no_grad():
        logits = model(torch.from_numpy(z["images"]))
    # same weights: the logits agree to float32 rounding (measured: identical)
    np.testing.assert_allclose(logits.numpy(), z["logits"], rtol=0, atol=1e-5)
    # Xplique's Sobol design: the plain Sobol sequence without its first point, [A; B; C_1..C_64]
    ours = design_masks(*sobol_design("sobol_xplique", 32, 64)).numpy()
    np.testing.assert_array_equal(ours, z["sobol_masks"].reshape(-1, 64))
    # its binary HSIC masks: the same sequence rounded half to even (its many 0.5 values give 0)
    np.testing.assert_array_equal(
        binary_masks("sobol_xplique", 1000, 64).numpy(), z["hsic_masks"].reshape(-1, 64)
    )


@pytest.mark.slow
def test_sobol_and_hsic_grids_match_xplique(peer):
    """4 images x (2,112 + 1,000) forward passes of a 64 px CNN: about a minute on 2 idle cores."""
    z, model = peer
    x, y = z["images"], z["targets"]  # numpy, converted at the boundary
    kw = {"upsample": False, "batch_size": 256, "progress": False}
    grid = sobol(model, x, y, sampler="sobol_xplique", variance="xplique", **kw).numpy()
    assert min(_spearman(grid, z["sobol_grid"])) >= 0.999
    # values: float32 forward passes on both sides, the estimator in float64 here (measured 2.8e-5)
    np.testing.assert_allclose(grid, z["sobol_grid"], rtol=1e-4, atol=0)

    p = 1000
    h = hsic(model, x, y, sampler="sobol_xplique", nb_design=p, **kw).numpy().astype(np.float64)
    h *= (p - 1) ** 2 / p  # Xplique divides tr(K H L H) by p, we by (p - 1)^2
    assert min(_spearman(h, z["hsic_grid"])) >= 0.999
    # Xplique sums the (1000, 1000) centred Grams in float32, we in float64: our own float32 version of
    # the same sums differs from float64 by up to 2e-4 relative on the smallest cells and 2e-6 of each
    # image's largest cell (measured; 2.8e-5 with batch size 512, whose float32 convolutions differ)
    scale = z["hsic_grid"].max(axis=(1, 2), keepdims=True)
    assert (np.abs(h - z["hsic_grid"]) / scale).max() <= 1e-4
