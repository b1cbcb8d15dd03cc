"""Feature visualization on the zoo CNNs: the measured claims of issue 13, section 4.

What is known, and measured here (2 CPU threads; every run seeded):

- **The objective rises.** With the Fourier parameterization, the visualization of each channel of the
  last block (``layer4``, 96 channels, optimized in one batch, 1 crop per step) ends above that channel's
  largest value over the model's whole test set (its card's PlantedShapes draw: 2,000 images, test seed
  2000) for at least 90 % of the channels. Measured, seeds 0 / 1 / 2: ``resnet_textures`` after 32 steps
  0.938 / 0.958 / 0.958 (>= 0.9 from step 10 on); ``resnet_shapes`` after 48 steps 0.958 / 0.979 / 0.958
  (after 64: 1.000 / 0.979 / 0.979). On ``resnet_shapes`` 36 of the 96 channels are 0 on the whole
  starting image; without the redirected ReLU gradient (``visualize(redirect_relu=True)``, Lucid's) they
  never move and the share stays at 0.573 (24 steps and at the plateau). MACO's shares (not a claim of the
  issue, a regression guard): 0.74 on ``resnet_textures`` after 32 steps, 0.969 on ``resnet_shapes`` after
  64 (its fixed magnitude trades activation for naturalness; with a constant lr 1.0 it was 0.32 / 0.44).
- **MACO's class visualizations reach their class** (``resnet_textures``, ``logit(c)``, 64-px images,
  crops of 0.6 to 1.0 of the side, the default for an image of the model's size): whole-image probability
  >= 0.5 for every class and seed. Measured at 32 steps x 4 crops: 1.000 for all 4 classes x 5 seeds. With
  the reference's constant lr 1.0 it was not: 0.14 (stripes, seed 3, 64 x 4) and a dip to 0.03 at step 88
  with 8 crops; the cosine decay of MACO's lr (its default here) settles the image.
- **Transfer to the twin** (``resnet_textures_twin``: same recipe, seed 1): MACO's class visualizations
  are classified as their class by the twin for 20 of 20 images (5 seeds, 32 x 4), Fourier's and
  pixel's for 9 of 12 (3 seeds): the twin reads their checker images as stripes every time (also at
  64 x 4, 64 x 8 and 128 x 8, constant or cosine lr).
- **Accentuation** (Hamblin et al.) stays within ``max_distance`` (0.1 RMS; the projection makes it
  exact, so the tolerance is float rounding), raises the target logit, keeps the predicted class when
  the target is the image's own class; toward the second choice it flipped 2 of 4 predictions (printed).

Where each claim is asserted: the ``resnet_textures`` claims (Fourier channels, MACO's class images and
their transfer to the twin) by ``notebooks/40_maco.ipynb`` at ``scale="ci"`` (same budgets: 32 steps, 1 crop
for the channels, 32 x 4 for the classes, 3 seeds), which ``tests/test_notebooks.py`` executes; this module
asserts the ``resnet_shapes`` channel figures, the redirected ReLU, the lr schedule and accentuation, so the
suite computes each figure once.
"""

from __future__ import annotations

import pytest
import torch

from workbench.data import planted_shapes
from workbench.featviz import accentuate, visualize
from workbench.featviz import objectives as obj
from workbench.featviz.visualization import redirected_relu, scheduled_lr
from workbench.models import ZOO, load_model

LAYER = "layer4"
CHANNEL_STEPS = {"resnet_shapes": 48}  # resnet_textures: notebooks/40_maco.ipynb asserts it (32 steps)


@pytest.fixture(scope="module")
def zoo():
    return {name: load_model(f"zoo:{name}") for name in ("resnet_textures", "resnet_shapes")}


_DATA_MAX: dict[str, torch.Tensor] = {}  # by zoo name: two tests of this module use resnet_shapes's


def data_max(model) -> torch.Tensor:
    """Each channel's largest mean activation in ``layer4`` over the model's own 2,000 test images
    (computed once per model)."""
    name = model.spec.split(":", 1)[1]
    if name not in _DATA_MAX:
        data = planted_shapes(
            model.card["data"]["n_test"], size=64, seed=model.card["data"]["test_seed"], **ZOO[name].data
        )
        with torch.inference_mode():
            acts = [model.activations(b, [LAYER])[LAYER].mean((2, 3)) for b in data.images.split(500)]
        _DATA_MAX[name] = torch.cat(acts).amax(0)
    return _DATA_MAX[name]


@pytest.mark.parametrize("name", list(CHANNEL_STEPS))
def test_fourier_channels_rise_above_every_test_image(zoo, name):
    model = zoo[name]
    real_max = data_max(model)
    objectives = [obj.channel(LAYER, c) for c in range(len(real_max))]
    fv = visualize(model, objectives, "fourier", steps=CHANNEL_STEPS[name], n_crops=1, seed=0, progress=False)
    above = (fv.final > real_max).float().mean().item()
    print(f"{name}: {above:.3f} of {len(real_max)} channels above the test set's max (Fourier)")
    assert above >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize(("name", "steps", "floor"), [("resnet_shapes", 64, 0.85)])
def test_maco_channel_figure(zoo, name, steps, floor):
    """MACO's share, a regression guard 0.12 under the measured 0.969 (module docstring)."""
    model = zoo[name]
    real_max = data_max(model)
    objectives = [obj.channel(LAYER, c) for c in range(len(real_max))]
    fv = visualize(model, objectives, "maco", steps=steps, n_crops=1, seed=0, progress=False)
    above = (fv.final > real_max).float().mean().item()
    print(f"{name}: {above:.3f} of the channels above the test set's max (MACO)")
    assert above >= floor


def test_redirected_relu_moves_channels_dead_on_the_start_image(zoo):
    """Eight ``resnet_shapes`` channels that are 0 on the whole starting crop (seed 0): without the
    redirection they get no gradient and stay exactly 0; with it every one of them rises."""
    model = zoo["resnet_shapes"]
    objectives = [obj.channel(LAYER, c) for c in (0, 1, 2, 4, 5, 6, 8, 9)]
    run = {r: visualize(model, objectives, "fourier", steps=8, n_crops=1, seed=0, progress=False, redirect_relu=r)
           for r in (False, True)}  # fmt: skip
    assert (run[False].history[0] == 0).all() and (run[True].history[0] == 0).all()
    assert (run[False].final == 0).all()
    assert (run[True].final > 0).all(), run[True].final


def test_redirected_relu_changes_gradients_only_and_restores_the_model():
    relu = torch.nn.ReLU(inplace=True)
    net = torch.nn.Sequential(relu)
    x = torch.tensor([[-1.0, -2.0], [3.0, -1.0]], requires_grad=True)
    with redirected_relu(net) as n:
        assert n == 1
        y = net(x)
        assert torch.equal(y, torch.tensor([[0.0, 0.0], [3.0, 0.0]]))
        (g,) = torch.autograd.grad((y * torch.tensor([[1.0, -1.0], [1.0, 1.0]])).sum(), x)
    # row 0 is all off: the upward gradient (+1) passes, the downward one (-1) is dropped;
    # row 1 has a live unit: the plain ReLU gradient
    assert torch.equal(g, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    assert "forward" not in vars(relu)
    with pytest.raises(RuntimeError), redirected_relu(net):
        raise RuntimeError
    assert "forward" not in vars(relu)


def test_scheduled_lr():
    assert scheduled_lr(1.0, 5, 10, "constant") == 1.0
    assert scheduled_lr(1.0, 0, 10, "cosine") == 1.0
    assert scheduled_lr(1.0, 5, 10, "cosine") == pytest.approx(0.5)
    assert 0 < scheduled_lr(1.0, 9, 10, "cosine") < 0.03
    with pytest.raises(ValueError, match="lr_schedule"):
        visualize(
            load_model("zoo:resnet_textures"),
            obj.logit(0),
            "maco",
            steps=1,
            progress=False,
            lr_schedule="step",
        )


def test_accentuation_on_zoo_images(zoo):
    model = zoo["resnet_textures"]
    data = planted_shapes(64, size=64, seed=30_000, **ZOO["resnet_textures"].data)  # fresh images
    x = torch.stack([data.images[data.labels == c][0] for c in range(4)])
    with torch.inference_mode():
        logits = model(x)
    own, other = logits.topk(2, dim=1).indices.T
    objectives = [obj.logit(int(c)) for c in torch.cat([own, other])]
    fa = accentuate(
        model, objectives, torch.cat([x, x]), steps=32, n_crops=4, max_distance=0.1, seed=0, progress=False
    )
    with torch.inference_mode():
        after = model(fa.image).argmax(1)
    assert (fa.info["distance"] <= 0.1 + 1e-5).all(), fa.info["distance"]
    assert (fa.final > fa.info["seed_final"]).all(), (fa.info["seed_final"], fa.final)
    assert torch.equal(after[:4], own)
    print(f"toward the second choice: {int((after[4:] == other).sum())} of 4 predictions flipped to it")
