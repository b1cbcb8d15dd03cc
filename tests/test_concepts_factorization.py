"""Factorizations (workbench.concepts): NMF and its solvers, NNLS and its implicit gradient, semi- and
convex NMF, PCA, ICA, k-means, sparse coding, SAEs as concept banks.

Checked against ground truth (planted low-rank data, closed forms) and against scikit-learn / SciPy.
Small data, one thread: every test runs well under two seconds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import nnls as scipy_nnls
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.decomposition import NMF as SklearnNMF
from sklearn.decomposition import PCA as SklearnPCA
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning

from workbench.concepts import (
    FACTORIZATIONS,
    ICA,
    NMF,
    PCA,
    ConvexNMF,
    KMeans,
    SAEConcepts,
    SemiNMF,
    SparseCoding,
    create_factorization,
    nmf,
    nnls,
    sparse_encode,
)
from workbench.sae import ReLUSAE
from workbench.sae.metrics import matching

pytestmark = pytest.mark.usefixtures("one_thread")  # small problems (see conftest)


def planted(n=400, d=64, r=6, noise=0.01, seed=0, dtype=torch.float32):
    """A = U W + noise with U, W >= 0 and sparse: the planted concepts are W's rows."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, r, generator=g, dtype=dtype) * (torch.rand(n, r, generator=g) < 0.5)
    w = torch.rand(r, d, generator=g, dtype=dtype) * (torch.rand(r, d, generator=g) < 0.5)
    a = u @ w + noise * torch.rand(n, d, generator=g, dtype=dtype)
    return a, u, w


def rel_error(a, u, w):
    return float((a - u @ w).norm() / a.norm())


def matched(w_ref, w, absolute=False):
    """Rows of ``w`` reordered (and, with ``absolute``, sign-flipped) onto ``w_ref`` by Hungarian matching."""
    rows, cols, cos = matching(torch.as_tensor(w_ref), torch.as_tensor(w), absolute=absolute)
    w = np.asarray(w)[cols]
    if absolute:
        w = w * np.sign((np.asarray(w_ref)[rows] * w).sum(1, keepdims=True))
    return np.asarray(w_ref)[rows], w


# -- NMF ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_nmf_recovers_planted_concepts(solver):
    a, _, w_true = planted()
    u, w = nmf(a, 6, solver=solver, max_iter=1000, tol=1e-6)
    assert (u >= 0).all() and (w >= 0).all() and u.shape == (400, 6) and w.shape == (6, 64)
    cos = matching(w_true, w)[2]
    assert cos.min() >= 0.95, cos  # the bar; measured min 0.99999 (hals), 0.9998 (mu)


@pytest.mark.parametrize(("solver", "iters"), [("hals", 50), ("mu", 200)])
def test_nmf_error_within_2_percent_of_sklearn(solver, iters):
    """Same data, rank, initialisation (nndsvda) and number of iterations, no early stop: our relative
    error is at most 1.02 x scikit-learn's (cd for HALS: the same coordinate updates, ours repeated
    within an iteration; mu: the same multiplicative rule, so the errors agree to rounding)."""
    a, _, _ = planted()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = SklearnNMF(6, init="nndsvda", solver="cd" if solver == "hals" else "mu", max_iter=iters, tol=0)
        u_ref = ref.fit_transform(a.numpy())
    sk = float(np.linalg.norm(a.numpy() - u_ref @ ref.components_) / np.linalg.norm(a.numpy()))
    u, w = nmf(a, 6, solver=solver, max_iter=iters, tol=0)
    assert rel_error(a, u, w) <= 1.02 * sk, (rel_error(a, u, w), sk)


def test_nmf_ridge_matches_sklearn_alpha_scaling():
    """l2_u = alpha_W * n_features and l2_w = alpha_H * n_samples is scikit-learn's problem: run to
    convergence, both reach the same objective (to 1 %, two solvers' stopping points)."""
    a, _, _ = planted(n=200, d=32, r=4)
    alpha = 1e-3
    n, d = a.shape
    ref = SklearnNMF(
        4, init="nndsvda", solver="cd", alpha_W=alpha, alpha_H="same", l1_ratio=0.0, tol=1e-10, max_iter=2000
    )
    u_ref = ref.fit_transform(a.double().numpy())
    w_ref = ref.components_

    def objective(u, w):
        return 0.5 * np.sum((a.double().numpy() - u @ w) ** 2) + 0.5 * alpha * (
            d * np.sum(u**2) + n * np.sum(w**2)
        )

    u, w = nmf(a.double(), 4, l2_u=alpha * d, l2_w=alpha * n, max_iter=2000, tol=1e-10)
    assert objective(u.numpy(), w.numpy()) <= 1.01 * objective(u_ref, w_ref)


def test_nmf_deterministic_per_seed_and_accepts_numpy():
    a, _, _ = planted(n=100, d=20, r=3)
    u1, w1 = nmf(a, 3, init="random", seed=1, max_iter=30)
    u2, w2 = nmf(a.numpy(), 3, init="random", seed=1, max_iter=30)  # NumPy in, same result
    u3, _ = nmf(a, 3, init="random", seed=2, max_iter=30)
    assert torch.equal(u1, u2) and torch.equal(w1, w2)
    assert not torch.equal(u1, u3)
    f1, f2 = NMF(3, seed=0).fit(a), NMF(3, seed=0).fit(a)
    assert torch.equal(f1.components, f2.components)


def test_nmf_keeps_float64():
    a, _, _ = planted(n=60, d=10, r=2, dtype=torch.float64)
    u, w = nmf(a, 2, max_iter=20)
    assert u.dtype == w.dtype == torch.float64


def test_nmf_class_transform_is_nnls():
    a, _, _ = planted(n=200, d=32, r=4)
    f = NMF(4, max_iter=300).fit(a)
    u = f.transform(a)
    assert torch.allclose(u, nnls(a, f.components), atol=1e-6)
    # exact codes for the fitted W: no worse than the fit's own
    assert rel_error(a, u, f.components) <= rel_error(a, f.fit_transform(a), f.components) + 1e-5
    assert torch.allclose(f.reconstruct(u), u @ f.components)


# -- NNLS and its implicit gradient ------------------------------------------------------------------
def _nnls_problem(n=40, d=12, r=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(r, d, generator=g, dtype=torch.float64)
    return a, w


def test_nnls_matches_scipy_per_row():
    a, w = _nnls_problem()
    u = nnls(a, w)
    ref = np.stack([scipy_nnls(w.T.numpy(), row)[0] for row in a.numpy()])
    assert np.abs(u.numpy() - ref).max() < 1e-5  # both exact active-set solutions: agree to ~1e-12
    assert 0.2 < (ref > 0).mean() < 0.8  # a test with a real mix of active and inactive constraints


def test_nnls_ridge_equals_augmented_system():
    """The ridge adds sqrt(l2) I rows to the design: scipy's nnls on [W^T; sqrt(l2) I], [a; 0]."""
    a, w = _nnls_problem(n=20)
    l2 = 0.7
    u = nnls(a, w, l2=l2)
    design = np.vstack([w.T.numpy(), np.sqrt(l2) * np.eye(5)])
    ref = np.stack([scipy_nnls(design, np.concatenate([row, np.zeros(5)]))[0] for row in a.numpy()])
    assert np.abs(u.numpy() - ref).max() < 1e-5


def test_nnls_float32_and_warm_start():
    a, w = _nnls_problem(n=100)
    u64 = nnls(a, w)
    u32 = nnls(a.float(), w.float())
    assert u32.dtype == torch.float32 and torch.allclose(u32.double(), u64, atol=1e-4)
    assert torch.allclose(nnls(a, w, init=u64 + 0.1), u64, atol=1e-10)


def test_nnls_gradient_against_finite_differences():
    """float64, a few rows: torch.autograd.gradcheck compares the implicit backward with central
    differences (the support is locally constant: random data has strict complementarity)."""
    a, w = _nnls_problem(n=4, d=6, r=3, seed=3)
    a.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, w: nnls(a, w, l2=0.1), (a, w), eps=1e-6, atol=1e-6)


def test_nnls_gradient_equals_closed_form_inside_a_graph():
    """Inside a larger graph (x -> relu(x M) -> codes -> loss), the implicit gradient equals autograd
    through the closed form on the known support, u_S = (a W_S^T)(W_S W_S^T + l2 I)^-1."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 8, generator=g, dtype=torch.float64, requires_grad=True)
    m = torch.randn(8, 12, generator=g, dtype=torch.float64)
    w = torch.rand(5, 12, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.randn(30, 5, generator=g, dtype=torch.float64)
    l2 = 0.05

    u = nnls(torch.relu(x @ m), w, l2=l2)
    (u * c).sum().backward()
    gx, gw = x.grad.clone(), w.grad.clone()

    x.grad, w.grad = None, None
    support = (u > 0).detach()
    a = torch.relu(x @ m)
    rows = []
    for i in range(len(a)):  # the closed form, row by row: the reference, not the implementation
        s = support[i]
        ws = w[s]
        us = a[i] @ ws.T @ torch.linalg.inv(ws @ ws.T + l2 * torch.eye(int(s.sum()), dtype=torch.float64))
        rows.append(torch.zeros(5, dtype=torch.float64).index_put((s.nonzero().squeeze(1),), us))
    closed = torch.stack(rows)
    assert torch.allclose(closed, u.detach(), atol=1e-10)
    (closed * c).sum().backward()
    assert 0.2 < support.double().mean() < 0.9
    assert torch.allclose(gx, x.grad, atol=1e-9) and torch.allclose(gw, w.grad, atol=1e-9)


@pytest.mark.parametrize("nonnegative", [True, False])
def test_sparse_encode_gradient_with_l1(nonnegative):
    """The l1 term only shifts the KKT system on the support (by l1 times the signs): the same implicit
    gradient, checked against central differences."""
    a, w = _nnls_problem(n=4, d=6, r=3, seed=5)
    a.requires_grad_(True)
    w.requires_grad_(True)

    def codes(a, w):
        return sparse_encode(a, w, l1=0.2, l2=0.05, nonnegative=nonnegative)

    assert (codes(a, w) != 0).any()
    assert torch.autograd.gradcheck(codes, (a, w), eps=1e-6, atol=1e-6)


def test_sparse_encode_orthonormal_closed_form():
    """With orthonormal atoms the lasso decouples: u = soft(a D^T, l1) (signed), max(a D^T - l1, 0)
    (non-negative)."""
    g = torch.Generator().manual_seed(0)
    d = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))[0][:4]
    a = torch.randn(50, 10, generator=g, dtype=torch.float64)
    z = a @ d.T
    signed = sparse_encode(a, d, l1=0.3, nonnegative=False)
    assert torch.allclose(signed, torch.nn.functional.softshrink(z, 0.3), atol=1e-10)
    assert torch.allclose(sparse_encode(a, d, l1=0.3), (z - 0.3).clamp_min(0), atol=1e-10)
    sc = SparseCoding(d, l1=0.3, nonnegative=False)
    assert torch.allclose(sc.fit(a).transform(a), signed) and not sc.nonnegative_codes


# -- semi-NMF, convex NMF ----------------------------------------------------------------------------
def test_semi_nmf_fits_signed_low_rank_data():
    g = torch.Generator().manual_seed(0)
    u = torch.rand(300, 4, generator=g)
    w = torch.randn(4, 20, generator=g)  # signed concepts: NMF cannot, semi-NMF can
    a = u @ w + 0.01 * torch.randn(300, 20, generator=g)
    f = SemiNMF(4).fit(a)
    codes = f.fit_transform(a)
    assert (codes >= 0).all() and (f.components < 0).any()
    assert rel_error(a, codes, f.components) < 0.05  # noise is ~1 % of the signal
    assert matching(w, f.components)[2].min() > 0.95
    assert (f.transform(a) >= 0).all()


def test_convex_nmf_concepts_are_convex_combinations_of_rows():
    """Data built from 3 archetypes that are themselves data rows: convex NMF's concepts are convex
    combinations of rows (weights >= 0 summing to 1) and reconstruct the data."""
    g = torch.Generator().manual_seed(0)
    archetypes = torch.randn(3, 15, generator=g)
    mix = torch.distributions.Dirichlet(torch.ones(3)).sample((120,))
    a = torch.cat([archetypes, mix @ archetypes])
    f = ConvexNMF(3).fit(a)
    assert (f.weights >= 0).all() and torch.allclose(f.weights.sum(1), torch.ones(3), atol=1e-5)
    assert torch.allclose(f.components, f.weights @ a, atol=1e-5)
    assert rel_error(a, f.fit_transform(a), f.components) < 0.1
    assert matching(archetypes, f.components)[2].min() > 0.9


# -- PCA, ICA, k-means -------------------------------------------------------------------------------
def test_pca_matches_sklearn():
    g = torch.Generator().manual_seed(0)
    rot = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))[0]
    a = (torch.randn(300, 12, generator=g, dtype=torch.float64) * torch.linspace(3, 0.5, 12)) @ rot + 1.0
    ours = PCA(5).fit(a)
    ref = SklearnPCA(5).fit(a.numpy())
    # same sign convention (svd_flip), so equal without matching; 1e-4 is the bar, measured 1e-14
    assert np.abs(ours.components.numpy() - ref.components_).max() < 1e-4
    assert np.abs(ours.transform(a).numpy() - ref.transform(a.numpy())).max() < 1e-4
    assert np.allclose(ours.explained_variance.numpy(), ref.explained_variance_)
    full = PCA(12).fit(a)
    assert torch.allclose(full.reconstruct(full.transform(a)), a)  # all components: exact, mean added back


def test_ica_matches_sklearn_fastica():
    """Same whitening (unit variance) and the same initial matrix: our unmixing equals scikit-learn's
    components_ and our concepts its mixing_.T, up to sign and order, to 1e-4 (measured ~1e-11)."""
    g = torch.Generator().manual_seed(0)
    sources = torch.rand(500, 3, generator=g, dtype=torch.float64) * 2 - 1  # uniform: non-Gaussian
    mixing = torch.randn(3, 8, generator=g, dtype=torch.float64)
    a = sources @ mixing + 0.01 * torch.randn(500, 8, generator=g, dtype=torch.float64)
    w_init = np.random.RandomState(0).normal(size=(3, 3))
    ours = ICA(3, w_init=torch.tensor(w_init)).fit(a)
    ref = FastICA(3, w_init=w_init, whiten="unit-variance").fit(a.numpy())
    assert ours.n_iter == ref.n_iter_  # the same iterates, so the same stopping point
    r, o = matched(ref.components_, ours.unmixing.numpy(), absolute=True)
    assert np.abs(r - o).max() < 1e-4
    r, o = matched(ref.mixing_.T, ours.components.numpy(), absolute=True)
    assert np.abs(r - o).max() < 1e-4
    u = ours.transform(a)
    assert torch.allclose(u.std(0, correction=0), torch.ones(3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(ours.reconstruct(u), a, atol=0.05)  # rank 3 + 1 % noise


def test_ica_deterministic_per_seed():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(200, 6, generator=g) ** 3
    assert torch.equal(ICA(3, seed=4).fit(a).components, ICA(3, seed=4).fit(a).components)


def test_kmeans_matches_sklearn_inertia_on_blobs():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 10, generator=g) * 10
    a = centers.repeat_interleave(50, 0) + 0.5 * torch.randn(200, 10, generator=g)
    ours = KMeans(4, seed=0).fit(a)
    ref = SklearnKMeans(4, n_init=1, random_state=0).fit(a.numpy())
    assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-4)  # float32 sums over 200 points
    codes = ours.transform(a)
    assert torch.equal(codes.sum(1), torch.ones(200)) and set(codes.unique().tolist()) == {0.0, 1.0}
    assert torch.allclose(ours.reconstruct(codes), ours.components[codes.argmax(1)])
    dist = KMeans(4, codes="distance").fit(a).transform(a)
    assert dist.shape == (200, 4) and (dist >= 0).all()


# -- SAE as a concept bank ---------------------------------------------------------------------------
def test_sae_concepts_wraps_encode_and_dictionary():
    sae = ReLUSAE(12, 7, seed=0)
    x = torch.randn(20, 12, requires_grad=True)
    bank = create_factorization("sae", sae=sae)
    assert isinstance(bank, SAEConcepts) and bank.n_concepts == 7 and bank.fit(x) is bank
    codes = bank.transform(x)
    assert torch.equal(codes, sae.encode(x)) and torch.equal(bank.components, sae.dictionary.detach())
    assert torch.allclose(bank.reconstruct(codes), sae.decode(codes))
    codes.sum().backward()  # differentiable with respect to the activations
    assert x.grad is not None


# -- registry and errors -----------------------------------------------------------------------------
def test_every_factorization_is_registered_with_a_paper():
    assert set(FACTORIZATIONS.names()) == {
        "nmf", "semi_nmf", "convex_nmf", "pca", "ica", "kmeans", "sparse_coding", "sae",
    }  # fmt: skip
    assert all(e.paper for e in FACTORIZATIONS.entries())
    a, _, _ = planted(n=60, d=10, r=2)
    for name in ("nmf", "semi_nmf", "convex_nmf", "pca", "ica", "kmeans"):
        f = create_factorization(name, 2)
        u = f.fit(a).transform(a)
        assert u.shape == (60, 2) and f.components.shape == (2, 10), name
        assert f.reconstruct(u).shape == a.shape
        assert not f.nonnegative_codes or (u >= 0).all(), name
    assert create_factorization("sparse_coding", 3, dictionary=torch.rand(3, 10)).n_concepts == 3


def test_clear_errors():
    a, _, _ = planted(n=50, d=8, r=2)
    negative = a.clone()
    negative[3, 4] = -0.5
    with pytest.raises(ValueError, match=r"non-negative.*minimum -0\.5"):
        nmf(negative, 2)
    with pytest.raises(ValueError, match=r"minimum -1"):
        NMF(2).fit(-torch.ones(5, 4))
    with pytest.raises(ValueError, match=r"r: expected an integer in \[1, min\(n, d\) = 8\]"):
        nmf(a, 9)
    with pytest.raises(ValueError, match="n_concepts: expected at most 8"):
        PCA(9).fit(a)
    with pytest.raises(ValueError, match="NaN"):
        nmf(torch.full((4, 4), float("nan")), 2)
    with pytest.raises(RuntimeError, match="not fitted: call fit"):
        NMF(2).transform(a)
    with pytest.raises(RuntimeError, match="not fitted"):
        _ = PCA(2).components
    fitted = NMF(2, max_iter=5).fit(a)
    with pytest.raises(ValueError, match=r"expected 8 features .* got shape \(3, 5\)"):
        fitted.transform(torch.rand(3, 5))
    with pytest.raises(ValueError, match="expected a matrix of shape"):
        fitted.transform(torch.rand(8))
    with pytest.raises(KeyError, match=r"closest: \['nmf'"):
        create_factorization("nfm", 2)
    with pytest.raises(ValueError, match="solver: expected one of"):
        NMF(2, solver="cd")
    with pytest.raises(ValueError, match="has 3, got n_concepts=4"):
        create_factorization("sparse_coding", 4, dictionary=torch.rand(3, 8))
    with pytest.raises(ValueError, match=r"W: expected a dictionary of shape \(r, 8\)"):
        nnls(a, torch.rand(2, 5))
