"""Fidelity of concept importances: C-Deletion, C-Insertion and C-MuFidelity.

Fel, Boutin, Moayeri, Cadène, Béthune, Andéol, Chalvidal & Serre, "A Holistic Approach to Unifying
Automatic Concept Extraction and Concept Importance Estimation", NeurIPS 2023 (arXiv:2306.07304).

The metrics of :mod:`~workbench.metrics.causal_fidelity` and :mod:`~workbench.metrics.mufidelity_correlation`
moved from pixels to concepts. An image is described by its concept coefficients ``codes`` (N, r, *positions):
(N, r) for pooled activations, (N, r, H, W) per position of a CNN map, (N, r, T) per ViT token. A
``head(codes) -> logits (M, K)`` maps them to the model's output (for a concept bank ``W`` at layer
``l``: ``h_l(codes @ W)`` in the layer's layout). **Removing concept i** sets its coefficient to 0 at
every position (the baseline of concept space), whatever the head does with it.

- **C-Deletion**: remove the concepts in decreasing order of importance; the score should fall fast,
  **lower is better**.
- **C-Insertion**: start from all-zero codes and put the concepts back in that order; **higher is better**.
- **C-MuFidelity**: Pearson correlation, over random subsets of concepts, between the sum of their
  importances and the score drop when they are removed together; **higher is better** (1 for the exact
  contributions of an additive head).

These metrics take codes and a head, never a concept extractor: ``workbench.metrics`` knows no method
(:func:`workbench.concepts.concept_space` builds the two from a model, a layer and a concept bank).
:func:`masked_code_scores` scores a head on masked codes; the concept importance estimators share it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from workbench._core.batching import iter_batches
from workbench._core.progress import progress as _progress
from workbench._core.validation import as_tensor, check_codes, check_int, check_targets
from workbench.metrics.causal_fidelity import CausalFidelity, descending_ranks
from workbench.metrics.mufidelity_correlation import check_correlation, correlate, random_subsets
from workbench.metrics.registry import METRICS
from workbench.models.scoring import SCORES, class_scores

__all__ = [
    "HOLISTIC",
    "c_deletion",
    "c_insertion",
    "c_mufidelity",
    "check_importances",
    "masked_code_scores",
]

Head = Callable[[torch.Tensor], torch.Tensor]

HOLISTIC = (
    "Fel, Boutin, Moayeri, Cadène, Béthune, Andéol, Chalvidal & Serre, A Holistic Approach to Unifying"
    " Automatic Concept Extraction and Concept Importance Estimation, NeurIPS 2023"
)

DEFAULT_BATCH_SIZE = 256  # rows of codes per head call when the caller gives none (a head is cheap)


def check_importances(
    importances: torch.Tensor, codes: torch.Tensor, name: str = "importances"
) -> torch.Tensor:
    """Importances (N, r) matching ``codes`` (N, r, ...), as a detached float64 tensor on their device."""
    importances = as_tensor(importances)
    want = tuple(codes.shape[:2])
    if not isinstance(importances, torch.Tensor) or tuple(importances.shape) != want:
        got = (
            tuple(importances.shape) if isinstance(importances, torch.Tensor) else type(importances).__name__
        )
        raise ValueError(f"{name}: expected one importance per image and concept, shape {want}, got {got}")
    if importances.is_complex() or importances.dtype == torch.bool:
        raise ValueError(f"{name}: expected real values, got dtype {importances.dtype}")
    importances = importances.detach().to(device=codes.device, dtype=torch.float64)
    if not bool(torch.isfinite(importances).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return importances


def _inputs(codes, targets) -> tuple[torch.Tensor, torch.Tensor]:
    codes = check_codes(codes)
    targets = check_targets(targets, len(codes)).to(codes.device)
    return codes, targets


@torch.inference_mode()
def masked_code_scores(
    head: Head,
    codes: torch.Tensor,
    targets: torch.Tensor,
    masks: torch.Tensor,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    score: str = "logit",
    progress: bool = False,
    desc: str | None = None,
) -> torch.Tensor:
    """Scores (N, P) of class ``targets`` when each concept coefficient is multiplied by a mask value.

    Row ``(n, p)`` evaluates ``head(codes[n] * masks[p])`` (``masks[n, p]`` for per-image masks), the mask
    value of concept ``i`` multiplying its coefficient at every position. The ``N P`` rows are built
    ``batch_size`` at a time (a batch mixes images and masks), so memory does not grow with ``P``.

    Parameters
    ----------
    head
        ``head(codes (M, r, *positions)) -> (M, K)`` scores.
    codes
        (N, r, *positions) checked coefficients; targets (N,) class indices on their device.
    masks
        (P, r) shared by all images, or (N, P, r) one set per image.
    batch_size
        Rows per head call.
    score
        "logit" (default) or "probability" (softmax of the head's output). Scores keep the codes'
        float type (float64 codes give float64 scores).
    progress, desc
        A progress bar over batches.
    """
    n, r = codes.shape[:2]
    masks = masks.to(device=codes.device, dtype=codes.dtype)
    per_image = masks.ndim == 3
    if masks.shape[-1] != r or (per_image and masks.shape[0] != n) or masks.ndim not in (2, 3):
        raise ValueError(f"masks: expected (P, {r}) or ({n}, P, {r}), got {tuple(masks.shape)}")
    p = masks.shape[-2]
    if score not in SCORES:
        raise ValueError(f"score: expected one of {SCORES}, got {score!r}")
    expand = (1,) * (codes.ndim - 2)  # one mask value per concept, broadcast over the positions
    out = torch.empty(n * p, device=codes.device, dtype=codes.dtype)
    batches = list(iter_batches(n * p, check_int(batch_size, "batch_size")))
    for sl in _progress(batches, enabled=progress, desc=desc):
        k = torch.arange(sl.start, sl.stop, device=codes.device)
        img, row = k // p, k % p
        m = masks[img, row] if per_image else masks.index_select(0, row)
        logits = head(codes.index_select(0, img) * m.view(len(k), r, *expand))
        if score == "probability":
            logits = torch.softmax(logits, dim=1)
        out[sl] = class_scores(logits, targets[img])
    return out.view(n, p)


def _walk(head, codes, targets, importances, *, steps, batch_size, score, insert) -> CausalFidelity:
    codes, targets = _inputs(codes, targets)
    importances = check_importances(importances, codes)
    r = codes.shape[1]
    steps = r if steps is None else check_int(steps, "steps")
    if steps > r:
        raise ValueError(f"steps: expected at most the number of concepts r = {r}, got {steps}")
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else check_int(batch_size, "batch_size")
    counts = torch.arange(steps + 1, device=codes.device) * r // steps  # concepts moved after each step
    moved = descending_ranks(importances)[:, None, :] < counts[None, :, None]  # (N, steps + 1, r)
    masks = (moved if insert else ~moved).to(codes.dtype)  # 1 = the concept is present
    curve = masked_code_scores(head, codes, targets, masks, batch_size=batch_size, score=score)
    return CausalFidelity.from_curve(curve, counts.float().cpu() / r)


_PARAMS_DOC = """
    Parameters
    ----------
    head
        ``head(codes (M, r, *positions)) -> (M, K)`` logits, a callable (for a concept bank at a layer
        ``l``: ``h_l`` of the reconstructed activation; see :func:`workbench.concepts.concept_space`).
    codes
        (N, r), (N, r, H, W) or (N, r, T) concept coefficients (tensor or NumPy array); never modified.
    targets
        Class indices (N,) or one int for all images.
    importances
        (N, r) concept importances, higher means more important (signed values are ranked by value,
        not magnitude). Ties are broken by concept index.
    steps
        Number of equal chunks of concepts; None (default) moves one concept at a time (``steps = r``).
    batch_size
        Rows of codes per head call (default 256).
    score
        "logit" (default: importances on concept coefficients explain the logit, and the optimality of
        gradient x input for a linear head holds there) or "probability".

    Returns
    -------
    CausalFidelity
        ``.auc`` (N,), ``.curve`` (N, steps + 1) and ``.fractions`` (steps + 1,): the fraction of the
        ``r`` concepts removed (C-Deletion) or inserted (C-Insertion) at each point. The AUC uses the
        trapezoid rule with the x axis normalised to [0, 1].

    References
    ----------
    Fel, T. et al. *A Holistic Approach to Unifying Automatic Concept Extraction and Concept Importance
    Estimation*. NeurIPS 2023.
"""


@METRICS.register("c_deletion", paper=HOLISTIC)
def c_deletion(
    head: Head,
    codes: torch.Tensor,
    targets: torch.Tensor | int,
    importances: torch.Tensor,
    *,
    steps: int | None = None,
    batch_size: int | None = None,
    score: str = "logit",
) -> CausalFidelity:
    """C-Deletion (Fel et al., NeurIPS 2023): remove the most important concepts first (their
    coefficients set to 0 at every position); **lower is better**.

    At step ``s = 0..steps`` the first ``floor(s r / steps)`` concepts of each image's ranking are zeroed
    and the score of its target is read.
    """
    return _walk(head, codes, targets, importances, steps=steps, batch_size=batch_size, score=score,
                 insert=False)  # fmt: skip


@METRICS.register("c_insertion", paper=HOLISTIC)
def c_insertion(
    head: Head,
    codes: torch.Tensor,
    targets: torch.Tensor | int,
    importances: torch.Tensor,
    *,
    steps: int | None = None,
    batch_size: int | None = None,
    score: str = "logit",
) -> CausalFidelity:
    """C-Insertion (Fel et al., NeurIPS 2023): start from all-zero codes and put the most important
    concepts back first; **higher is better**.

    At step ``s = 0..steps`` the first ``floor(s r / steps)`` concepts of each image's ranking have their
    coefficients, the others are 0.
    """
    return _walk(head, codes, targets, importances, steps=steps, batch_size=batch_size, score=score,
                 insert=True)  # fmt: skip


c_deletion.__doc__ += _PARAMS_DOC
c_insertion.__doc__ += _PARAMS_DOC


@METRICS.register("c_mufidelity", paper=HOLISTIC + "; Bhatt, Weller & Moura, IJCAI 2020 (MuFidelity)")
def c_mufidelity(
    head: Head,
    codes: torch.Tensor,
    targets: torch.Tensor | int,
    importances: torch.Tensor,
    *,
    subset_size: int | None = None,
    nb_samples: int = 200,
    seed: int | None = 0,
    correlation: str = "pearson",
    batch_size: int | None = None,
    score: str = "logit",
) -> torch.Tensor:
    """C-MuFidelity (Fel et al., NeurIPS 2023): MuFidelity (Bhatt et al., IJCAI 2020) on concepts.

    For random subsets ``S`` of ``subset_size`` concepts, the correlation between ``sum_{i in S}
    importances_i`` and the score drop ``f(codes) - f(codes with the concepts of S zeroed)``; **higher
    is better**. For an additive head ``f(u) = b + sum_i g_i(u_i)`` the exact contributions
    ``g_i(u_i) - g_i(0)`` give 1.

    Parameters
    ----------
    head, codes, targets, importances
        As in :func:`c_deletion`.
    subset_size
        Concepts removed per sample, in [1, r - 1]; None (default) removes 20 % of them (at least one),
        MuFidelity's fraction.
    nb_samples
        Random subsets (default 200), the same for every image (drawn from ``seed``).
    seed
        Seed of the subsets: same seed, same result.
    correlation
        "pearson" (default, Bhatt et al.) or "spearman".
    batch_size, score
        As in :func:`c_deletion`.

    Returns
    -------
    torch.Tensor
        (N,) float32 correlations in [-1, 1]; 0 where the subset sums or the drops do not vary.
    """
    codes, targets = _inputs(codes, targets)
    importances = check_importances(importances, codes)
    check_correlation(correlation)
    r = codes.shape[1]
    if r < 2:
        raise ValueError(
            f"codes: C-MuFidelity needs at least 2 concepts (a subset and its rest), got r = {r}"
        )
    k = max(1, round(0.2 * r)) if subset_size is None else check_int(subset_size, "subset_size")
    if k >= r:
        raise ValueError(f"subset_size: expected an integer in [1, r - 1 = {r - 1}], got {subset_size!r}")
    nb_samples = check_int(nb_samples, "nb_samples", 2)
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else check_int(batch_size, "batch_size")
    removed = random_subsets(nb_samples, r, k, seed).to(codes.device, torch.float64)
    # the unmasked codes first, then one row per subset: the reference score and the removed ones together
    masks = torch.cat([torch.ones(1, r, device=codes.device), 1.0 - removed.to(torch.float32)])
    scores = masked_code_scores(head, codes, targets, masks, batch_size=batch_size, score=score).double()
    drops = scores[:, :1] - scores[:, 1:]
    return correlate(importances @ removed.T, drops, correlation)
