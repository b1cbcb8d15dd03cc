"""``accentuate`` (Hamblin, Fel et al. 2024) on a tiny random CNN: distance, rise, regularization, shapes.

What is known: every step projects the image onto the ball of RMS radius ``max_distance`` around the
seed (as the parameterization renders it: the seed through logit and sigmoid, exact for pixels in
[1e-3, 1 - 1e-3], so seeds here lie in [0.05, 0.95]), so the final distance is <= max_distance up to
float32 round-off (1e-5); the regularization pulls toward the seed, so a very large strength keeps the
image closer than no regularization when the ball is not binding.
"""

from __future__ import annotations

import pytest
import torch
from featviz_tiny import tiny_cnn

from workbench.featviz import accentuate
from workbench.featviz import objectives as obj
from workbench.models.model import Model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> Model:
    return tiny_cnn()


@pytest.fixture(scope="module")
def seeds() -> torch.Tensor:
    return 0.05 + 0.9 * torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).square().flatten(1).mean(1).sqrt()


@pytest.mark.parametrize("reg", ["pixel", "latent"])
def test_stays_within_its_distance_and_raises_the_objective(model, seeds, reg):
    """Measured at seed 0 (24 steps, strength 1): pixel reg. -0.032/-0.043 -> 0.091/0.091, both at the
    0.1 bound; latent reg. (act2) -> 0.015/0.0003. The rise asked for is 0.01."""
    o = obj.channel("act2", 3)
    fa = accentuate(model, o, seeds, reg=reg, strength=1.0, steps=24, max_distance=0.1, progress=False)
    assert fa.image.shape == seeds.shape and fa.history.shape == (24, 2)
    assert (rms(fa.image, seeds) <= 0.1 + 1e-5).all()
    torch.testing.assert_close(fa.info["distance"], rms(fa.image, seeds), rtol=0, atol=1e-5)
    seed_values = obj.evaluate(model, o, seeds)
    torch.testing.assert_close(fa.info["seed_final"], seed_values, rtol=1e-4, atol=1e-5)
    assert (fa.final > seed_values + 0.01).all()
    assert torch.isfinite(fa.transparency).all() and (fa.transparency >= 0).all()
    assert fa.info["layer"] == (None if reg == "pixel" else "act2")


@pytest.mark.parametrize("reg", ["pixel", "latent"])
def test_strong_regularization_keeps_the_image_closer(model, seeds, reg):
    """With a ball too large to bind (max_distance 1), strength 1e3 vs 0: measured RMS distances
    0.014/0.016 vs 0.34/0.33 (pixel) and 0.024/0.021 vs 0.34/0.33 (latent)."""
    o = obj.logit(2)
    kwargs = {"reg": reg, "steps": 24, "max_distance": 1.0, "progress": False}
    free = accentuate(model, o, seeds, strength=0.0, **kwargs)
    held = accentuate(model, o, seeds, strength=1e3, **kwargs)
    assert (rms(held.image, seeds) < 0.5 * rms(free.image, seeds)).all()


def test_seed_shapes_and_counts(model, seeds):
    o = obj.channel("act2", 1)
    one = accentuate(model, o, seeds[0], reg="pixel", steps=3, progress=False)  # (3, H, W)
    assert one.image.shape == (1, 3, 32, 32) and len(one.objectives) == 1
    # one objective for K seeds is repeated; K objectives go one per seed
    many = accentuate(model, [o, obj.logit(0)], seeds, reg="pixel", steps=3, progress=False)
    assert many.image.shape == (2, 3, 32, 32) and many.objectives == ["channel(act2, 1)", "logit(0)"]
    with pytest.raises(ValueError, match="3 objectives for 2 seed images"):
        accentuate(model, [o, o, o], seeds, steps=3, progress=False)
    with pytest.raises(ValueError, match="reg"):
        accentuate(model, o, seeds, reg="both", steps=3, progress=False)
    with pytest.raises(ValueError, match="max_distance"):
        accentuate(model, o, seeds, max_distance=0.0, steps=3, progress=False)
    with pytest.raises(ValueError, match="lr"):
        accentuate(model, o, seeds, lr=0.0, steps=3, progress=False)
    with pytest.raises(ValueError, match="strength"):
        accentuate(model, o, seeds, strength=-1.0, steps=3, progress=False)
    with pytest.raises(ValueError, match="pixel values"):
        accentuate(model, o, 2 * seeds, steps=3, progress=False)
    with pytest.raises(ValueError, match="square"):
        accentuate(model, o, seeds[..., :16], steps=3, progress=False)
