"""Concept importance (the holistic framework, Fel et al., NeurIPS 2023) and strategic clusters.

Ground truth: closed forms (a head linear after the concept layer, an additive head's total Sobol indices
and RISE estimator), the zoo's texture CNN (global average pooling and a linear layer after ``layer4``), and
Xplique 2.0.2's CraftTorch run on that model (``tests/data/xplique_craft_resnet_textures.npz``, described
in the peer-fixtures README: its codes, concept bank, exact Halton masks, logits and per-image importances).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.attribution.sampling import SAMPLERS
from workbench.attribution.sobol_sensitivity import design_masks, sobol_design
from workbench.concepts import (
    CONCEPT_IMPORTANCE_METHODS,
    ConceptHead,
    code_importance,
    concept_importance,
    concept_space,
    strategic_clusters,
)
from workbench.metrics import c_deletion, c_insertion
from workbench.metrics.concept_fidelity import masked_code_scores

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = Path(__file__).parent / "data"
METHODS = ["gradient_input", "integrated_gradients", "occlusion", "rise", "saliency", "sobol"]


@pytest.fixture(scope="module")
def craft_fixture():
    return np.load(DATA / "xplique_craft_resnet_textures.npz")


@pytest.fixture(scope="module")
def textures():
    from workbench.models import load_model

    return load_model("zoo:resnet_textures")


class FixedBank:
    """A concept bank with a fixed W (r, d), for tests that must not depend on a factorization: codes are
    the non-negative part of the least-squares coefficients (any codes serve the identities tested)."""

    def __init__(self, W: torch.Tensor):
        self.components = W

    def transform(self, A: torch.Tensor) -> torch.Tensor:
        return (A @ torch.linalg.pinv(self.components)).clamp_min(0)

    def reconstruct(self, U: torch.Tensor) -> torch.Tensor:
        return U @ self.components


def linear_head(r=5, d=7, k=3, seed=0):
    """codes (M, r, H, W) -> mean over positions -> @ W (r, d) -> a linear layer (d, k): linear in the codes."""
    g = torch.Generator().manual_seed(seed)
    W = torch.rand(r, d, generator=g)
    fc = torch.nn.Linear(d, k)
    with torch.no_grad():
        fc.weight.copy_(torch.randn(k, d, generator=g))
        fc.bias.copy_(torch.randn(k, generator=g))
    return lambda codes: fc(codes.flatten(2).mean(-1) @ W)


# ----------------------------------------------------------------------------------------------------------
# The paper's result: a linear head after the concept layer
# ----------------------------------------------------------------------------------------------------------


def test_linear_head_gradient_input_is_exact_and_optimal_for_c_deletion_and_c_insertion():
    """For a head linear in the codes, ``f(u) = b + sum_i c_i`` with ``c_i = u_i . grad_i`` the exact
    contribution of concept i; so gradient x input = occlusion = integrated gradients = c_i (1e-5: float32
    rounding of logits of size ~10). Removing concepts in decreasing order of c_i is optimal: after
    deleting any k concepts the score is ``b + sum of the rest``, smallest when the k removed are the k
    largest c_i, at *every* step; insertion symmetrically. So gradient x input's C-Deletion AUC is <= and
    its C-Insertion AUC >= those of every other estimator, on every image (the paper's section 4)."""
    head = linear_head()
    codes = torch.rand(6, 5, 4, 4, generator=torch.Generator().manual_seed(1)) * 3
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    imp = {m: code_importance(head, codes, y, m) for m in METHODS}
    torch.testing.assert_close(imp["gradient_input"], imp["occlusion"], atol=1e-5, rtol=0)
    torch.testing.assert_close(imp["integrated_gradients"], imp["occlusion"], atol=1e-5, rtol=0)
    # saliency: |d f / d u_i| summed over the 16 positions = |(W @ fc.weight[y])_i| (mean: 1/16 each)
    assert (imp["saliency"] >= 0).all()
    dele = {m: c_deletion(head, codes, y, v).auc for m, v in imp.items()}
    ins = {m: c_insertion(head, codes, y, v).auc for m, v in imp.items()}
    # plus random importances, which must never beat the exact ones either
    for s in range(3):
        rand = torch.randn(6, 5, generator=torch.Generator().manual_seed(10 + s))
        dele[f"random{s}"] = c_deletion(head, codes, y, rand).auc
        ins[f"random{s}"] = c_insertion(head, codes, y, rand).auc
    for m in dele:
        assert (dele["gradient_input"] <= dele[m] + 1e-5).all(), m
        assert (ins["gradient_input"] >= ins[m] - 1e-5).all(), m
    assert (dele["gradient_input"] < dele["random0"] - 1e-3).any()  # the comparison is not vacuous


def test_zoo_texture_cnn_gradient_input_equals_occlusion_through_the_model(textures, craft_fixture):
    """The texture CNN after ``layer4`` is global average pooling and a linear fc, so in concept space its
    head is linear and gradient x input equals occlusion, here through ``concept_importance`` (split,
    activations, transform, reconstruct, h). 1e-5: float32 rounding of logits of size ~10. And, as for
    any linear head, no estimator beats gradient x input on C-Deletion or C-Insertion on any image."""
    x = torch.from_numpy(craft_fixture["images"][:3])
    bank = FixedBank(torch.from_numpy(craft_fixture["w"]))
    gi = concept_importance(textures, "layer4", bank, x, 1, method="gradient_input")
    occ = concept_importance(textures, "layer4", bank, x, 1, method="occlusion")
    assert gi.shape == (3, 5) and gi.abs().max() > 0.01
    torch.testing.assert_close(gi, occ, atol=1e-5, rtol=0)
    space = concept_space(textures, "layer4", bank, x)
    best_del = c_deletion(space.head, space.codes, 1, gi).auc
    best_ins = c_insertion(space.head, space.codes, 1, gi).auc
    for method in METHODS:
        imp = code_importance(space.head, space.codes, 1, method)
        assert (best_del <= c_deletion(space.head, space.codes, 1, imp).auc + 1e-5).all(), method
        assert (best_ins >= c_insertion(space.head, space.codes, 1, imp).auc - 1e-5).all(), method


# ----------------------------------------------------------------------------------------------------------
# Sobol and RISE on additive heads (closed forms)
# ----------------------------------------------------------------------------------------------------------


def additive_head(a: torch.Tensor, b: float = 0.5):
    """head(codes (M, r, T)) = b + sum_i a_i sum_t codes[:, i, t]: class 0, one output per row (K = 1)."""
    return lambda codes: (b + (codes.sum(-1) * a.to(codes.dtype)).sum(1))[:, None]


def test_sobol_additive_head_total_indices_closed_form():
    """Masks M_i ~ U[0, 1] i.i.d. multiply the coefficients, so f(M) = b + sum_i c_i M_i with c_i =
    a_i sum_t u_it: additive, no interactions, Var(M_i) = 1/12 for all i, hence ST_i = c_i^2 / sum_j c_j^2.
    Estimated with 1024 scrambled Sobol points and the pooled variance: measured 3e-4 from the closed form
    (1.2e-2 at 128 points, 8.7e-2 at Xplique's 32), so 2e-3."""
    a = torch.tensor([1.0, -2.0, 0.5, 3.0])
    codes = torch.rand(3, 4, 6, generator=torch.Generator().manual_seed(0))
    c = codes.sum(-1) * a
    expected = c**2 / (c**2).sum(1, keepdim=True)
    st = code_importance(
        additive_head(a), codes, 0, "sobol", sampler="sobol", nb_design=1024, variance="pooled"
    )
    torch.testing.assert_close(st, expected, atol=2e-3, rtol=0)


def test_rise_estimator_on_an_additive_head():
    """RISE returns sum_m f_m M_mi / sum_m M_mi over Bernoulli(1/2) concept masks: checked exactly against
    that formula on the same masks (float32 rounding), and against the closed form E[f | M_i = 1] =
    b + c_i + sum_{j != i} c_j / 2 within 4 Monte Carlo standard errors: each M_j (j != i) averages ~2,048
    Bernoulli(1/2) draws, so se_i = sqrt(sum_{j != i} c_j^2 / 4 / 2048)."""
    from workbench.attribution.sampling import binary_masks

    a = torch.tensor([1.0, -2.0, 0.5])
    codes = torch.rand(2, 3, 5, generator=torch.Generator().manual_seed(2))
    c = codes.sum(-1) * a
    rise = code_importance(additive_head(a), codes, 0, "rise", nb_samples=4096, seed=3)
    m = binary_masks("bernoulli", 4096, 3, seed=3)
    f = 0.5 + c @ m.T  # (N, n_masks)
    torch.testing.assert_close(rise, (f @ m) / m.sum(0), atol=1e-4, rtol=1e-5)
    closed = 0.5 + c + (c.sum(1, keepdim=True) - c) / 2
    se = ((c**2).sum(1, keepdim=True) - c**2).div(4 * 2048).sqrt()
    assert ((rise - closed).abs() <= 4 * se).all()


def test_integrated_gradients_completeness_on_a_nonlinear_head():
    """Integrated gradients from zero codes sum to f(u) - f(0) (completeness); 16 Gauss-Legendre points
    integrate this smooth tanh head to about 1e-6."""
    a = torch.tensor([1.0, -2.0, 0.5])

    def head(codes):
        return torch.tanh(0.3 * (codes.sum(-1) * a).sum(1, keepdim=True)) + codes[:, :1, 0] * codes[:, 1:2, 0]

    codes = torch.rand(4, 3, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ig = code_importance(head, codes, 0, "integrated_gradients", steps=16)
    gap = (head(codes) - head(torch.zeros_like(codes)))[:, 0]
    torch.testing.assert_close(ig.sum(1).double(), gap, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# Peer agreement: Xplique's CraftTorch on the texture CNN
# ----------------------------------------------------------------------------------------------------------


def test_halton_xplique_sampler_reproduces_xplique_masks(craft_fixture):
    assert "halton_xplique" in SAMPLERS
    masks = design_masks(*sobol_design("halton_xplique", 32, 5))
    assert masks.shape == (224, 5) and bool((masks[0] == 0).all())  # its first point is kept: all zeros
    np.testing.assert_array_equal(masks.numpy(), craft_fixture["sobol_masks"])


def test_sobol_importance_matches_xplique_craft(textures, craft_fixture):
    """With Xplique's codes (NHWC -> (N, r, H, W)), its W and the model's h at layer4, class 1: our masked
    logits equal its captured ``sobol_logits`` and our per-image Jansen indices its importances. 1e-4 is the
    brief's bound; measured 3.6e-7 (logits) and 1.8e-7 (indices), float32 summation order."""
    z = craft_fixture
    _, h = textures.split("layer4")
    head = ConceptHead(h, torch.from_numpy(z["w"]))
    codes = torch.from_numpy(z["codes"]).permute(0, 3, 1, 2)
    y = torch.full((len(codes),), int(z["class_id"]))
    masks = design_masks(*sobol_design("halton_xplique", 32, 5))
    scores = masked_code_scores(head, codes, y, masks)
    np.testing.assert_allclose(scores.numpy(), z["sobol_logits"][..., 1], atol=1e-4, rtol=0)
    imp = code_importance(head, codes, y, "sobol")  # defaults: halton_xplique, 32 designs, Jansen, xplique
    np.testing.assert_allclose(imp.numpy(), z["importances_per_image"], atol=1e-4, rtol=0)
    assert imp.mean(0).argsort(descending=True).tolist() == [2, 3, 4, 0, 1]


# ----------------------------------------------------------------------------------------------------------
# Layouts, registry, errors
# ----------------------------------------------------------------------------------------------------------


class Identity:
    """The exact bank W = I (r = d): codes are the activation itself, so head(codes) must equal the model."""

    def __init__(self, d):
        self.components = torch.eye(d)

    def transform(self, A):
        return A

    def reconstruct(self, U):
        return U @ self.components


def test_concept_space_layouts_rebuild_the_model(textures):
    """CNN maps: codes (N, r, H, W), rows per position, h(rebuilt map) = the model's logits (exact bank);
    ViT tokens and pooled rows go through the same ConceptHead: (M, r, T) -> (M, T, d), (M, r) -> (M, d)."""
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    space = concept_space(textures, "layer4", Identity(96), x)
    assert space.codes.shape == (2, 96, 16, 16) and space.layer == "layer4"
    with torch.no_grad():
        torch.testing.assert_close(space.head(space.codes), textures(x), atol=1e-5, rtol=0)
    W = torch.randn(3, 4)
    seen = {}
    head = ConceptHead(lambda a: seen.setdefault(a.ndim, a).flatten(1)[:, :2], W)
    tokens = torch.randn(2, 3, 5)
    head(tokens)
    torch.testing.assert_close(seen[3], torch.einsum("mrt,rd->mtd", tokens, W))
    vec = torch.randn(2, 3)
    head(vec)
    torch.testing.assert_close(seen[2], vec @ W)


def test_registry_papers_and_a_callable_method():
    assert set(METHODS) == set(CONCEPT_IMPORTANCE_METHODS.names())
    assert all("Holistic" in e.paper for e in CONCEPT_IMPORTANCE_METHODS.entries())
    head = linear_head()
    codes = torch.rand(2, 5, 3, 3)

    def mine(head, codes, targets, *, batch_size):
        return codes.flatten(2).sum(-1) * batch_size

    torch.testing.assert_close(
        code_importance(head, codes, 0, mine, batch_size=2), codes.flatten(2).sum(-1) * 2
    )


def test_errors_are_clear(textures):
    head = linear_head()
    codes = torch.rand(2, 5, 3, 3)
    with pytest.raises(ValueError, match=r"unknown concept importance method 'sobl'; closest: \['sobol'\]"):
        code_importance(head, codes, 0, "sobl")
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
        code_importance(head, codes, 3, "occlusion")
    with pytest.raises(ValueError, match="NaN"):
        code_importance(head, codes * float("nan"), 0)
    with pytest.raises(ValueError, match=r"expected concept coefficients \(N, r\)"):
        code_importance(head, torch.rand(5), 0)
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(KeyError, match="closest valid names: .*'layer4'"):
        concept_importance(textures, "layer5", Identity(96), x, 0)
    with pytest.raises(ValueError, match="the bank has d = 8 features per row, but layer 'layer4' gives 96"):
        concept_importance(textures, "layer4", Identity(8), x, 0)
    with pytest.raises(ValueError, match=r"y: targets must lie in \[0, 3\]"):
        concept_importance(textures, "layer4", Identity(96), x, 7)
    with pytest.raises(ValueError, match="has no transform|with .transform"):
        concept_importance(textures, "layer4", torch.rand(5, 96), x, 0)


# ----------------------------------------------------------------------------------------------------------
# Strategic clusters
# ----------------------------------------------------------------------------------------------------------


def test_strategic_clusters_recover_planted_strategies():
    """Three planted strategies over 8 concepts, each dominated by its own concepts ({0, 1}, {2, 3, 4},
    {5, 6}), with noise well below the gaps: the clusters equal the groups (adjusted Rand 1.0, sklearn)
    and each cluster's dominant concepts are its group's; the graph is JSON-able."""
    from sklearn.metrics import adjusted_rand_score

    g = torch.Generator().manual_seed(0)
    profiles = torch.zeros(3, 8)
    profiles[0, [0, 1]] = torch.tensor([1.0, 0.8])
    profiles[1, [2, 3, 4]] = torch.tensor([0.9, 0.7, 0.5])
    profiles[2, [5, 6]] = torch.tensor([1.0, 0.6])
    truth = torch.tensor([0] * 12 + [1] * 9 + [2] * 6)
    scale = 0.5 + torch.rand(len(truth), 1, generator=g) * 3  # confidence differs per image, not the strategy
    imp = scale * (profiles[truth] + 0.03 * torch.rand(len(truth), 8, generator=g))
    out = strategic_clusters(imp, n_clusters=3, top=2, seed=0)
    assert adjusted_rand_score(truth.numpy(), out.labels.numpy()) == 1.0
    assert out.sizes.tolist() == [12, 9, 6]  # numbered by decreasing size, so here as planted
    assert out.dominant.tolist() == [[0, 1], [2, 3], [5, 6]]
    assert out.similarity.shape == (3, 3) and torch.allclose(out.similarity.diagonal(), torch.ones(3))
    d = out.to_dict()
    graph = json.loads(json.dumps(d))["graph"]
    assert len(graph["nodes"]) == 3 + 8 and len(graph["edges"]) == 3 * 8 and len(graph["cluster_edges"]) == 3
    assert {e["target"] for e in graph["edges"] if e["source"] == "cluster 1" and e["dominant"]} == {
        "concept 2",
        "concept 3",
    }
    torch.testing.assert_close(out.members(2), torch.arange(21, 27))
    with pytest.raises(ValueError, match="at most the number of images"):
        strategic_clusters(imp[:2], n_clusters=3)
    with pytest.raises(ValueError, match="NaN"):
        strategic_clusters(imp * float("nan"))
