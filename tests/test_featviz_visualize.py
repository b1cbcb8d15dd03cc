"""``visualize`` on a tiny random CNN: determinism, batching, callback, history, transparency, errors.

What is known: the run is a function of the seed only (one generator draws the initialization, the crops
and the noise), so two runs are equal bit for bit; the K images of a batch do not interact (each
objective reads its own image's crops, the standardization is per image, NAdam is elementwise), so
image k depends on objective k only when the crops are the same; ``final`` is the objective of the whole
final image. The tiny CNN (32 px, tanh so that no channel is dead at a grey image) keeps each run well
under a second.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from featviz_tiny import tiny_cnn

from workbench.featviz import FeatureViz, visualize
from workbench.featviz import objectives as obj
from workbench.models.model import Model

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"steps": 6, "n_crops": 2, "progress": False}


@pytest.fixture(scope="module")
def model() -> Model:
    return tiny_cnn()


def assert_same(a: FeatureViz, b: FeatureViz) -> None:
    for name in ("image", "transparency", "history", "final"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("param", ["maco", "fourier", "pixel"])
def test_deterministic_per_seed(model, param):
    o = obj.channel("act2", 3)
    a = visualize(model, o, param, seed=4, **FAST)
    assert_same(a, visualize(model, o, param, seed=4, **FAST))
    assert not torch.equal(a.image, visualize(model, o, param, seed=5, **FAST).image)


@pytest.mark.parametrize("param", ["maco", "pixel"])
def test_image_k_of_a_batch_depends_only_on_objective_k(model, param):
    """Batches [o0, o1] and [o0, o2] with the same seed draw the same initialization and crops (the
    draws depend on K, not on the objectives): image 0 must be the same in both (float round-off of a
    batched convolution: 1e-6), image 1 must differ. A coupling between images (a loss or a
    standardization over the batch, a shared crop grid mixing rows) would change image 0."""
    o0, o1, o2 = obj.channel("act2", 3), obj.channel("act2", 5), obj.logit(2)
    a = visualize(model, [o0, o1], param, seed=1, **FAST)
    b = visualize(model, [o0, o2], param, seed=1, **FAST)
    torch.testing.assert_close(a.image[0], b.image[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(a.history[:, 0], b.history[:, 0], rtol=0, atol=1e-6)
    assert (a.image[1] - b.image[1]).abs().max() > 1e-2
    assert a.objectives == ["channel(act2, 3)", "channel(act2, 5)"] and a.param == param


def test_shapes_history_transparency_and_final(model):
    objectives = [obj.channel("act2", 3), obj.neuron("act2", 1), obj.logit(0)]
    fv = visualize(model, objectives, "maco", steps=5, n_crops=3, seed=0, progress=False)
    assert fv.image.shape == (3, 3, 32, 32) and len(fv) == 3
    assert fv.image.min() >= 0 and fv.image.max() <= 1
    assert fv.history.shape == (5, 3) and not fv.stopped
    assert fv.transparency.shape == (3, 1, 32, 32)
    assert (
        torch.isfinite(fv.transparency).all() and (fv.transparency >= 0).all() and fv.transparency.sum() > 0
    )
    # final = the objective of the whole final image (no crop, no noise)
    for k, o in enumerate(objectives):
        torch.testing.assert_close(
            fv.final[k], obj.evaluate(model, o, fv.image[k : k + 1])[0], rtol=1e-5, atol=1e-6
        )
    assert fv.info["steps"] == 5 and fv.info["lr"] == 1.0 and fv.info["crop_scale"] == (0.6, 1.0)


def test_callback_sees_each_step_and_stops_early(model):
    """callback(step, images (K, 3, S, S), values (K,)); values are that step's history row; True stops."""
    calls = []

    def callback(step, images, values):
        calls.append((step, images.shape, values.clone()))
        return step == 3

    fv = visualize(model, [obj.channel("act2", 0), obj.channel("act2", 1)], "fourier", steps=10, n_crops=2,
                   seed=0, progress=False, callback=callback)  # fmt: skip
    assert [c[0] for c in calls] == [0, 1, 2, 3]
    assert all(shape == (2, 3, 32, 32) for _, shape, _ in calls)
    assert fv.stopped and fv.history.shape == (4, 2)
    torch.testing.assert_close(torch.stack([c[2] for c in calls]), fv.history)
    # a callback returning None or False never stops; True at the last step is not an early stop
    fv = visualize(model, obj.channel("act2", 0), "pixel", steps=3, n_crops=1, seed=0, progress=False,
                   callback=lambda step, images, values: step == 2)  # fmt: skip
    assert not fv.stopped and fv.history.shape == (3, 1)


@pytest.mark.parametrize("param", ["maco", "fourier", "pixel"])
def test_objective_rises(model, param):
    """From the initial image (the callback's step-0 image, before any update) to the final one, 24
    steps. Measured rises at seed 0: maco -0.033 -> 0.033, fourier -0.027 -> 0.084, pixel -0.076 ->
    0.040 (tanh channel, range [-1, 1]); the assertion asks for a rise of 0.02."""
    o = obj.channel("act2", 3)
    first = {}

    def keep_first(step, images, values):
        if step == 0:
            first["image"] = images

    fv = visualize(model, o, param, steps=24, n_crops=4, seed=0, progress=False, callback=keep_first)
    initial = obj.evaluate(model, o, first["image"])[0]
    assert fv.final[0] > initial + 0.02
    assert fv.history[-4:].mean() > fv.history[:4].mean()


def test_image_larger_than_the_model_input(model):
    """image_size 64 for a 32-px model: the crops (default scale 0.5 to 0.625 of the side, 32 to 40 px)
    are resized to 32 px; final = the objective of the whole image resized (antialiased) to 32 px."""
    o = obj.logit(1)
    fv = visualize(model, o, "maco", image_size=64, steps=16, n_crops=4, seed=0, progress=False)
    assert fv.image.shape == (1, 3, 64, 64) and fv.transparency.shape == (1, 1, 64, 64)
    lo, hi = fv.info["crop_scale"]
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.625)
    whole = F.interpolate(fv.image, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(fv.final, obj.evaluate(model, o, whole), rtol=1e-5, atol=1e-6)
    assert fv.history[-4:].mean() > fv.history[:4].mean()


def test_bad_input(model):
    o = obj.channel("act2", 0)
    with pytest.raises(KeyError, match="maco"):
        visualize(model, o, "macco", **FAST)
    with pytest.raises(ValueError, match="accentuate"):
        visualize(model, o, "spectrum", **FAST)
    with pytest.raises(ValueError, match="steps"):
        visualize(model, o, "pixel", steps=0, progress=False)
    for lr in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="lr"):
            visualize(model, o, "pixel", lr=lr, **FAST)
    for scale in [(0.5, 0.2), (0.5, 1.5), (0.0, 0.5)]:
        with pytest.raises(ValueError, match="scale"):
            visualize(model, o, "pixel", crop_scale=scale, **FAST)
    with pytest.raises(ValueError, match="n_crops"):
        visualize(model, o, "pixel", steps=2, n_crops=0, progress=False)
    with pytest.raises(ValueError, match="image_size"):
        visualize(model, o, "pixel", image_size=4, **FAST)
    with pytest.raises(ValueError, match="Objective"):
        visualize(model, "channel", "pixel", **FAST)
    with pytest.raises(ValueError, match="Objective"):
        visualize(model, [], "pixel", **FAST)
    with pytest.raises(ValueError, match="input size"):
        visualize(model.net, o, "pixel", **FAST)  # a bare module without input_size
    with pytest.raises(ValueError, match="spectrum"):
        visualize(model, o, "maco", spectrum=3, **FAST)
