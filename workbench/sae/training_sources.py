"""Where the SAE trainer's batches come from: a tensor, an ActivationStore, or any iterable of batches.

Each source yields the local batches of one rank from a given step on (``iterate(start)``). The data
position is a function of ``(seed, step)`` for tensors and stores (each epoch's order is drawn from
``[seed, epoch]``), so resuming seeks to it without reading the skipped data; an iterable of batches is
replayed and the first ``start`` batches skipped. A store is streamed through the one shuffle window of
the data layer (:func:`workbench.data.activation_store.shuffle_window_batches`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from workbench.data.activation_store import ActivationStore, default_window_rows, shuffle_window_batches

__all__ = ["TensorSource", "StoreSource", "IterableSource", "data_source"]


def _epoch_rng(seed: int, *keys: int) -> np.random.Generator:
    # Drawn from (seed, epoch[, rank, world]) rather than advanced from one generator: any position
    # can be reached on resume without replaying the draws before it.
    return np.random.default_rng([int(seed), *map(int, keys)])


class TensorSource:
    """Rows of an in-memory tensor (N, d): each epoch is a fresh permutation of all rows, cut into global
    batches; rank r takes the r-th slice of every global batch, so the order does not depend on the
    number of ranks (a 2-process run sees the same global batches as a 1-process run)."""

    def __init__(self, x: torch.Tensor, batch_size: int, seed: int, rank: int, world: int):
        self.x, self.batch_size, self.seed, self.rank, self.world = x, batch_size, seed, rank, world
        self.steps_per_epoch = len(x) // batch_size  # drop_last: every step sees a full batch

    def iterate(self, start: int) -> Iterator[torch.Tensor]:
        b = self.batch_size // self.world
        epoch, first = divmod(start, self.steps_per_epoch)
        while True:
            perm = torch.from_numpy(_epoch_rng(self.seed, epoch).permutation(len(self.x)))
            perm = perm.to(self.x.device)
            for i in range(first, self.steps_per_epoch):
                lo = i * self.batch_size + self.rank * b
                yield self.x[perm[lo : lo + b]]
            epoch, first = epoch + 1, 0


class StoreSource:
    """Rows of an ActivationStore, streamed with bounded memory; each rank reads only its own chunks.

    Each epoch draws one order of the chunks (the same on every rank); rank r takes chunks r, r+R, ...
    of it and streams them through the store's shuffle window
    (:func:`workbench.data.activation_store.shuffle_window_batches`: windows of about ``buffer_rows``
    rows, each permuted with the rows left from the previous one, the next read in the background),
    cut into local batches (``batch_size / R`` rows). Every rank stops each epoch after the same
    number of batches (what the rank with the fewest rows can fill), so no rank waits on a collective
    the others never reach. Skipping to a step only draws permutations of row ids: no data is read.
    """

    def __init__(
        self, store: Any, batch_size: int, seed: int, rank: int, world: int, buffer_rows: int | None
    ):
        self.store, self.seed, self.rank, self.world = store, seed, rank, world
        self.b = batch_size // world
        n, d = store.shape
        self.cr = int(store.meta["chunk_rows"])
        self.n_chunks = math.ceil(n / self.cr)
        self.sizes = np.minimum(self.cr, n - np.arange(self.n_chunks) * self.cr)
        if self.n_chunks < world:
            raise ValueError(f"data: the store has {self.n_chunks} chunks, fewer than the {world} ranks")
        # The worst rank holds floor(n_chunks / R) chunks, one of which may be the short last chunk.
        short = self.cr - int(self.sizes[-1])
        self.steps_per_epoch = ((self.n_chunks // world) * self.cr - short) // self.b
        rows = buffer_rows if buffer_rows is not None else default_window_rows(d)
        self.window = max(1, int(rows) // self.cr)

    def _read(self, chunks: np.ndarray) -> np.ndarray:
        # Slices, one per chunk (the store's integer indexing is several times slower).
        return np.concatenate([self.store[int(c) * self.cr : int(c) * self.cr + int(self.sizes[c])].numpy()
                               for c in chunks])  # fmt: skip

    def _ids(self, chunks: np.ndarray) -> np.ndarray:
        return np.concatenate([np.arange(c * self.cr, c * self.cr + self.sizes[c]) for c in chunks])

    def iterate(self, start: int) -> Iterator[torch.Tensor]:
        epoch, skip = divmod(start, self.steps_per_epoch)
        while True:
            order = _epoch_rng(self.seed, epoch).permutation(self.n_chunks)
            mine = order[self.rank :: self.world]
            windows = [mine[w : w + self.window] for w in range(0, len(mine), self.window)]
            rng = _epoch_rng(self.seed, epoch, self.rank, self.world)
            batches = shuffle_window_batches(windows, self.b, rng, self._ids, self._read,
                                             lambda ids: self.store[ids].numpy(), skip=skip,
                                             limit=self.steps_per_epoch)  # fmt: skip
            for x, _ in batches:
                yield torch.from_numpy(x)
            epoch, skip = epoch + 1, 0


def _as_rows(batch: Any) -> torch.Tensor:
    """A batch from an iterable: a tensor, or the first element of a tuple / list."""
    if isinstance(batch, tuple | list) and batch:
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise ValueError(f"data: expected batches that are tensors (B, d) or tuples of them, got {type(batch).__name__}")  # fmt: skip
    return batch


class IterableSource:
    """Batches from any iterable (a DataLoader, a list of tensors, a generator).

    Re-iterable data is read again each epoch; a one-shot iterator ends training when it runs out.
    Resuming replays the iterable and drops the first ``start`` batches, so it is exact only when
    iterating again yields the same batches. Rank r takes the r-th slice of every batch.
    """

    steps_per_epoch = None

    def __init__(self, data: Iterable, rank: int, world: int):
        self.data, self.rank, self.world = data, rank, world

    def iterate(self, start: int) -> Iterator[torch.Tensor]:
        seen, emitted_in_pass = 0, 1
        while emitted_in_pass:  # an empty pass (exhausted one-shot iterator) ends the stream
            emitted_in_pass = 0
            for batch in self.data:
                emitted_in_pass += 1
                seen += 1
                if seen <= start:
                    continue
                x = _as_rows(batch)
                if len(x) % self.world:
                    raise ValueError(f"data: a batch of {len(x)} rows does not split evenly over {self.world} ranks")  # fmt: skip
                b = len(x) // self.world
                yield x[self.rank * b : (self.rank + 1) * b]
            if iter(self.data) is self.data:  # a one-shot iterator: no second pass
                return


def data_source(
    data: Any, d: int, batch_size: int, seed: int, rank: int, world: int, buffer_rows: int | None
):
    """The source of :func:`~workbench.sae.training.train`'s ``data``: a tensor, a store or an iterable."""
    if isinstance(data, torch.Tensor):
        if data.ndim != 2 or data.shape[1] != d or not data.is_floating_point():
            raise ValueError(f"data: expected float activations of shape (N, {d}), got {data.dtype} {tuple(data.shape)}")  # fmt: skip
        if len(data) < batch_size:
            raise ValueError(f"data: {len(data)} rows, fewer than one batch of batch_size={batch_size}")
        return TensorSource(data, batch_size, seed, rank, world)
    if isinstance(data, ActivationStore):
        if data.shape[1] != d:
            raise ValueError(
                f"data: the store holds rows of dimension {data.shape[1]}, the SAE expects d={d}"
            )
        src = StoreSource(data, batch_size, seed, rank, world, buffer_rows)
        if src.steps_per_epoch < 1:
            raise ValueError(f"data: the store's {len(data)} rows do not fill one batch of {batch_size} over {world} ranks")  # fmt: skip
        return src
    if isinstance(data, Iterable):
        return IterableSource(data, rank, world)
    raise ValueError(f"data: expected a tensor (N, {d}), an ActivationStore or an iterable of batches, got {type(data).__name__}")  # fmt: skip
