"""``workbench.featviz`` against Horama, the MACO authors' toolbox (``horama==0.3.0``, a dev dependency).

Two things are checked against the peer:

1. Agreement: on ``zoo:resnet_textures`` with a class-logit objective, the same number of steps and crops
   per step, the same learning rate (NAdam, 1.0) and the same magnitude spectrum, our MACO image scores at
   least Horama's minus 10 % of its magnitude (the issue's goal), both scored by the same function on the
   whole final image. How Horama is run (its value range is the model's pixel range in normalized units,
   our spectrum in its working directory, a frozen network) is in ``tests/horama_peer.py``.
2. Horama's crop-size bug, reproduced from its own ``optimization_step``: its box sides are drawn in
   ``[high, 2 * high - low]`` (``common.py``: the random offset starts at ``box_size[1]``), so the
   documented ``box_size=(0.20, 0.25)`` gives sides 0.25-0.30, and its Gaussian centres put about 3 % of
   the boxes partly outside the image; ours (``crop_boxes``) cover exactly [low, high], inside the image.

Wall times are not asserted (``benchmarks/featviz.py`` measures steps/s).
"""

from __future__ import annotations

import math

import pytest
import torch
from horama_peer import HORAMA_AVAILABLE, run_horama

from workbench.featviz import load_spectrum, visualize
from workbench.featviz import objectives as obj
from workbench.featviz.transforms import crop_boxes

pytestmark = pytest.mark.skipif(
    not HORAMA_AVAILABLE,
    reason="horama is not installed: it is a dev dependency (pip install -c constraints.txt -e '.[dev]')",
)


@pytest.fixture(scope="module")
def textures():
    from workbench.models import load_model

    return load_model("zoo:resnet_textures")


# stripes and checker: the classes on which Horama does best on this model (issue 13's anchor)
@pytest.mark.parametrize("label", ["stripes", "checker"])
def test_final_objective_at_least_horamas(textures, tmp_path, label):
    """Ours >= Horama's - 10 % of |Horama's| on the whole final image (same steps, crops, lr, spectrum).

    Measured with these settings (seed 0): ours 6.05 vs Horama 0.09 (stripes), 16.43 vs 0.08 (checker):
    Horama's crops (sides 0.25-0.30 of a 64-px image, upsampled 4x) show the 64-px model single texture
    cells, ours (0.6-1.0) whole patterns. 32 steps keep the test short; the gap is there from the first
    steps on (benchmarks/featviz.py runs 256).
    """
    c = textures.labels.index(label)
    objective = obj.logit(c)
    steps, n_crops, seed = 32, 4, 0
    magnitude = load_spectrum("planted_shapes_64")["magnitude"]
    ours = visualize(textures, objective, "maco", steps=steps, n_crops=n_crops, seed=seed, progress=False)
    theirs = run_horama(textures, objective, magnitude, tmp_path, steps, n_crops, seed)
    assert theirs.shape == ours.image.shape and 0 <= float(theirs.min()) and float(theirs.max()) <= 1
    with torch.no_grad():
        ours_value = float(obj.evaluate(textures, objective, ours.image)[0])
        theirs_value = float(obj.evaluate(textures, objective, theirs)[0])
    assert math.isclose(ours_value, float(ours.final[0]), rel_tol=1e-4, abs_tol=1e-4)  # same function
    assert ours_value >= theirs_value - 0.1 * abs(theirs_value), (ours_value, theirs_value)


def test_horama_crop_sides_miss_their_documented_range():
    """Horama's ``optimization_step`` with ``box_size=(0.20, 0.25)``: the boxes it passes to
    ``roi_align`` (recorded by a spy) have sides uniform in [0.25, 0.30], none in the documented range
    below 0.25; ours, from the same request, are uniform in exactly [0.20, 0.25].

    4,096 boxes each: a uniform sample's extremes lie within 0.05 / 4,097 (about 1e-5) of the range's
    ends on average, so the 1e-3 margins below fail with probability ~exp(-80); the mean of a uniform on
    a 0.05-wide range has standard deviation 0.05 / sqrt(12 * 4096) = 2.3e-4 (margin 2e-3). Horama's
    centres are N(0.5, 0.15) per axis: a box of half-side ~0.14 leaves the image when its centre is more
    than 0.36 from 0.5 on an axis, 2.4 sigma, so 1 - (1 - 0.0164)^2 = 3.2 % of boxes leave it (binomial
    standard deviation 0.3 %; bounds 2-4.5 %).
    """
    import horama.common

    m, side, low, high = 4096, 32, 0.20, 0.25
    recorded = []
    roi_align = horama.common.roi_align

    def spy(image, boxes, output_size):
        recorded.append(boxes.detach().clone())
        return roi_align(image, boxes, output_size=output_size)

    horama.common.roi_align = spy
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            image = torch.rand(3, side, side, requires_grad=True) * 1.0  # a non-leaf, as its callers pass
            horama.common.optimization_step(lambda x: x.mean(), image, (low, high), 0.0, m, 4)
    finally:
        horama.common.roi_align = roi_align
    (boxes,) = recorded
    x0, y0, x1, y1 = (boxes[:, 1:] / side).unbind(1)  # columns: batch index, x0, y0, x1, y1 in pixels
    sides = x1 - x0
    assert torch.allclose(y1 - y0, sides)  # square boxes
    assert float(sides.min()) >= high - 1e-6 and float(sides.max()) <= 2 * high - low + 1e-6
    assert float(sides.min()) < high + 1e-3 and float(sides.max()) > 2 * high - low - 1e-3
    assert abs(float(sides.mean()) - (1.5 * high - 0.5 * low)) < 2e-3
    outside = ((boxes[:, 1:] < 0) | (boxes[:, 1:] > side)).any(1).float().mean()
    assert 0.02 < float(outside) < 0.045, float(outside)

    ours = crop_boxes(m, (low, high), generator=torch.Generator().manual_seed(0))
    assert float(ours.sides.min()) >= low and float(ours.sides.max()) <= high
    assert float(ours.sides.min()) < low + 1e-3 and float(ours.sides.max()) > high - 1e-3
    assert abs(float(ours.sides.mean()) - (low + high) / 2) < 2e-3
    half = ours.sides[:, None] / 2
    assert bool(((ours.centers - half >= 0) & (ours.centers + half <= 1)).all())  # every crop inside
