"""Concept extraction as dictionary learning: one interface, ``A (n, d) ~= U (n, r) @ W (r, d)``.

Fel et al., "A Holistic Approach to Unifying Automatic Concept Extraction and Concept Importance
Estimation", NeurIPS 2023, arXiv:2306.07304, show that the concept extraction methods of the literature
are all dictionary learning on a layer's activations ``A``: they find a dictionary of concepts ``W`` (the
rows, directions in activation space) and codes ``U`` (how much of each concept each input holds), and
differ only in the constraints they put on ``U`` and ``W``:

- k-means (ACE, Ghorbani et al. 2019): each row of ``U`` is one-hot, ``W`` holds the centroids;
- PCA: ``W`` orthonormal, ``U`` the projections (of centred data);
- ICA: ``U`` statistically independent (FastICA, Hyvarinen 1999);
- NMF (CRAFT, Fel et al. 2023): ``U, W >= 0``; semi-NMF: ``U >= 0`` only; convex NMF: ``U >= 0`` and
  ``W`` convex combinations of data rows;
- sparse coding: ``W`` fixed, ``U`` sparse; a sparse autoencoder (``workbench.sae``): ``U`` from a
  learned encoder, ``W`` its decoder's atoms.

Every variant is a :class:`Factorization` (``fit``, ``transform``, ``fit_transform``, ``components``,
``reconstruct``) registered in :data:`FACTORIZATIONS` with its paper; :func:`create_factorization`
builds one by name. Tensors are torch tensors (NumPy arrays are accepted) and results stay on the
input's device.
"""

from __future__ import annotations

from typing import Any

import torch

from workbench._core.devices import eval_mode, module_device
from workbench._core.registry import Registry
from workbench._core.seeding import make_generator
from workbench._core.validation import as_tensor, check_activations, check_int
from workbench.concepts.nmf_solvers import (
    INITS,
    SOLVERS,
    _check_penalty,
    _check_tol,
    _compute_dtype,
    _hals_sweeps,
    _squared_norm,
    f64,
    nmf,
    nnls,
    sparse_encode,
    top_singular,
)
from workbench.sae.archetypal import kmeans

__all__ = [
    "FACTORIZATIONS",
    "Factorization",
    "NMF",
    "SemiNMF",
    "ConvexNMF",
    "PCA",
    "ICA",
    "KMeans",
    "SparseCoding",
    "SAEConcepts",
    "create_factorization",
]

#: Every factorization, by name, with its paper.
FACTORIZATIONS: Registry[type] = Registry(
    "factorization", populate=("workbench.concepts.dictionary_learning",)
)


class Factorization:
    """The interface: ``fit(A) -> self``, ``transform(A) -> U``, ``components -> W``, ``A ~= U W``.

    Parameters
    ----------
    n_concepts
        Number of concepts ``r`` (rows of ``W``, columns of ``U``).

    Attributes
    ----------
    nonnegative_codes
        Whether the codes ``U`` are >= 0 (what a concept importance that perturbs codes may assume).
    needs_nonnegative_input
        Whether ``fit`` and ``transform`` refuse negative activations (NMF).
    mean
        The mean subtracted before factorizing (PCA, ICA), else None; ``reconstruct`` adds it back.
    """

    nonnegative_codes: bool = True
    needs_nonnegative_input: bool = False
    #: Built from a given dictionary (its size is the number of concepts) rather than learned.
    from_dictionary: bool = False

    def __init__(self, n_concepts: int):
        self.n_concepts = check_int(n_concepts, "n_concepts")
        self._components: torch.Tensor | None = None
        self.mean: torch.Tensor | None = None

    # -- what a variant implements ----------------------------------------------------------------
    def fit(self, A: torch.Tensor) -> Factorization:
        """Learn the concepts ``W`` from activations ``A`` (n, d); returns ``self``."""
        raise NotImplementedError

    def transform(self, A: torch.Tensor) -> torch.Tensor:
        """Codes ``U`` (n, r) of activations ``A`` (n, d) with the concepts fixed."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------------
    def fit_transform(self, A: torch.Tensor) -> torch.Tensor:
        """``fit(A)`` then the codes of ``A``."""
        return self.fit(A).transform(A)

    @property
    def is_fitted(self) -> bool:
        return self._components is not None

    @property
    def components(self) -> torch.Tensor:
        """The concepts ``W`` (r, d), on the device of the data they were fitted on."""
        if self._components is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(A) first")
        return self._components

    @property
    def n_features(self) -> int:
        """The width ``d`` of the activations the factorization was fitted on."""
        return self.components.shape[1]

    def reconstruct(self, U: torch.Tensor) -> torch.Tensor:
        """``U @ W`` (n, d), plus the mean for centred methods: the activations the codes stand for."""
        W = self.components
        U = as_tensor(U)
        if not isinstance(U, torch.Tensor) or U.ndim != 2 or U.shape[1] != self.n_concepts:
            shape = tuple(U.shape) if isinstance(U, torch.Tensor) else type(U).__name__
            raise ValueError(f"U: expected codes of shape (n, {self.n_concepts}), got {shape}")
        W = W.to(U.device, U.dtype if U.is_floating_point() else W.dtype)
        out = U.to(W.dtype) @ W
        return out if self.mean is None else out + self.mean.to(out.device, out.dtype)

    def _check(self, A: Any, fitted: bool) -> torch.Tensor:
        """Activations as a floating tensor; of the fitted width when ``fitted`` (which needs a fit)."""
        return check_activations(
            A,
            "A",
            n_features=self.n_features if fitted else None,
            nonnegative=self.needs_nonnegative_input,
        )

    def _check_rank(self, A: torch.Tensor, limit: int | None = None) -> None:
        limit = min(A.shape) if limit is None else limit
        if self.n_concepts > limit:
            raise ValueError(
                f"n_concepts: expected at most {limit} for activations of shape {tuple(A.shape)}"
                f" ({type(self).__name__} finds at most min(n, d) concepts), got {self.n_concepts}"
            )

    def _fitted_w(self, A: torch.Tensor) -> torch.Tensor:
        """The components on ``A``'s device, in its compute dtype."""
        return self.components.to(A.device, _compute_dtype(A))

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}(n_concepts={self.n_concepts}, {state})"


# -- NMF family -------------------------------------------------------------------------------------
@FACTORIZATIONS.register(
    "nmf",
    paper="Lee & Seung 1999 (Nature 401); HALS: Cichocki & Phan 2009 (IEICE E92-A); CRAFT: Fel et al., CVPR 2023",
)
class NMF(Factorization):
    """Non-negative matrix factorization: ``A ~= U W`` with ``A, U, W >= 0`` (CRAFT's concept bank).

    ``fit`` runs :func:`~workbench.concepts.nmf_solvers.nmf`; ``transform`` solves the non-negative least
    squares problem of each row with ``W`` fixed (:func:`~workbench.concepts.nmf_solvers.nnls`, with the
    same ``l2_u`` ridge), differentiable with respect to ``A`` through the KKT conditions, so that CRAFT
    can differentiate a concept's coefficient with respect to the input image.

    Parameters
    ----------
    n_concepts
        Number of concepts, at most min(n, d).
    solver, max_iter, tol, seed, l2_u, l2_w, init
        As in :func:`~workbench.concepts.nmf_solvers.nmf` (its docstring maps ``l2_u`` and ``l2_w`` to
        scikit-learn's ``alpha_W`` and ``alpha_H``).
    """

    nonnegative_codes = True
    needs_nonnegative_input = True

    def __init__(
        self,
        n_concepts: int,
        solver: str = "hals",
        max_iter: int = 500,
        tol: float = 1e-4,
        seed: int = 0,
        l2_u: float = 0.0,
        l2_w: float = 0.0,
        init: str = "nndsvda",
    ):
        super().__init__(n_concepts)
        if solver not in SOLVERS:
            raise ValueError(f"solver: expected one of {SOLVERS}, got {solver!r}")
        if init not in INITS:
            raise ValueError(f"init: expected one of {INITS}, got {init!r}")
        self.solver, self.init, self.seed = solver, init, seed
        self.max_iter = check_int(max_iter, "max_iter")
        self.tol = _check_tol(tol)
        self.l2_u, self.l2_w = _check_penalty(l2_u, "l2_u"), _check_penalty(l2_w, "l2_w")
        self._codes: torch.Tensor | None = None

    def fit(self, A: torch.Tensor) -> NMF:
        A = self._check(A, fitted=False)
        self._check_rank(A)
        U, W = nmf(
            A, self.n_concepts, solver=self.solver, max_iter=self.max_iter, tol=self.tol, seed=self.seed,
            init=self.init, l2_u=self.l2_u, l2_w=self.l2_w,
        )  # fmt: skip
        self._components, self._codes = W, U
        return self

    def fit_transform(self, A: torch.Tensor) -> torch.Tensor:
        """``fit(A)`` and the codes the fit found (no second solve; not differentiable: call
        ``transform`` for codes that carry gradients)."""
        self.fit(A)
        return self._codes

    def transform(self, A: torch.Tensor) -> torch.Tensor:
        A = self._check(A, fitted=True)
        return nnls(A, self._fitted_w(A), l2=self.l2_u)


def _kmeans_start(a: torch.Tensor, r: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ding et al.'s initialisation: k-means labels ``H`` (one-hot, n x r) and centroids (r, d)."""
    centroids = kmeans(a, r, seed=seed).to(a.dtype)
    labels = torch.cdist(a, centroids).argmin(1)
    return torch.nn.functional.one_hot(labels, r).to(a.dtype), centroids


@FACTORIZATIONS.register(
    "semi_nmf",
    paper="Ding, Li & Jordan 2010, Convex and semi-nonnegative matrix factorizations (IEEE TPAMI 32(1))",
)
class SemiNMF(Factorization):
    """Semi-NMF: ``A ~= U W`` with ``U >= 0`` and ``W`` of any sign, so ``A`` may be negative (activations
    before a ReLU, ViT tokens).

    Ding, Li & Jordan 2010. Initialised as in the paper from k-means (``U`` = cluster indicators + 0.2);
    then alternates the exact least-squares update of ``W`` (the paper's) with HALS sweeps on ``U`` (exact
    coordinate minimisation of the same non-negative least squares problem that the paper's
    multiplicative rule solves, and faster). ``transform`` is :func:`nnls`, differentiable.

    Parameters
    ----------
    n_concepts
        Number of concepts, at most min(n, d).
    max_iter, tol
        Iteration cap; stop when the objective's relative decrease per iteration falls below ``tol``.
    seed
        Seed of the k-means initialisation.
    """

    nonnegative_codes = True
    needs_nonnegative_input = False

    def __init__(self, n_concepts: int, max_iter: int = 500, tol: float = 1e-4, seed: int = 0):
        super().__init__(n_concepts)
        self.max_iter = check_int(max_iter, "max_iter")
        self.tol = _check_tol(tol)
        self.seed = seed
        self._codes: torch.Tensor | None = None

    def fit(self, A: torch.Tensor) -> SemiNMF:
        A = self._check(A, fitted=False)
        self._check_rank(A)
        a = A.detach().to(_compute_dtype(A))
        r = self.n_concepts
        h, _ = _kmeans_start(a, r, self.seed)
        ut = (h + 0.2).T.contiguous()
        a_sq = _squared_norm(a)
        eye = torch.eye(r, dtype=a.dtype, device=a.device)
        previous = None
        for _ in range(self.max_iter):
            pw, qu = ut @ a, ut @ ut.T
            # W = argmin ||A - U W||: the normal equations, with a ridge of float rounding size for safety
            ridge = qu.diagonal().mean() * 1e-10 + torch.finfo(a.dtype).tiny
            w = torch.linalg.solve(qu + ridge * eye, pw)
            # the objective; at the W optimum <U^T U, W W^T> = <U^T A, W>, so 0.5 (|A|^2 - <U^T A, W>)
            f = 0.5 * (a_sq - float((f64(pw) * f64(w)).sum()))
            if previous is not None and (previous - f) < self.tol * max(abs(f), 1e-300):
                break
            previous = f
            _hals_sweeps(ut, w @ a.T, w @ w.T, 0.0, 2)
        self._components, self._codes = w, ut.T.contiguous()
        return self

    def fit_transform(self, A: torch.Tensor) -> torch.Tensor:
        """``fit(A)`` and the codes the fit found (not differentiable; ``transform`` is)."""
        self.fit(A)
        return self._codes

    def transform(self, A: torch.Tensor) -> torch.Tensor:
        A = self._check(A, fitted=True)
        return nnls(A, self._fitted_w(A))


@FACTORIZATIONS.register(
    "convex_nmf",
    paper="Ding, Li & Jordan 2010, Convex and semi-nonnegative matrix factorizations (IEEE TPAMI 32(1))",
)
class ConvexNMF(Factorization):
    """Convex NMF: ``A ~= U W`` with ``U >= 0`` and ``W = G A``, each concept a convex combination of data
    rows (``G >= 0``, rows summing to 1), so concepts are interpretable as mixtures of real inputs.

    Ding, Li & Jordan 2010, multiplicative updates (their eqs. for ``X ~= X W G^T``, with their ``X`` our
    ``A^T``, their ``G`` our ``U`` and their ``W`` our ``G^T``) on the kernel ``Y = A A^T`` split into
    positive and negative parts: ``A`` may have any sign. The kernel is n x n: meant for up to a few
    thousand rows (crops), not for every activation of a dataset. Initialised from k-means as in the
    paper. After the fit the scale of each row of ``G`` is moved into ``U`` so ``G``'s rows sum to 1.

    Attributes
    ----------
    weights
        ``G`` (r, n): the convex weights of each concept over the fitted rows.
    """

    nonnegative_codes = True
    needs_nonnegative_input = False

    def __init__(self, n_concepts: int, max_iter: int = 500, tol: float = 1e-5, seed: int = 0):
        super().__init__(n_concepts)
        self.max_iter = check_int(max_iter, "max_iter")
        self.tol = _check_tol(tol)
        self.seed = seed
        self.weights: torch.Tensor | None = None
        self._codes: torch.Tensor | None = None

    def fit(self, A: torch.Tensor) -> ConvexNMF:
        A = self._check(A, fitted=False)
        self._check_rank(A)
        a = A.detach().to(_compute_dtype(A))
        r = self.n_concepts
        h, _ = _kmeans_start(a, r, self.seed)
        g = h + 0.2  # their G: our codes U (n, r)
        wc = g / h.sum(0).clamp_min(1)  # their W (n, r): (H + 0.2) D^-1, D the cluster sizes
        y = a @ a.T
        yp, yn = y.clamp_min(0), (-y).clamp_min(0)
        tiny = torch.finfo(a.dtype).tiny
        a_sq = _squared_norm(a)
        previous = None
        for _ in range(self.max_iter):
            ypw, ynw = yp @ wc, yn @ wc
            g = g * ((ypw + g @ (wc.T @ ynw)) / (ynw + g @ (wc.T @ ypw)).clamp_min(tiny)).sqrt()
            gtg = g.T @ g
            ypg, yng = yp @ g, yn @ g
            wc = wc * ((ypg + yn @ (wc @ gtg)) / (yng + yp @ (wc @ gtg)).clamp_min(tiny)).sqrt()
            # the objective ||A - G Wc^T A||^2 = tr(Y) - 2 tr(Wc^T Y G) + tr(G^T G Wc^T Y Wc)
            yw = y @ wc
            cross = float((yw * g).sum(dtype=torch.float64))
            f = 0.5 * (a_sq - 2 * cross + float((gtg * (wc.T @ yw)).sum(dtype=torch.float64)))
            if previous is not None and (previous - f) < self.tol * max(abs(f), 1e-300):
                break
            previous = f
        scale = wc.sum(0).clamp_min(tiny)  # move each concept's scale into its codes: G rows sum to 1
        weights = (wc / scale).T.contiguous()
        self.weights = weights
        self._components = weights @ a
        self._codes = g * scale
        return self

    def fit_transform(self, A: torch.Tensor) -> torch.Tensor:
        """``fit(A)`` and the codes the fit found (not differentiable; ``transform`` is)."""
        self.fit(A)
        return self._codes

    def transform(self, A: torch.Tensor) -> torch.Tensor:
        A = self._check(A, fitted=True)
        return nnls(A, self._fitted_w(A))


# -- PCA and ICA ------------------------------------------------------------------------------------
def _flip_rows(v: torch.Tensor) -> torch.Tensor:
    """scikit-learn's ``svd_flip(u_based_decision=False)``: each row's largest-magnitude entry positive."""
    idx = v.abs().argmax(1, keepdim=True)
    return v * torch.sign(v.gather(1, idx))


@FACTORIZATIONS.register("pca", paper="Pearson 1901; Hotelling 1933 (as in Fel et al., NeurIPS 2023)")
class PCA(Factorization):
    """Principal component analysis: ``W`` the top-r right singular vectors of the centred activations,
    ``U = (A - mean) W^T``.

    The sign of each component follows scikit-learn's ``svd_flip`` (its largest-magnitude entry is
    positive), so components equal scikit-learn's ``PCA(...).components_``. The decomposition is done in
    float64 (from the Gram matrix, :func:`~workbench.concepts.nmf_solvers.top_singular`) and stored in the
    input's compute dtype.

    Attributes
    ----------
    explained_variance
        (r,) variance along each component (``S^2 / (n - 1)``, as scikit-learn).
    """

    nonnegative_codes = False

    def __init__(self, n_concepts: int):
        super().__init__(n_concepts)
        self.explained_variance: torch.Tensor | None = None

    def fit(self, A: torch.Tensor) -> PCA:
        A = self._check(A, fitted=False)
        self._check_rank(A)
        dtype = _compute_dtype(A)
        a = f64(A.detach())
        mean = a.mean(0)
        _, s, vt = top_singular(a - mean, self.n_concepts)
        self._components = _flip_rows(vt).to(A.device, dtype)
        self.mean = mean.to(A.device, dtype)
        self.explained_variance = (s**2 / max(A.shape[0] - 1, 1)).to(A.device, dtype)
        return self

    def transform(self, A: torch.Tensor) -> torch.Tensor:
        A = self._check(A, fitted=True)
        A = A.to(_compute_dtype(A))
        return (A - self.mean.to(A.device)) @ self._fitted_w(A).T


def _sym_decorrelation(w: torch.Tensor) -> torch.Tensor:
    """``(W W^T)^{-1/2} W``: the rows made orthonormal, symmetrically (none favoured)."""
    s, u = torch.linalg.eigh(w @ w.T)
    s = s.clamp_min(torch.finfo(w.dtype).tiny)
    return (u * s.rsqrt()) @ u.T @ w


@FACTORIZATIONS.register(
    "ica",
    paper="Hyvarinen 1999, Fast and robust fixed-point algorithms for ICA (IEEE TNN 10(3)); Fel et al., NeurIPS 2023",
)
class ICA(Factorization):
    """Independent component analysis by FastICA (Hyvarinen 1999): logcosh contrast, parallel (symmetric)
    decorrelation, whitening to unit variance, as scikit-learn's ``FastICA`` defaults.

    ``A - mean ~= U W`` with ``U`` the independent sources (unit variance) and ``W`` (r, d) the mixing
    directions (scikit-learn's ``mixing_.T``): the concepts. ``unmixing`` (r, d) is scikit-learn's
    ``components_``, the filters with ``U = (A - mean) unmixing^T``. Whitening is PCA on the centred data
    (sign convention of scikit-learn: each whitening direction's first entry positive); the fit runs in
    float64 and is stored in the input's compute dtype. Given the same ``w_init``, the result equals
    scikit-learn's up to rounding.

    Parameters
    ----------
    n_concepts
        Number of sources, at most min(n, d).
    seed
        Seed of the initial unmixing matrix (standard normal, r x r) when ``w_init`` is None.
    max_iter, tol
        As scikit-learn: stop when ``max |(|<w_new, w_old>| - 1)| < tol`` over the rows.
    w_init
        Initial unmixing matrix (r, r), e.g. to reproduce a scikit-learn run.
    """

    nonnegative_codes = False

    def __init__(
        self,
        n_concepts: int,
        seed: int = 0,
        max_iter: int = 200,
        tol: float = 1e-4,
        w_init: torch.Tensor | None = None,
    ):
        super().__init__(n_concepts)
        self.seed = seed
        self.max_iter = check_int(max_iter, "max_iter")
        self.tol = _check_tol(tol)
        if w_init is not None:
            w_init = as_tensor(w_init)
            if not isinstance(w_init, torch.Tensor) or tuple(w_init.shape) != (n_concepts, n_concepts):
                raise ValueError(
                    f"w_init: expected shape {(n_concepts, n_concepts)}, got {getattr(w_init, 'shape', w_init)}"
                )
        self.w_init = w_init
        self.unmixing: torch.Tensor | None = None
        self.n_iter: int | None = None

    def fit(self, A: torch.Tensor) -> ICA:
        A = self._check(A, fitted=False)
        self._check_rank(A)
        dtype, r, n = _compute_dtype(A), self.n_concepts, A.shape[0]
        a = f64(A.detach())
        mean = a.mean(0)
        xc = a - mean
        _, s, vt = top_singular(xc, r)
        vt = vt * torch.sign(vt[:, :1])  # scikit-learn: u *= sign(u[0])
        k = vt / s[:, None]  # whitening (r, d)
        x1 = (k @ xc.T) * n**0.5  # (r, n), white
        if self.w_init is None:
            w0 = torch.randn(r, r, generator=make_generator(self.seed), dtype=torch.float64)
        else:
            w0 = self.w_init.detach().double().cpu()
        w = _sym_decorrelation(w0.to(a.device))
        self.n_iter = 0
        for _ in range(self.max_iter):
            self.n_iter += 1
            gx = torch.tanh(w @ x1)
            g_x = (1 - gx**2).mean(1)
            w1 = _sym_decorrelation(gx @ x1.T / n - g_x[:, None] * w)
            lim = float(((w1 * w).sum(1).abs() - 1).abs().max())
            w = w1
            if lim < self.tol:
                break
        sources = w @ x1 / n**0.5  # = W K (A - mean)^T
        w = w / sources.std(1, correction=0)[:, None]
        unmixing = w @ k
        self.unmixing = unmixing.to(A.device, dtype)
        self._components = torch.linalg.pinv(unmixing).T.contiguous().to(A.device, dtype)
        self.mean = mean.to(A.device, dtype)
        return self

    def transform(self, A: torch.Tensor) -> torch.Tensor:
        A = self._check(A, fitted=True)
        A = A.to(_compute_dtype(A))
        return (A - self.mean.to(A.device)) @ self.unmixing.to(A.device, A.dtype).T


# -- clustering, fixed dictionaries ---------------------------------------------------------------------
@FACTORIZATIONS.register(
    "kmeans",
    paper="ACE: Ghorbani, Wexler, Zou & Kim 2019, Towards automatic concept-based explanations (NeurIPS)",
)
class KMeans(Factorization):
    """k-means concepts (ACE): ``W`` the centroids, ``U`` the one-hot assignment to the nearest one.

    Lloyd's algorithm with k-means++ seeding, :func:`workbench.sae.archetypal.kmeans`. ``U @ W`` is then
    each row's centroid. ``codes="distance"`` returns the Euclidean distance to every centroid instead
    (a soft, non-negative description; small means close, so it is not a reconstruction code).

    Parameters
    ----------
    n_concepts
        Number of clusters, at most n.
    seed
        Seed of the k-means++ initialisation.
    max_iter
        Lloyd iterations (stops earlier once the assignment no longer changes).
    codes
        ``"onehot"`` or ``"distance"``.

    Attributes
    ----------
    inertia
        Sum of squared distances of the fitted rows to their centroid (scikit-learn's ``inertia_``).
    """

    nonnegative_codes = True
    CODES = ("onehot", "distance")

    def __init__(self, n_concepts: int, seed: int = 0, max_iter: int = 300, codes: str = "onehot"):
        super().__init__(n_concepts)
        if codes not in self.CODES:
            raise ValueError(f"codes: expected one of {self.CODES}, got {codes!r}")
        self.seed, self.codes = seed, codes
        self.max_iter = check_int(max_iter, "max_iter")
        self.inertia: float | None = None

    def fit(self, A: torch.Tensor) -> KMeans:
        A = self._check(A, fitted=False)
        self._check_rank(A, limit=A.shape[0])
        a = A.detach().to(_compute_dtype(A))
        centroids = kmeans(a, self.n_concepts, iters=self.max_iter, seed=self.seed).to(a.dtype)
        self._components = centroids
        self.inertia = float(torch.cdist(a, centroids).pow(2).min(1).values.sum(dtype=torch.float64))
        return self

    def transform(self, A: torch.Tensor) -> torch.Tensor:
        A = self._check(A, fitted=True)
        A = A.to(_compute_dtype(A))
        dist = torch.cdist(A, self._fitted_w(A))
        if self.codes == "distance":
            return dist
        return torch.nn.functional.one_hot(dist.argmin(1), self.n_concepts).to(A.dtype)


@FACTORIZATIONS.register(
    "sparse_coding",
    paper="Olshausen & Field 1996 (Nature 381); Mairal et al. 2009 (ICML); Fel et al., NeurIPS 2023",
)
class SparseCoding(Factorization):
    """Sparse codes over a fixed dictionary: ``U = argmin 0.5 ||A - U D||^2 + 0.5 l2 ||U||^2 + l1 |U|_1``.

    Nothing is learned (``fit`` only checks the width): ``components`` is the given dictionary from the
    start. Codes by :func:`~workbench.concepts.nmf_solvers.sparse_encode` (coordinate descent with an exact
    solve on each row's support), non-negative by default, differentiable with respect to ``A``.

    Parameters
    ----------
    dictionary
        ``D`` (r, d), a tensor or a NumPy array (for example another method's concepts).
    l1
        Sparsity penalty, in the units of ``A D^T``: with unit-norm atoms, an atom whose correlation with
        a row's residual stays below ``l1`` gets a zero code.
    l2
        Ridge penalty.
    nonnegative
        Constrain the codes to be >= 0.
    """

    from_dictionary = True

    def __init__(
        self,
        dictionary: torch.Tensor,
        l1: float = 0.1,
        l2: float = 0.0,
        nonnegative: bool = True,
        max_iter: int = 500,
        tol: float = 1e-6,
    ):
        d = as_tensor(dictionary)
        if not isinstance(d, torch.Tensor) or d.ndim != 2 or not d.is_floating_point():
            shape = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
            raise ValueError(f"dictionary: expected a floating tensor (r, d), got {shape}")
        super().__init__(d.shape[0])
        self._components = d.detach()
        self.l1, self.l2 = _check_penalty(l1, "l1"), _check_penalty(l2, "l2")
        self.nonnegative = bool(nonnegative)
        self.nonnegative_codes = self.nonnegative
        self.max_iter = check_int(max_iter, "max_iter")
        self.tol = _check_tol(tol)

    def fit(self, A: torch.Tensor) -> SparseCoding:
        self._check(A, fitted=True)
        return self

    def transform(self, A: torch.Tensor) -> torch.Tensor:
        A = self._check(A, fitted=True)
        return sparse_encode(
            A, self._fitted_w(A), l1=self.l1, l2=self.l2, nonnegative=self.nonnegative, max_iter=self.max_iter,
            tol=self.tol,
        )  # fmt: skip


@FACTORIZATIONS.register("sae", paper="any workbench.sae dictionary (see workbench.sae.SAES for the papers)")
class SAEConcepts(Factorization):
    """A trained sparse autoencoder (any ``workbench.sae.SparseAutoencoder``) as a concept bank.

    ``transform`` is ``sae.encode`` (differentiable, run in eval mode on the SAE's device, returned on the
    input's), ``components`` is ``sae.dictionary`` and ``reconstruct`` is ``sae.decode`` (atoms plus the
    decoder bias). Codes are non-negative except for matching pursuit with signed selection.
    """

    from_dictionary = True

    def __init__(self, sae: torch.nn.Module):
        if not all(hasattr(sae, name) for name in ("encode", "decode", "dictionary", "n_atoms", "d")):
            raise ValueError(
                f"sae: expected a workbench.sae.SparseAutoencoder (encode, decode, dictionary), got {type(sae).__name__}"
            )
        super().__init__(sae.n_atoms)
        self.sae = sae
        self.nonnegative_codes = getattr(sae, "selection", "positive") != "abs"

    @property
    def components(self) -> torch.Tensor:
        return self.sae.dictionary.detach()

    @property
    def is_fitted(self) -> bool:
        return True

    def fit(self, A: torch.Tensor) -> SAEConcepts:
        self._check(A, fitted=True)
        return self

    def transform(self, A: torch.Tensor) -> torch.Tensor:
        A = self._check(A, fitted=True)
        p = next(self.sae.parameters(), None)
        with eval_mode(self.sae):
            codes = self.sae.encode(A.to(module_device(self.sae), p.dtype if p is not None else A.dtype))
        return codes.to(A.device)

    def reconstruct(self, U: torch.Tensor) -> torch.Tensor:
        U = as_tensor(U)
        if not isinstance(U, torch.Tensor) or U.ndim != 2 or U.shape[1] != self.n_concepts:
            shape = tuple(U.shape) if isinstance(U, torch.Tensor) else type(U).__name__
            raise ValueError(f"U: expected codes of shape (n, {self.n_concepts}), got {shape}")
        with eval_mode(self.sae):
            return self.sae.decode(U.to(module_device(self.sae), self.components.dtype)).to(U.device)


def create_factorization(name: str, n_concepts: int | None = None, **kwargs: Any) -> Factorization:
    """A factorization by its registered name (:data:`FACTORIZATIONS`), e.g. ``create_factorization("nmf", 10)``.

    Parameters
    ----------
    name
        A registered name (``"nmf"``, ``"semi_nmf"``, ``"convex_nmf"``, ``"pca"``, ``"ica"``, ``"kmeans"``,
        ``"sparse_coding"``, ``"sae"``); an unknown one fails with the closest names.
    n_concepts
        Number of concepts. For the factorizations built from a given dictionary (``sparse_coding``
        takes ``dictionary=``, ``sae`` takes ``sae=``) it may be None, and otherwise must equal the
        dictionary's size.
    kwargs
        The class's other parameters.
    """
    cls = FACTORIZATIONS.get(name)
    if cls.from_dictionary:
        out = cls(**kwargs)
        if n_concepts is not None and check_int(n_concepts, "n_concepts") != out.n_concepts:
            raise ValueError(
                f"n_concepts: {name!r} takes its concepts from the dictionary given, which has {out.n_concepts},"
                f" got n_concepts={n_concepts}"
            )
        return out
    if n_concepts is None:
        raise ValueError(f"n_concepts: {name!r} learns its concepts, say how many (an integer >= 1)")
    return cls(n_concepts, **kwargs)
