"""The three stages of ``workbench explain``, each a list of independent units written to the store.

1. **images**, one unit per write block of images: logits, the attribution maps of every method and their
   deletion / insertion curves and MuFidelity (Petsiuk et al. 2018; Bhatt et al. 2020);
2. **classes**, one unit per class: CRAFT concepts (Fel et al., CVPR 2023) at the concept layer, their
   importance by gradient x input on the concept coefficients (Fel et al., NeurIPS 2023) as a share of
   the class logit, their top crops with concept maps, their MACO images (Fel et al., NeurIPS 2023, all
   the concepts of a class in one batch) and the class's strategic clusters;
3. **sanity**, one unit per method: the cascading model-randomization test (Adebayo et al. 2018).

A unit reads only its inputs (images by index, the stage-1 results of the images it needs) and writes
only its own chunks, then its ``done`` flag; so units run in any order, on any rank, and a unit's
results do not depend on which process computed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from workbench._core.batching import iter_batches
from workbench._core.devices import eval_mode
from workbench.explain.inputs import ImageSource
from workbench.explain.settings import Budget
from workbench.explain.store import ArraySpec
from workbench.models import Model

__all__ = ["SANITY_MEASURE", "SANITY_THRESHOLD", "Run", "class_unit", "image_block", "layout", "sanity_unit"]

# A method "depends on the weights" when, with every layer re-initialized (the last cascading stage), the
# Spearman rank correlation of its |maps| with the trained model's falls below this (Adebayo et al. 2018
# read the same rank correlation of absolute maps; 0.5 is our line between "changed" and "kept")
SANITY_MEASURE = "spearman_abs"
SANITY_THRESHOLD = 0.5


@dataclass
class Run:
    """Everything a unit needs: the model, the images, the methods and budgets, the open store."""

    model: Model
    source: ImageSource
    group: Any  # the zarr group
    methods: list[str]
    explainers: list  # explain(model, x, y) per method
    budget: Budget
    layer: str
    factorization: str
    n_concepts: int
    patch_size: int
    block_images: int
    batch_size: int
    seed: int
    sanity_layers: list[str]
    log: Any = print
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.source.n

    @property
    def size(self) -> int:
        return self.source.size


def layout(run: Run, n_classes: int, channels: int) -> dict[str, ArraySpec]:
    """The arrays of a new store (shapes from the run; unwritten chunks cost nothing on disk)."""
    n, b, s, m, k = run.n, run.block_images, run.size, len(run.methods), n_classes
    steps = run.budget.deletion_steps + 1
    r, t, p, cap = run.n_concepts, run.budget.top_crops, run.patch_size, run.budget.class_images
    c, top = run.budget.n_clusters, min(3, run.n_concepts)
    nb = -(-n // b)
    arrays = {
        "images/pixels": ArraySpec((n, 3, s, s), (b, 3, s, s), "uint8"),
        "images/labels": ArraySpec((n,), (b,), "int64", -1),
        "images/logits": ArraySpec((n, k), (b, k), "float32", np.nan),
        "images/targets": ArraySpec((n,), (b,), "int64", -1),
        "images/deletion": ArraySpec((n, m), (b, m), "float32", np.nan),
        "images/insertion": ArraySpec((n, m), (b, m), "float32", np.nan),
        "images/mufidelity": ArraySpec((n, m), (b, m), "float32", np.nan),
        "images/deletion_curve": ArraySpec((n, m, steps), (b, m, steps), "float32", np.nan),
        "images/insertion_curve": ArraySpec((n, m, steps), (b, m, steps), "float32", np.nan),
        "images_done": ArraySpec((nb,), (1,), "bool", False),
        "classes/n_images": ArraySpec((k,), (1,), "int64", 0),
        "classes/members": ArraySpec((k, cap), (1, cap), "int64", -1),
        "classes/mean_logit": ArraySpec((k,), (1,), "float32", np.nan),
        "classes/relative_error": ArraySpec((k,), (1,), "float32", np.nan),
        "classes/concepts": ArraySpec((k, r, channels), (1, r, channels), "float32", np.nan),
        "classes/importance": ArraySpec((k, cap, r), (1, cap, r), "float32", np.nan),
        "classes/share": ArraySpec((k, r), (1, r), "float32", np.nan),
        "classes/crop_images": ArraySpec((k, r, t, 3, p, p), (1, r, t, 3, p, p), "uint8"),
        "classes/crop_maps": ArraySpec((k, r, t, p, p), (1, r, t, p, p), "float32", np.nan),
        "classes/maco": ArraySpec((k, r, 3, s, s), (1, r, 3, s, s), "uint8"),
        "classes/maco_objective": ArraySpec((k, r), (1, r), "float32", np.nan),
        "classes/cluster_labels": ArraySpec((k, cap), (1, cap), "int64", -1),
        "classes/cluster_sizes": ArraySpec((k, c), (1, c), "int64", 0),
        "classes/cluster_dominant": ArraySpec((k, c, top), (1, c, top), "int64", -1),
        "classes_done": ArraySpec((k,), (1,), "bool", False),
        "sanity_done": ArraySpec((m,), (1,), "bool", False),
    }
    for name in run.methods:
        arrays[f"images/maps/{name}"] = ArraySpec((n, s, s), (b, s, s), "float32", np.nan)
        arrays[f"sanity/{name}"] = ArraySpec(
            (len(run.sanity_layers), run.budget.sanity_images), (len(run.sanity_layers), run.budget.sanity_images),
            "float32", np.nan,
        )  # fmt: skip
    return arrays


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def _logits(model: Model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with eval_mode(model), torch.inference_mode():
        return torch.cat([model(x[sl]).float() for sl in iter_batches(len(x), batch_size)])


def image_block(run: Run, block: int) -> None:
    """Stage 1 for write block ``block``: logits, maps, deletion / insertion / MuFidelity; then its flag."""
    from workbench.metrics import deletion, insertion, mufidelity

    g, b = run.group, run.block_images
    lo, hi = block * b, min(run.n, (block + 1) * b)
    x = run.source.get(range(lo, hi)).to(run.model.device)
    logits = _logits(run.model, x, run.batch_size)
    labels = run.source.labels[lo:hi] if run.source.labels is not None else torch.full((hi - lo,), -1)
    # the explained class: the true one when known, else the prediction
    targets = torch.where(labels >= 0, labels, logits.argmax(1).cpu()).to(run.model.device)
    bud = run.budget
    scores = {
        k: np.empty((hi - lo, len(run.methods)), np.float32) for k in ("deletion", "insertion", "mufidelity")
    }
    curves = {k: np.empty((hi - lo, len(run.methods), bud.deletion_steps + 1), np.float32) for k in ("deletion", "insertion")}  # fmt: skip
    maps_out = {}
    for j, (name, explain) in enumerate(zip(run.methods, run.explainers)):
        maps = explain(run.model, x, targets).detach().float()
        maps_out[name] = maps.cpu().numpy()
        kw = dict(steps=bud.deletion_steps, baseline=0.0, batch_size=run.batch_size)
        for key, metric in (("deletion", deletion), ("insertion", insertion)):
            res = metric(run.model, x, targets, maps, **kw)
            scores[key][:, j] = res.auc.cpu().numpy()
            curves[key][:, j] = res.curve.cpu().numpy()
        grid = min(bud.mufidelity_grid, run.size)
        scores["mufidelity"][:, j] = mufidelity(run.model, x, targets, maps, grid_size=grid, n_samples=bud.mufidelity_samples,
                                                batch_size=run.batch_size, seed=run.seed).cpu().numpy()  # fmt: skip
    g["images/pixels"][lo:hi] = to_uint8(x)
    g["images/labels"][lo:hi] = labels.numpy()
    g["images/logits"][lo:hi] = logits.cpu().numpy()
    g["images/targets"][lo:hi] = targets.cpu().numpy()
    for name, maps in maps_out.items():
        g[f"images/maps/{name}"][lo:hi] = maps
    for key, value in scores.items():
        g[f"images/{key}"][lo:hi] = value
    for key, value in curves.items():
        g[f"images/{key}_curve"][lo:hi] = value
    g["images_done"][block] = True  # after the data: a block is never marked done before it is on disk


def class_members(targets: np.ndarray, class_id: int, cap: int) -> tuple[np.ndarray, int]:
    """The first ``cap`` images (by index) explained as ``class_id``, and how many there are in all."""
    idx = np.flatnonzero(targets == class_id)
    return idx[:cap], len(idx)


def concept_contributions(craft, x: torch.Tensor, class_id: int) -> torch.Tensor:
    """(N, r) each concept's contribution to each image's ``class_id`` logit: gradient x input on the concept
    coefficients (Fel et al., NeurIPS 2023, :func:`~workbench.concepts.code_importance`).

    For a CNN map the coefficients are those of the image's *pooled* activation (NNLS on the concepts),
    passed to the head as a 1 x 1 map: the head of a ResNet pools then applies a linear layer, so the
    contributions add up to the logit of the rebuilt activation minus the bias (completeness), and the
    concepts, fitted on pooled crop activations, describe pooled activations (per-position codes of a
    64-px texture model are not: their reconstruction error was 0.94 on the zoo's stripes). Token layers
    use CRAFT's per-token codes.
    """
    from workbench.concepts import code_importance

    acts = craft.activations(x)
    if acts.ndim != 4:
        return craft.importance(x, class_id, method="gradient_input", per_image=True)
    codes = craft.encode(acts.mean((2, 3)))[:, :, None, None]
    with eval_mode(craft.model):
        return code_importance(craft.head(), codes, class_id, "gradient_input", batch_size=craft.batch_size)


def class_unit(run: Run, class_id: int, targets: np.ndarray, logits: np.ndarray) -> None:
    """Stage 2 for one class: CRAFT, concept importance and shares, crops and maps, MACO, clusters."""
    from workbench.concepts import Craft, grid_crops, strategic_clusters
    from workbench.featviz import objectives, visualize

    g, bud, c = run.group, run.budget, class_id
    members, total = class_members(targets, c, bud.class_images)
    g["classes/n_images"][c] = total
    if total == 0:
        g["classes_done"][c] = True
        return
    x = run.source.get(members).to(run.model.device)
    per_image = len(grid_crops(x[:1], run.patch_size)[1])
    r = min(run.n_concepts, per_image * len(x))  # NMF needs at least as many crops as concepts
    craft = Craft(run.model, run.layer, r, patch_size=run.patch_size, batch_size=run.batch_size,
                  factorization=run.factorization, seed=run.seed)  # fmt: skip
    craft.fit(x, c)
    importance = concept_contributions(craft, x, c).detach().float().cpu()
    mean_logit = float(logits[members, c].mean())
    share = importance.mean(0) / mean_logit if mean_logit != 0 else torch.full((r,), float("nan"))
    t, p, rr = bud.top_crops, run.patch_size, run.n_concepts
    crop_images = np.zeros((rr, t, 3, p, p), np.uint8)
    crop_maps = np.full((rr, t, p, p), np.nan, np.float32)
    for k in range(r):
        idx = craft.top_crops(k, t)
        crops = craft.crops[idx.to(craft.crops.device)]
        crop_images[k, : len(idx)] = to_uint8(crops)
        crop_maps[k, : len(idx)] = craft.concept_maps(crops)[:, k].detach().float().cpu().numpy()
    directions = [objectives.direction(run.layer, craft.concepts[k].float(), cosine=True, name=f"concept {k}")
                  for k in range(r)]  # fmt: skip
    viz = visualize(run.model, directions, param="maco", steps=bud.maco_steps, n_crops=bud.maco_crops,
                    seed=run.seed + c, progress=False)  # fmt: skip
    maco = np.zeros((rr, 3, run.size, run.size), np.uint8)
    maco[:r] = to_uint8(viz.image)
    maco_final = np.full(rr, np.nan, np.float32)
    maco_final[:r] = viz.final.detach().float().cpu().numpy()
    concepts = np.full((rr, craft.concepts.shape[1]), np.nan, np.float32)
    concepts[:r] = craft.concepts.detach().float().cpu().numpy()
    shares = np.full(rr, np.nan, np.float32)
    shares[:r] = share.numpy()
    n_clusters = min(bud.n_clusters, len(members))
    labels = np.full(bud.class_images, -1, np.int64)
    sizes = np.zeros(bud.n_clusters, np.int64)
    dominant = np.full((bud.n_clusters, min(3, rr)), -1, np.int64)
    if len(members) >= 2:
        clusters = strategic_clusters(importance, n_clusters, seed=run.seed, top=min(3, r))
        labels[: len(members)] = clusters.labels.numpy()
        sizes[:n_clusters] = clusters.sizes.numpy()
        dominant[:n_clusters, : min(3, r)] = clusters.dominant.numpy()
    else:  # one image: one strategy, its concepts by importance
        labels[0], sizes[0] = 0, 1
        dominant[0, : min(3, r)] = torch.argsort(importance[0], descending=True, stable=True)[
            : min(3, r)
        ].numpy()
    padded = np.full(bud.class_images, -1, np.int64)
    padded[: len(members)] = members
    imp = np.full((bud.class_images, rr), np.nan, np.float32)
    imp[: len(members), :r] = importance.numpy()
    g["classes/members"][c] = padded
    g["classes/mean_logit"][c] = mean_logit
    g["classes/relative_error"][c] = craft.relative_error
    g["classes/concepts"][c] = concepts
    g["classes/importance"][c] = imp
    g["classes/share"][c] = shares
    g["classes/crop_images"][c] = crop_images
    g["classes/crop_maps"][c] = crop_maps
    g["classes/maco"][c] = maco
    g["classes/maco_objective"][c] = maco_final
    g["classes/cluster_labels"][c] = labels
    g["classes/cluster_sizes"][c] = sizes
    g["classes/cluster_dominant"][c] = dominant
    g["classes_done"][c] = True


def sanity_unit(run: Run, method_index: int, targets: np.ndarray) -> None:
    """Stage 3 for one method: cascading model randomization on the first images (Adebayo et al. 2018)."""
    from workbench.metrics import model_randomization

    n = min(run.budget.sanity_images, run.n)
    x = run.source.get(range(n)).to(run.model.device)
    y = torch.as_tensor(targets[:n]).to(run.model.device)
    res = model_randomization(run.explainers[method_index], run.model, x, y, mode="cascading",
                              layers=run.sanity_layers, similarity=(SANITY_MEASURE,), seed=run.seed)  # fmt: skip
    out = np.full((len(run.sanity_layers), run.budget.sanity_images), np.nan, np.float32)
    out[:, :n] = res.similarity[SANITY_MEASURE].numpy()
    run.group[f"sanity/{run.methods[method_index]}"][:] = out
    run.group["sanity_done"][method_index] = True
