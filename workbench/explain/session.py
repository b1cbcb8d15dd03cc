"""ExploreSession: the compute behind the Explorer app (one model, a set of images, results on demand).

The Explorer (``workbench.widgets.Explorer``, ``workbench explore``) shows, for the image a user picks,
where the model looks (attribution maps and their fidelity: deletion and insertion, Petsiuk et al., BMVC
2018; MuFidelity, Bhatt et al., IJCAI 2020), what it sees (CRAFT concepts of the predicted class, Fel et
al., CVPR 2023; the atoms of a sparse dictionary that fire on it) and what those concepts and atoms look
like (MACO feature visualizations, Fel et al., NeurIPS 2023). This session computes all of it, and no
widget: each request returns a :class:`concurrent.futures.Future` at once and runs on one background
thread (:class:`~workbench._core.background.BackgroundWorker`), the selected image's maps before the
class-level work, with progress reported to listeners. Results are cached per (model, image, method,
parameters): asking twice computes once (also while the first request is still running).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from workbench._core.background import BackgroundWorker, JobProgress, gather
from workbench._core.batching import iter_batches
from workbench._core.validation import check_images, check_int

DEFAULT_METHODS = ("saliency", "gradient_input")
DEFAULT_FIDELITY = {"steps": 10, "baseline": 0.0, "grid_size": 8, "n_samples": 32}
# Priorities of the background jobs: what the user is looking at first, long class-level work last.
PRIORITY = {"attribution": 0, "fidelity": 1, "concepts": 2, "dictionary": 3, "featviz": 4}


@dataclass
class MethodFidelity:
    """Fidelity of one method's map of one image: deletion and insertion curves (``CausalFidelity``,
    one image) and the MuFidelity correlation."""

    deletion: Any
    insertion: Any
    mufidelity: float

    def scores(self) -> dict[str, float]:
        """``{"deletion AUC", "insertion AUC", "MuFidelity"}`` as floats (deletion: lower is better)."""
        return {"deletion AUC": float(self.deletion.auc[0]), "insertion AUC": float(self.insertion.auc[0]),
                "MuFidelity": float(self.mufidelity)}  # fmt: skip


@dataclass
class ClassConcepts:
    """The CRAFT concepts of one class and what they say about every image of the session.

    ``importances`` (r,) is the mean Sobol importance over the images fitted (the class's); the per-image
    arrays cover all N images of the session, for the class's logit: ``image_importances`` (N, r),
    ``image_maps`` (N, r, H, W) (the concept codes, upsampled), ``image_scores`` (N, r) the mean code of
    each concept over each image (how much of it the image holds; what the filter ranks by).
    """

    class_id: int
    layer: str
    craft: Any
    fitted: np.ndarray
    importances: torch.Tensor
    image_importances: torch.Tensor
    image_maps: torch.Tensor
    image_scores: torch.Tensor
    crop_maps: torch.Tensor
    tree: Any

    def gallery_arguments(self) -> dict[str, Any]:
        """The keyword arguments of a ``ConceptGallery`` of these concepts (without the images)."""
        return {"crops": self.craft.crops, "crop_codes": self.craft.crop_codes, "importances": self.importances,
                "crop_maps": self.crop_maps, "image_importances": self.image_importances,
                "image_maps": self.image_maps, "tree": self.tree}  # fmt: skip


@dataclass
class AtomDictionary:
    """A sparse dictionary of one layer: the SAE, the activations of the session's images (N, C, h, w)
    and its per-atom statistics (:class:`~workbench.sae.AtomStats`; ``image_max`` (N, n_atoms))."""

    layer: str
    sae: Any
    activations: torch.Tensor
    stats: Any


def _digest(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, torch.Tensor):
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=repr).encode())
    return h.hexdigest()[:16]


def _top_part(scores: torch.Tensor, top: float) -> np.ndarray:
    """Indices (sorted) whose score is in the top ``top`` fraction of ``scores`` and above 0."""
    s = scores.detach().float().cpu()
    k = max(1, math.ceil(top * len(s)))
    threshold = float(s.sort(descending=True).values[k - 1])
    return np.flatnonzero(((s >= threshold) & (s > 0)).numpy())


class ExploreSession:
    """The Explorer's compute: attribution, fidelity, concepts, atoms and feature visualizations on demand.

    Parameters
    ----------
    model
        A workbench :class:`~workbench.models.Model` or a :func:`~workbench.load_model` spec ("zoo:...").
    images
        (N, 3, H, W) in [0, 1] at the model's input size.
    labels, class_names, names, masks
        Optional ground truth and names, passed on to the views (the session itself explains the
        predicted class of each image).
    methods
        Attribution methods: names of :func:`workbench.attribution.list_methods`, or ``{label: name or
        fn(model, x, y, **params) -> (N, H, W)}``.
    method_params
        ``{label: {parameter: value}}`` for the methods (e.g. a small Sobol budget).
    fidelity
        Deletion / insertion ``steps`` and ``baseline``, MuFidelity ``grid_size`` and ``n_samples``
        (defaults :data:`DEFAULT_FIDELITY`).
    layer
        The layer of the concepts and of the dictionary (default: the last layer with a spatial map).
    n_concepts, patch_size, concept_designs
        CRAFT: concepts per class, crop side (default: half the input side), Sobol designs per concept.
    sae
        A trained dictionary of ``layer``'s channels (default: a TopK SAE of ``n_atoms`` atoms and
        ``sae_k`` active ones, trained here for ``sae_steps`` steps on the images' activations).
    featviz_steps, featviz_params
        MACO optimization steps, and other :func:`workbench.featviz.visualize` keywords.
    batch_size, seed
        Images per forward pass; seeds CRAFT, the SAE and the visualizations.
    """

    def __init__(
        self,
        model: Any,
        images: torch.Tensor,
        *,
        labels: Any = None,
        class_names: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        masks: Any = None,
        methods: Sequence[str] | Mapping[str, Any] = DEFAULT_METHODS,
        method_params: Mapping[str, Mapping[str, Any]] | None = None,
        fidelity: Mapping[str, Any] | None = None,
        layer: str | None = None,
        n_concepts: int = 4,
        patch_size: int | None = None,
        concept_designs: int = 8,
        sae: Any = None,
        n_atoms: int = 32,
        sae_k: int = 4,
        sae_steps: int = 300,
        featviz_steps: int = 64,
        featviz_params: Mapping[str, Any] | None = None,
        batch_size: int = 64,
        seed: int = 0,
    ):
        from workbench.attribution import get_method
        from workbench.models import Model, load_model
        from workbench.models.scoring import forward_fn

        self.model = load_model(model) if isinstance(model, str) else model
        if not isinstance(self.model, Model):
            raise ValueError(
                f"model: expected a workbench Model or a load_model spec, got {type(model).__name__}"
            )
        self.images = check_images(images, name="images").detach().float().cpu()
        self.n = len(self.images)
        if self.n < 1:
            raise ValueError("images: expected at least one image, got none")
        want = tuple(self.model.input_size)
        if tuple(self.images.shape[1:]) != want:
            raise ValueError(
                f"images: expected the model's input size {want}, got {tuple(self.images.shape[1:])}"
            )
        for value, name in ((n_concepts, "n_concepts"), (n_atoms, "n_atoms"), (sae_k, "sae_k"), (sae_steps, "sae_steps"),
                            (featviz_steps, "featviz_steps"), (batch_size, "batch_size"), (concept_designs, "concept_designs")):  # fmt: skip
            check_int(value, name)
        self.labels = None if labels is None else torch.as_tensor(labels).long().cpu()
        self.device = next(self.model.parameters()).device
        self._x = self.images.to(self.device)  # what the model computes on (self.images: the CPU copy)
        self.names, self.masks = names, masks
        with torch.inference_mode():
            forward = forward_fn(self.model)
            logits = torch.cat([forward(self._x[sl]).float().cpu()
                                for sl in iter_batches(self.n, batch_size)])  # fmt: skip
        self.probabilities = logits.softmax(1)
        self.confidences, self.predictions = self.probabilities.max(1)
        self.class_names = [
            str(c) for c in (class_names or getattr(self.model, "labels", None) or range(logits.shape[1]))
        ]
        if isinstance(methods, str) or not isinstance(methods, Sequence | Mapping):
            raise ValueError(
                f"methods: expected method names or {{label: name or function}}, got {methods!r}"
            )
        methods = dict(methods) if isinstance(methods, Mapping) else {m: m for m in methods}
        params = dict(method_params or {})
        unknown = sorted(set(params) - set(methods))
        if unknown or not methods:
            raise ValueError(f"method_params: no method {unknown} among {list(methods)}" if unknown
                             else "methods: expected at least one attribution method")  # fmt: skip
        # label -> (function, parameters); get_method raises a KeyError naming the closest methods
        self.methods = {label: (get_method(fn) if isinstance(fn, str) else fn, dict(params.get(label, {})))
                        for label, fn in methods.items()}  # fmt: skip
        self.fidelity_params = {**DEFAULT_FIDELITY, **(fidelity or {})}
        self.layer = layer or self._default_layer()
        self.n_concepts, self.concept_designs = n_concepts, concept_designs
        self.patch_size = patch_size or max(8, want[-1] // 2)
        self.given_sae, self.n_atoms, self.sae_k, self.sae_steps = sae, n_atoms, sae_k, sae_steps
        self.featviz_params = {"steps": featviz_steps, "n_crops": 4, "seed": seed, **(featviz_params or {})}
        self.batch_size, self.seed = batch_size, seed
        self._model_key = getattr(self.model, "spec", None) or f"module-{id(self.model)}"
        self._image_keys = [_digest(x) for x in self.images]
        self._set_key = _digest(self._image_keys)
        self._cache: dict[tuple, Future] = {}
        self._jobs: dict[Future, tuple[Callable, str]] = {}  # a queued future's job, for _need
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.calls: Counter[str] = Counter()  # computations actually run, by kind
        self.tasks: dict[int, JobProgress] = {}  # queued and running jobs, for progress displays
        self._listeners: list[Callable[[JobProgress], None]] = []
        self._worker = BackgroundWorker("explore-session", on_progress=self._on_progress)

    # ------------------------------------------------------------------ bookkeeping
    def _default_layer(self) -> str:
        """The last split point whose output is a spatial map (N, C, h, w) with h, w >= 2."""
        layers = self.model.layers()
        with torch.inference_mode():
            acts = self.model.activations(torch.zeros(1, *self.model.input_size, device=self.device), layers)
        spatial = [name for name in layers if acts[name].ndim == 4 and min(acts[name].shape[2:]) >= 2]
        if not spatial:
            raise ValueError(f"layer: the model has no layer with a spatial map; give one of {layers}")
        return spatial[-1]

    def on_progress(self, callback: Callable[[JobProgress], None]) -> None:
        """Call ``callback(JobProgress)`` whenever a job is queued, starts, advances or ends (from the
        worker thread: a display must hand the update to its own thread)."""
        self._listeners.append(callback)

    def off_progress(self, callback: Callable[[JobProgress], None]) -> None:
        """Stop calling ``callback`` (a closed page's display)."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    def pending_tasks(self) -> list[JobProgress]:
        """The jobs queued or running now (a copy), for progress displays."""
        with self._lock:
            return list(self.tasks.values())

    def _on_progress(self, progress: JobProgress) -> None:
        with self._lock:
            if progress.state in ("queued", "running"):
                self.tasks[id(progress)] = progress
            else:
                self.tasks.pop(id(progress), None)
        for callback in list(self._listeners):
            callback(progress)

    def cache_info(self) -> dict[str, Any]:
        """``{"hits", "misses", "entries", "calls"}``: requests answered from the cache (finished or still
        running), requests that queued a computation, cached results, computations run by kind."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "entries": len(self._cache),
            "calls": dict(self.calls),
        }

    def idle(self, timeout: float | None = None) -> None:
        """Wait until every job queued so far has run (a no-op job queued last)."""
        self._worker.submit(lambda _report: None, "idle", priority=10**9).result(timeout)

    def close(self) -> None:
        """Stop the background thread: queued jobs are cancelled, the running one stops at its next progress
        report."""
        self._worker.close()

    def _request(self, key: tuple, kind: str, task: str, compute: Callable, count: bool = True) -> Future:
        """The cached Future of ``key``, or a new one whose job ``compute(report)`` is queued."""
        key = (self._model_key, kind, *key)
        with self._lock:
            fut = self._cache.get(key)
            if fut is not None and not fut.cancelled() and not (fut.done() and fut.exception() is not None):
                self.hits += count
                return fut
            self.misses += count

            def job(report: Callable[[int, int], None]) -> Any:
                self.calls[kind] += 1
                return compute(report)

            fut = self._cache[key] = Future()
            self._jobs[fut] = (job, task)
        return self._worker.submit(job, task, PRIORITY[kind], future=fut)

    def _need(self, fut: Future) -> Any:
        """The result of ``fut`` from inside a job: computed now if it is still queued."""
        if fut.done():
            return fut.result()
        with self._lock:  # a front end's thread may add entries meanwhile (several pages share a session)
            job, task = self._jobs[fut]
        return self._worker.run_claimed(fut, job, task)

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < self.n:
            raise IndexError(f"index: expected an image index in 0..{self.n - 1}, got {index!r}")
        return int(index)

    def _check_method(self, method: str) -> str:
        if method not in self.methods:
            raise KeyError(f"method: unknown {method!r}; the session's methods are {list(self.methods)}")
        return method

    # ------------------------------------------------------------------ where: attribution and fidelity
    def attribution(self, index: int, method: str, _count: bool = True) -> Future:
        """Future of the (H, W) map of ``method`` for image ``index`` and its predicted class."""
        i, m = self._check_index(index), self._check_method(method)
        fn, params = self.methods[m]

        def compute(report: Callable[[int, int], None]) -> torch.Tensor:
            report(0, 1)
            x, y = self._x[i : i + 1], self.predictions[i : i + 1].to(self.device)
            maps = torch.as_tensor(fn(self.model, x, y, **params)).detach().float().cpu()
            return (maps[0, 0] if maps.ndim == 4 else maps[0]).clone()

        key = (self._image_keys[i], m, _digest(params))
        return self._request(key, "attribution", f"{m} map of image {i}", compute, _count)

    def attributions(self, index: int) -> Future:
        """Future of ``{method: (H, W) map}`` for image ``index``, every method of the session."""
        return gather({m: self.attribution(index, m) for m in self.methods})

    def fidelity(self, index: int, method: str) -> Future:
        """Future of the :class:`MethodFidelity` of ``method``'s map of image ``index`` (its predicted class)."""
        from workbench.metrics import deletion, insertion, mufidelity

        i, m = self._check_index(index), self._check_method(method)
        p = self.fidelity_params

        def compute(report: Callable[[int, int], None]) -> MethodFidelity:
            report(0, 2)
            amap = self._need(self.attribution(i, m, _count=False))[None]
            x, y, amap = self._x[i : i + 1], self.predictions[i : i + 1].to(self.device), amap.to(self.device)
            common = {"steps": p["steps"], "baseline": p["baseline"], "batch_size": self.batch_size}
            dele, ins = (
                deletion(self.model, x, y, amap, **common),
                insertion(self.model, x, y, amap, **common),
            )
            report(1, 2)
            mu = mufidelity(self.model, x, y, amap, grid_size=p["grid_size"], n_samples=p["n_samples"],
                            baseline=p["baseline"], batch_size=self.batch_size, seed=self.seed)  # fmt: skip
            on_cpu = [type(f)(f.auc.cpu(), f.curve.cpu(), f.fractions.cpu()) for f in (dele, ins)]
            return MethodFidelity(*on_cpu, float(torch.as_tensor(mu).reshape(-1)[0]))

        key = (self._image_keys[i], m, _digest(self.methods[m][1]), _digest(p))
        return self._request(key, "fidelity", f"fidelity of {m} on image {i}", compute)

    def fidelities(self, index: int) -> Future:
        """Future of ``{method: MethodFidelity}`` for image ``index``."""
        return gather({m: self.fidelity(index, m) for m in self.methods})

    # ------------------------------------------------------------------ what: concepts and atoms
    def concepts(self, class_id: int) -> Future:
        """Future of the :class:`ClassConcepts` of class ``class_id``: CRAFT fitted once on the images
        predicted as that class (topped up with the most probable others when they give too few crops)."""
        c = check_int(class_id, "class_id", minimum=0)
        if c >= len(self.class_names):
            raise ValueError(f"class_id: {c} is out of range for the model's {len(self.class_names)} classes")

        def compute(report: Callable[[int, int], None]) -> ClassConcepts:
            from workbench.concepts import Craft

            report(0, 4)
            side = self.images.shape[-1]
            per_image = max(1, (1 + (side - self.patch_size) // int(0.8 * self.patch_size)) ** 2)
            need = math.ceil(self.n_concepts / per_image)
            ranked = self.probabilities[:, c].argsort(descending=True).numpy()
            fitted = np.flatnonzero(self.predictions.numpy() == c)
            if len(fitted) < need:
                fitted = np.union1d(fitted, ranked[:need])
            craft = Craft(self.model, self.layer, n_concepts=self.n_concepts, patch_size=self.patch_size,
                          batch_size=self.batch_size, seed=self.seed).fit(self._x[torch.as_tensor(fitted, device=self.device)], c)  # fmt: skip
            report(1, 4)
            image_importances = craft.importance(
                self._x, c, nb_design=self.concept_designs, per_image=True
            ).cpu()
            importances = image_importances[torch.as_tensor(fitted)].mean(0)
            craft.importances = importances  # the tree reads them
            report(2, 4)
            image_maps = craft.concept_maps(self._x).cpu()
            crop_maps = F.avg_pool2d(craft.concept_maps(craft.crops).cpu(), 4)
            report(3, 4)
            return ClassConcepts(c, self.layer, craft, fitted, importances, image_importances, image_maps,
                                 image_maps.mean((2, 3)), crop_maps, craft.tree(importance=None))  # fmt: skip

        params = (self.layer, self.n_concepts, self.patch_size, self.concept_designs, self.seed)
        return self._request(
            (self._set_key, c, params), "concepts", f"CRAFT concepts of {self.class_names[c]}", compute
        )

    def dictionary(self) -> Future:
        """Future of the :class:`AtomDictionary` of ``layer``: the given SAE, or a TopK SAE trained once."""

        def compute(report: Callable[[int, int], None]) -> AtomDictionary:
            from workbench.sae import TopKSAE, atom_stats
            from workbench.sae import fit as fit_sae

            with torch.inference_mode():
                acts = torch.cat([self.model.activations(self._x[sl], [self.layer])[self.layer].float().cpu()
                                  for sl in iter_batches(self.n, self.batch_size)])  # fmt: skip
            rows = (
                acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1])
                if acts.ndim == 4
                else acts.reshape(-1, acts.shape[-1])
            )
            sae = self.given_sae
            if sae is None:
                steps = self.sae_steps
                report(0, steps)
                torch.manual_seed(self.seed)
                sae = TopKSAE(rows.shape[1], self.n_atoms, k=self.sae_k, seed=self.seed)
                # batches of 256 rows, or all of them when a few images give fewer
                fit_sae(sae, rows, steps=steps, lr=3e-3, seed=self.seed, batch_size=min(256, len(rows)), dead_window=50,
                        log_every=10, callback=lambda record: report(record["step"], steps))  # fmt: skip
            stats = atom_stats(sae, acts, self.predictions, n_classes=len(self.class_names), images=self._x,
                               model=self.model, layer=self.layer)  # fmt: skip
            return AtomDictionary(self.layer, sae, acts, stats)

        given = None if self.given_sae is None else _digest(self.given_sae.dictionary)
        params = (self.layer, given, self.n_atoms, self.sae_k, self.sae_steps, self.seed)
        return self._request((self._set_key, params), "dictionary", f"SAE on {self.layer}", compute)

    # ------------------------------------------------------------------ what it looks like: feature visualization
    def featviz(self, kind: str, items: Sequence[int], class_id: int | None = None) -> Future:
        """Future of ``{item: image (3, S, S)}``: MACO visualizations of concepts (``kind="concept"``, of
        ``class_id``) or atoms (``kind="atom"``), each computed once, the missing ones in one batch."""
        from workbench.featviz import objectives, visualize

        if kind not in ("concept", "atom"):
            raise ValueError(f"kind: expected 'concept' or 'atom', got {kind!r}")
        items = [check_int(k, "items", minimum=0) for k in dict.fromkeys(items)]
        owner = self.concepts(class_id) if kind == "concept" else self.dictionary()
        params = dict(self.featviz_params)
        base = (kind, None if class_id is None else int(class_id), self._set_key, _digest(params))
        futures, missing = {}, []
        with self._lock:
            for k in items:
                key = (self._model_key, "featviz", *base, k)
                fut = self._cache.get(key)
                if fut is not None and not (fut.done() and fut.exception() is not None):
                    self.hits += 1
                else:
                    self.misses += 1
                    fut = self._cache[key] = Future()
                    missing.append(k)
                futures[k] = fut
        if missing:
            steps = int(params["steps"])

            def compute(report: Callable[[int, int], None]) -> None:
                self.calls["featviz"] += 1
                for k in missing:
                    futures[k].set_running_or_notify_cancel()
                try:
                    result = self._need(owner)
                    vectors = result.craft.concepts if kind == "concept" else result.sae.dictionary.detach()
                    bad = [k for k in missing if k >= len(vectors)]
                    if bad:
                        raise ValueError(f"items: no {kind} {bad}; there are {len(vectors)}")
                    objs = [objectives.direction(self.layer, vectors[k].float().cpu(), cosine=kind == "atom",
                                                 name=f"{kind} {k}") for k in missing]  # fmt: skip
                    report(0, steps)
                    fv = visualize(self.model, objs, progress=False, callback=lambda s, _i, _v: report(s + 1, steps) or False,
                                   **params)  # fmt: skip
                    for k, image in zip(missing, fv.image.detach().float().cpu(), strict=True):
                        futures[k].set_result(image)
                except BaseException as err:
                    for k in missing:
                        if not futures[k].done():
                            futures[k].set_exception(err)
                    raise

            what = f"concepts of {self.class_names[class_id]}" if kind == "concept" else "atoms"
            self._worker.submit(compute, f"MACO of {len(missing)} {what}", PRIORITY["featviz"])
        return gather(futures)

    # ------------------------------------------------------------------ queries on finished results
    def image_concepts(self, concepts: ClassConcepts, index: int) -> list[tuple[int, float]]:
        """The concepts of ``concepts`` by their importance for image ``index``: ``[(concept, importance)]``."""
        v = concepts.image_importances[self._check_index(index)]
        return [(int(k), float(v[k])) for k in v.argsort(descending=True)]

    def image_atoms(self, dictionary: AtomDictionary, index: int, k: int = 6) -> list[tuple[int, float]]:
        """The ``k`` atoms that fire most on image ``index``: ``[(atom, largest code)]`` (firing ones only)."""
        v = dictionary.stats.image_max[self._check_index(index)]
        return [(int(a), float(v[a])) for a in v.argsort(descending=True)[:k] if v[a] > 0]

    def images_where_concept(self, concepts: ClassConcepts, concept: int, top: float = 0.25) -> np.ndarray:
        """Images whose mean code of ``concept`` is in the top ``top`` fraction (and above 0), sorted."""
        return _top_part(concepts.image_scores[:, check_int(concept, "concept", minimum=0)], top)

    def images_where_atom(self, dictionary: AtomDictionary, atom: int, top: float = 0.25) -> np.ndarray:
        """Images where ``atom``'s largest code is in the top ``top`` fraction (and above 0), sorted."""
        return _top_part(dictionary.stats.image_max[:, check_int(atom, "atom", minimum=0)], top)

    def __repr__(self) -> str:
        return (f"ExploreSession({self._model_key}, n={self.n}, methods={list(self.methods)}, layer={self.layer!r},"
                f" cache={self.cache_info()})")  # fmt: skip
