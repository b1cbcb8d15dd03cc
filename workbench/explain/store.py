"""The result store of ``workbench explain``: a zarr v3 group written as results are computed.

Layout (``OUT/results.zarr``)::

    attrs                 format, signature (the arguments results depend on), class names, layer, ...
    images/...            per image, chunked by write block (``block_images`` images): the pixels
                          (uint8, for the report), logits, targets, maps/<method>, deletion / insertion
                          curves and AUCs, MuFidelity
    images_done           (n_blocks,) bool, one chunk per block
    classes/...           per class, one chunk per class: the CRAFT concepts, their importance per image
                          and share of the logit, top crops with concept maps, MACO images, strategic clusters
    classes_done          (n_classes,) bool, one chunk per class
    sanity/<method>       (stages, n) model-randomization similarities
    sanity_done           (n_methods,) bool, one chunk per method

The pattern of :mod:`workbench.data.activation_store`: a unit of work (a block of images, a class, a
method's sanity check) owns whole chunks that no other unit touches, its ``done`` flag is written after
its data (zarr renames each chunk file into place), so a killed run loses at most the units in flight,
a re-run redoes exactly the units without a flag, and the ranks of a torchrun job write disjoint units of
one store at the same time. The store is created in a temporary sibling and renamed into place.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.activation_store import _jsonable, _version

__all__ = ["FORMAT", "ArraySpec", "StoreMismatch", "open_or_create"]

FORMAT = "workbench.explain/1"


class StoreMismatch(ValueError):
    """The store at ``--out`` was made with other arguments."""


@dataclass(frozen=True)
class ArraySpec:
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    fill: Any = 0


def _create(path: Path, attrs: dict, arrays: dict[str, ArraySpec]) -> None:
    import zarr

    if path.exists() and any(path.iterdir()) and not (path / "zarr.json").exists():
        raise StoreMismatch(f"{path} exists and is not a workbench explain store; choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    group = zarr.open_group(tmp, mode="w", zarr_format=3)
    for name, spec in arrays.items():
        group.create_array(name, shape=spec.shape, chunks=spec.chunks, dtype=spec.dtype, fill_value=spec.fill)
    group.attrs.update(_jsonable({**attrs, "format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  "workbench_version": _version()}))  # fmt: skip
    try:
        os.rename(tmp, path)  # fails when another rank got there first: use theirs (its signature is checked)
    except OSError:
        if not (path / "zarr.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_or_create(path: str | os.PathLike, signature: dict, attrs: dict, arrays: dict[str, ArraySpec],
                   overwrite: bool = False):  # fmt: skip
    """The store at ``path`` opened for writing, created if missing; its signature must equal ``signature``.

    Raises
    ------
    StoreMismatch
        When the store was made with other arguments (the message lists them); ``overwrite`` deletes it
        and starts again instead.
    """
    import zarr

    path = Path(path)
    signature = _jsonable(signature)
    if overwrite and (path / "zarr.json").exists():
        old = zarr.open_group(path, mode="r", zarr_format=3)
        if old.attrs.get("format") != FORMAT:
            raise StoreMismatch(f"{path} is not a workbench explain store; not deleting it")
        shutil.rmtree(path)
    if not (path / "zarr.json").exists():
        _create(path, {**attrs, "signature": signature}, arrays)
    group = zarr.open_group(path, mode="r+", zarr_format=3)
    if group.attrs.get("format") != FORMAT:
        raise StoreMismatch(f"{path} is a zarr group but not a workbench explain store; choose another --out")
    old = group.attrs.get("signature", {})
    diff = [f"{k}: {old.get(k)!r} (this run: {v!r})" for k, v in signature.items() if old.get(k) != v]
    diff += [f"{k}: {old[k]!r} (this run: not set)" for k in old if k not in signature]
    if diff:
        raise StoreMismatch(
            f"the results in {path} were computed with other arguments ({'; '.join(diff)}); use another --out,"
            " or --overwrite to replace them"
        )
    return group


def n_blocks(n: int, block: int) -> int:
    return math.ceil(n / block)


def done_flags(group, name: str) -> np.ndarray:
    """The ``done`` flags of a stage, read from disk."""
    return np.asarray(group[name][:], dtype=bool)
