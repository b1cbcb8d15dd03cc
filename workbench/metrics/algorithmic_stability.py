"""MeGe and ReCo: how stable is an explanation across models trained on different splits of the data?

Fel, Vigouroux, Cadène & Serre, "How Good is your Explanation? Algorithmic Stability Measures to
Assess the Quality of Explanations for Deep Neural Networks", WACV 2022 (arXiv:2009.04521).

k models are trained, model i without split i of the data (``workbench.training.train_fold_models``
does it). For an image of split i, the explanation of model i, which never saw the image, is compared
with the explanation of every other model j (which did see it), by the distance
``sqrt(1 - |Spearman rho|)`` between the two maps. The pairs are sorted into

- ``S=``: both models predict the true class;
- ``S!=``: exactly one of the two does (pairs where both are wrong are left out);

as in the paper and in Xplique (``xplique/metrics/representativity.py``, class ``MeGe``, method
``_pairwise_distances``: "we need at least one good answer ... both are correct, add to S= ... one is
correct, add to S!="). Then

- **MeGe** (mean generalizability) ``= 1 / (1 + mean(S=))``: 1 when models that agree on an image also
  agree on why;
- **ReCo** (relative consistency) ``= max_gamma TPR(gamma) + TNR(gamma) - 1``: how well a threshold on the
  distance separates ``S=`` (small distance expected) from ``S!=`` (large distance expected); 1 for a
  perfect separation, 0 when the distance says nothing about agreement (Youden's J of the distance as a
  detector of agreement).

Differences from Xplique, on purpose: ReCo is the exact maximum over every threshold (Xplique tries about
20 of the sorted distances with strict inequalities, so it can only be lower or equal); constant maps,
where Spearman's rho is undefined, count as uncorrelated (distance 1) instead of being dropped silently
(``constant="drop"`` restores the dropping); ``rule="prediction"`` offers a label-free variant.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from workbench._core.batching import iter_batches
from workbench._core.validation import as_tensor, check_images, check_int
from workbench.metrics.map_similarity import average_ranks
from workbench.metrics.registry import METRICS
from workbench.models.scoring import model_device, predict

__all__ = ["MeGeReCo", "mege_reco", "spearman_distance"]

Explain = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class MeGeReCo:
    """The result of :func:`mege_reco`: the two scores and every pair they were computed from.

    Attributes
    ----------
    mege : float
        ``1 / (1 + mean distance over S=)``, in (1/2, 1]; higher is more stable.
    reco : float
        ``max over thresholds of TPR + TNR - 1``, in [0, 1]; higher separates agreement better.
    threshold : float or None
        The distance at which ReCo is reached (pairs with a distance <= threshold are called "same");
        None when no threshold beats chance (ReCo = 0).
    distances : torch.Tensor
        (P,) float32 distances ``sqrt(1 - |rho|)`` of the pairs kept, in [0, 1].
    same : torch.Tensor
        (P,) bool: True for a pair of ``S=``, False for ``S!=``.
    image : torch.Tensor
        (P,) long: index of the pair's image in ``x``.
    model_unseen : torch.Tensor
        (P,) long: the model that never saw the image (the image's fold).
    model_other : torch.Tensor
        (P,) long: the other model of the pair.
    n_constant : int
        Pairs kept in which at least one map is constant (rho taken as 0, distance 1).
    n_excluded : int
        Pairs left out: both models wrong (rule "correct"), or a constant map with ``constant="drop"``.
    rule : str
        How pairs were labelled ("correct" or "prediction").
    """

    mege: float
    reco: float
    threshold: float | None
    distances: torch.Tensor
    same: torch.Tensor
    image: torch.Tensor
    model_unseen: torch.Tensor
    model_other: torch.Tensor
    n_constant: int
    n_excluded: int
    rule: str

    @property
    def distances_same(self) -> torch.Tensor:
        """Distances of ``S=`` (both models right, or same prediction with rule "prediction")."""
        return self.distances[self.same]

    @property
    def distances_different(self) -> torch.Tensor:
        """Distances of ``S!=`` (one model right, or different predictions with rule "prediction")."""
        return self.distances[~self.same]

    def __repr__(self) -> str:
        return (
            f"MeGeReCo(mege={self.mege:.4f}, reco={self.reco:.4f}, pairs: {int(self.same.sum())} same,"
            f" {int((~self.same).sum())} different, {self.n_constant} with a constant map,"
            f" {self.n_excluded} excluded)"
        )


# -- Spearman between many pairs of maps ------------------------------------------------------------


def _flat_maps(maps: torch.Tensor, name: str) -> torch.Tensor:
    """(..., H, W) or (..., C, H, W) real finite maps, as given; errors say what came."""
    maps = as_tensor(maps)
    if not isinstance(maps, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(maps).__name__}")
    if maps.is_complex() or maps.dtype == torch.bool:
        raise ValueError(f"{name}: expected real-valued maps, got dtype {maps.dtype}")
    if maps.numel() == 0:
        raise ValueError(f"{name}: got an empty tensor of shape {tuple(maps.shape)}")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return maps.detach()


def _standardized_ranks(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``v`` (B, P) -> (centred average ranks scaled to unit norm (B, P) float64, constant (B,)).

    Ties get the average of the ranks they span, as scipy.stats.rankdata(method="average"), which is
    what makes the Pearson correlation of the ranks equal Spearman's rho.
    """
    r = average_ranks(v.double())
    r = r - r.mean(dim=1, keepdim=True)
    norm = r.norm(dim=1, keepdim=True)
    # A constant row has every rank tied: zero variance, rho undefined. Flag it and keep the row at 0
    # so that the dot product gives 0 rather than 0/0.
    # Ranks are exact half-integers: a constant row centres to exactly 0, any other row has norm >= 1/2.
    constant = norm[:, 0] < 0.25
    return torch.where(constant[:, None], torch.zeros_like(r), r / norm.clamp_min(1e-300)), constant


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches of maps of one shape (N, ...), flattened to (N, D) on the CPU."""
    a, b = _flat_maps(a, "a"), _flat_maps(b, "b")
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(
            f"a, b: expected two batches of maps of the same shape (N, ...), got {tuple(a.shape)} and"
            f" {tuple(b.shape)}"
        )
    return a.reshape(len(a), -1).cpu(), b.reshape(len(b), -1).cpu()


def _one_minus_abs_rho(za: torch.Tensor, zb: torch.Tensor, constant: torch.Tensor) -> torch.Tensor:
    """``1 - |rho|`` from unit-norm centred ranks (..., P); 1 where a map is constant (rho := 0).

    For unit vectors ``1 - rho = |za - zb|^2 / 2`` and ``1 + rho = |za + zb|^2 / 2``: exactly 0 for
    identical rankings, where ``1 - dot(za, zb)`` leaves a rounding residue of ~1e-16 that the square
    root of the distance inflates to ~1e-8.
    """
    gap = torch.minimum((za - zb).square().sum(-1), (za + zb).square().sum(-1)) / 2
    return torch.where(constant, torch.ones_like(gap), gap)


def spearman_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The distance of Fel et al. (WACV 2022) between explanations: ``sqrt(1 - |rho|)``, rho Spearman's.

    Xplique's ``MeGe._spearman_distance``. The absolute value makes a map and its negation identical
    (a sign flip is a convention of the method, not a different explanation).

    Parameters
    ----------
    a, b
        Maps of the same shape (N, H, W), (N, C, H, W) or (N, D).

    Returns
    -------
    torch.Tensor
        (N,) float64 distances in [0, 1]; 1 where a map is constant (rho := 0: a constant map carries no ranking).
    """
    a, b = _check_pair(a, b)
    (za, ca), (zb, cb) = _standardized_ranks(a), _standardized_ranks(b)
    return _one_minus_abs_rho(za, zb, ca | cb).clamp(0.0, 1.0).sqrt()


# -- MeGe / ReCo ---------------------------------------------------------------------------------------


def _check_index_tensor(t, n: int, name: str, what: str) -> torch.Tensor:
    t = as_tensor(t)
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer {what} of shape ({n},), got dtype {t.dtype}")
    if t.ndim == 2 and name == "y":
        raise ValueError(
            f"y: expected class indices of shape ({n},), got shape {tuple(t.shape)}; one-hot targets are not accepted, use y.argmax(1)"
        )
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},) to match the {n} images, got shape {tuple(t.shape)}")
    return t.detach().long().cpu()


def _reco(distances: torch.Tensor, same: torch.Tensor) -> tuple[float, float | None]:
    """Exact ``max_gamma TPR + TNR - 1`` over every threshold, ties handled (vectorised).

    A pair is called "same" when its distance is <= gamma. Only the observed distances need to be tried
    (the rates change only there); the threshold below every distance gives TPR = 0, TNR = 1, hence 0.
    """
    eq = distances[same].sort().values
    ne = distances[~same].sort().values
    if len(eq) == 0 or len(ne) == 0:
        return 0.0, None
    gammas = torch.unique(distances)  # sorted
    tpr = torch.searchsorted(eq, gammas, right=True).double() / len(eq)
    fpr = torch.searchsorted(ne, gammas, right=True).double() / len(ne)
    j = tpr - fpr  # = TPR + TNR - 1
    best = int(j.argmax())
    if float(j[best]) <= 0.0:
        return 0.0, None
    return float(j[best]), float(gammas[best])


@METRICS.register(
    "mege_reco",
    paper="Fel, Vigouroux, Cadene & Serre, How Good is your Explanation? Algorithmic Stability Measures to Assess the Quality of Explanations for Deep Neural Networks, WACV 2022",
)
def mege_reco(
    models: Sequence[nn.Module | Callable[[torch.Tensor], torch.Tensor]] | None,
    x: torch.Tensor | None,
    y: torch.Tensor | Sequence[int],
    fold_ids: torch.Tensor | Sequence[int],
    explain: Explain | torch.Tensor,
    *,
    predictions: torch.Tensor | None = None,
    rule: Literal["correct", "prediction"] = "correct",
    constant: Literal["penalize", "drop"] = "penalize",
    batch_size: int = 256,
) -> MeGeReCo:
    """MeGe and ReCo of an explanation method over k models trained on k different splits.

    Fel, Vigouroux, Cadène & Serre, "How Good is your Explanation? Algorithmic Stability Measures to
    Assess the Quality of Explanations for Deep Neural Networks", WACV 2022 (arXiv:2009.04521).

    For every image ``x[n]`` of fold ``s = fold_ids[n]``, the explanation by model ``s`` (which was trained
    without fold s) is compared with the explanation by each other model ``j``: ``k - 1`` pairs per image,
    distance ``sqrt(1 - |Spearman rho|)``. Pairs where both models predict ``y[n]`` form ``S=``; pairs where
    exactly one does form ``S!=``; pairs where both are wrong are left out (paper and Xplique). Then
    ``MeGe = 1 / (1 + mean(S=))`` and ``ReCo = max_gamma TPR + TNR - 1``, TPR the share of ``S=`` with a
    distance <= gamma and TNR the share of ``S!=`` above it (exact maximum over all thresholds).

    Parameters
    ----------
    models
        The k models, model i trained without fold i (e.g. ``train_fold_models(...).models``). Each maps
        (N, C, H, W) images to (N, K) logits. May be None when ``explain`` is a tensor and
        ``predictions`` is given.
    x
        (N, C, H, W) images in [0, 1], each from one fold (never modified). May be None when ``models``
        is None.
    y
        (N,) true classes; also the class explained.
    fold_ids
        (N,) fold of each image, in [0, k): the model that never saw it.
    explain
        ``explain(model, x, y) -> maps (N, H, W)`` (or (N, C, H, W), channels averaged), any attribution
        function (e.g. ``workbench.attribution.saliency``); called once per model. Or precomputed maps
        (k, N, H, W) / (k, N, C, H, W), ``explain[i]`` by model i.
    predictions
        (k, N) predicted classes, to skip the forward passes (required when ``models`` is None).
    rule
        "correct" (the paper): ``S=`` both right, ``S!=`` one right, both wrong left out. "prediction":
        ``S=`` same predicted class, ``S!=`` different ones, correctness ignored (every pair kept).
    constant
        A constant map has no ranking (Spearman's rho undefined). "penalize" (default): rho = 0, distance
        1, the worst, so a method that returns blank maps scores low. "drop": such pairs are left out
        (what Xplique does with the NaN distances).
    batch_size
        Images per forward pass for the predictions, and per chunk when ranking maps (bounds memory).

    Returns
    -------
    MeGeReCo
        The scores with every pair's distance, label and models (for histograms). ReCo is 0 (with a
        warning) when ``S!=`` is empty: the models never disagree, so there is nothing to separate.

    Raises
    ------
    ValueError
        On malformed input, or when ``S=`` is empty (MeGe undefined: no image where two models agree).
    """
    if rule not in ("correct", "prediction"):
        raise ValueError(f"rule: expected 'correct' or 'prediction', got {rule!r}")
    if constant not in ("penalize", "drop"):
        raise ValueError(f"constant: expected 'penalize' or 'drop', got {constant!r}")
    check_int(batch_size, "batch_size")

    explain, predictions = as_tensor(explain), as_tensor(predictions)
    precomputed = isinstance(explain, torch.Tensor)
    if not precomputed and not callable(explain):
        raise ValueError(
            f"explain: expected a callable explain(model, x, y) -> (N, H, W) or maps (k, N, H, W),"
            f" got {type(explain).__name__}"
        )
    if models is None:
        if not precomputed or predictions is None:
            raise ValueError("models: None is only allowed with precomputed maps and predictions=")
        k = int(explain.shape[0]) if explain.ndim >= 1 else 0
    else:
        if isinstance(models, nn.Module) or not isinstance(models, Sequence) or len(models) == 0:
            raise ValueError(
                f"models: expected a non-empty sequence of k models, got {type(models).__name__}"
            )
        models = list(models)
        k = len(models)
    if k < 2:
        raise ValueError(f"models: MeGe/ReCo compares models pairwise, expected k >= 2 models, got {k}")

    # -- the images, labels and folds
    if x is not None:
        x = check_images(x, "x", channels=None)
        n = len(x)
    elif precomputed and explain.ndim >= 2:
        n = int(explain.shape[1])
    else:
        raise ValueError("x: required unless maps are precomputed")
    if models is not None and x is None and predictions is None:
        raise ValueError("x: required to compute the models' predictions (or pass predictions=)")
    y = _check_index_tensor(y, n, "y", "class indices")
    fold_ids = _check_index_tensor(fold_ids, n, "fold_ids", "fold ids")
    if int(fold_ids.min()) < 0 or int(fold_ids.max()) >= k:
        raise ValueError(
            f"fold_ids: expected values in [0, {k - 1}] for {k} models, got values in"
            f" [{int(fold_ids.min())}, {int(fold_ids.max())}]"
        )

    # -- predictions (k, N)
    if predictions is not None:
        if not isinstance(predictions, torch.Tensor) or tuple(predictions.shape) != (k, n):
            shape = (
                tuple(predictions.shape)
                if isinstance(predictions, torch.Tensor)
                else type(predictions).__name__
            )
            raise ValueError(f"predictions: expected class indices of shape ({k}, {n}), got {shape}")
        if predictions.is_floating_point() or predictions.is_complex():
            raise ValueError(
                f"predictions: expected integer class indices (use logits.argmax(-1)), got dtype"
                f" {predictions.dtype}"
            )
        preds = predictions.detach().long().cpu()
    else:
        preds = torch.stack([predict(m, x, batch_size)[0] for m in models])

    # -- maps (k, N, H, W), channels averaged
    if precomputed:
        maps = _flat_maps(explain, "explain")
        if maps.ndim not in (4, 5) or maps.shape[0] != k or maps.shape[1] != n:
            raise ValueError(
                f"explain: expected precomputed maps of shape ({k}, {n}, H, W) or ({k}, {n}, C, H, W) for"
                f" {k} models and {n} images, got {tuple(maps.shape)}"
            )
        if x is not None and tuple(maps.shape[-2:]) != tuple(x.shape[-2:]):
            raise ValueError(
                f"explain: expected maps of size {tuple(x.shape[-2:])} to match x, got {tuple(maps.shape)}"
                " (upsample grid maps to the image size first)"
            )
        maps = maps.mean(2) if maps.ndim == 5 else maps
    else:
        per_model = []
        for i, m in enumerate(models):
            out = _flat_maps(explain(m, x, y.to(model_device(m, x))), f"explain(models[{i}], x, y)")
            if out.ndim == 4:
                out = out.mean(1)
            if out.ndim != 3 or out.shape[0] != n:
                raise ValueError(
                    f"explain(models[{i}], x, y): expected maps (N, H, W) with N = {n}, got {tuple(out.shape)}"
                )
            per_model.append(out.cpu())
        if len({tuple(p.shape) for p in per_model}) != 1:
            raise ValueError(
                f"explain: models gave maps of different shapes {[tuple(p.shape) for p in per_model]}"
            )
        maps = torch.stack(per_model)

    # -- the pairs: image n against (its unseen model s, each other model j), k - 1 per image
    others = torch.arange(k).expand(n, k)
    keep_pair = others != fold_ids[:, None]
    image = torch.arange(n)[:, None].expand(n, k)[keep_pair]
    model_other = others[keep_pair]
    model_unseen = fold_ids[image]

    # Ranks once per map, per chunk of images (memory stays bounded by batch_size * k maps)
    flat = maps.reshape(k, n, -1)
    gap = torch.empty(len(image), dtype=torch.float64)  # 1 - |rho| of each pair
    const = torch.empty(len(image), dtype=torch.bool)
    for sl in iter_batches(n, batch_size):
        chunk = flat[:, sl].to("cpu")
        m = chunk.shape[1]
        z, c = _standardized_ranks(chunk.reshape(k * m, -1))
        z, c = z.reshape(k, m, -1), c.reshape(k, m)
        sel = (image >= sl.start) & (image < sl.start + m)
        local = image[sel] - sl.start
        a, b = model_unseen[sel], model_other[sel]
        za, zb, cc = z[a, local], z[b, local], c[a, local] | c[b, local]
        gap[sel] = _one_minus_abs_rho(za, zb, cc)
        const[sel] = cc
    distances = gap.clamp(0.0, 1.0).sqrt()

    # -- label the pairs
    pa, pb = preds[model_unseen, image], preds[model_other, image]
    if rule == "correct":
        ra, rb = pa == y[image], pb == y[image]
        same, kept = ra & rb, ra | rb
    else:
        same, kept = pa == pb, torch.ones(len(image), dtype=torch.bool)
    if constant == "drop":
        kept = kept & ~const
    n_excluded = int((~kept).sum())
    distances, same, const = distances[kept], same[kept], const[kept]
    image, model_unseen, model_other = image[kept], model_unseen[kept], model_other[kept]

    if not bool(same.any()):
        raise ValueError(
            f"no pair in S= ({'both models correct' if rule == 'correct' else 'same prediction'}) among"
            f" {len(image)} kept pairs: MeGe is undefined (are the models trained? are y the true classes?)"
        )
    mege = 1.0 / (1.0 + float(distances[same].mean()))
    if bool(same.all()):
        warnings.warn(
            "no pair in S!= (the models never disagree on these images): ReCo set to 0; use more images or"
            " images the models find harder",
            RuntimeWarning,
            stacklevel=2,
        )
    reco, threshold = _reco(distances, same)
    assert math.isfinite(mege) and math.isfinite(reco)
    return MeGeReCo(
        mege=mege,
        reco=reco,
        threshold=threshold,
        distances=distances.float(),
        same=same,
        image=image,
        model_unseen=model_unseen,
        model_other=model_other,
        n_constant=int(const.sum()),
        n_excluded=n_excluded,
        rule=rule,
    )
