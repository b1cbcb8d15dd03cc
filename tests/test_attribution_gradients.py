"""Gradient attribution (saliency, gradient x input, IG, SmoothGrad family) and GradCAM / GradCAM++.

Ground truth first: closed-form models (a linear model's exact attributions, a CAM model whose GradCAM
is the class activation map), IG completeness, then parity with Captum on a timm ResNet.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench.attribution import cam, gradients
from workbench.attribution.cam import default_cam_layer, gradcam, gradcam_pp
from workbench.attribution.gradients import (
    gradient_input,
    integrated_gradients,
    saliency,
    smoothgrad,
    squaregrad,
    vargrad,
)
from workbench.attribution.registry import METHODS
from workbench.models import load_model

ALL = [saliency, gradient_input, integrated_gradients, smoothgrad, vargrad, squaregrad, gradcam, gradcam_pp]
INPUT_METHODS = [saliency, gradient_input, integrated_gradients, smoothgrad, vargrad, squaregrad]
FAST = {"integrated_gradients": {"steps": 8}, "smoothgrad": {"n_samples": 4}, "vargrad": {"n_samples": 4}}
FAST["squaregrad"] = {"n_samples": 4}


def fast(fn):
    return FAST.get(fn.__name__, {})


class Linear(nn.Module):
    """f_k(x) = <w_k, x> on the flattened image: every gradient method has a closed form."""

    def __init__(self, shape=(3, 8, 8), classes=4):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w = nn.Parameter(torch.randn(classes, *shape, generator=g))

    def forward(self, x):
        return x.flatten(1) @ self.w.flatten(1).T


class SmoothNet(nn.Module):
    """A small random conv net with smooth activations (no kinks: IG's integrand is smooth). Conv weights
    are scaled up 6x so the net is far from linear on [0, x]: a 1-point rule misses completeness by
    ~100%, 4 points by ~3%."""

    def __init__(self, classes=5):
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.Softplus(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Tanh()
        )
        self.head = nn.Linear(8, classes)
        with torch.no_grad():
            for conv in (self.features[0], self.features[2]):
                conv.weight.mul_(6.0)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class CamNet(nn.Module):
    """Conv features -> global average pool -> linear: GradCAM equals the CAM of Zhou et al. 2016."""

    def __init__(self, classes=3):
        super().__init__()
        torch.manual_seed(4)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, stride=4, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (see conftest)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return load_model("timm:test_resnet", num_classes=5)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return load_model("timm:test_vit", img_size=64, patch_size=8, num_classes=5)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to max |b| (a relative error that tolerates zeros in b)."""
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


# -- closed forms -----------------------------------------------------------------------------------
def test_linear_model_exact():
    """f(x) = <w_y, x>: grad = w_y everywhere, so every method has an exact answer.

    Only float32 rounding separates the results from the closed forms (values are O(1), 192 inputs),
    hence 1e-5. IG's 50 Gauss-Legendre weights sum to 1 up to 1e-15 and the integrand is constant.
    """
    model = Linear()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 3, 1])
    w = model.w.detach()[y]
    base = torch.tensor([0.1, 0.5, 0.9]).view(3, 1, 1)
    expected = {
        "saliency": (saliency(model, x, y, reduce="none"), w.abs()),
        "gradient_input": (gradient_input(model, x, y, reduce="none"), w * x),
        "ig": (integrated_gradients(model, x, y, reduce="none"), w * x),
        "ig_baseline": (integrated_gradients(model, x, y, reduce="none", baseline=base), w * (x - base)),
        "smoothgrad": (smoothgrad(model, x, y, reduce="none", n_samples=5), w),
        "vargrad": (vargrad(model, x, y, reduce="none", n_samples=5), torch.zeros_like(w)),
        "squaregrad": (squaregrad(model, x, y, reduce="none", n_samples=5), w**2),
    }
    for name, (got, want) in expected.items():
        assert got.shape == (3, 3, 8, 8) and got.dtype == torch.float32, name
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=name)
    # the reductions of the same maps
    torch.testing.assert_close(saliency(model, x, y), w.abs().amax(1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gradient_input(model, x, y), (w * x).sum(1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        gradient_input(model, x, y, reduce="mean"), (w * x).mean(1), atol=1e-5, rtol=1e-5
    )


def test_gradcam_is_cam_on_a_gap_linear_model():
    """score = sum_k w_k mean(A_k): dS/dA_k = w_k / (h w) everywhere, so GradCAM = ReLU(sum_k w_k A_k) / (h w)
    (Selvaraju et al. 2017, section 3.1), and GradCAM++'s alpha has the closed form 1 / (2 + g_k sum A_k).
    Both are float32 computations of O(1) values, hence 1e-5.
    """
    model = CamNet()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 2])
    a = model.features(x).detach()  # (2, 6, 8, 8)
    hw = a.shape[2] * a.shape[3]
    w = model.fc.weight.detach()[y][:, :, None, None]
    up = lambda m: F.interpolate(m[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]  # noqa: E731
    want = up(F.relu((w * a).sum(1) / hw))
    got = gradcam(model, x, y, layer="features")
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert default_cam_layer(model, x) == "features"
    torch.testing.assert_close(gradcam(model, x, y), got)  # the default layer is the same one

    g = w / hw
    alpha = 1.0 / (2.0 + g * a.sum((2, 3), keepdim=True))
    weights = hw * alpha * F.relu(g)
    want_pp = up(F.relu((weights * a).sum(1)))
    torch.testing.assert_close(gradcam_pp(model, x, y, layer="features"), want_pp, atol=1e-5, rtol=1e-5)


def test_ig_completeness_smooth_net():
    """Completeness (Sundararajan et al. 2017): sum IG = f(x) - f(x0). The integrand is smooth, so the
    256-point Gauss-Legendre error is far below the 1% asked (measured ~5e-7 relative, the float32
    floor). The 1-point rule must miss (the check has teeth: the net is not linear along the path).
    """
    model = SmoothNet()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([1, 4])

    def completeness_error(steps, base):
        maps = integrated_gradients(model, x, y, steps=steps, baseline=base, batch_size=128)
        with torch.no_grad():
            b = torch.as_tensor(base).expand_as(x)
            diff = model(x).gather(1, y[:, None])[:, 0] - model(b).gather(1, y[:, None])[:, 0]
        return float(((maps.sum((1, 2)) - diff).abs() / diff.abs()).max())

    for base in (0.0, torch.full((3, 32, 32), 0.25)):
        assert completeness_error(256, base) < 0.01
    assert completeness_error(1, 0.0) > 0.1


@pytest.mark.slow
def test_ig_completeness_zoo_cnn(zoo_cnn):
    """The same on the trained zoo ResNet (ReLU: piecewise smooth path, 1% at 256 steps)."""
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    y = zoo_cnn(x).argmax(1)
    maps = integrated_gradients(zoo_cnn, x, y, steps=256, batch_size=128)
    with torch.no_grad():
        diff = (zoo_cnn(x) - zoo_cnn(torch.zeros_like(x))).gather(1, y[:, None])[:, 0]
    assert (maps.sum((1, 2)) - diff).abs().max() <= 0.01 * diff.abs().max()


# -- parity with Captum -----------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_captum_parity_resnet(resnet, images):
    """Captum gets a wrapper calling the same Model (same normalization). Both compute the same float32
    gradients in a different batch layout, so only summation order differs: 1e-4 relative to the
    largest value (measured ~1e-6).
    """
    captum_attr = pytest.importorskip("captum.attr")
    forward = lambda t: resnet(t, check=False)  # noqa: E731
    x, y = images, torch.tensor([1, 3])

    ref = captum_attr.Saliency(forward).attribute(x.clone(), target=y, abs=True).amax(1)
    assert rel_err(saliency(resnet, x, y), ref) < 1e-4

    ref = captum_attr.IntegratedGradients(forward).attribute(
        x.clone(), target=y, n_steps=16, method="gausslegendre", baselines=0.0
    )
    ours = integrated_gradients(resnet, x, y, steps=16, reduce="none", batch_size=10)
    assert rel_err(ours, ref) < 1e-4

    for layer in ("layer4", "layer3"):
        gc = captum_attr.LayerGradCam(forward, resnet.net.get_submodule(layer))
        ref = captum_attr.LayerAttribution.interpolate(
            gc.attribute(x.clone(), target=y, relu_attributions=True), (64, 64), "bilinear"
        )[:, 0]
        assert rel_err(gradcam(resnet, x, y, layer=layer), ref) < 1e-4, layer
    assert default_cam_layer(resnet, x) == "layer4"  # last 4-D stage; global_pool.pool is 1x1


# -- ViT --------------------------------------------------------------------------------------------
def test_gradcam_vit_tokens(vit, images):
    """On a ViT (1 CLS token, 64 px / patch 8 = 8x8 patches) the CAM is built on the 8x8 grid of patch
    tokens without CLS: checked against an independent computation through model.split (exact
    same arithmetic in another order: 1e-5 relative).
    """
    x, y = images, torch.tensor([0, 4])
    assert default_cam_layer(vit, x) == "blocks.4"  # CLS pooling: the last block's patch outputs are unused
    maps = gradcam(vit, x, y)
    assert maps.shape == (2, 64, 64) and maps.dtype == torch.float32 and bool((maps >= 0).all())
    assert float(maps.max()) > 0

    g, h = vit.split("blocks.4")
    with torch.no_grad():
        act = g(x)  # (2, 65, 64): CLS + 64 patch tokens
    leaf = act.clone().requires_grad_(True)
    (grads,) = torch.autograd.grad(h(leaf).gather(1, y[:, None]).sum(), leaf)
    grid = lambda t: t[:, 1:].reshape(2, 8, 8, -1).permute(0, 3, 1, 2)  # noqa: E731
    cam8 = F.relu((grid(grads).mean((2, 3), keepdim=True) * grid(act)).sum(1))
    ref = F.interpolate(cam8[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    assert rel_err(maps, ref) < 1e-5

    # the last block's output: only CLS reaches the head, patch-token gradients are exactly 0
    assert float(gradcam(vit, x, y, layer="blocks").abs().max()) == 0.0
    pp = gradcam_pp(vit, x, y)
    assert pp.shape == (2, 64, 64) and bool(torch.isfinite(pp).all())


# -- contracts ------------------------------------------------------------------------------------
def test_seeds_and_batching(resnet, images):
    """Same seed -> identical maps; another seed -> different maps. Chunking does not change IG or
    GradCAM beyond float32 summation order (1e-5)."""
    x, y = images[:1], 2
    a = smoothgrad(resnet, x, y, n_samples=4, seed=7)
    b = smoothgrad(resnet, x, y, n_samples=4, seed=7)
    c = smoothgrad(resnet, x, y, n_samples=4, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(vargrad(resnet, x, y, n_samples=4, seed=1), vargrad(resnet, x, y, n_samples=4, seed=1))

    x2, y2 = images, torch.tensor([0, 1])
    one = integrated_gradients(resnet, x2, y2, steps=6, batch_size=5)
    all_ = integrated_gradients(resnet, x2, y2, steps=6, batch_size=64)
    assert rel_err(one, all_) < 1e-5
    assert rel_err(gradcam(resnet, x2, y2, batch_size=1), gradcam(resnet, x2, y2)) < 1e-5


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_constant_input_no_nan_no_leaks(fn, resnet):
    """x = 0.5 everywhere (zero input range: SmoothGrad noise is 0), frozen params: finite maps of the
    right shape, x untouched, and no .grad left anywhere."""
    frozen = copy.deepcopy(resnet).requires_grad_(False)
    x = torch.full((2, 3, 32, 32), 0.5)
    before = x.clone()
    maps = fn(frozen, x, torch.tensor([0, 1]), **fast(fn))
    assert maps.shape == (2, 32, 32) and maps.dtype == torch.float32
    assert bool(torch.isfinite(maps).all())
    assert torch.equal(x, before) and not x.requires_grad and x.grad is None
    maps = fn(resnet, x, 1, **fast(fn))  # trainable params: still no .grad left on them
    assert all(p.grad is None for p in resnet.parameters())


def test_inference_mode_and_plain_callable():
    """Gradients work when the caller is in inference mode, and for a plain callable."""
    model = Linear()
    with torch.inference_mode():
        x = torch.rand(2, 3, 8, 8)
        maps = saliency(model, x, 0, reduce="none")
    torch.testing.assert_close(maps, model.w.detach()[[0, 0]].abs())
    maps = gradient_input(lambda t: model(t), x.clone(), torch.tensor([1, 2]))
    assert maps.shape == (2, 8, 8)


def test_bad_inputs(resnet, images):
    x = images
    with pytest.raises(ValueError, match="4 dimensions"):
        saliency(resnet, x[0], 0)
    with pytest.raises(ValueError, match="channel-last"):
        saliency(resnet, x.permute(0, 2, 3, 1).contiguous(), 0)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\]"):
        gradcam(resnet, x, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\]"):
        saliency(Linear(), torch.rand(1, 3, 8, 8), 4)  # plain module: K known from the output
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        saliency(resnet, x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="pixel values"):
        saliency(resnet, x * 3, 0)
    with pytest.raises(ValueError, match="reduce"):
        smoothgrad(resnet, x, 0, reduce="max")
    with pytest.raises(ValueError, match="baseline.*got shape \\(3, 64\\)"):
        integrated_gradients(resnet, x, 0, baseline=torch.zeros(3, 64))
    with pytest.raises(ValueError, match="baseline.*got shape \\(1, 1, 64\\)"):
        integrated_gradients(resnet, x, 0, baseline=torch.zeros(1, 1, 64))
    with pytest.raises(ValueError, match="baseline: expected pixel values"):
        integrated_gradients(resnet, x, 0, baseline=-1.0)
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(resnet, x, 0, steps=0)
    with pytest.raises(ValueError, match="n_samples"):
        vargrad(resnet, x, 0, n_samples=1)
    with pytest.raises(ValueError, match="noise"):
        smoothgrad(resnet, x, 0, noise=-0.1)
    with pytest.raises(KeyError, match="layer4"):
        gradcam(resnet, x, 0, layer="layer5")
    with pytest.raises(
        ValueError, match="CAM methods hook a layer, so it must be a workbench Model or an nn.Module"
    ):
        gradcam(lambda t: resnet(t), x, 0)
    with pytest.raises(ValueError, match="spatial"):
        gradcam(resnet, x, 0, layer="global_pool")


def test_registered():
    assert {f.__name__ for f in ALL} <= set(METHODS)
    assert METHODS["gradcam"] is cam.gradcam and METHODS["smoothgrad"] is gradients.smoothgrad
