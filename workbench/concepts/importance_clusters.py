"""Strategic clusters: the images of a class grouped by how the model decides on them.

Fel, Boutin, Moayeri, Cadène, Béthune, Andéol, Chalvidal & Serre, *A Holistic Approach to Unifying
Automatic Concept Extraction and Concept Importance Estimation*, NeurIPS 2023 (its section on strategic
clusters). The images of one class are not all classified for the same reasons: clustering their
per-image concept-importance vectors (N, r) gives groups of images that share a *strategy*, each
described by the few concepts that dominate its centroid. The paper draws this as a graph, clusters
linked to their dominant concepts; :meth:`StrategicClusters.graph` returns that graph as data (nodes,
weighted edges, cluster-to-cluster similarities) for a widget to draw.

The clustering is Lloyd's k-means with k-means++ seeding (:func:`workbench.sae.kmeans`), restarted
``n_init`` times (the lowest inertia wins).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench._core.validation import as_tensor, check_int
from workbench.metrics.concept_fidelity import HOLISTIC
from workbench.sae.archetypal import kmeans

__all__ = ["NORMALIZATIONS", "StrategicClusters", "strategic_clusters"]

NORMALIZATIONS = ("l1", "l2", None)


@dataclass
class StrategicClusters:
    """The result of :func:`strategic_clusters` (tensors on the CPU).

    Attributes
    ----------
    labels : torch.Tensor
        (N,) int64 cluster of each image; clusters are numbered by decreasing size.
    centroids : torch.Tensor
        (k, r) mean (normalized) importance vector of each cluster: the space the clustering ran in.
    mean_importances : torch.Tensor
        (k, r) mean raw importance of each concept over the cluster's images.
    sizes : torch.Tensor
        (k,) int64 number of images in each cluster.
    dominant : torch.Tensor
        (k, top) int64 the concepts of highest centroid value, most important first.
    similarity : torch.Tensor
        (k, k) cosine similarity of the centroids (1 on the diagonal).
    inertia : float
        Sum of squared distances of the (normalized) vectors to their centroid.
    normalize : str or None
        How each importance vector was scaled before clustering ("l1", "l2" or None).
    paper : str
        The reference.
    """

    labels: torch.Tensor
    centroids: torch.Tensor
    mean_importances: torch.Tensor
    sizes: torch.Tensor
    dominant: torch.Tensor
    similarity: torch.Tensor
    inertia: float
    normalize: str | None
    paper: str = HOLISTIC

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def n_concepts(self) -> int:
        return int(self.centroids.shape[1])

    def members(self, cluster: int) -> torch.Tensor:
        """Indices of the images in ``cluster``."""
        return torch.nonzero(self.labels == int(cluster)).flatten()

    def graph(self) -> dict:
        """The cluster graph as data: JSON-able lists of nodes and edges.

        - ``nodes``: one per cluster (``{"id": "cluster 0", "kind": "cluster", "index", "size",
          "dominant"}``) and one per concept (``{"id": "concept 2", "kind": "concept", "index",
          "importance"}``, its mean centroid value weighted by cluster size);
        - ``edges``: cluster -> concept, one per pair, ``weight`` the centroid value and ``dominant``
          whether the concept is among the cluster's top ones (draw those, or all with their weights);
        - ``cluster_edges``: cluster -- cluster, one per pair, ``similarity`` the cosine of the centroids.
        """
        k, r = self.n_clusters, self.n_concepts
        sizes = self.sizes.tolist()
        weights = self.sizes.double() / max(1, int(self.sizes.sum()))
        overall = (weights[:, None] * self.centroids.double()).sum(0).tolist()
        dominant = self.dominant.tolist()
        nodes = [
            {"id": f"cluster {c}", "kind": "cluster", "index": c, "size": sizes[c], "dominant": dominant[c]}
            for c in range(k)
        ]
        nodes += [
            {"id": f"concept {i}", "kind": "concept", "index": i, "importance": overall[i]} for i in range(r)
        ]
        centroids = self.centroids.tolist()
        edges = [
            {
                "source": f"cluster {c}",
                "target": f"concept {i}",
                "weight": centroids[c][i],
                "dominant": i in dominant[c],
            }
            for c in range(k)
            for i in range(r)
        ]
        sim = self.similarity.tolist()
        cluster_edges = [
            {"source": f"cluster {a}", "target": f"cluster {b}", "similarity": sim[a][b]}
            for a in range(k)
            for b in range(a + 1, k)
        ]
        return {"nodes": nodes, "edges": edges, "cluster_edges": cluster_edges}

    def to_dict(self) -> dict:
        """Every field as JSON-able lists and numbers, plus the ``graph``."""
        return {
            "labels": self.labels.tolist(),
            "centroids": self.centroids.tolist(),
            "mean_importances": self.mean_importances.tolist(),
            "sizes": self.sizes.tolist(),
            "dominant": self.dominant.tolist(),
            "similarity": self.similarity.tolist(),
            "inertia": float(self.inertia),
            "normalize": self.normalize,
            "paper": self.paper,
            "graph": self.graph(),
        }


def _normalized(x: torch.Tensor, normalize: str | None) -> torch.Tensor:
    if normalize is None:
        return x
    norm = x.abs().sum(1, keepdim=True) if normalize == "l1" else x.norm(dim=1, keepdim=True)
    return x / norm.clamp_min(1e-12)  # an all-zero vector stays zero


def strategic_clusters(
    importances: torch.Tensor,
    n_clusters: int = 3,
    seed: int = 0,
    top: int = 3,
    *,
    normalize: str | None = "l1",
    n_init: int = 4,
    iters: int = 100,
) -> StrategicClusters:
    """Cluster images by their concept-importance vectors (the holistic paper's strategic clusters).

    Parameters
    ----------
    importances
        (N, r) per-image concept importances of one class (:func:`~workbench.concepts.concept_importance`,
        a tensor or a NumPy array).
    n_clusters
        ``k``, the number of strategies (default 3), in [1, N].
    seed
        Seeds the k-means++ initialisations (restart ``j`` uses ``seed + j``): same seed, same clusters.
    top
        Dominant concepts kept per cluster (default 3), at most ``r``.
    normalize
        "l1" (default: each image's vector divided by its sum of absolute values, so clusters group
        images by the *share* each concept takes, not by how confident the model is), "l2" (unit
        vectors: cosine geometry) or None (raw importances).
    n_init
        k-means restarts (default 4); the lowest inertia wins.
    iters
        Lloyd iterations per restart (it stops earlier once assignments settle).

    Returns
    -------
    StrategicClusters
        Labels, centroids, sizes, dominant concepts, centroid similarities; ``.graph()`` and ``.to_dict()``
        give the cluster graph and a JSON-able summary. Clusters are numbered by decreasing size (ties:
        by their first image).

    References
    ----------
    Fel, T. et al. *A Holistic Approach to Unifying Automatic Concept Extraction and Concept Importance
    Estimation*. NeurIPS 2023.
    """
    x = as_tensor(importances)
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"importances: expected per-image concept importances (N, r), got {got}")
    if x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"importances: expected real values, got dtype {x.dtype}")
    x = x.detach().float().cpu()  # N x r numbers: clustered on the CPU, results on the CPU
    if not bool(torch.isfinite(x).all()):
        raise ValueError("importances: contains NaN or infinite values")
    n, r = x.shape
    k = check_int(n_clusters, "n_clusters")
    if k > n:
        raise ValueError(f"n_clusters: expected at most the number of images N = {n}, got {k}")
    top = check_int(top, "top")
    if top > r:
        raise ValueError(f"top: expected at most the number of concepts r = {r}, got {top}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize: expected one of {NORMALIZATIONS}, got {normalize!r}")
    n_init, iters = check_int(n_init, "n_init"), check_int(iters, "iters")
    z = _normalized(x, normalize)

    best = None
    for j in range(n_init):
        c = kmeans(z, k, iters=iters, seed=int(seed) + j)
        dist = torch.cdist(z, c).pow(2)
        labels = dist.argmin(1)
        inertia = float(dist.gather(1, labels[:, None]).sum())
        if best is None or inertia < best[0] - 1e-12:
            best = (inertia, labels)
    inertia, labels = best

    # renumber: largest cluster first, ties by the first image in it (a stable, seed-free numbering)
    counts = torch.bincount(labels, minlength=k)
    first = torch.full((k,), n, dtype=torch.long).scatter_reduce(0, labels, torch.arange(n), "amin")
    order = sorted(range(k), key=lambda c: (-int(counts[c]), int(first[c])))
    relabel = torch.empty(k, dtype=torch.long)
    relabel[torch.tensor(order)] = torch.arange(k)
    labels = relabel[labels]
    sizes = torch.bincount(labels, minlength=k)
    one_hot = torch.zeros(k, n).scatter_(0, labels[None], 1.0)
    per = one_hot / sizes.clamp_min(1)[:, None].float()
    centroids, mean_importances = per @ z, per @ x
    dominant = torch.argsort(centroids, dim=1, descending=True, stable=True)[:, :top]
    unit = centroids / centroids.norm(dim=1, keepdim=True).clamp_min(1e-12)
    similarity = unit @ unit.T
    return StrategicClusters(
        labels=labels,
        centroids=centroids,
        mean_importances=mean_importances,
        sizes=sizes,
        dominant=dominant,
        similarity=similarity,
        inertia=inertia,
        normalize=normalize,
    )
