"""CRAFT: concepts of a class as a factorization of crop activations, their importance, maps and recursion.

Fel et al., CRAFT: Concept Recursive Activation FacTorization for Explainability, CVPR 2023.

A model is split at ``layer`` into g (image -> activation) and h (activation -> logits). Crops of the
images of one class are resized to the model's input size and passed through g; their activations,
averaged over space (CNN) or over tokens (ViT), form A (n_crops, d) >= 0, factorized as A ~ U W with
a non-negative dictionary W (the concepts, (r, d)) and codes U. A concept's importance is the total
Sobol index of its coefficient, perturbed at every position of an image's activation map, through
h(U W); its map is where its coefficient lives in an image (the codes per position, or their gradient
with respect to the pixels through the implicit NNLS solution). The paper's recursion decomposes an
ambiguous concept at an earlier layer, using the crops where it dominates; the concepts form a tree.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from workbench._core.batching import iter_batches
from workbench._core.devices import eval_mode
from workbench._core.progress import progress as _progress
from workbench._core.serialization import atomic_write_bytes, load_result, save_result
from workbench._core.validation import check_fraction, check_images, check_int, closest_names
from workbench.concepts.crops import grid_crops, random_crops
from workbench.concepts.dictionary_learning import FACTORIZATIONS, NMF, Factorization, create_factorization
from workbench.concepts.holistic_importance import ConceptHead, code_importance, layout_codes
from workbench.concepts.nmf_solvers import nnls
from workbench.models.model import Model
from workbench.models.scoring import predict

__all__ = ["ConceptTree", "Craft", "CraftResult"]

_PAPER = "Fel et al., CRAFT: Concept Recursive Activation FacTorization for Explainability, CVPR 2023"
POOLINGS = ("mean", "cls")
CROPPINGS = ("grid", "random")
MAP_METHODS = ("codes", "gradient")
AMBIGUITY_METHODS = ("labels", "importance")
# NMF stopping rule for CRAFT's default factorization (see _make_factorization)
NMF_TOL, NMF_MAX_ITER = 1e-7, 2000


@dataclass
class ConceptTree:
    """A node of CRAFT's concept tree (the root stands for the whole decomposition at one layer).

    Its :meth:`to_dict` is the node format of :class:`~workbench.widgets.ConceptGallery`'s tree.

    Attributes
    ----------
    concept
        The concept's index in its decomposition (None at the root).
    layer
        The layer the concept lives at.
    class_id
        The class the decomposition explains.
    importance
        The concept's Sobol importance for ``class_id`` (None at the root or when not computed).
    ambiguity
        Its ambiguity score in [0, 1] (None when not computed), see :meth:`Craft.ambiguity`.
    crops
        Its top crops, by decreasing coefficient, as indices into the *root's* crops (so a widget reads
        every crop of the tree from one array); at the root, all the crops of the decomposition.
    n_crops
        How many crops the concept owns (its coefficient is the largest of the crop's codes).
    children
        The sub-concepts found by :meth:`Craft.refine` at an earlier layer (the root: the concepts).
    """

    concept: int | None
    layer: str
    class_id: int
    importance: float | None = None
    ambiguity: float | None = None
    crops: list[int] = field(default_factory=list)
    n_crops: int = 0
    children: list[ConceptTree] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able nested dict (keys: the attribute names)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "children"}
        out["crops"] = list(self.crops)
        out["children"] = [c.to_dict() for c in self.children]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConceptTree:
        """The tree :meth:`to_dict` described."""
        kids = [cls.from_dict(c) for c in d.get("children", [])]
        return cls(**{k: v for k, v in d.items() if k != "children"}, children=kids)

    def walk(self) -> list[ConceptTree]:
        """Every node, depth first (this one first)."""
        return [self] + [n for c in self.children for n in c.walk()]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tree as JSON to ``path`` (``.json`` added)."""
        path = Path(path).with_suffix(".json")
        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=1).encode())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ConceptTree:
        """Read what :meth:`save` wrote."""
        return cls.from_dict(json.loads(Path(path).with_suffix(".json").read_text()))


class Craft:
    """CRAFT concept extraction for one class, with importance, concept maps and recursion.

    Parameters
    ----------
    model
        A workbench :class:`~workbench.models.Model` (pixel-space input), split at ``layer``.
    layer
        A split point (``model.layers()``); its activations must be >= 0 for NMF (the output of a
        ReLU: a ResNet stage such as ``"layer4"``). An unknown name fails with the closest valid ones.
    n_concepts
        r, the number of concepts.
    patch_size
        Side of the crops in pixels; crops are bilinearly resized (``align_corners=False``) to the
        model's input size before g, as in Xplique.
    stride
        Grid step, default ``int(0.8 * patch_size)`` (see :func:`~workbench.concepts.crops.grid_crops`).
    crops
        ``"grid"`` (Xplique's regular grid, its right and bottom remainders uncovered) or ``"random"``
        (``n_crops_per_image`` uniformly placed crops per image, seeded).
    n_crops_per_image
        For ``crops="random"``; default: as many as the grid gives.
    batch_size
        Images (or crops) per forward pass, everywhere.
    factorization
        ``"nmf"`` (default) or another name of :data:`~workbench.concepts.FACTORIZATIONS`, or a
        :class:`~workbench.concepts.Factorization` instance (used as given; then ``alpha`` is ignored).
    alpha
        NMF's L2 regularization with scikit-learn's scaling (``alpha_W``, ``alpha_H="same"``):
        ``l2_u = alpha * n_features`` on the codes, ``l2_w = alpha * n_crops`` on the concepts; the
        codes of :meth:`transform` are the ridge NNLS with the same ``l2_u``.
    pooling
        How a ViT's tokens (N, T, C) become one row per crop: ``"mean"`` (patch tokens averaged, the
        prefix tokens left out) or ``"cls"`` (the first token). CNN maps are always averaged over space.
    seed
        Seeds the factorization's initialization, random crops and the Sobol design.
    progress
        Show progress bars over the forward passes.

    Attributes
    ----------
    crops : torch.Tensor
        (M, C, p, p) the crops (before resizing); set by :meth:`fit`, like every attribute below.
    crop_positions : torch.Tensor
        (M, 3) int64: image index, top, left of each crop in the fitted images.
    crop_activations : torch.Tensor
        (M, d) A, the pooled activations of the resized crops.
    crop_codes : torch.Tensor
        (M, r) U, the crops' codes (:meth:`encode` of A).
    concepts : torch.Tensor
        (r, d) W, the concept bank.
    class_id : int
        The class the concepts explain.
    images : torch.Tensor
        The fitted images (a reference, not a copy).
    factorization_ : Factorization
        The fitted factorization.
    importances : torch.Tensor or None
        (r,) the last Sobol :meth:`importance` of the fitted images for ``class_id``.
    children : dict
        Concept id -> the child :class:`Craft` that :meth:`refine` fitted.

    Notes
    -----
    Peer defaults. Xplique's ``CraftTorch`` (2.0.2) crops with ``unfold`` at stride ``int(0.8 * patch)``
    (ours too: the same crops in the same order, tested bit for bit), resizes crops to the input size
    (ours too), fits scikit-learn's NMF with ``alpha_W=1e-2`` (our ``alpha=1e-2``, same scaling), ranks
    concepts by the Jansen total Sobol index over ``nb_design=32`` unscrambled Halton designs applied to
    the codes of every position (our :meth:`importance` defaults, through
    :func:`~workbench.concepts.code_importance`), with a patch of 64 at 224 px (ours too). Differences:

    - our NMF runs to convergence (float64 HALS, relative decrease below 1e-7 per sweep, at most 2000
      sweeps); Xplique's stops at scikit-learn's 200 iterations. On its fixture: objective 95.56 against
      96.06, relative error 0.0546 against 0.0567 (0.0499 without the regularization), and four of five
      concepts match (cosine >= 0.98); the fifth, half-way along a flat direction of the objective when
      Xplique stops, ends elsewhere (cosine 0.54);
    - it is deterministic per ``seed`` (Xplique's NMF exposes no ``random_state``: numpy's global RNG);
    - our codes are the exact ridge NNLS; Xplique's coordinate descent stops at tol 1e-4, within 5e-3
      of it (99.9 % of positions within 2.6e-3).

    References
    ----------
    Fel, Picard, Bethune, Boissin, Vigouroux, Colin, Cadène & Serre, CRAFT: Concept Recursive
    Activation FacTorization for Explainability, CVPR 2023.
    """

    def __init__(
        self,
        model: Model,
        layer: str,
        n_concepts: int = 10,
        patch_size: int = 64,
        stride: int | None = None,
        crops: str = "grid",
        n_crops_per_image: int | None = None,
        batch_size: int = 64,
        factorization: str | Factorization = "nmf",
        alpha: float = 1e-2,
        pooling: str = "mean",
        seed: int = 0,
        progress: bool = False,
    ):
        if not isinstance(model, Model):
            raise ValueError(
                f"model: expected a workbench Model (load_model(...)), got {type(model).__name__}"
            )
        self.model, self.layer = model, layer
        self._g, self._h = model.split(layer)  # KeyError naming the closest layers for an unknown name
        self.n_concepts = check_int(n_concepts, "n_concepts")
        self.patch_size = check_int(patch_size, "patch_size")
        self.stride = None if stride is None else check_int(stride, "stride")
        if crops not in CROPPINGS:
            raise ValueError(f"crops: expected one of {CROPPINGS}, got {crops!r}")
        self.crop_mode = crops
        self.n_crops_per_image = (
            None if n_crops_per_image is None else check_int(n_crops_per_image, "n_crops_per_image")
        )
        self.batch_size = check_int(batch_size, "batch_size")
        if not isinstance(factorization, str | Factorization):
            raise ValueError(
                f"factorization: expected a name or a Factorization instance, got {type(factorization).__name__}"
            )
        if isinstance(factorization, str) and factorization not in FACTORIZATIONS:
            raise ValueError(
                f"factorization: unknown name {factorization!r}; closest:"
                f" {closest_names(factorization, FACTORIZATIONS.names())} (valid: {FACTORIZATIONS.names()})"
            )
        self.factorization = factorization
        self.alpha = check_fraction(alpha, "alpha", 0.0, math.inf, (True, False))
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.seed = check_int(seed, "seed", minimum=0)
        self.progress = bool(progress)
        self.class_id: int | None = None
        self.importances: torch.Tensor | None = None
        self.children: dict[int, Craft] = {}
        self.parent: Craft | None = None
        self.parent_concept: int | None = None
        # indices of this decomposition's crops among the root's crops (the identity at the root)
        self.root_crop_indices: torch.Tensor | None = None

    def __repr__(self) -> str:
        state = f"class_id={self.class_id}, crops={len(self.crops)}" if self.fitted else "unfitted"
        return f"Craft({self.model.spec}, layer={self.layer!r}, n_concepts={self.n_concepts}, {state})"

    # -- checks -----------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return getattr(self, "concepts", None) is not None

    def _require_fit(self) -> None:
        if not self.fitted:
            raise RuntimeError("this Craft is not fitted yet: call fit(images, class_id) first")

    def _check_images(self, images: torch.Tensor, name: str = "images") -> torch.Tensor:
        return check_images(images, name, channels=self.model.input_size[0])

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        """Images (or crops) at the model's input size (bilinear, ``align_corners=False``, as the crops of
        :meth:`fit`): the concepts were learned at that scale."""
        size = tuple(self.model.input_size[1:])
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def _check_class(self, class_id: int) -> int:
        class_id = check_int(class_id, "class_id", minimum=0)
        k = self.model.num_classes
        if class_id >= k:
            raise ValueError(f"class_id: expected a class index in [0, {k - 1}], got {class_id}")
        return class_id

    # -- activations --------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.device

    def _layout(self, acts: torch.Tensor) -> str:
        return {4: "map", 3: "tokens", 2: "vector"}.get(acts.ndim, "other")

    def _prefix_tokens(self, n_tokens: int) -> int:
        n = getattr(self.model.net, "num_prefix_tokens", None)
        if isinstance(n, int):
            return n
        return n_tokens - math.isqrt(n_tokens) ** 2

    def _pool(self, acts: torch.Tensor) -> torch.Tensor:
        layout = self._layout(acts)
        if layout == "map":
            if self.pooling == "cls":
                raise ValueError(
                    f"pooling='cls' needs token activations (N, T, C); {self.layer!r} gives maps"
                )
            return acts.mean((2, 3))
        if layout == "tokens":
            return (
                acts[:, 0] if self.pooling == "cls" else acts[:, self._prefix_tokens(acts.shape[1]) :].mean(1)
            )
        if layout == "vector":
            return acts
        raise ValueError(f"layer {self.layer!r}: unsupported activation shape {tuple(acts.shape)}")

    def crop_activations_of(self, crops: torch.Tensor) -> torch.Tensor:
        """Pooled activations (M, d) of crops: each resized to the input size (bilinear), then g."""
        rows = []
        with eval_mode(self.model), torch.inference_mode():
            batches = list(iter_batches(len(crops), self.batch_size))
            for sl in _progress(batches, enabled=self.progress, desc="CRAFT crops"):
                acts = self._g(self._resize(crops[sl].to(self.device)))
                rows.append(self._pool(acts))
        return torch.cat(rows)

    def activations(self, images: torch.Tensor) -> torch.Tensor:
        """g's activations of images (resized to the model's input size when they are not), in the
        layer's layout: (N, d, h, w), (N, T, d) or (N, d)."""
        images = self._check_images(images)
        outs = []
        with eval_mode(self.model), torch.inference_mode():
            for sl in iter_batches(len(images), self.batch_size):
                outs.append(self._g(self._resize(images[sl].to(self.device))))
        return torch.cat(outs)

    # -- fit ----------------------------------------------------------------------------------------
    def _make_factorization(self, n_samples: int, n_features: int) -> Factorization:
        f = self.factorization
        if isinstance(f, Factorization):
            return f
        if f == "nmf":
            # run to convergence: the relative decrease per sweep of this problem falls below 1e-6 long
            # before its optimum (on Xplique's fixture: objective 96.06 at tol 1e-6, 95.56 at 1e-7 after
            # 934 sweeps; float32 stalls at 96.07, hence the float64 fit)
            return NMF(
                self.n_concepts, max_iter=NMF_MAX_ITER, tol=NMF_TOL, seed=self.seed,
                l2_u=self.alpha * n_features, l2_w=self.alpha * n_samples,
            )  # fmt: skip
        takes_seed = "seed" in inspect.signature(FACTORIZATIONS.get(f)).parameters
        return create_factorization(f, self.n_concepts, **({"seed": self.seed} if takes_seed else {}))

    def fit(self, images: torch.Tensor, class_id: int) -> Craft:
        """Crop ``images`` (of class ``class_id``), compute the crops' activations and factorize them.

        Parameters
        ----------
        images
            (N, C, H, W) in [0, 1], at the model's input size; usually images of ``class_id``.
        class_id
            The class the concepts explain (used by :meth:`importance` and the tree).

        Returns
        -------
        Craft
            self, with ``crops``, ``crop_positions``, ``crop_activations``, ``crop_codes`` and ``concepts``.
        """
        images = self._check_images(images)
        class_id = self._check_class(class_id)
        p = self.patch_size
        if self.crop_mode == "grid":
            crops, positions = grid_crops(images, p, self.stride)
        else:
            k = self.n_crops_per_image or len(grid_crops(images[:1], p, self.stride)[1])
            crops, positions = random_crops(images, p, k, seed=self.seed)
        self.images = images
        self.root_crop_indices = torch.arange(len(crops))
        return self._fit_crops(crops, positions, class_id)

    def _fit_crops(self, crops: torch.Tensor, positions: torch.Tensor, class_id: int) -> Craft:
        if len(crops) < self.n_concepts:
            raise ValueError(
                f"n_concepts: {self.n_concepts} concepts need at least as many crops, got {len(crops)}"
                " (more images, a smaller patch_size or stride, or fewer concepts)"
            )
        A = self.crop_activations_of(crops)
        fact = self._make_factorization(*A.shape)
        if getattr(fact, "needs_nonnegative_input", False):
            lo = float(A.min())
            if lo < 0:
                raise ValueError(
                    f"layer {self.layer!r}: {type(fact).__name__} needs activations >= 0, but their minimum"
                    f" is {lo:.4g}; pick a layer whose output passes a ReLU (a ResNet stage such as"
                    " 'layer4'), or a factorization for signed activations (factorization='pca',"
                    " 'semi_nmf', ...). model.layers() lists the split points"
                )
        self._exact_nnls = isinstance(fact, NMF)
        # NMF in float64 where the device has it (the factors are tiny: crops x channels); its concepts
        # come back in the activations' dtype, which encode/decode then use
        wide = self._exact_nnls and A.dtype == torch.float32 and A.device.type != "mps"
        fact.fit(A.double() if wide else A)
        self.factorization_ = fact
        self.l2_u = float(getattr(fact, "l2_u", 0.0) or 0.0)
        self.concepts = fact.components.detach().to(A.dtype)
        self.crops, self.crop_positions, self.crop_activations = crops, positions, A
        self.crop_codes = self.encode(A)
        self.class_id = class_id
        self.importances = None
        self.children = {}
        return self

    # -- codes ----------------------------------------------------------------------------------------
    def encode(self, activations: torch.Tensor) -> torch.Tensor:
        """Concept codes of activations in the layer's layout: (M, d) -> (M, r); (N, d, h, w) ->
        (N, r, h, w); (N, T, d) -> (N, r, T).

        For NMF, the exact ridge NNLS ``min_u>=0 0.5||a - u W||^2 + 0.5 l2_u ||u||^2`` per row (Xplique's
        ``transform`` with its lambda = ``alpha * n_features``), differentiable with respect to the
        activations by implicit differentiation; for another factorization, its ``transform``.
        """
        self._require_fit()
        a = activations.to(self.device)
        d = self.concepts.shape[1]
        # (N, d, h, w) maps, (N, T, d) tokens or (M, d) rows
        if (a.ndim in (2, 4) and a.shape[1] == d) or (a.ndim == 3 and a.shape[2] == d):
            return layout_codes(a, self._encode_rows)
        raise ValueError(
            f"activations: expected (M, {d}), (N, {d}, h, w) or (N, T, {d}), got {tuple(a.shape)}"
        )

    def _encode_rows(self, rows: torch.Tensor) -> torch.Tensor:
        if self._exact_nnls:
            return nnls(rows, self.concepts.to(rows.dtype), l2=self.l2_u)
        return self.factorization_.transform(rows)

    def head(self) -> ConceptHead:
        """``head(codes) = h(U W)`` in the layer's layout: the model above the layer as a function of the
        codes (:class:`~workbench.concepts.ConceptHead`), what :meth:`importance` perturbs."""
        self._require_fit()
        return ConceptHead(self._h, self.concepts if self._exact_nnls else self.factorization_)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Activations in the layer's layout from codes (N, r, *positions): U W per position."""
        return self.head().activation(codes)

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """Per-position concept codes of images: (N, r, h, w) for a CNN, (N, r, T) for a ViT's tokens.

        Images of another size than the model's input (crops, for example) are resized to it first, as
        the crops of :meth:`fit` were.
        """
        self._require_fit()
        images = self._check_images(images)
        outs = []
        with eval_mode(self.model), torch.inference_mode():
            for sl in iter_batches(len(images), self.batch_size):
                outs.append(self.encode(self._g(self._resize(images[sl].to(self.device)))))
        return torch.cat(outs)

    @property
    def relative_error(self) -> float:
        """||A - U W|| / ||A|| on the crops (the fit's reconstruction error)."""
        self._require_fit()
        rec = self.decode(self.crop_codes)
        return float((self.crop_activations - rec).norm() / self.crop_activations.norm())

    # -- importance -------------------------------------------------------------------------------------
    def _fit_images(self) -> torch.Tensor:
        ids = torch.unique(self.crop_positions[:, 0])
        return self.images[ids.to(self.images.device)]

    def importance(
        self,
        images: torch.Tensor | None = None,
        class_id: int | None = None,
        method: str = "sobol",
        nb_design: int = 32,
        per_image: bool = False,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Importance of each concept for ``class_id``, from the codes of ``images`` through h(U W).

        Parameters
        ----------
        images
            Images to explain; default the fitted images (those of this decomposition's crops).
        class_id
            Default the fitted class.
        method
            Any method of :func:`~workbench.concepts.code_importance` (default ``"sobol"``: total Sobol
            indices, Jansen estimator, Xplique's Halton design; every position of an image's map has its
            concept coefficients scaled by the same mask, as in Xplique).
        nb_design
            Sobol designs per concept (32, Xplique's default).
        per_image
            Return (N, r) instead of the mean over images (r,).
        **kwargs
            Passed to :func:`code_importance` (``sampler``, ``estimator``, ...).
        """
        self._require_fit()
        default = images is None or images is self.images
        images = self._fit_images() if default else self._check_images(images)
        class_id = self.class_id if class_id is None else self._check_class(class_id)
        codes = self.transform(images)
        targets = torch.full((len(images),), class_id, dtype=torch.long, device=codes.device)
        kwargs.setdefault("seed", self.seed)
        with eval_mode(self.model):
            scores = code_importance(
                self.head(), codes, targets, method, batch_size=self.batch_size, nb_design=nb_design, **kwargs
            )
        scores = torch.as_tensor(scores).detach()
        mean = scores.mean(0)
        if default and class_id == self.class_id and method == "sobol":
            self.importances = mean.detach().cpu()
        return scores if per_image else mean

    # -- maps ---------------------------------------------------------------------------------------------
    def _grid(self, codes: torch.Tensor) -> torch.Tensor:
        """Per-position codes as a spatial grid (N, r, h, w) (a ViT's prefix tokens left out)."""
        if codes.ndim == 4:
            return codes
        if codes.ndim == 3:
            t = codes.shape[2] - self._prefix_tokens(codes.shape[2])
            side = math.isqrt(t)
            if side * side != t:
                raise ValueError(f"layer {self.layer!r}: {t} patch tokens do not form a square grid")
            return codes[:, :, codes.shape[2] - t :].reshape(*codes.shape[:2], side, side)
        raise ValueError(f"layer {self.layer!r} has no spatial positions (activations {tuple(codes.shape)})")

    def concept_maps(self, images: torch.Tensor, method: str = "codes") -> torch.Tensor:
        """Where each concept lies in each image: (N, r, H, W).

        Parameters
        ----------
        images
            (N, C, H, W) in [0, 1].
        method
            ``"codes"``: each concept's coefficient at each position of the layer's map, upsampled
            bilinearly to the image size (non-negative for NMF).
            ``"gradient"``: the gradient of each concept's coefficient, summed over the positions of
            an image, with respect to the pixels (through the implicit NNLS solution), times the input
            and summed over the colour channels (signed gradient x input). Summing over channels keeps
            a pixel's first-order contribution (its channels add up in the Taylor expansion relative to
            a black image); keeping the sign tells the pixels that raise the coefficient (positive)
            from those that lower it, which an absolute value would mix into one "evidence" mass.
        """
        self._require_fit()
        if method not in MAP_METHODS:
            raise ValueError(f"method: expected one of {MAP_METHODS}, got {method!r}")
        images = self._check_images(images)
        size = tuple(images.shape[-2:])
        if method == "codes":
            grid = self._grid(self.transform(images))
            return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)
        r = self.concepts.shape[0]
        out = torch.empty(len(images), r, *size, dtype=images.dtype, device=self.device)
        batches = list(iter_batches(len(images), self.batch_size))
        with eval_mode(self.model), torch.enable_grad():
            for sl in _progress(batches, enabled=self.progress, desc="CRAFT gradient maps"):
                x = images[sl].to(self.device).detach().requires_grad_(True)
                totals = self.encode(self._g(self._resize(x))).flatten(2).sum(2)  # (B, r), images independent
                for k in range(r):  # one forward per batch, one backward per concept
                    (grad,) = torch.autograd.grad(totals[:, k].sum(), x, retain_graph=k < r - 1)
                    out[sl, k] = (grad * x).sum(1).detach()
        return out

    # -- recursion ------------------------------------------------------------------------------------------
    def owners(self) -> torch.Tensor:
        """For each crop, the concept with the largest coefficient (-1 where every code is 0)."""
        self._require_fit()
        best, idx = self.crop_codes.max(1)
        return torch.where(best > 0, idx, torch.full_like(idx, -1))

    def top_crops(self, concept_id: int, top: int = 20) -> torch.Tensor:
        """Indices of this decomposition's crops with the largest coefficient of ``concept_id``."""
        self._require_fit()
        k = self._check_concept(concept_id)
        top = min(check_int(top, "top"), len(self.crop_codes))
        return torch.argsort(self.crop_codes[:, k], descending=True, stable=True)[:top].cpu()

    def _check_concept(self, concept_id: int) -> int:
        r = self.concepts.shape[0]
        k = check_int(concept_id, "concept_id", minimum=0)
        if k >= r:
            raise ValueError(f"concept_id: expected a concept index in [0, {r - 1}], got {concept_id}")
        return k

    def _previous_layer(self) -> str:
        layers = self.model.layers()
        i = layers.index(self.layer)
        if i == 0:
            raise ValueError(f"layer {self.layer!r} is the first split point: there is no earlier layer")
        return layers[i - 1]

    def refine(
        self,
        concept_id: int,
        layer: str | None = None,
        n_concepts: int | None = None,
        top: int | None = None,
        factorization: str | Factorization | None = None,
    ) -> Craft:
        """Decompose one concept at an earlier layer into sub-concepts (the paper's recursion, section 3.1).

        The child decomposition is fitted on the crops where the concept dominates: the crops it owns
        (its coefficient is the largest of the crop's codes) or, with ``top``, its ``top`` crops by
        coefficient. The child keeps this decomposition's crops (no new cropping), so its concepts are
        parts of this one seen by an earlier layer.

        Parameters
        ----------
        concept_id
            The concept to decompose.
        layer
            An earlier split point; default the split point just before this one in ``model.layers()``.
        n_concepts
            Sub-concepts; default ``max(2, n_concepts // 2)``.
        top
            Use the concept's ``top`` crops instead of the crops it owns.
        factorization
            Default this decomposition's factorization name (``"nmf"`` when it was an instance).

        Returns
        -------
        Craft
            The fitted child, also stored in ``self.children[concept_id]``; :meth:`tree` shows it.
        """
        self._require_fit()
        k = self._check_concept(concept_id)
        layer = self._previous_layer() if layer is None else layer
        layers = self.model.layers()
        if layer in layers and layers.index(layer) >= layers.index(self.layer):
            raise ValueError(f"layer: {layer!r} is not earlier than {self.layer!r}; refine goes backwards")
        if top is None:
            idx = torch.nonzero(self.owners() == k).flatten().cpu()
        else:
            idx = self.top_crops(k, top)
        n_sub = max(2, self.n_concepts // 2) if n_concepts is None else check_int(n_concepts, "n_concepts")
        if len(idx) < n_sub:
            raise ValueError(
                f"concept {k} owns {len(idx)} crops, fewer than the {n_sub} sub-concepts asked for;"
                " pass top= to use its top crops"
            )
        if factorization is None:
            factorization = self.factorization if isinstance(self.factorization, str) else "nmf"
        child = Craft(
            self.model,
            layer,
            n_sub,
            patch_size=self.patch_size,
            stride=self.stride,
            batch_size=self.batch_size,
            factorization=factorization,
            alpha=self.alpha,
            pooling=self.pooling,
            seed=self.seed,
            progress=self.progress,
        )
        child.images = self.images
        child.root_crop_indices = self.root_crop_indices[idx]
        child.parent, child.parent_concept = self, k
        child._fit_crops(self.crops[idx.to(self.crops.device)], self.crop_positions[idx], self.class_id)
        self.children[k] = child
        return child

    def ambiguity(
        self,
        method: str = "labels",
        labels: torch.Tensor | None = None,
        top: int = 20,
        classes: list[int] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """How ambiguous each concept is, in [0, 1] (r,): the candidates for :meth:`refine`.

        Parameters
        ----------
        method
            ``"labels"``: the normalized entropy of the classes of the images that a concept's ``top``
            crops come from, each crop weighted by its coefficient (0: one class, 1: evenly spread over
            the classes present). ``"importance"``: the normalized entropy of the concept's importance
            across ``classes`` (0: important for one class, 1: equally for all).
        labels
            The class of each fitted image (N,), for ``"labels"``; default the model's predictions.
        top
            Crops per concept for ``"labels"``.
        classes
            Classes for ``"importance"``; default all of the model's classes.
        **kwargs
            Passed to :meth:`importance` for ``"importance"``.
        """
        self._require_fit()
        if method not in AMBIGUITY_METHODS:
            raise ValueError(f"method: expected one of {AMBIGUITY_METHODS}, got {method!r}")
        r = self.concepts.shape[0]
        if method == "importance":
            classes = list(range(self.model.num_classes)) if classes is None else list(classes)
            if len(classes) < 2:
                raise ValueError(f"classes: the importance ambiguity needs at least 2 classes, got {classes}")
            imp = torch.stack([self.importance(class_id=c, **kwargs).clamp_min(0) for c in classes], 1)
            return _normalized_entropy(imp.double(), len(classes)).float()
        if labels is None:
            labels = predict(self.model, self.images, batch_size=self.batch_size)[0]
        labels = torch.as_tensor(labels).long().cpu()
        if labels.shape != (len(self.images),):
            raise ValueError(f"labels: expected shape ({len(self.images)},), got {tuple(labels.shape)}")
        crop_labels = labels[self.crop_positions[:, 0].cpu()]
        n_classes = int(labels.max()) + 1
        present = int(torch.unique(crop_labels).numel())
        hist = torch.zeros(r, n_classes, dtype=torch.float64)
        codes = self.crop_codes.detach().cpu().double()
        for k in range(r):
            idx = self.top_crops(k, top)
            hist[k].index_add_(0, crop_labels[idx], codes[idx, k])
        return _normalized_entropy(hist, present).float()

    def tree(self, importance: bool | None = True, top: int = 16) -> ConceptTree:
        """The concept tree of this decomposition and its refinements, as data a widget can show.

        Parameters
        ----------
        importance
            True: fill each node's importance, computing the Sobol importance of a decomposition not
            yet estimated on its fitted images; None: only the importances already computed; False: none.
        top
            Top crops listed per concept.
        """
        self._require_fit()
        imp = self.importances if importance is not False else None
        if importance and imp is None:
            imp = self.importance().detach().cpu()
        owners = self.owners().cpu()
        root = ConceptTree(None, self.layer, int(self.class_id), n_crops=len(self.crops))
        root.crops = self.root_crop_indices.tolist()
        for k in range(self.concepts.shape[0]):
            node = ConceptTree(
                k,
                self.layer,
                int(self.class_id),
                importance=None if imp is None else float(imp[k]),
                crops=self.root_crop_indices[self.top_crops(k, top)].tolist(),
                n_crops=int((owners == k).sum()),
            )
            if k in self.children:
                node.children = self.children[k].tree(importance, top).children
            root.children.append(node)
        return root

    def result(self) -> CraftResult:
        """This decomposition as a :class:`CraftResult` (tensors on the CPU; computes nothing)."""
        self._require_fit()
        cpu = {
            name: getattr(self, name).detach().cpu()
            for name in ("crops", "crop_positions", "crop_activations", "crop_codes", "concepts")
        }
        return CraftResult(
            self.layer,
            int(self.class_id),
            self.patch_size,
            **cpu,
            importances=self.importances,
            tree=self.tree(importance=None).to_dict(),
        )


@dataclass
class CraftResult:
    """A fitted :class:`Craft` as data: what a gallery shows, saved and loaded without the model.

    Attributes
    ----------
    layer, class_id, patch_size
        Where and for which class the concepts were extracted, from crops of which size.
    crops, crop_positions, crop_activations, crop_codes, concepts
        As the :class:`Craft` attributes (on the CPU).
    importances
        (r,) the Sobol importances when computed, else None.
    tree
        :meth:`ConceptTree.to_dict` of the concept tree (importances as computed so far).
    """

    layer: str
    class_id: int
    patch_size: int
    crops: torch.Tensor
    crop_positions: torch.Tensor
    crop_activations: torch.Tensor
    crop_codes: torch.Tensor
    concepts: torch.Tensor
    importances: torch.Tensor | None = None
    tree: dict[str, Any] | None = None

    def save(self, path: str | os.PathLike) -> Path:
        """``path.safetensors`` (the tensors) and ``path.json`` (the rest), via :func:`save_result`."""
        return save_result(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CraftResult:
        """Read what :meth:`save` wrote."""
        return load_result(path, cls)


def _normalized_entropy(weights: torch.Tensor, n_outcomes: int) -> torch.Tensor:
    """Entropy of each row's distribution divided by log(n_outcomes) (0 for a single outcome)."""
    p = weights / weights.sum(1, keepdim=True).clamp_min(1e-300)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(1)
    return h / math.log(n_outcomes) if n_outcomes > 1 else torch.zeros_like(h)
