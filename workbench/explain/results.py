"""Reading a ``workbench explain`` result store: what the report notebook, the Explorer and users read."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from workbench.explain.stages import SANITY_MEASURE, SANITY_THRESHOLD

__all__ = ["ExplainResults", "load_results"]

METRICS = ("deletion", "insertion", "mufidelity")
HIGHER_IS_BETTER = {"deletion": False, "insertion": True, "mufidelity": True}


class ExplainResults:
    """The results of :func:`workbench.explain.explain`, read from its store (arrays as NumPy).

    Parameters
    ----------
    path
        The ``--out`` folder (or its ``results.zarr``).

    Attributes
    ----------
    out : Path
        The output folder: ``results.zarr``, ``report.ipynb``, ``report.html``, ``timings.json``.
    meta : dict
        The store's attributes: ``signature``, ``class_names``, ``methods``, ``layer``, ``budget``, ...
    """

    def __init__(self, path: str | os.PathLike):
        import zarr

        path = Path(path)
        self.store_path = path if path.suffix == ".zarr" else path / "results.zarr"
        self.out = self.store_path.parent
        if not (self.store_path / "zarr.json").exists():
            raise FileNotFoundError(f"no workbench explain results at {self.store_path}")
        self.group = zarr.open_group(self.store_path, mode="r", zarr_format=3)
        self.meta = dict(self.group.attrs)

    def __repr__(self) -> str:
        return (f"ExplainResults({str(self.out)!r}, model={self.meta['signature']['model']!r}, images={self.n},"
                f" methods={self.methods}, complete={self.complete})")  # fmt: skip

    # -- what was asked -------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.group["images/targets"].shape[0])

    @property
    def methods(self) -> list[str]:
        return list(self.meta["methods"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def image_names(self) -> list[str]:
        return list(self.meta["image_names"])

    @property
    def report(self) -> Path:
        """The HTML report (written by rank 0 once every unit is done)."""
        return self.out / "report.html"

    @property
    def notebook(self) -> Path:
        return self.out / "report.ipynb"

    @property
    def complete(self) -> bool:
        return bool(self.group["images_done"][:].all() and self.group["sanity_done"][:].all())

    # -- per image ------------------------------------------------------------------------------------
    def array(self, name: str) -> np.ndarray:
        """Any array of the store by name (``"images/logits"``, ``"classes/share"``, ...)."""
        return np.asarray(self.group[name][:])

    @property
    def images(self) -> np.ndarray:
        """(N, 3, S, S) uint8 pixels, as explained (resized to the model's input)."""
        return self.array("images/pixels")

    @property
    def labels(self) -> np.ndarray:
        """(N,) true classes, -1 where unknown."""
        return self.array("images/labels")

    @property
    def logits(self) -> np.ndarray:
        return self.array("images/logits")

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(1)

    @property
    def targets(self) -> np.ndarray:
        """(N,) the class each image was explained for: its label when known, else its prediction."""
        return self.array("images/targets")

    def maps(self, method: str) -> np.ndarray:
        """(N, S, S) attribution maps of ``method``."""
        if method not in self.methods:
            raise KeyError(f"no maps for {method!r}; methods: {self.methods}")
        return self.array(f"images/maps/{method}")

    def scores(self, metric: str) -> np.ndarray:
        """(N, methods) per-image scores: ``"deletion"`` (AUC, lower is better), ``"insertion"`` (AUC,
        higher is better) or ``"mufidelity"`` (correlation, higher is better)."""
        if metric not in METRICS:
            raise KeyError(f"metric: expected one of {METRICS}, got {metric!r}")
        return self.array(f"images/{metric}")

    def metrics_table(self, indices=None) -> dict[str, dict[str, float]]:
        """Method -> metric -> the mean over images (all of them, or ``indices``): the MetricsBoard table."""
        idx = slice(None) if indices is None else np.asarray(indices)
        return {
            m: {k: float(np.nanmean(self.scores(k)[idx, j])) for k in METRICS}
            for j, m in enumerate(self.methods)
        }

    # -- per class ------------------------------------------------------------------------------------
    @property
    def explained_classes(self) -> list[int]:
        """Classes whose concept stage is done, in class order."""
        return [int(c) for c in np.flatnonzero(self.array("classes_done"))]

    def class_result(self, class_id: int) -> dict:
        """The concept results of one class (concepts in the CRAFT order; ``order`` sorts them by share)."""
        c = int(class_id)
        g = self.group
        n_members = int((g["classes/members"][c] >= 0).sum())
        out = {"class_id": c, "name": self.class_names[c], "n_images": int(g["classes/n_images"][c]),
               "members": np.asarray(g["classes/members"][c][:n_members])}  # fmt: skip
        if out["n_images"] == 0:
            return out
        for key in ("mean_logit", "relative_error", "concepts", "share", "crop_images", "crop_maps", "maco",
                    "maco_objective", "cluster_sizes", "cluster_dominant"):  # fmt: skip
            out[key] = np.asarray(g[f"classes/{key}"][c])
        out["importance"] = np.asarray(g["classes/importance"][c][:n_members])
        out["cluster_labels"] = np.asarray(g["classes/cluster_labels"][c][:n_members])
        out["order"] = np.argsort(-out["share"], kind="stable")
        return out

    # -- sanity -----------------------------------------------------------------------------------------
    def sanity(self) -> dict[str, dict]:
        """Method -> {"per_stage": mean similarity per cascading stage, "final", "depends_on_weights"}."""
        layers = list(self.meta["sanity_layers"])
        out = {}
        for m in self.methods:
            sim = self.array(f"sanity/{m}")
            per_stage = np.nanmean(sim, axis=1)
            final = float(per_stage[-1])
            out[m] = {"layers": layers, "per_stage": per_stage.tolist(), "final": final,
                      "depends_on_weights": final < SANITY_THRESHOLD, "measure": SANITY_MEASURE,
                      "threshold": SANITY_THRESHOLD}  # fmt: skip
        return out


def load_results(path: str | os.PathLike) -> ExplainResults:
    """The results written by ``workbench explain --out PATH`` (or :func:`workbench.explain.explain`)."""
    return ExplainResults(path)
