"""``explain(model, images)``: the whole job, resumable and shardable, then the HTML report."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from workbench._core.batching import default_batch_size
from workbench._core.serialization import atomic_write_bytes
from workbench.explain.inputs import (
    ExplainInputError,
    ImageSource,
    planted_source,
    resolve_classes,
    resolve_model,
    scan_images,
    tensor_source,
)
from workbench.explain.results import ExplainResults
from workbench.explain.settings import DEFAULT_METHODS, SCALES, check_method, method_fn
from workbench.explain.sharding import shard_of
from workbench.explain.stages import Run, class_unit, image_block, layout, sanity_unit
from workbench.explain.store import StoreMismatch, done_flags, open_or_create
from workbench.models import Model

__all__ = ["explain"]

MAX_DEFAULT_CLASSES = 10  # without --classes: the most frequent explained classes, at most this many


def _log(msg: str) -> None:
    print(f"[explain] {msg}", file=sys.stderr, flush=True)


def _weights_digest(model: Model) -> str:
    """A digest of the weights: a retrained model never reuses another model's results."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def concept_layer(model: Model, x: torch.Tensor, layer: str | None) -> tuple[str, str, int]:
    """(layer, factorization, channels): ``layer`` or the last split point with a spatial map of at least
    2 x 2 positions and non-negative activations (after a ReLU, where NMF applies: CRAFT's choice, the
    output of the last stage of a ResNet); NMF when its activations are >= 0, semi-NMF otherwise."""
    layers = model.layers()
    if layer is not None and layer not in layers:
        from workbench._core.validation import closest_names

        raise ExplainInputError(f"--layer: {layer!r} is not a split point of {model.spec}; closest: {closest_names(layer, layers)}")  # fmt: skip
    candidates = [layer] if layer is not None else layers[::-1]
    acts = model.activations(x, candidates)
    for name in candidates:
        a = acts[name]
        if layer is not None or (a.ndim == 4 and min(a.shape[-2:]) >= 2 and float(a.min()) >= 0):
            channels = a.shape[1] if a.ndim == 4 else a.shape[-1]
            return name, ("nmf" if float(a.min()) >= 0 else "semi_nmf"), int(channels)
    raise ExplainInputError(f"{model.spec}: no split point has a non-negative spatial map; pass --layer")


def _source(model: Model, images, planted: int | None, rule: str | None, labels, seed: int) -> ImageSource:
    size = int(model.input_size[-1])
    if (images is None) == (planted is None):
        raise ExplainInputError("give exactly one of --images DIR and --planted N")
    if planted is not None:
        if rule is None:  # the rule the zoo model was trained on
            rule = (model.card.get("data") or {}).get("rule", "shape")
        return planted_source(int(planted), size, rule, seed)
    if isinstance(images, torch.Tensor):
        return tensor_source(images, labels, size)
    return scan_images(images, size, model.labels)


def default_patch(size: int) -> int:
    """CRAFT's crop side: 64 px at 224 px (Fel et al. 2023) scaled with the side, or the whole image
    below 128 px (see :func:`explain`'s ``patch_size``)."""
    return size if size < 128 else round(size * 64 / 224)


def _select_classes(requested: list[int] | None, targets: np.ndarray) -> list[int]:
    if requested is not None:
        return requested
    values, counts = np.unique(targets, return_counts=True)
    order = np.argsort(-counts, kind="stable")  # the most frequent first; ties by class index
    return sorted(int(v) for v in values[order][:MAX_DEFAULT_CLASSES])


def explain(
    model: str | torch.nn.Module,
    images: str | os.PathLike | torch.Tensor | None = None,
    *,
    planted: int | None = None,
    rule: str | None = None,
    labels: torch.Tensor | None = None,
    classes: Sequence[str | int] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    concepts: int = 5,
    out: str | os.PathLike = "reports/explain",
    device: str = "auto",
    scale: str = "ci",
    layer: str | None = None,
    patch_size: int | None = None,
    seed: int = 0,
    block_images: int = 16,
    batch_size: int | None = None,
    overwrite: bool = False,
    report: bool = True,
    progress: bool = True,
) -> ExplainResults:
    """Explain a model on images: where it looks, what it sees there, and whether to trust it.

    Per image: the attribution maps of ``methods`` with their deletion, insertion (Petsiuk et al., BMVC
    2018) and MuFidelity (Bhatt et al., IJCAI 2020) scores. Per class: CRAFT concepts (Fel et al., CVPR
    2023) with their importance as a share of the logit (gradient x input on the concept coefficients,
    Fel et al., NeurIPS 2023), their top crops and concept maps, their MACO images (Fel et al., NeurIPS
    2023) and the strategic clusters. Per method: the model-randomization sanity check (Adebayo et al.,
    NeurIPS 2018). Results go to a zarr store as they are computed; a re-run with the same arguments
    skips what is done. Under ``torchrun`` the units are shared between ranks (see
    :mod:`workbench.explain.sharding`). Rank 0 then executes the report notebook with papermill and
    writes a self-contained HTML report.

    Parameters
    ----------
    model
        A :func:`~workbench.load_model` spec (``zoo:``, ``timm:``, ``torchvision:``; hub weights are never
        downloaded), a ``.py`` file defining ``model`` or ``build_model()``, a ``.pt`` module, or a module.
    images
        A folder of images (its files, or class subfolders: subfolders named like the model's classes
        give labels), or a tensor (N, 3, H, W) in [0, 1]. Exactly one of ``images`` and ``planted``.
    planted, rule
        Explain ``planted`` PlantedShapes images of ``rule`` (default: the zoo model's training rule).
    labels
        True classes of tensor ``images`` (optional).
    classes
        Class names or indices whose concepts to extract; default the (at most 10) most frequent
        explained classes. An image is explained for its label when known, else its prediction.
    methods
        Attribution method names (:func:`workbench.attribution.list_methods`) or ``forgrad_<method>``.
    concepts
        CRAFT concepts per class.
    out
        Output folder: ``results.zarr``, ``report.ipynb``, ``report.html``, ``timings.json``. A store made
        with other arguments is an error, unless ``overwrite``.
    device
        ``"auto"`` (CUDA, then MPS, then CPU; ``cuda:LOCAL_RANK`` under torchrun), or a device name.
    scale
        ``"ci"`` (small budgets) or ``"full"`` (the references' defaults), see :data:`SCALES`.
    layer
        The concept layer (default: the last split point with a non-negative spatial map).
    patch_size
        CRAFT's crop side in pixels. Default: CRAFT's 64 px at 224 px, scaled with the side, for inputs of
        128 px or more; the whole image below (CRAFT resizes crops to the input size, and a zoomed crop of
        the 64-px zoo textures changes its class: the stripes crops of 24 px score a stripes logit of -6.0
        against +6.9 for the whole images).
    seed
        Seeds every stochastic method, the same for every block and class (never per process).
    block_images
        Images per write block: the unit of resuming and of sharding.
    batch_size
        Rows per forward pass (default from the image size and device).
    overwrite
        Replace results made with other arguments (single process only).
    report
        Render the report (needs the ``notebooks`` extra).
    progress
        Progress bars per stage and overall.

    Returns
    -------
    ExplainResults
        The results, read from the store.

    Raises
    ------
    ExplainInputError
        Bad input (the CLI exits with code 2): a model that does not load, no images, an unknown class,
        method or scale, a store made with other arguments.
    """
    from tqdm.auto import tqdm

    if scale not in SCALES:
        raise ExplainInputError(f"--scale: expected one of {list(SCALES)}, got {scale!r}")
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ExplainInputError("--methods: expected at least one attribution method")
    try:
        methods = [check_method(m) for m in methods]
    except ValueError as err:
        raise ExplainInputError(str(err)) from err
    if concepts < 1 or block_images < 1:
        raise ExplainInputError(f"--concepts and block_images: expected >= 1, got {concepts}, {block_images}")
    shard = shard_of()
    if overwrite and shard.world_size > 1:
        raise ExplainInputError("--overwrite with several ranks would let them delete each other's work")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    dev = shard.device(device)
    net = resolve_model(model, str(dev))
    source = _source(net, images, planted, rule, labels, seed)
    wanted = resolve_classes(classes, net.labels)
    budget = SCALES[scale]
    size = source.size
    bs = batch_size or default_batch_size(size, dev)
    layer, factorization, channels = concept_layer(net, source.get([0]).to(dev), layer)
    from workbench.metrics.sanity_checks import randomizable_layers

    run = Run(
        model=net, source=source, group=None, methods=methods,
        explainers=[method_fn(m, budget, seed, bs, size) for m in methods], budget=budget, layer=layer,
        factorization=factorization, n_concepts=int(concepts), patch_size=int(patch_size or default_patch(size)),
        block_images=int(block_images), batch_size=bs, seed=int(seed), sanity_layers=randomizable_layers(net),
    )  # fmt: skip
    signature = {
        "model": net.spec, "weights": _weights_digest(net), "images": source.description, "classes": wanted,
        "methods": methods, "concepts": int(concepts), "scale": scale, "budget": budget.to_dict(),
        "seed": int(seed), "layer": layer, "block_images": int(block_images), "image_size": size,
        "patch_size": run.patch_size,
    }  # fmt: skip
    attrs = {
        "class_names": net.labels, "methods": methods, "layer": layer, "factorization": factorization,
        "patch_size": run.patch_size, "sanity_layers": run.sanity_layers, "image_names": source.names,
        "skipped_images": source.skipped, "has_labels": source.labels is not None,
    }  # fmt: skip
    out = Path(out)
    try:
        run.group = open_or_create(out / "results.zarr", signature, attrs, layout(run, len(net.labels), channels),
                                   overwrite=overwrite)  # fmt: skip
    except StoreMismatch as err:
        raise ExplainInputError(str(err)) from err
    g = run.group
    times["setup"] = time.perf_counter() - t0
    where = f"rank {shard.rank}/{shard.world_size}: " if shard.world_size > 1 else ""
    _log(f"{where}{net.spec} on {source.n} images, methods {methods}, concepts at {layer} ({factorization}),"
         f" scale {scale}, device {dev}, results in {out / 'results.zarr'}")  # fmt: skip
    if source.skipped:
        _log(f"skipped {len(source.skipped)} unreadable image(s): {source.skipped}")

    def run_stage(name: str, units: list[int], done: np.ndarray, work, overall) -> None:
        t = time.perf_counter()
        skipped = [u for u in shard.mine(range(len(units))) if done[u]]
        todo = [u for u in shard.mine(range(len(units))) if not done[u]]
        if skipped:
            _log(f"{where}stage {name}: skipping {len(skipped)} done unit(s) {[units[u] for u in skipped]}")
        _log(f"{where}stage {name}: {len(todo)} unit(s) to compute")
        for u in tqdm(todo, desc=f"explain: {name}", disable=not progress, leave=False, position=1):
            work(units[u])
            overall.update(1)
        times[name] = time.perf_counter() - t

    n_blocks = len(done_flags(g, "images_done"))
    overall = tqdm(desc="explain: overall", disable=not progress, leave=False, position=0,
                   total=len(shard.mine(range(n_blocks))))  # fmt: skip
    with overall:
        run_stage("images", list(range(n_blocks)), done_flags(g, "images_done"), lambda b: image_block(run, b),
                  overall)  # fmt: skip
        shard.barrier()
        targets, logits = np.asarray(g["images/targets"][:]), np.asarray(g["images/logits"][:])
        chosen = _select_classes(wanted, targets)
        overall.total += len(shard.mine(range(len(chosen)))) + len(shard.mine(range(len(methods))))
        overall.refresh()
        run_stage("concepts", chosen, done_flags(g, "classes_done")[chosen],
                  lambda c: class_unit(run, c, targets, logits), overall)  # fmt: skip
        run_stage("sanity", list(range(len(methods))), done_flags(g, "sanity_done"),
                  lambda j: sanity_unit(run, j, targets), overall)  # fmt: skip
        shard.barrier()
    results = ExplainResults(out)
    if shard.rank == 0:
        if report:
            t = time.perf_counter()
            render_report(results, progress=progress)
            times["report"] = time.perf_counter() - t
        times["total"] = time.perf_counter() - t0
        timings = {"seconds": {k: round(v, 2) for k, v in times.items()}, "world_size": shard.world_size,
                   "device": str(dev), "report_mb": round(results.report.stat().st_size / 2**20, 2) if report else None}  # fmt: skip
        atomic_write_bytes(out / "timings.json", json.dumps(timings, indent=1).encode())
        _log("times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
        if report:
            _log(f"report: {results.report.resolve()} ({timings['report_mb']} MB)")
    shard.close()
    return results


def render_report(results: ExplainResults, progress: bool = False) -> tuple[Path, Path]:
    """Execute the report notebook (``workbench/explain/report.ipynb``) on ``results`` with papermill and
    export it to a self-contained HTML file (:func:`workbench.cli.main.run_notebook`) that reads as a document:
    the code stays in the executed ``report.ipynb`` beside it."""
    from workbench.cli.main import run_notebook

    with resources.as_file(resources.files("workbench.explain").joinpath("report.ipynb")) as template:
        return run_notebook(template, {"results": str(results.out.resolve())}, results.out, progress=progress,
                            exclude_input=True)  # fmt: skip
