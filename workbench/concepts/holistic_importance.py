"""Concept importance by any attribution method on the concept coefficients (the holistic framework).

Fel, Boutin, Moayeri, Cadène, Béthune, Andéol, Chalvidal & Serre, *A Holistic Approach to Unifying
Automatic Concept Extraction and Concept Importance Estimation*, NeurIPS 2023 (arXiv:2306.07304).

A model is split at a layer, ``f = h o g``; a concept bank (any dictionary: NMF, PCA, k-means, an SAE)
writes the activation ``a = g(x)`` as ``a ~ U W``, ``U`` the concept coefficients. Concept importance is
then ordinary attribution with ``U`` as the input and ``head(U) = h(U W)`` as the model:

- ``"sobol"``: total Sobol indices of the ``r`` coefficients (CRAFT's estimator), through the samplers
  and estimators of :mod:`workbench.attribution` (one Sobol implementation in the package);
- ``"gradient_input"``, ``"saliency"``, ``"integrated_gradients"``: gradients of the target logit
  with respect to ``U``;
- ``"occlusion"``: the drop of the target logit when a concept is removed;
- ``"rise"``: ``E[score | concept kept]`` under random binary concept masks.

**Removing concept i** multiplies its coefficient by 0 at every position (per image codes (r,), per
position of a CNN map (r, H, W) or per ViT token (r, T)); perturbations act on all positions of a
concept together, so every method returns one number per image and concept, (N, r).

The paper's result (its section 4): when ``h`` is linear after the concept layer (a CNN's global
average pooling and its linear classifier), gradient x input on ``U`` equals occlusion of each concept
(both are the exact contribution ``u_i . (grad h)_i``), and ranking concepts by it is optimal for
C-Deletion and C-Insertion (:mod:`workbench.metrics.concept_fidelity`).

:func:`code_importance` is the engine (codes and a head); :func:`concept_importance` builds both from a
model, a layer, a concept bank and images (:func:`concept_space`) and calls it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from workbench._core.batching import default_batch_size, iter_batches
from workbench._core.devices import eval_mode
from workbench._core.progress import progress as _progress
from workbench._core.registry import Registry
from workbench._core.validation import (
    as_tensor,
    check_codes,
    check_images,
    check_int,
    check_targets,
    closest_names,
)
from workbench.attribution._base import finite_maps
from workbench.attribution.estimators import Estimator, Variance, resolve_estimator, total_indices
from workbench.attribution.gradients import gauss_legendre, score_gradients
from workbench.attribution.sampling import SamplerFn, binary_masks, resolve_sampler
from workbench.attribution.sobol_sensitivity import design_masks, sobol_design
from workbench.metrics.concept_fidelity import HOLISTIC, masked_code_scores
from workbench.models.model import Model

__all__ = [
    "CONCEPT_IMPORTANCE_METHODS",
    "ConceptHead",
    "ConceptSpace",
    "code_importance",
    "concept_importance",
    "concept_space",
    "layout_codes",
]

Head = Callable[[torch.Tensor], torch.Tensor]
ImportanceFn = Callable[..., torch.Tensor]

CONCEPT_IMPORTANCE_METHODS: Registry[ImportanceFn] = Registry("concept importance method")


def _positions(codes: torch.Tensor) -> torch.Tensor:
    """Sum an (N, r, *positions) tensor over its positions: (N, r)."""
    return codes.flatten(2).sum(-1) if codes.ndim > 2 else codes


# ----------------------------------------------------------------------------------------------------------
# The estimators: fn(head, codes (N, r, ...), targets (N,), *, options) -> (N, r)
# ----------------------------------------------------------------------------------------------------------


@CONCEPT_IMPORTANCE_METHODS.register(
    "sobol",
    paper="Fel et al., CRAFT, CVPR 2023; Fel et al., Look at the Variance!, NeurIPS 2021; " + HOLISTIC,
)
def sobol_importance(
    head: Head,
    codes: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int,
    nb_design: int = 32,
    sampler: str | SamplerFn = "halton_xplique",
    estimator: str | Estimator = "jansen",
    variance: Variance = "xplique",
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """Total Sobol indices of the concept coefficients (CRAFT): ``nb_design (r + 2)`` masked codes per
    image, the pick-freeze design ``[A; B; C_1..C_r]`` of :func:`~workbench.attribution.sobol_sensitivity.sobol_design`."""
    r = codes.shape[1]
    masks = design_masks(*sobol_design(sampler, nb_design, r, seed=seed, device=codes.device))
    scores = masked_code_scores(head, codes, targets, masks, batch_size=batch_size, progress=progress,
                                desc="concept sobol")  # fmt: skip
    return torch.stack([total_indices(f, nb_design, r, estimator, variance) for f in scores])


def _gradients(head, codes, targets, batch_size, progress, desc) -> torch.Tensor:
    grads = torch.empty_like(codes)
    batches = list(iter_batches(len(codes), batch_size))
    for sl in _progress(batches, enabled=progress, desc=desc):
        grads[sl] = score_gradients(head, codes[sl], targets[sl])
    return grads


@CONCEPT_IMPORTANCE_METHODS.register(
    "gradient_input",
    paper="Shrikumar et al., Learning Important Features Through Propagating Activation Differences, ICML 2017; "
    + HOLISTIC,
)
def gradient_input_importance(
    head: Head, codes: torch.Tensor, targets: torch.Tensor, *, batch_size: int, progress: bool = False
) -> torch.Tensor:
    """``u_i . d score / d u_i`` summed over positions: exact for a head linear in the codes."""
    return _positions(
        codes * _gradients(head, codes, targets, batch_size, progress, "concept gradient x input")
    )


@CONCEPT_IMPORTANCE_METHODS.register(
    "saliency",
    paper="Simonyan, Vedaldi & Zisserman, Deep Inside Convolutional Networks, ICLR workshop 2014; "
    + HOLISTIC,
)
def saliency_importance(
    head: Head, codes: torch.Tensor, targets: torch.Tensor, *, batch_size: int, progress: bool = False
) -> torch.Tensor:
    """``|d score / d u_i|`` summed over positions (blind to the coefficient's size: a concept absent from
    the image can weigh as much as one present)."""
    return _positions(_gradients(head, codes, targets, batch_size, progress, "concept saliency").abs())


@CONCEPT_IMPORTANCE_METHODS.register(
    "integrated_gradients",
    paper="Sundararajan, Taly & Yan, Axiomatic Attribution for Deep Networks, ICML 2017; " + HOLISTIC,
)
def integrated_gradients_importance(
    head: Head,
    codes: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int,
    steps: int = 16,
    progress: bool = False,
) -> torch.Tensor:
    """Integrated gradients from all-zero codes: ``u_i . int_0^1 d score / d u_i (a u) da`` summed over
    positions, with the ``steps``-point Gauss-Legendre rule of
    :func:`workbench.attribution.integrated_gradients` (the ``steps N`` interpolated codes are cut into
    batches mixing steps and images). Completeness: the importances of an image sum to
    ``score(u) - score(0)`` up to the quadrature error."""
    steps = check_int(steps, "steps")
    n = len(codes)
    alphas, weights = (t.to(device=codes.device, dtype=codes.dtype) for t in gauss_legendre(steps))
    total = torch.zeros_like(codes)
    expand = (1,) * (codes.ndim - 1)
    batches = list(iter_batches(steps * n, batch_size))
    for sl in _progress(batches, enabled=progress, desc="concept integrated gradients"):
        k = torch.arange(sl.start, sl.stop, device=codes.device)
        step, img = k // n, k % n
        grads = score_gradients(head, alphas[step].view(-1, *expand) * codes[img], targets[img])
        total.index_add_(0, img, grads * weights[step].view(-1, *expand))
    return _positions(codes * total)


@CONCEPT_IMPORTANCE_METHODS.register(
    "occlusion",
    paper="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014; " + HOLISTIC,
)
def occlusion_importance(
    head: Head, codes: torch.Tensor, targets: torch.Tensor, *, batch_size: int, progress: bool = False
) -> torch.Tensor:
    """``score(u) - score(u with concept i zeroed everywhere)``: ``r + 1`` head rows per image."""
    r = codes.shape[1]
    eye = torch.eye(r, device=codes.device, dtype=codes.dtype)
    masks = torch.cat([torch.ones(1, r, device=codes.device, dtype=codes.dtype), 1.0 - eye])
    scores = masked_code_scores(head, codes, targets, masks, batch_size=batch_size, progress=progress,
                                desc="concept occlusion")  # fmt: skip
    return scores[:, :1] - scores[:, 1:]


@CONCEPT_IMPORTANCE_METHODS.register(
    "rise",
    paper="Petsiuk, Das & Saenko, RISE: Randomized Input Sampling for Explanation of Black-box Models, BMVC 2018; "
    + HOLISTIC,
)
def rise_importance(
    head: Head,
    codes: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int,
    nb_samples: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """RISE's estimator on concepts: ``E[score | concept i kept]`` under ``nb_samples`` i.i.d.
    Bernoulli(1/2) concept masks (the same for every image), estimated by ``sum_m f_m M_mi / sum_m M_mi``
    (the masks where ``i`` is kept; 0 for a concept never kept)."""
    nb_samples = check_int(nb_samples, "nb_samples", 2)
    masks = binary_masks(
        "bernoulli", nb_samples, codes.shape[1], seed=seed, device=codes.device, dtype=codes.dtype
    )
    scores = masked_code_scores(head, codes, targets, masks, batch_size=batch_size, progress=progress,
                                desc="concept rise")  # fmt: skip
    return (scores @ masks) / masks.sum(0).clamp_min(1.0)


# ----------------------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------------------


def _options(fn: ImportanceFn, options: dict) -> dict:
    """The options ``fn`` accepts (all of them when it takes ``**kwargs``)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return options
    return {k: v for k, v in options.items() if k in params}


def code_importance(
    head: Head,
    codes: torch.Tensor,
    targets: torch.Tensor | int,
    method: str | ImportanceFn = "sobol",
    *,
    batch_size: int | None = None,
    nb_design: int = 32,
    sampler: str | SamplerFn = "halton_xplique",
    estimator: str | Estimator = "jansen",
    variance: Variance = "xplique",
    steps: int = 16,
    nb_samples: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """Importance of each concept for each image, by an attribution method on the concept coefficients.

    Fel et al., *A Holistic Approach to Unifying Automatic Concept Extraction and Concept Importance
    Estimation*, NeurIPS 2023: concept importance is attribution with the coefficients ``U`` as input.

    Parameters
    ----------
    head
        ``head(codes (M, r, *positions)) -> (M, K)`` logits; for a concept bank ``W`` at a layer,
        ``h(U W)`` in the layer's layout (:class:`ConceptHead`). Differentiable for the gradient methods.
    codes
        (N, r) per image, (N, r, H, W) per position of a CNN map, or (N, r, T) per ViT token (a tensor or a
        NumPy array); the positions of a concept are perturbed together.
    targets
        Class indices (N,) or one int; the explained score is the target's logit (no softmax).
    method
        A name of :data:`CONCEPT_IMPORTANCE_METHODS` (``"sobol"`` (default), ``"gradient_input"``,
        ``"saliency"``, ``"integrated_gradients"``, ``"occlusion"``, ``"rise"``) or
        ``fn(head, codes, targets, *, batch_size, ...) -> (N, r)``, which receives the options below that
        its signature names.
    batch_size
        The most rows of codes per head call (perturbations of several images share a batch); None picks
        it from the number of positions (:func:`workbench._core.batching.default_batch_size`).
    nb_design, sampler, estimator, variance
        Sobol: ``nb_design (r + 2)`` head rows per image; the sampler (default ``"halton_xplique"``,
        Xplique's CRAFT masks), the total-index estimator (default Jansen) and its variance
        (``"xplique"``: of ``f(A)`` only, Xplique's; or ``"pooled"``), see :mod:`workbench.attribution.estimators`.
    steps
        Integrated gradients: quadrature points (default 16).
    nb_samples
        RISE: random concept masks per image (default 256).
    seed
        Seeds the Sobol sampler (scrambled ones) and the RISE masks: same seed, same result.
    progress
        Show a progress bar over batches.

    Returns
    -------
    torch.Tensor
        (N, r) float32 importances on the codes' device, never NaN. Higher means more important; the
        gradient methods, occlusion and RISE are signed (RISE is a score level, not a difference).

    References
    ----------
    Fel, T. et al. *A Holistic Approach to Unifying Automatic Concept Extraction and Concept Importance
    Estimation*. NeurIPS 2023. Fel, T. et al. *CRAFT: Concept Recursive Activation FacTorization for
    Explainability*. CVPR 2023.
    """
    codes = check_codes(codes)
    n = len(codes)
    targets = check_targets(targets, n).to(codes.device)
    if callable(method):
        fn = method
    elif isinstance(method, str):
        fn = CONCEPT_IMPORTANCE_METHODS.get(method) if method in CONCEPT_IMPORTANCE_METHODS else None
        if fn is None:
            raise ValueError(
                f"method: unknown concept importance method {method!r}; closest:"
                f" {closest_names(method, CONCEPT_IMPORTANCE_METHODS.names())}"
                f" (valid: {CONCEPT_IMPORTANCE_METHODS.names()} or a callable)"
            )
    else:
        raise ValueError(f"method: expected a name or a callable, got {type(method).__name__}")
    if batch_size is None:
        positions = codes.shape[2:]
        # the rows per call that suit a map of that many positions (tokens and pooled codes: (T, 1), (1, 1))
        size = (
            (positions[0], positions[1]) if len(positions) == 2 else (int(torch.Size(positions).numel()), 1)
        )
        batch_size = default_batch_size(size, codes.device)
    batch_size = check_int(batch_size, "batch_size")
    resolve_sampler(sampler)
    resolve_estimator(estimator)
    check_int(nb_design, "nb_design", 2)
    # one head call on one image: the head's output shape and the range of the targets, before any work
    with torch.no_grad():
        logits = head(codes[:1])
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != 1:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"head: expected (M, K) logits for (M, r, ...) codes, got {got} for M = 1")
    check_targets(targets, n, logits.shape[1])
    options = dict(batch_size=batch_size, nb_design=nb_design, sampler=sampler, estimator=estimator,
                   variance=variance, steps=steps, nb_samples=nb_samples, seed=seed, progress=progress)  # fmt: skip
    out = torch.as_tensor(fn(head, codes, targets, **_options(fn, options)))
    if tuple(out.shape) != (n, codes.shape[1]):
        raise ValueError(
            f"method: expected importances of shape {(n, codes.shape[1])}, got {tuple(out.shape)}"
        )
    return finite_maps(out.detach().float()).to(codes.device)


# ----------------------------------------------------------------------------------------------------------
# From a model, a layer and a concept bank
# ----------------------------------------------------------------------------------------------------------


def _components(concepts) -> torch.Tensor:
    if isinstance(concepts, torch.Tensor):
        W = concepts
    else:
        W = as_tensor(getattr(concepts, "components", None))
    if not isinstance(W, torch.Tensor) or W.ndim != 2:
        got = tuple(W.shape) if isinstance(W, torch.Tensor) else type(concepts).__name__
        raise ValueError(
            "concepts: expected a concept bank with .transform, .reconstruct and .components (r, d) (a fitted"
            f" workbench.concepts factorization) or a tensor W (r, d), got {got}"
        )
    return W


def layout_codes(
    activations: torch.Tensor, encode_rows: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Codes in the layer's layout from activations in it: rows of ``d`` features (one per position),
    encoded by ``encode_rows((n, d)) -> (n, r)``, and put back: (N, d, H, W) -> (N, r, H, W), tokens
    (N, T, d) -> (N, r, T), (N, d) -> (N, r). The inverse of :meth:`ConceptHead.activation`."""
    rows = activations.movedim(1, -1) if activations.ndim == 4 else activations  # channel-last
    u = encode_rows(rows.reshape(-1, rows.shape[-1]))
    return u.reshape(*rows.shape[:-1], u.shape[-1]).movedim(-1, 1)


class ConceptHead:
    """``head(codes) = h(activation rebuilt from the codes)``: the model above a concept layer, as a
    function of the concept coefficients.

    Codes (M, r) give rows (M, d) (pooled activations); (M, r, H, W) give a CNN map (M, d, H, W) rebuilt
    position by position; (M, r, T) give tokens (M, T, d). Each row is rebuilt by ``concepts.reconstruct``
    (rows (n, r) -> (n, d)), or ``rows @ W`` for a tensor ``W`` (r, d). Differentiable when the
    reconstruction is (``U @ W`` is).

    Parameters
    ----------
    h
        The model above the layer, ``h(activation) -> (M, K)`` (the ``h`` of :meth:`Model.split`).
    concepts
        A concept bank with ``reconstruct`` (and ``components``), or the matrix ``W`` (r, d).
    """

    def __init__(self, h: Head, concepts):
        self.h = h
        self.components = _components(concepts)
        self.concepts = concepts
        self.r, self.d = self.components.shape
        reconstruct = getattr(concepts, "reconstruct", None)
        self._reconstruct = reconstruct if callable(reconstruct) else None

    def rows(self, u: torch.Tensor) -> torch.Tensor:
        """Activation rows (n, d) from coefficient rows (n, r)."""
        if self._reconstruct is not None:
            return as_tensor(self._reconstruct(u))
        W = self.components.to(device=u.device, dtype=u.dtype)
        return u @ W

    def activation(self, codes: torch.Tensor) -> torch.Tensor:
        """The rebuilt activation in the layer's layout: (M, d), (M, d, H, W) or (M, T, d)."""
        if codes.ndim < 2 or codes.shape[1] != self.r:
            raise ValueError(
                f"codes: expected (M, {self.r}, ...) coefficients of the {self.r} concepts, got {tuple(codes.shape)}"
            )
        m, positions = codes.shape[0], codes.shape[2:]
        u = codes.movedim(1, -1).reshape(-1, self.r)  # one row per image and position
        a = self.rows(u).reshape(m, *positions, -1)
        return a.movedim(-1, 1) if codes.ndim == 4 else a  # CNN maps channel-first; tokens stay (M, T, d)

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        return self.h(self.activation(codes))

    def __repr__(self) -> str:
        return f"ConceptHead(r={self.r}, d={self.d}, concepts={type(self.concepts).__name__})"


@dataclass
class ConceptSpace:
    """The images of :func:`concept_space` in concept space.

    Attributes
    ----------
    codes : torch.Tensor
        (N, r, H, W) for a CNN layer, (N, r, T) for ViT tokens, (N, r) for a pooled layer: the concept
        coefficients of each position, on the model's device.
    head : ConceptHead
        ``head(codes) -> logits``: the model above the layer on the rebuilt activation.
    layer : str
        The split layer.
    """

    codes: torch.Tensor
    head: ConceptHead
    layer: str


def _feature_dim(a: torch.Tensor, layer: str) -> int:
    if a.ndim not in (2, 3, 4):
        raise ValueError(
            f"layer {layer!r}: expected activations (N, C), (N, T, C) or (N, C, H, W), got shape {tuple(a.shape)}"
        )
    return a.shape[-1] if a.ndim == 3 else a.shape[1]


def concept_space(
    model: Model, layer: str, concepts, images: torch.Tensor, *, batch_size: int | None = None
) -> ConceptSpace:
    """Split ``model`` at ``layer`` and write the images' activations in the concept bank's coefficients.

    ``g, h = model.split(layer)``; the activations ``g(images)`` are cut into rows of ``d`` features (one
    per position: (N H W, C) for a CNN map, (N T, C) for ViT tokens, (N, C) for pooled features),
    ``concepts.transform(rows)`` gives their coefficients (n, r), reshaped to codes (N, r, H, W),
    (N, r, T) or (N, r). The head rebuilds the activation with ``concepts.reconstruct`` and runs ``h``.

    Parameters
    ----------
    model
        A workbench :class:`~workbench.models.Model` (it splits at any of ``model.layers()``).
    layer
        The split layer; an unknown name fails with the closest valid names.
    concepts
        A fitted concept bank with ``transform(A (n, d)) -> U (n, r)``, ``reconstruct(U) -> (n, d)`` and
        ``components`` (r, d) (the factorizations of :mod:`workbench.concepts`, or any object with them).
        A bare ``W`` tensor has no ``transform``: build its head with :class:`ConceptHead` and compute the
        codes yourself.
    images
        (N, C, H, W) pixel-space images in [0, 1].
    batch_size
        Images per pass of ``g`` (and per ``transform`` call); None picks it from the image size.

    Returns
    -------
    ConceptSpace
        ``codes``, ``head`` and ``layer``.
    """
    if not isinstance(model, Model):
        raise ValueError(
            f"model: expected a workbench Model (it splits at a layer), got {type(model).__name__};"
            " wrap a network with workbench.models.Model, or use code_importance with your own head"
        )
    transform = getattr(concepts, "transform", None)
    if not callable(transform):
        raise ValueError(
            f"concepts: expected a fitted concept bank with .transform (a workbench.concepts factorization),"
            f" got {type(concepts).__name__}; for a fixed W (r, d), compute the codes yourself and call"
            " code_importance(ConceptHead(h, W), codes, targets)"
        )
    W = _components(concepts)
    x = check_images(images, channels=model.input_size[0]).to(model.device)
    g, h = model.split(layer)
    batch_size = default_batch_size(x.shape[-2:], x.device) if batch_size is None else batch_size
    batch_size = check_int(batch_size, "batch_size")
    r, d = W.shape

    def encode_rows(rows: torch.Tensor) -> torch.Tensor:
        u = as_tensor(transform(rows))
        if not isinstance(u, torch.Tensor) or tuple(u.shape) != (len(rows), r):
            got = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
            raise ValueError(f"concepts.transform: expected codes ({len(rows)}, {r}), got {got}")
        return u.detach().to(device=x.device, dtype=torch.float32)

    codes = []
    with eval_mode(model), eval_mode(g):
        for sl in iter_batches(len(x), batch_size):
            with torch.no_grad():
                a = g(x[sl])
            c = _feature_dim(a, layer)
            if c != d:
                raise ValueError(
                    f"concepts: the bank has d = {d} features per row, but layer {layer!r} gives {c}"
                    f" (activation shape {tuple(a.shape)}); fit the concepts on this layer's activations"
                )
            codes.append(layout_codes(a, encode_rows))
    return ConceptSpace(codes=torch.cat(codes), head=ConceptHead(h, concepts), layer=layer)


def concept_importance(
    model: Model,
    layer: str,
    concepts,
    images: torch.Tensor,
    targets: torch.Tensor | int,
    method: str | ImportanceFn = "sobol",
    *,
    batch_size: int | None = None,
    **method_kwargs,
) -> torch.Tensor:
    """Concept importance (N, r) of a concept bank at a layer, by any attribution method on the concept
    coefficients (Fel et al., NeurIPS 2023: the holistic framework's one function).

    Builds the codes and the head with :func:`concept_space` and calls :func:`code_importance`.

    Parameters
    ----------
    model
        A workbench :class:`~workbench.models.Model`.
    layer
        The layer the concepts were extracted at (one of ``model.layers()``).
    concepts
        A fitted concept bank: ``transform``, ``reconstruct`` and ``components`` (r, d).
    images
        (N, C, H, W) pixel-space images in [0, 1].
    targets
        Class indices (N,) or one int, within the model's classes.
    method
        ``"sobol"`` (default), ``"gradient_input"``, ``"saliency"``, ``"integrated_gradients"``,
        ``"occlusion"``, ``"rise"`` or a callable (see :func:`code_importance`).
    batch_size
        Bounds every pass of ``g`` (images) and of the head (rows of codes); None picks defaults.
    **method_kwargs
        The options of :func:`code_importance` (``nb_design``, ``sampler``, ``estimator``, ``variance``,
        ``steps``, ``nb_samples``, ``seed``, ``progress``).

    Returns
    -------
    torch.Tensor
        (N, r) float32 importances on the model's device.

    References
    ----------
    Fel, T. et al. *A Holistic Approach to Unifying Automatic Concept Extraction and Concept Importance
    Estimation*. NeurIPS 2023.
    """
    if isinstance(model, Model):  # targets fail before any forward pass
        n = len(check_images(images, channels=model.input_size[0]))
        check_targets(targets, n, model.num_classes)
    space = concept_space(model, layer, concepts, images, batch_size=batch_size)
    with eval_mode(model):
        return code_importance(
            space.head, space.codes, targets, method, batch_size=batch_size, **method_kwargs
        )
