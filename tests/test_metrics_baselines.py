"""Named baselines, ROAD's imputation and the "Back to the Baseline" diagnostics, on known answers.

Ground truths used here:
- each named baseline has a defining identity (zero is 0, mean is the channel mean, a blur or a local
  mean of a constant image is that constant, a scramble is a permutation of the image's own pixels);
- ROAD's fill solves a linear system: on a tiny image it must equal a dense ``torch.linalg.solve`` of
  the same system, and on a linear ramp (discrete-harmonic for the symmetric 8-neighbour stencil) the
  fill of an interior hole is the ramp itself;
- a linear model ``logit = <w, x>`` has closed-form deletion curves: removing pixel i changes the logit
  by ``sum_c w_ic (x_ic - b_ic)``, so the map ranking pixels by that contribution is the optimal one
  for **every** step (Picard et al. 2025: the baseline picks the winner even for a linear model).
"""

from __future__ import annotations

import pytest
import torch
from region_models import region_setup
from torch import nn

from workbench.attribution import gradient_input, integrated_gradients, saliency
from workbench.metrics import deletion, insertion
from workbench.metrics.baseline_effects import (
    BaselineStudy,
    baseline_study,
    classifier_head,
    information_removal,
    knn_distance,
    ood_distance,
    penultimate_features,
)
from workbench.metrics.baselines import (
    _ROAD_WEIGHTS,
    BASELINES,
    Blur,
    LocalMean,
    MaskAware,
    Mean,
    Road,
    Scramble,
    Uniform,
    Zero,
    get_baseline,
    list_baselines,
    resolve_baseline,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest)


def _images(n=3, c=3, h=12, w=10, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


# -- named baselines ------------------------------------------------------------------------------
def test_registry_lists_every_named_baseline():
    assert list_baselines() == sorted(["zero", "mean", "uniform", "blur", "local_mean", "scramble", "road"])
    for name, cls in BASELINES.items():
        assert cls.name == name and isinstance(get_baseline(name), cls)
    # one Registry: every entry names its paper
    assert all(entry.paper for entry in BASELINES.entries()) and "ROAD" in BASELINES.table()


@pytest.mark.parametrize("name", list(BASELINES))
def test_named_baseline_shape_range_and_inputs_left_alone(name):
    """Every baseline of pixel-space images is an image batch of the same shape in [0, 1] (ROAD clips
    its noise), built without touching x, and the same twice (seeded baselines included)."""
    x = _images()
    x0 = x.clone()
    base = get_baseline(name)
    out = base(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(x, x0)
    assert torch.equal(base(x), out)
    # resolve_baseline accepts the name, the object and the output alike
    torch.testing.assert_close(resolve_baseline(name, x, pixel_range=True), out)


def test_named_baselines_defining_identities():
    """Exact identities (float32 arithmetic only, so tolerances are at rounding level)."""
    x = _images()
    assert torch.equal(Zero()(x), torch.zeros_like(x))
    torch.testing.assert_close(Mean()(x), x.mean((2, 3), keepdim=True).expand_as(x))
    const = torch.full((2, 3, 9, 9), 0.3)
    torch.testing.assert_close(Blur(sigma=2.0)(const), const)  # normalised kernel, replicate borders
    torch.testing.assert_close(LocalMean(size=5)(const), const)  # borders average inside pixels only
    torch.testing.assert_close(LocalMean(size=1)(x), x)
    # local mean at a corner: the mean of the 2 x 2 block inside the image (window 3)
    torch.testing.assert_close(LocalMean(size=3)(x)[:, :, 0, 0], x[:, :, :2, :2].mean((2, 3)))
    # blur keeps the channel means approximately and lowers the variance
    blurred = Blur()(x)
    assert bool((blurred.var((2, 3)) < x.var((2, 3))).all())


def test_scramble_is_one_permutation_of_the_pixels_per_image():
    """Each pixel is coded by its index on channel 0 and twice its index on channel 1: a scramble that
    moves whole pixels keeps channel 1 = 2 x channel 0, and each image's values are a permutation."""
    n, h, w = 4, 6, 5
    idx = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w).expand(n, 1, h, w)
    x = torch.cat([idx, 2 * idx, idx.flip(-1)], 1) / (2 * h * w)
    out = Scramble(seed=3)(x)
    torch.testing.assert_close(out[:, 1], 2 * out[:, 0])
    for i in range(n):
        assert torch.equal(out[i].flatten(1).sort(1).values, x[i].flatten(1).sort(1).values)
    assert not torch.equal(out[0], x[0]) and not torch.equal(out[0], out[1])  # images differ
    assert torch.equal(Scramble(seed=3)(x), out) and not torch.equal(Scramble(seed=4)(x), out)


def test_uniform_is_seeded_noise():
    x = _images(n=2, h=32, w=32)
    a, b = Uniform(seed=1)(x), Uniform(seed=2)(x)
    assert torch.equal(Uniform(seed=1)(x), a) and not torch.equal(a, b)
    # 6144 U(0, 1) draws: mean 0.5 with standard error 0.0037, so 0.02 is > 5 standard errors
    assert abs(float(a.mean()) - 0.5) < 0.02
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_bad_names_and_parameters_are_refused():
    with pytest.raises(ValueError, match="'blur'"):  # the closest name is suggested
        get_baseline("blurr")
    model, x, _, ideal, _ = region_setup()
    with pytest.raises(ValueError, match="local_mean"):
        deletion(model, x, 0, ideal, baseline="local-mean")
    with pytest.raises(ValueError, match="sigma"):
        Blur(sigma=0)
    with pytest.raises(ValueError, match="sigma"):
        get_baseline("blur", sigmaa=2.0)  # unknown keyword: the message lists the parameters
    with pytest.raises(ValueError, match="size"):
        LocalMean(size=4)
    with pytest.raises(ValueError, match="seed"):
        Uniform(seed=1.5)
    with pytest.raises(ValueError, match="noise"):
        Road(noise=-0.1)
    with pytest.raises(ValueError, match="fill_value"):
        Road(fill_value=2.0)
    with pytest.raises(ValueError, match="removed"):
        Road().fill(x, torch.ones(2, 8, 8, dtype=torch.bool))


def test_named_baselines_in_deletion_match_their_images():
    """A name gives the same AUC as the baseline image it builds, passed as a tensor; a plain image
    tensor (for instance a feature-visualization image) works as a baseline too."""
    model, x, _, ideal, _ = region_setup()
    x = x * torch.linspace(0.2, 1.0, 8)  # not constant, so mean and blur differ from x
    for name in ("zero", "mean", "blur", "local_mean", "scramble", "uniform"):
        by_name = deletion(model, x, 0, ideal, steps=8, baseline=name).auc
        by_image = deletion(model, x, 0, ideal, steps=8, baseline=get_baseline(name)(x)).auc
        torch.testing.assert_close(by_name, by_image)
    featviz_like = torch.rand(3, 8, 8)
    deletion(model, x, 0, ideal, steps=8, baseline=featviz_like)


# -- ROAD -----------------------------------------------------------------------------------------
def _dense_road(img: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """ROAD's system written out pixel by pixel as in the reference code, solved densely (float64)."""
    _, h, w = img.shape
    idx = [(i, j) for i in range(h) for j in range(w) if removed[i, j]]
    pos = {p: k for k, p in enumerate(idx)}
    a = torch.zeros(len(idx), len(idx), dtype=torch.float64)
    b = torch.zeros(len(idx), img.shape[0], dtype=torch.float64)
    for k, (i, j) in enumerate(idx):
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                ii, jj = i + di, j + dj
                if (di, dj) == (0, 0) or not (0 <= ii < h and 0 <= jj < w):
                    continue
                weight = float(_ROAD_WEIGHTS[di + 1, dj + 1])
                a[k, k] += weight
                if removed[ii, jj]:
                    a[k, pos[(ii, jj)]] -= weight
                else:
                    b[k] += weight * img[:, ii, jj]
    sol = torch.linalg.solve(a, b)
    out = img.clone()
    for k, (i, j) in enumerate(idx):
        out[:, i, j] = sol[k]
    return out


def test_road_matches_a_dense_solve():
    """Random 7 x 6 images and masks (borders included): conjugate gradients run to a 1e-12 relative
    residual in float64, so they agree with the dense solve to ~1e-10 (the system is well conditioned
    at this size)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 7, 6, generator=g, dtype=torch.float64)
    removed = torch.rand(3, 1, 7, 6, generator=g) < 0.6
    out = Road(noise=0.0, tol=1e-12).fill(x, removed)
    for i in range(3):
        torch.testing.assert_close(out[i], _dense_road(x[i], removed[i, 0]), atol=1e-10, rtol=0)
    assert torch.equal(out[~removed.expand_as(x)], x[~removed.expand_as(x)])  # kept pixels untouched


def test_road_fills_a_ramp_with_the_ramp():
    """x = a j + c per channel is discrete-harmonic for the symmetric stencil, so the exact fill of a
    hole that does not touch the left and right borders (where the stencil is cut asymmetrically) is
    the ramp. Float32 with tol 1e-6: error ~1e-5 of a unit ramp."""
    h, w = 32, 40
    j = torch.arange(w, dtype=torch.float32) / (w - 1)
    x = torch.stack([j, 0.5 * j + 0.2, 1 - j]).view(1, 3, 1, w).expand(2, 3, h, w).contiguous()
    removed = torch.zeros(2, 1, h, w, dtype=torch.bool)
    removed[0, :, 0:20, 5:30] = True  # touches the top border: still exact (symmetric in j)
    removed[1, :, 8:24, 3:37] = True
    out = Road(noise=0.0, tol=1e-6).fill(x, removed)
    torch.testing.assert_close(out, x, atol=5e-5, rtol=0)


def test_road_noise_fallback_and_determinism():
    x = _images(n=2, h=16, w=16)
    removed = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)) < 0.5
    clean = Road(noise=0.0).fill(x, removed)
    noisy = Road(noise=0.05, seed=3).fill(x, removed)
    assert torch.equal(noisy, Road(noise=0.05, seed=3).fill(x, removed))
    assert not torch.equal(noisy, Road(noise=0.05, seed=4).fill(x, removed))
    kept = ~removed.expand_as(x)
    assert torch.equal(noisy[kept], x[kept])
    # the difference is the noise (clipped at 0 and 1): about 0.05 standard deviation
    diff = (noisy - clean)[~kept]
    assert 0.03 < float(diff.std()) < 0.06
    # nothing kept: fill_value plus noise; the same as calling the baseline like a static one
    everything = torch.ones(2, 1, 16, 16, dtype=torch.bool)
    torch.testing.assert_close(Road(noise=0.0, fill_value=0.25).fill(x, everything), torch.full_like(x, 0.25))
    torch.testing.assert_close(Road()(x), Road().fill(x, everything))


def test_mask_aware_protocol_in_deletion_and_insertion():
    """A mask-aware fill that writes 0.5 on the removed pixels must reproduce the constant baseline 0.5
    exactly, in deletion (fill the moved pixels) and insertion (fill the pixels not yet put back)."""

    class Half:
        def __init__(self):
            self.masks = []

        def fill(self, x, removed):
            self.masks.append(removed.clone())
            return torch.where(removed, torch.full_like(x, 0.5), x)

    model, x, _, ideal, _ = region_setup()
    half = Half()
    assert isinstance(half, MaskAware)
    for walk in (deletion, insertion):
        torch.testing.assert_close(
            walk(model, x, 0, ideal, steps=8, baseline=half).curve,
            walk(model, x, 0, ideal, steps=8, baseline=0.5).curve,
        )
    assert half.masks[0].shape[1:] == (1, 8, 8) and half.masks[0].dtype == torch.bool


def test_road_in_deletion():
    """On RegionProbability (p = mean over a region R) with x = 1: the ROAD fill of removed pixels is
    the weighted mean of neighbours, all 1 while any pixel is kept, so p stays 1 until every pixel is
    removed, where the fill is fill_value: the curve is (1, ..., 1, fill_value)."""
    model, x, _, ideal, _ = region_setup()
    curve = deletion(model, x, 0, ideal, steps=8, baseline=Road(noise=0.0, fill_value=0.25)).curve
    expected = torch.tensor([1.0] * 8 + [0.25]).expand(2, 9)
    torch.testing.assert_close(curve, expected, atol=1e-4, rtol=0)
    by_name = deletion(model, x * 0.8, 0, ideal, steps=4, baseline="road").auc
    torch.testing.assert_close(by_name, deletion(model, x * 0.8, 0, ideal, steps=4, baseline=Road()).auc)


# -- linear model: the baseline picks the winner --------------------------------------------------
class LinearTwoClass(nn.Module):
    """Logits (<w, x>, 0): class 0's logit is <w, x>, the logit difference of the two classes. The head
    is an nn.Linear on the flattened image, so the OOD features are the pixels themselves."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.register_buffer("w", w)
        self.head = nn.Linear(w.numel(), 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.stack([w.flatten(), torch.zeros(w.numel())]))

    def forward(self, x):
        return self.head(x.flatten(1))


def _linear_setup(n=6, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, size, size, generator=g)
    x = torch.rand(n, 3, size, size, generator=g)
    return LinearTwoClass(w), x, w


def test_linear_model_baseline_picks_the_winner():
    """Deletion with score="logit" on a linear model: after removing the set S the logit is
    f(x) - sum_{i in S} c_i with c_i = sum_c w_ic (x_ic - b_ic), so ranking pixels by c_i minimises
    every point of the curve, hence the AUC. Zero baseline: c_i = gradient x input, which wins.
    Mean baseline: c_i = w (x - mean), which is IG with the mean baseline (exact for a linear model),
    and the winner changes. Strict inequalities: random w and x make the rankings differ."""
    model, x, _ = _linear_setup()
    y = 0
    mean_image = Mean()(x).contiguous()
    maps = {
        "saliency": saliency(model, x, y),
        "gradient_input": gradient_input(model, x, y),
        "ig_mean": integrated_gradients(model, x, y, baseline=mean_image, steps=4),
    }
    auc = {
        base: {
            m: float(deletion(model, x, y, v, baseline=base, score="logit").auc.mean())
            for m, v in maps.items()
        }
        for base in ("zero", "mean")
    }
    assert min(auc["zero"], key=auc["zero"].get) == "gradient_input", auc
    assert min(auc["mean"], key=auc["mean"].get) == "ig_mean", auc
    # and the optimum is attained: the contribution map itself gives the same AUC as the winner
    for base, c in (("zero", (model.w * x).sum(1)), ("mean", (model.w * (x - mean_image)).sum(1))):
        best = float(deletion(model, x, y, c, baseline=base, score="logit").auc.mean())
        assert best == pytest.approx(min(auc[base].values()), abs=1e-4)
    # the study reports the same winners; the OOD features are the flattened pixels (the head's
    # input), so the distance of the zero baseline to a bank holding only x's images is the norm of x
    study = baseline_study(model, x, y, maps, ["zero", "mean"], bank=x, score="logit", k=1)
    assert study.winners() == {"zero": "gradient_input", "mean": "ig_mean"}
    nearest_to_black = x.flatten(1).norm(dim=1).min()
    torch.testing.assert_close(study.ood[0], nearest_to_black.expand(len(x)))
    torch.testing.assert_close(study.ood_images, torch.zeros(len(x)))


def test_information_removal_closed_form():
    """Linear model, path x + a (b - x): logit z(a) = <w, x> + a <w, b - x> exactly, probability
    sigmoid(z(a)) (two classes, logits (z, 0)); float32 sums of 432 terms: tolerance 1e-4."""
    model, x, w = _linear_setup()
    base = Blur(sigma=1.5)
    b = base(x)
    z0 = (w * x).sum((1, 2, 3))
    dz = (w * (b - x)).sum((1, 2, 3))
    a = torch.arange(11) / 10
    logit = information_removal(model, x, 0, base, steps=10, score="logit")
    torch.testing.assert_close(logit.curve, z0[:, None] + a * dz[:, None], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(logit.alphas, a)
    torch.testing.assert_close(logit.drop, -dz, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(logit.removed, -dz / z0.abs(), atol=1e-4, rtol=1e-4)
    prob = information_removal(model, x, 0, base, steps=4)
    p = torch.sigmoid(z0[:, None] + (torch.arange(5) / 4) * dz[:, None])
    torch.testing.assert_close(prob.curve, p, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(prob.removed, (p[:, 0] - p[:, -1]) / p[:, 0], atol=1e-5, rtol=1e-5)
    # baseline = x: nothing removed
    same = information_removal(model, x, 0, lambda v: v, steps=3)
    torch.testing.assert_close(same.removed, torch.zeros(len(x)))


# -- OOD distance ---------------------------------------------------------------------------------
def test_knn_distance_exact_and_chunked():
    """Bank points are at distance 0 from themselves with k = 1 (exact distances, not the
    matrix-product shortcut); chunking changes nothing; k = 2 averages the two smallest distances."""
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(50, 7, generator=g) * 10
    torch.testing.assert_close(knn_distance(bank, bank, k=1), torch.zeros(50))
    q = torch.randn(13, 7, generator=g)
    d = torch.cdist(q.double(), bank.double())
    expected = d.topk(3, largest=False).values.mean(1).float()
    torch.testing.assert_close(knn_distance(q, bank, k=3, chunk_size=4), expected)
    torch.testing.assert_close(knn_distance(q, bank, k=3), expected)
    with pytest.raises(ValueError, match="k"):
        knn_distance(q, bank, k=51)
    with pytest.raises(ValueError, match="same D"):
        knn_distance(q, bank[:, :3])


def test_ood_distance_on_a_module_and_its_head():
    """A small net whose head is the last Linear: the features are the head's input, so the bank's own
    images are at distance 0 (k = 1), and a layer name gives that layer's output."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    assert classifier_head(net) == "4"
    x = _images(n=5, h=8, w=8)
    feats = penultimate_features(net, x)
    with torch.no_grad():
        torch.testing.assert_close(feats, net[:4](x))
    torch.testing.assert_close(ood_distance(net, x, x, k=1), torch.zeros(5), atol=1e-6, rtol=0)
    torch.testing.assert_close(ood_distance(net, x, feats, k=1), torch.zeros(5), atol=1e-6, rtol=0)
    assert penultimate_features(net, x, layer="0").shape == (5, 4 * 6 * 6)
    with pytest.raises(KeyError, match="closest"):
        penultimate_features(net, x, layer="conv")
    with pytest.raises(ValueError, match="bank"):
        ood_distance(net, x, torch.zeros(3))


def test_noise_is_farther_from_the_data_than_held_out_images():
    """zoo:resnet_shapes, bank of 96 PlantedShapes images: 16 held-out images (another seed) are
    nearer the bank than 16 uniform-noise images, for every image, with a wide margin (measured: held
    out 0.77-1.58, noise 53-56)."""
    from workbench.data import planted_shapes
    from workbench.models import load_model

    model = load_model("zoo:resnet_shapes")
    assert classifier_head(model) == "fc"
    bank = planted_shapes(96, size=64, seed=101).images
    held_out = planted_shapes(16, size=64, seed=202).images
    noise = torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    bank_feats = penultimate_features(model, bank)
    near = ood_distance(model, held_out, bank_feats, k=5)
    far = ood_distance(model, noise, bank_feats, k=5)
    assert float(near.max()) < float(far.min()), (near, far)
    assert float(far.mean()) > 2 * float(near.mean())


def test_baseline_study_on_the_zoo_model(tmp_path):
    """Shapes and bookkeeping of the study on real data; blur removes less of the class score than
    black on the shape CNN (a blurred 64 px shape keeps its silhouette)."""
    from workbench._core import load_result, save_result
    from workbench.data import planted_shapes
    from workbench.models import load_model

    model = load_model("zoo:resnet_shapes")
    data = planted_shapes(6, size=64, seed=7)
    maps = {
        "saliency": saliency(model, data.images, data.labels),
        "random": torch.rand(6, 64, 64, generator=torch.Generator().manual_seed(0)),
    }
    bank = planted_shapes(32, size=64, seed=8).images
    study = baseline_study(model, data.images, data.labels, maps, ["zero", "blur"], bank=bank, steps=5)
    assert isinstance(study, BaselineStudy)
    assert (
        study.deletion_auc.shape == (2, 2, 6) and study.removed.shape == (2, 6) and study.ood.shape == (2, 6)
    )
    assert len(study.rows()) == 4 and {r["baseline"] for r in study.baseline_rows()} == {"zero", "blur"}
    assert sorted(study.ranking("zero")) == ["random", "saliency"]
    rows = {r["baseline"]: r for r in study.baseline_rows()}
    assert rows["blur"]["removed"] < rows["zero"]["removed"]
    save_result(study, tmp_path / "study")
    again = load_result(tmp_path / "study")
    torch.testing.assert_close(again.deletion_auc, study.deletion_auc)
    assert again.baselines == study.baselines
