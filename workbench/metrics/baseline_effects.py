"""What a baseline does to the model: the two diagnostics of "Back to the Baseline".

Picard, Hervier, Fel, Mamalet & Serre (2025), "Back to the Baseline: Examining Baseline Effects on
Explainability Metrics". Deletion and insertion replace pixels by a baseline, and the choice of the
baseline decides which attribution method wins, even for a linear model. The paper asks two things
of a baseline:

1. it **removes information**: on the path ``x + a (b - x)`` from the image to the baseline image
   ``b``, the score of the class falls (:func:`information_removal`);
2. it is **not out of distribution**: the fully-baselined image has penultimate features close to the
   features of real images (:func:`ood_distance`, a k-nearest-neighbour distance).

Common baselines trade one for the other (black removes much and is far from the data; a blur stays
close but keeps the colours and the layout). :func:`baseline_study` measures both, with the method
ranking by deletion, for a list of baselines.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from workbench._core.batching import iter_batches
from workbench._core.validation import as_tensor, check_images, check_int
from workbench.metrics.baselines import Baseline, resolve_baseline
from workbench.metrics.causal_fidelity import deletion
from workbench.metrics.registry import METRICS
from workbench.models.hooks import forward_hooks, network, resolve_layer
from workbench.models.model import Model
from workbench.models.scoring import Forward, batched_scores, forward_fn, model_device, prepare, score_fn

__all__ = [
    "BaselineStudy",
    "InformationRemoval",
    "baseline_study",
    "classifier_head",
    "information_removal",
    "knn_distance",
    "ood_distance",
    "penultimate_features",
]


# -- 1. information removal -------------------------------------------------------------------------
@dataclass(frozen=True)
class InformationRemoval:
    """The result of :func:`information_removal`.

    Attributes
    ----------
    alphas : torch.Tensor
        (steps + 1,) path positions a = 0, 1 / steps, ..., 1 (0: the image, 1: the baseline image).
    curve : torch.Tensor
        (N, steps + 1) score of class y at ``x + a (b - x)``.
    drop : torch.Tensor
        (N,) ``curve[:, 0] - curve[:, -1]``: the score lost between the image and the baseline image.
    removed : torch.Tensor
        (N,) ``drop / |curve[:, 0]|``: the share of the score removed. With probabilities, 1 means the
        baseline image gives class y no probability at all, 0 that it keeps all of it, and a negative
        value that the baseline is *more* of class y than the image.
    score : str
        "probability" or "logit".
    """

    alphas: torch.Tensor
    curve: torch.Tensor
    drop: torch.Tensor
    removed: torch.Tensor
    score: str


@METRICS.register(
    "information_removal",
    paper="Picard et al., Back to the Baseline: Examining Baseline Effects on Explainability Metrics, 2025",
)
@torch.inference_mode()
def information_removal(
    model: Model | nn.Module | Forward,
    x: torch.Tensor,
    y: torch.Tensor | int,
    baseline: Baseline = 0.0,
    *,
    steps: int = 10,
    score: str = "probability",
    batch_size: int = 64,
) -> InformationRemoval:
    """The class score along the straight path from each image to its baseline image.

    Picard et al., "Back to the Baseline" (2025), first property of a baseline: replacing the image by
    the baseline should remove the information the model uses for class ``y``. The score of ``y`` is
    read at ``x + a (b - x)`` for ``a = 0, 1 / steps, ..., 1``; the summary is the share of the score
    removed at the end of the path, ``(s(x) - s(b)) / |s(x)|``.

    Parameters
    ----------
    model
        A workbench Model (pixel-space input), an ``nn.Module`` or a callable (N, C, H, W) -> (N, K).
    x
        Images (N, C, H, W); in [0, 1] for a workbench Model. Never modified.
    y
        Target classes (N,) or one int for all images.
    baseline
        Anything :func:`workbench.metrics.baselines.resolve_baseline` accepts: a number, a tensor, a
        name ("blur", ...), a callable of ``x``. A mask-aware baseline (ROAD) is taken with every
        pixel removed.
    steps
        Path intervals; ``steps + 1`` points (default 10).
    score
        "probability" (default: softmax probability of ``y``) or "logit".
    batch_size
        Path images per forward pass; they are built lazily, batch by batch.

    Returns
    -------
    InformationRemoval
        ``.curve`` (N, steps + 1), ``.drop`` and ``.removed`` (N,), ``.alphas`` (steps + 1,) on the CPU.
    """
    steps = check_int(steps, "steps")
    batch_size = check_int(batch_size, "batch_size")
    forward, x, y = prepare(model, x, y)
    forward = score_fn(forward, score)
    base = resolve_baseline(baseline, x, pixel_range=isinstance(model, Model))
    points = steps + 1
    alphas = torch.arange(points, device=x.device, dtype=x.dtype) / steps
    n = len(x)
    scores = torch.empty(n * points, device=x.device)
    for sl in iter_batches(n * points, batch_size):
        k = torch.arange(sl.start, sl.stop, device=x.device)
        img, step = k // points, k % points
        a = alphas[step].view(-1, 1, 1, 1)
        path = x[img] + a * (base[img] - x[img])
        scores[sl] = batched_scores(forward, path, y[img], batch_size)
    curve = scores.view(n, points).cpu()
    drop = curve[:, 0] - curve[:, -1]
    removed = drop / curve[:, 0].abs().clamp_min(1e-12)
    return InformationRemoval(
        alphas=alphas.cpu().float(), curve=curve, drop=drop, removed=removed, score=score
    )


# -- 2. OOD distance --------------------------------------------------------------------------------
_WHY = "features hook a layer"


def classifier_head(model: Model | nn.Module) -> str:
    """The name of the classifier head: the module whose **input** is the penultimate feature vector.

    timm models name it through ``get_classifier()``; otherwise it is the last ``nn.Linear`` registered
    in the network (torchvision's ``fc`` or ``classifier[-1]``, a ViT's ``head``).

    Raises
    ------
    ValueError
        When no head is found (then pass ``layer=`` to :func:`penultimate_features`).
    """
    net = network(model, _WHY)
    modules = dict(net.named_modules())
    getter = getattr(net, "get_classifier", None)
    if callable(getter):
        try:
            head = getter()
        except Exception:  # noqa: BLE001 - an unusual get_classifier falls back to the search below
            head = None
        if isinstance(head, nn.Module) and not isinstance(head, nn.Identity):
            for name, module in modules.items():
                if module is head and name:
                    return name
    linears = [name for name, module in modules.items() if isinstance(module, nn.Linear) and name]
    if not linears:
        raise ValueError(
            f"{type(net).__name__}: no classifier head found (no get_classifier() and no nn.Linear);"
            " pass layer= to name the layer whose output is the feature vector"
        )
    return linears[-1]


@torch.inference_mode()
def penultimate_features(
    model: Model | nn.Module,
    images: torch.Tensor,
    layer: str | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Feature vectors (N, D) of ``images``: the input of the classifier head, or a layer's output.

    Parameters
    ----------
    model
        A workbench Model (images in [0, 1]) or an ``nn.Module``.
    images
        (N, C, H, W) images.
    layer
        None (default): the input of :func:`classifier_head` (global-pooled features for a CNN, the
        pooled token for a ViT). A module name: that module's output, flattened to (N, D).
    batch_size
        Images per forward pass.

    Returns
    -------
    torch.Tensor
        (N, D) float32 features on the model's device.
    """
    net = network(model, _WHY)
    is_model = isinstance(model, Model)
    images = check_images(
        images,
        name="images",
        channels=model.input_size[0] if is_model else None,
        value_range=(0.0, 1.0) if is_model else None,
    )
    batch_size = check_int(batch_size, "batch_size")
    if layer is None:
        name, use_input = classifier_head(net), True
    else:
        name, use_input = resolve_layer(net, layer), False
    store: list[torch.Tensor] = []
    device = model_device(model, images)
    forward = forward_fn(model)
    with forward_hooks(
        net, [name], lambda _n, t: store.append(t.detach().flatten(1).float()), on_input=use_input
    ):
        for sl in iter_batches(len(images), batch_size):
            forward(images[sl].to(device))
    return torch.cat(store)


def knn_distance(
    queries: torch.Tensor, bank: torch.Tensor, k: int = 5, chunk_size: int = 1024
) -> torch.Tensor:
    """Mean Euclidean distance of each query (N, D) to its ``k`` nearest rows of ``bank`` (M, D).

    Exact distances (no matrix-product shortcut, so a point of the bank is at distance 0 from itself),
    ``chunk_size`` queries against ``chunk_size`` bank rows at a time: memory is O(chunk_size^2)
    whatever N and M.
    """
    k = check_int(k, "k")
    chunk_size = check_int(chunk_size, "chunk_size")
    if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
        raise ValueError(
            f"features: expected queries (N, D) and bank (M, D) with the same D, got"
            f" {tuple(queries.shape)} and {tuple(bank.shape)}"
        )
    if k > len(bank):
        raise ValueError(f"k: expected at most the bank size {len(bank)}, got {k}")
    bank = bank.to(queries.device, torch.float32)
    out = torch.empty(len(queries), device=queries.device)
    for qs in iter_batches(len(queries), chunk_size):
        q = queries[qs].float()
        best = torch.full((len(q), 0), float("inf"), device=q.device)
        for bs in iter_batches(len(bank), chunk_size):
            d = torch.cdist(q, bank[bs], compute_mode="donot_use_mm_for_euclid_dist")
            best = (
                torch.cat([best, d], 1).topk(min(k, best.shape[1] + d.shape[1]), dim=1, largest=False).values
            )
        out[qs] = best.mean(1)
    return out


def _bank_features(model, bank, layer, batch_size) -> torch.Tensor:
    bank = as_tensor(bank)
    if not isinstance(bank, torch.Tensor) or bank.ndim not in (2, 4):
        shape = tuple(bank.shape) if isinstance(bank, torch.Tensor) else type(bank).__name__
        raise ValueError(f"bank: expected images (M, C, H, W) or features (M, D), got {shape}")
    if bank.ndim == 4:
        return penultimate_features(model, bank, layer=layer, batch_size=batch_size)
    return bank.detach().float()


@METRICS.register(
    "ood_distance",
    paper="Picard et al., Back to the Baseline: Examining Baseline Effects on Explainability Metrics, 2025",
)
def ood_distance(
    model: Model | nn.Module,
    images: torch.Tensor,
    bank: torch.Tensor,
    *,
    k: int = 5,
    layer: str | None = None,
    batch_size: int = 64,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """How far ``images`` lie from the data: k-NN distance of their penultimate features to a bank.

    Picard et al., "Back to the Baseline" (2025), second property of a baseline: the baselined image
    should not be out of distribution, measured as the mean Euclidean distance of its penultimate
    features (the input of the classifier head) to their ``k`` nearest neighbours among the features of
    in-distribution images (the k-NN OOD score of Sun et al., ICML 2022, without their normalisation).

    Parameters
    ----------
    model
        A workbench Model (images in [0, 1]) or an ``nn.Module``.
    images
        (N, C, H, W) images to score (baselined images, say).
    bank
        In-distribution images (M, C, H, W), or their features (M, D) computed once with
        :func:`penultimate_features` (same ``layer``).
    k
        Neighbours averaged (default 5; at most M).
    layer
        None: the input of the classifier head; or a module name whose flattened output is used.
    batch_size
        Images per forward pass.
    chunk_size
        Rows per block of the distance matrix (bounds memory).

    Returns
    -------
    torch.Tensor
        (N,) distances on the model's device; larger is further from the data.
    """
    feats = penultimate_features(model, images, layer=layer, batch_size=batch_size)
    return knn_distance(feats, _bank_features(model, bank, layer, batch_size), k=k, chunk_size=chunk_size)


# -- 3. the study -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BaselineStudy:
    """The result of :func:`baseline_study` (tensors on the CPU; saves with ``save_result``).

    Attributes
    ----------
    baselines : list[str]
        The B baselines, in the order given.
    methods : list[str]
        The M attribution methods, in the order given.
    deletion_auc : torch.Tensor
        (B, M, N) deletion AUC per baseline, method and image (lower is better).
    removed : torch.Tensor
        (B, N) information removed by each baseline (:attr:`InformationRemoval.removed`).
    ood : torch.Tensor
        (B, N) OOD distance of each fully-baselined image (:func:`ood_distance`).
    ood_images : torch.Tensor
        (N,) OOD distance of the images themselves: the level of in-distribution data.
    score : str
        The score read by deletion and information removal.
    """

    baselines: list[str]
    methods: list[str]
    deletion_auc: torch.Tensor
    removed: torch.Tensor
    ood: torch.Tensor
    ood_images: torch.Tensor
    score: str

    def mean_auc(self) -> torch.Tensor:
        """(B, M) deletion AUC averaged over the images."""
        return self.deletion_auc.mean(-1)

    def ranking(self, baseline: str) -> list[str]:
        """The methods from best (lowest mean deletion AUC) to worst under ``baseline``."""
        if baseline not in self.baselines:
            raise KeyError(f"unknown baseline {baseline!r}; the study has {self.baselines}")
        auc = self.mean_auc()[self.baselines.index(baseline)]
        return [self.methods[i] for i in torch.argsort(auc, stable=True).tolist()]

    def winners(self) -> dict[str, str]:
        """The best method under each baseline."""
        return {b: self.ranking(b)[0] for b in self.baselines}

    def rows(self) -> list[dict]:
        """Tidy rows, one per (baseline, method): mean deletion AUC and rank (1 is best)."""
        mean = self.mean_auc()
        out = []
        for i, b in enumerate(self.baselines):
            order = self.ranking(b)
            for j, m in enumerate(self.methods):
                out.append(
                    {
                        "baseline": b,
                        "method": m,
                        "deletion_auc": float(mean[i, j]),
                        "rank": order.index(m) + 1,
                    }
                )
        return out

    def baseline_rows(self) -> list[dict]:
        """Tidy rows, one per baseline: mean information removed, mean OOD distance, winning method."""
        return [
            {
                "baseline": b,
                "removed": float(self.removed[i].mean()),
                "ood": float(self.ood[i].mean()),
                "ood_images": float(self.ood_images.mean()),
                "winner": self.ranking(b)[0],
            }
            for i, b in enumerate(self.baselines)
        ]


def _named_baselines(baselines) -> dict[str, Baseline]:
    if isinstance(baselines, Mapping):
        out = dict(baselines)
    elif isinstance(baselines, Sequence) and not isinstance(baselines, str):
        out = {}
        for b in baselines:
            if not isinstance(b, str):
                raise ValueError(
                    f"baselines: a list must hold names; pass a dict name -> baseline for {type(b).__name__}"
                )
            out[b] = b
    else:
        raise ValueError(f"baselines: expected a list of names or a dict name -> baseline, got {baselines!r}")
    if not out:
        raise ValueError("baselines: expected at least one baseline")
    return out


@METRICS.register(
    "baseline_study",
    paper="Picard et al., Back to the Baseline: Examining Baseline Effects on Explainability Metrics, 2025",
)
def baseline_study(
    model: Model | nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | int,
    maps_by_method: Mapping[str, torch.Tensor],
    baselines: Sequence[str] | Mapping[str, Baseline],
    *,
    bank: torch.Tensor,
    k: int = 5,
    layer: str | None = None,
    steps: int = 10,
    path_steps: int = 10,
    score: str = "probability",
    batch_size: int = 64,
) -> BaselineStudy:
    """Deletion AUC of every method under every baseline, with the two diagnostics of each baseline.

    Picard et al., "Back to the Baseline" (2025): for each baseline, (1) the ranking of the attribution
    methods by deletion (Petsiuk et al. 2018), (2) the information it removes
    (:func:`information_removal`) and (3) how far the fully-baselined images lie from the data
    (:func:`ood_distance`). A ranking that changes from one baseline to the next is the paper's warning.

    Parameters
    ----------
    model
        A workbench Model or an ``nn.Module`` (the OOD distance hooks its classifier head).
    x, y
        Images (N, C, H, W) and targets (N,) (or one int).
    maps_by_method
        Method name -> (N, H, W) maps (higher is more important).
    baselines
        Names of :data:`workbench.metrics.baselines.BASELINES`, or a dict name -> any baseline (a
        tensor, a callable, a :class:`~workbench.metrics.baselines.Road` with other parameters, ...).
    bank
        In-distribution images (M, C, H, W) or their features (M, D), for the OOD distance.
    k, layer
        As in :func:`ood_distance`.
    steps
        Deletion steps (default 10).
    path_steps
        Steps of the information-removal path (default 10).
    score
        "probability" (default) or "logit", for deletion and information removal.
    batch_size
        Images per forward pass everywhere.

    Returns
    -------
    BaselineStudy
        Per-image tensors and tidy ``rows()`` / ``baseline_rows()``, ``ranking(baseline)``,
        ``winners()``.
    """
    named = _named_baselines(baselines)
    if not isinstance(maps_by_method, Mapping) or not maps_by_method:
        raise ValueError("maps_by_method: expected a non-empty dict method name -> (N, H, W) maps")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    bank_feats = _bank_features(model, bank, layer, batch_size)
    _, xs, _ = prepare(model, x, y)
    pixel_range = isinstance(model, Model)
    aucs, removed, ood = [], [], []
    for base in named.values():
        aucs.append(
            torch.stack(
                [
                    deletion(
                        model, x, y, maps, steps=steps, baseline=base, batch_size=batch_size, score=score
                    )
                    .auc.float()
                    .cpu()
                    for maps in maps_by_method.values()
                ]
            )
        )
        removed.append(
            information_removal(
                model, x, y, base, steps=path_steps, score=score, batch_size=batch_size
            ).removed
        )
        with torch.inference_mode():
            image = resolve_baseline(base, xs, pixel_range=pixel_range).contiguous()
        ood.append(ood_distance(model, image, bank_feats, k=k, layer=layer, batch_size=batch_size).cpu())
    ood_images = ood_distance(model, xs, bank_feats, k=k, layer=layer, batch_size=batch_size).cpu()
    return BaselineStudy(
        baselines=list(named),
        methods=list(maps_by_method),
        deletion_auc=torch.stack(aucs),
        removed=torch.stack(removed).float(),
        ood=torch.stack(ood),
        ood_images=ood_images,
        score=score,
    )
