"""A planted channel with a known optimum (issue 13, section 4, first bullet).

The model's only channel is a fixed linear template t (3, 64, 64) followed by a monotone softplus:
``score(x) = softplus(<x - 0.5, t>)`` (the model normalizes with mean 0.5, std 1, then one convolution
with kernel t covering the whole image). t is smooth: per colour, a sum of four 2-D cosines of low
frequency with fixed amplitudes and phases, scaled to ||t|| = 1 (zero mean in each channel). Crops and
noise are off (crop scale (1, 1) is the image itself, ``test_full_crop_returns_the_image``), so the
visualizations optimize exactly this score and the optimum is known for each parameterization:

- pixel: x = sigmoid(z), z free, so x ranges over the box (0, 1)^n. A linear score is maximized over
  the box by the sign image x* = 0.5 + 0.5 sign(t), of score 0.5 ||t||_1. Its cosine with t is not 1
  but c* = E|t| / sqrt(E t^2) = 0.7775 for this t: the known optimum is the sign image, not t.
- fourier: z = standardize(irfft2(...)) has zero mean and unit variance, an L2 constraint, and
  x = sigmoid(M z). In the sigmoid's linear regime the score is <M z, t> / 4 = <z, M^T t> / 4, so the
  best z is along M^T t and x - 0.5 along M M^T t (= t in identity colours). The sigmoid's curvature
  flattens the peaks a little: measured cosines 0.958 with t (identity colours) and 0.964 with M M^T t
  (the shipped PlantedShapes colours; 0.930 with t itself), seeds 0 and 1 alike.
- maco: z = standardize(irfft2(m exp(i phase))) with m fixed. By Parseval the linear score is
  sum_f m_f |T_f| cos(phase_f - arg T_f) with T = rfft2(M^T t): it is largest when the image's phase
  equals t's phase wherever t has energy (elsewhere the phase does not matter to first order). The
  measure is that ratio, the phase alignment
  ``A = sum_f w_f cos(arg Z_f - arg T_f) / sum_f w_f``, w_f = m_f |T_f|, over the frequencies where
  |T_f| > 1e-3 max |T|, with Z = rfft2(M^-1 logit(x)) (the sigmoid and the colours undone): A = 1 at
  the optimum, 0 on average for uniformly random phases; only a dozen coefficients carry t, so chance
  spreads widely (500 uniform draws: sd 0.33 / 0.26, 99th percentile 0.67 / 0.59, maximum 0.80 / 0.67
  in identity / PlantedShapes colours). Measured after 64 steps, seeds 0 to 4: identity colours
  0.961 / 0.945 / 0.929 / 0.949 / 0.955, PlantedShapes colours 0.964 / 0.961 / 0.959 / 0.964 / 0.954
  (already 0.93 to 0.97 after 16 steps). Threshold 0.85: above every chance draw, below every
  measurement by 0.08 (MACO's lr 1.0 keeps the phases moving by a few hundredths).

MACO's initial phases are N(0, 1) as in the reference (Horama 0.3.0 standardizes N(0, 1) phases), not
uniform: E cos(phase) = exp(-1/2) = 0.61, so the initial image has a coherent peak at pixel (0, 0) (19
standard deviations, a saturated sigmoid) and its alignment with t is not chance-like (0.56 for seed 1
in identity colours). The chance level above is therefore measured with uniform phases.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from workbench.featviz import load_spectrum, visualize
from workbench.featviz import objectives as obj
from workbench.featviz.parameterizations import MacoImage
from workbench.models.model import Model

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 64
WAVES = ((1, 0, 0.3), (0, 2, 1.1), (2, 1, 2.0), (1, -3, 0.5))  # (cycles in y, cycles in x, phase)
NO_CROPS = {"n_crops": 1, "crop_scale": (1.0, 1.0), "noise": 0.0, "progress": False}
SPECTRUM = load_spectrum("planted_shapes_64")
COLORS = {"identity": torch.eye(3), "planted_shapes": SPECTRUM["color"]}


def template() -> torch.Tensor:
    """t (3, S, S): per channel, a fixed mix of four low-frequency cosines; ||t|| = 1."""
    y, x = torch.meshgrid(torch.arange(SIZE).float(), torch.arange(SIZE).float(), indexing="ij")
    amplitudes = 2 * torch.rand(3, len(WAVES), generator=torch.Generator().manual_seed(0)) - 1
    t = torch.zeros(3, SIZE, SIZE)
    for c in range(3):
        for a, (fy, fx, phase) in zip(amplitudes[c], WAVES):
            t[c] += a * torch.cos(2 * math.pi * (fy * y + fx * x) / SIZE + phase + c)
    return t / t.norm()


@pytest.fixture(scope="module")
def planted():
    t = template()
    conv = nn.Conv2d(3, 1, SIZE, bias=False)
    conv.weight.data = t[None].clone()
    conv.requires_grad_(False)
    net = nn.Sequential(OrderedDict(template=conv, act=nn.Softplus()))
    return Model(net, mean=(0.5,) * 3, std=(1.0,) * 3, input_size=(3, SIZE, SIZE)), t


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a.flatten() @ b.flatten() / (a.norm() * b.norm()))


def spectrum(color: str) -> dict[str, torch.Tensor]:
    return {"magnitude": SPECTRUM["magnitude"], "color": COLORS[color]}


def decorrelated(image: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """M^-1 logit(x): the sigmoid and the colours undone (float64)."""
    return torch.einsum("ij,jhw->ihw", torch.linalg.inv(color).double(), torch.logit(image.double()))


def phase_alignment(z: torch.Tensor, t: torch.Tensor, color: torch.Tensor) -> float:
    """A = sum_f m_f |T_f| cos(arg Z_f - arg T_f) / sum_f m_f |T_f| (module docstring), Z = rfft2(z)."""
    big_z = torch.fft.rfft2(z.double(), norm="ortho")
    big_t = torch.fft.rfft2(torch.einsum("ij,ihw->jhw", color, t).double(), norm="ortho")
    w = SPECTRUM["magnitude"].double() * big_t.abs()
    keep = big_t.abs() > 1e-3 * big_t.abs().max()
    return float((w * torch.cos(big_z.angle() - big_t.angle()))[keep].sum() / w[keep].sum())


def test_template_is_what_the_docstring_says(planted):
    """The numbers the assertions below rely on: ||t|| = 1, zero mean per channel, c* = 0.7775, and the
    model's score is softplus(<x - 0.5, t>)."""
    model, t = planted
    assert t.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert t.mean((1, 2)).abs().max() < 1e-6
    assert (t.abs().mean() / t.square().mean().sqrt()).item() == pytest.approx(0.7775, abs=1e-4)
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    expected = nn.functional.softplus(((x - 0.5) * t).flatten(1).sum(1))
    torch.testing.assert_close(obj.evaluate(model, obj.channel("act", 0), x), expected, rtol=1e-5, atol=1e-5)


def test_pixel_reaches_the_sign_image(planted):
    """Measured (seed 0, 128 steps): cosine 1.000 with sign(t), 0.778 = c* with t, score 40.6 of the
    box maximum softplus(0.5 ||t||_1) = 43.1 (the sigmoid is not fully saturated after 128 steps)."""
    model, t = planted
    fv = visualize(
        model, obj.channel("act", 0), "pixel", steps=128, seed=0, spectrum=spectrum("identity"), **NO_CROPS
    )
    x = fv.image[0] - 0.5
    best_cosine = (t.abs().mean() / t.square().mean().sqrt()).item()  # c*, the sign image's cosine with t
    assert cosine(x, t.sign()) >= 0.99
    assert cosine(x, t) >= 0.98 * best_cosine
    maximum = nn.functional.softplus(0.5 * t.abs().sum()).item()
    assert 0.9 * maximum <= fv.final.item() <= maximum + 1e-4


@pytest.mark.parametrize("color", ["identity", "planted_shapes"])
def test_fourier_reaches_the_template(planted, color):
    """Cosine >= 0.9 of x - 0.5 with the known optimum M M^T t (= t in identity colours)."""
    model, t = planted
    m = COLORS[color]
    fv = visualize(
        model, obj.channel("act", 0), "fourier", steps=128, seed=0, spectrum=spectrum(color), **NO_CROPS
    )
    optimum = torch.einsum("ij,jhw->ihw", m @ m.T, t)
    assert cosine(fv.image[0] - 0.5, optimum) >= 0.9
    if color == "identity":
        assert cosine(fv.image[0] - 0.5, t) >= 0.9


@pytest.mark.parametrize("color", ["identity", "planted_shapes"])
def test_maco_phase_aligns_with_the_template(planted, color):
    """Phase alignment A >= 0.85 for seeds 0, 1, 2 after 64 steps; uniformly random phases stay below
    (99th percentile of 200 draws < 0.85, so the measure can fail); and the magnitude MACO fixes is still
    exactly the magnitude after the optimization (ratio constant on the interior rfft columns, to the
    precision of undoing the float32 sigmoid in float64: 1e-3)."""
    model, t = planted
    m = COLORS[color]
    chance = MacoImage(200, SIZE, SPECTRUM["magnitude"], color=m)
    with torch.no_grad():
        uniform = 2 * torch.rand(chance.phase.shape, generator=torch.Generator().manual_seed(0)) - 1
        chance.phase.copy_(math.pi * uniform)
        z = chance.decorrelated()
    assert torch.tensor([phase_alignment(zi, t, m) for zi in z]).quantile(0.99) < 0.85
    interior = slice(1, SIZE // 2)
    for seed in range(3):
        fv = visualize(
            model, obj.channel("act", 0), "maco", steps=64, seed=seed, spectrum=spectrum(color), **NO_CROPS
        )
        assert 0 < fv.image.min() and fv.image.max() < 1  # not saturated in float32: the logit undoes it
        z = decorrelated(fv.image[0], m)
        assert phase_alignment(z, t, m) >= 0.85, seed
        assert fv.final.item() > fv.history[0].item()
        ratio = torch.fft.rfft2(z, norm="ortho")[..., interior].abs() / SPECTRUM["magnitude"][..., interior]
        assert (ratio.std() / ratio.mean()).item() < 1e-3
