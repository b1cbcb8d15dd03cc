"""Activations of one layer over a dataset, written to a chunked zarr v3 store and read back shuffled.

Storage layout (a zarr v3 group at ``path``, local filesystem)::

    activations  (rows, C) float32|float16, chunks (chunk_rows, C), NaN where not yet written
    labels       (n_images,) int64|float32, chunks (block_images,)   only when the data yield labels
    done         (n_blocks,) bool, chunks (1,)                       True once block i is on disk
    attrs        model_spec, layer, pooling, rows_per_image, n_images, batch_size, block_images, ...

Images are processed in *write blocks* of ``block_images`` images (a whole number of forward batches,
sized so a block holds about 4 MiB of activations; a single batch when one batch is bigger). Block ``i``
owns images ``[i * block_images, (i + 1) * block_images)`` and the rows they produce, and those rows
fill whole chunks that no other block touches. So rewriting a block is idempotent, a killed run resumes by
redoing the blocks whose ``done`` flag is missing (the flag is written after the data; zarr renames chunk
files into place atomically), and workers (``rank`` / ``world_size``) can write disjoint blocks of one
store at the same time: ``done`` has one chunk per block, so no two writers share a file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench._core.devices import module_device
from workbench._core.validation import check_images

FORMAT = "workbench.activation_store/1"
POOLINGS = ("mean", "cls", "none")
_BUFFER_BYTES = 128 * 2**20  # default shuffle window


def default_window_rows(d: int) -> int:
    """Default shuffle-window size in rows: about 128 MiB of float32 rows of dimension ``d``."""
    return _BUFFER_BYTES // (4 * d)


def shuffle_window_batches(
    windows: Sequence[np.ndarray],
    batch_size: int,
    rng: np.random.Generator | None,
    ids: Callable[[np.ndarray], np.ndarray],
    read: Callable[[np.ndarray], np.ndarray],
    read_ids: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    skip: int = 0,
    limit: int | None = None,
    tail: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The one shuffle window of chunked rows: ``(rows, row_ids)`` batches with bounded memory.

    Walks ``windows`` (groups of chunk ids, in the caller's order), permutes the rows of each window
    together with the rows left over from the previous one (``rng``; None keeps the order), and cuts
    batches of ``batch_size`` rows. A background thread reads the next window while this one is
    consumed, so memory holds about two windows. Used by :meth:`ActivationStore.batches` and by the SAE
    trainer's store source (which adds resuming and a per-epoch cap).

    Parameters
    ----------
    windows
        Chunk ids per window.
    batch_size
        Rows per batch.
    rng
        Draws one permutation per window (None: no shuffling).
    ids, read
        ``ids(window)`` the row ids of a window's chunks (cheap, no data read) and ``read(window)`` their
        rows, in the same order.
    read_ids
        Rows by id, for the rows left over from skipped windows (needed with ``skip``).
    skip
        Batches to drop first without reading them: windows that lie wholly before the resume point
        only draw their permutation (so the random stream is the same as an unskipped run's).
    limit
        Stop after this many batches (counting skipped ones).
    tail
        Yield the last short batch of leftover rows.
    """
    b, k = batch_size, 0  # k: batches emitted (or skipped)
    ids_left, x_left = np.empty(0, np.int64), None  # x_left None: leftover rows known by id only
    with ThreadPoolExecutor(1) as reader:
        ahead = None
        for j, win in enumerate(windows):
            wids = np.concatenate([ids_left, ids(win)])
            perm = rng.permutation(len(wids)) if rng is not None else None
            full = len(wids) - len(wids) % b
            n_batches = full // b if limit is None else min(full // b, limit - k)
            if skip and k + n_batches <= skip:  # the whole window lies before the resume point: ids only
                ids_left, x_left, k = (wids if perm is None else wids[perm])[full:], None, k + n_batches
                if limit is not None and k >= limit:
                    return
                continue
            x = ahead.result() if ahead is not None else read(win)
            ahead = reader.submit(read, windows[j + 1]) if j + 1 < len(windows) else None  # prefetch
            if len(ids_left):
                if x_left is None:  # rows left by a skipped window: fetch them by id (< one batch)
                    x_left = read_ids(ids_left)
                x = np.concatenate([x_left, x])
            if perm is not None:
                x, wids = x[perm], wids[perm]
            for s in range(n_batches):
                if k >= skip:
                    yield x[s * b : (s + 1) * b], wids[s * b : (s + 1) * b]
                k += 1
            if limit is not None and k >= limit:
                if ahead is not None:
                    ahead.cancel() or ahead.result()  # do not leave a read running past the caller's stop
                return
            ids_left, x_left = wids[full:], x[full:]
        if tail and len(ids_left) and x_left is not None:
            yield x_left, ids_left


def _pool(a: torch.Tensor, pooling: str) -> torch.Tensor:
    """(N,C,H,W) or (N,T,C) or (N,C) -> rows (N*rows_per_image, C), in float32."""
    if a.ndim == 4:  # CNN map; "none" keeps one row per position, ordered image, h, w
        if pooling == "cls":
            raise ValueError(f"pooling='cls' needs token activations (N, T, C), got a map {tuple(a.shape)}")
        return (
            a.mean((2, 3), dtype=torch.float32) if pooling == "mean" else a.permute(0, 2, 3, 1).flatten(0, 2)
        )
    if a.ndim == 3:  # tokens
        if pooling == "mean":
            return a.mean(1, dtype=torch.float32)
        return a[:, 0] if pooling == "cls" else a.flatten(0, 1)
    if a.ndim == 2 and pooling != "cls":
        return a
    raise ValueError(f"cannot pool activations of shape {tuple(a.shape)} with pooling={pooling!r}")


def _jsonable(obj: Any) -> Any:
    """Attributes must be JSON: tensors become lists, anything exotic its str()."""
    if isinstance(obj, torch.Tensor | np.ndarray):
        obj = obj.tolist()
    return json.loads(json.dumps(obj, default=str))


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xai-workbench")
    except PackageNotFoundError:  # running from a source tree
        return None


def _scalar_label(v: Any) -> torch.Tensor | None:
    """A dataset item's label as a 0-d tensor, or None when it is not a number (a string, a mask)."""
    try:
        t = torch.as_tensor(v)
    except (TypeError, ValueError, RuntimeError):
        return None
    return t if t.ndim == 0 and t.dtype != torch.bool else None


class _Images:
    """Uniform batch access to a (N,3,H,W) tensor or a map-style Dataset of images / (image, label, ...)."""

    def __init__(self, data: Any, labels: torch.Tensor | None):
        self.data, self.is_tensor = data, isinstance(data, torch.Tensor)
        if self.is_tensor:
            check_images(data[:1], name="data", channels=None, value_range=None)
        elif not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
            raise ValueError(
                f"data: expected a tensor (N, 3, H, W) or a map-style Dataset with __len__ and __getitem__,"
                f" got {type(data).__name__}"
            )
        self.n = len(data)
        if self.n == 0:
            raise ValueError("data: got an empty dataset")
        self.labels = None if labels is None else torch.as_tensor(labels)
        if self.labels is not None and (not self.is_tensor or self.labels.shape != (self.n,)):
            raise ValueError(
                f"labels: expected a ({self.n},) tensor alongside tensor data, got {labels!r:.60}"
            )
        first = None if self.is_tensor else data[0]  # a Dataset's labels come from its items
        if isinstance(first, tuple | list) and len(first) > 1:
            self.labels = _scalar_label(first[1])  # only its dtype matters here
        self.has_labels = self.labels is not None
        self.label_dtype = (
            ("float32" if self.labels.is_floating_point() else "int64") if self.has_labels else None
        )

    def get(self, start: int, stop: int) -> tuple[torch.Tensor, np.ndarray | None]:
        if self.is_tensor:
            x = self.data[start:stop]
            y = None if self.labels is None else self.labels[start:stop]
        else:  # stack one batch of items, never more: the dataset is consumed lazily
            pairs = [
                it if isinstance(it, tuple | list) else (it,)
                for it in map(self.data.__getitem__, range(start, stop))
            ]
            if not isinstance(pairs[0][0], torch.Tensor | np.ndarray):
                raise ValueError(f"data[{start}]: expected an image tensor (3, H, W) in [0, 1], got "
                                 f"{type(pairs[0][0]).__name__} (convert it in the dataset, e.g. with to_tensor)")  # fmt: skip
            x = torch.stack([torch.as_tensor(p[0]) for p in pairs])
            y = torch.stack([torch.as_tensor(p[1]) for p in pairs]) if self.has_labels else None
        check_images(x, name=f"data[{start}:{stop}]", channels=None)
        return x, (None if y is None else y.cpu().numpy().astype(self.label_dtype))


def _geometry(batch_size: int, rpi: int, row_bytes: int, n: int, chunk_bytes: int) -> tuple[int, int]:
    """(block_images, chunk_rows): a block is k whole batches; its rows split into equal chunks."""
    batch_rows = batch_size * rpi
    if batch_rows * row_bytes <= chunk_bytes:
        k = max(1, min(chunk_bytes // (batch_rows * row_bytes), math.ceil(n / batch_size)))
        return batch_size * k, batch_size * k * rpi
    # One batch is more than a chunk: the largest divisor of its rows that fits keeps chunks aligned.
    limit = max(1, chunk_bytes // row_bytes)
    best = max(d for i in range(1, math.isqrt(batch_rows) + 1) if batch_rows % i == 0
               for d in (i, batch_rows // i) if d <= limit)  # fmt: skip
    return batch_size, best


def extract_activations(
    model: torch.nn.Module,
    layer: str,
    data: torch.Tensor | torch.utils.data.Dataset,
    path: str | os.PathLike,
    pooling: str = "mean",
    batch_size: int = 64,
    dataset_name: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    dtype: str = "float32",
    labels: torch.Tensor | None = None,
    chunk_bytes: int = 4 * 2**20,
    compress: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> ActivationStore:
    """Run ``model`` over ``data`` and write one layer's (pooled) activations to a zarr store.

    Parameters
    ----------
    model
        A ``workbench.models.Model`` (anything with ``activations(x, layer)`` and ``spec``).
    layer
        The layer name, as listed by ``model.layers()``.
    data
        Images (N, 3, H, W) in [0, 1], or a map-style Dataset of images or (image, label, ...) tuples.
    path
        A local directory for the zarr v3 store.
    pooling
        "mean" (one row per image), "cls" (token 0 of (N, T, C) activations) or "none" (one row per
        spatial position or token, ordered image, then h, then w / token).
    batch_size
        Images per forward pass (a new store's write blocks are whole numbers of batches).
    dataset_name
        Recorded in the attributes (default: the data's ``name`` attribute or class name).
    progress
        Show a tqdm bar over images.
    overwrite
        Replace an existing activation store made with different arguments instead of raising.
    dtype
        "float32" or "float16" for the stored activations (rows always read back as float32).
    labels
        Per-image labels for tensor ``data`` (a Dataset's labels are taken from its items).
    chunk_bytes
        Target chunk size of a new store. Reading costs about a millisecond per chunk whatever its
        size, so chunks should not be tiny; a write block (the unit of resuming and of splitting
        between ranks) holds about this much. An existing store keeps its own layout.
    compress
        Compress a new store's chunks with zstd level 1 (about half the disk for post-ReLU
        activations); False writes and reads several times faster.
    rank, world_size
        Process only the write blocks with ``index % world_size == rank`` (for torchrun workers).

    Returns
    -------
    ActivationStore
        The store at ``path``; complete once every rank has finished.

    Notes
    -----
    A re-run with the same path and arguments skips the finished blocks (a store that is already
    complete costs no forward pass); ``batch_size`` may differ, as the layout is fixed in the store.
    Memory holds the current forward batch, the block being filled and at most one block being
    written by a background thread (so writing overlaps the next block's forward passes).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype: expected 'float32' or 'float16', got {dtype!r}")
    if not isinstance(layer, str):
        raise ValueError(f"layer: expected one layer name (str), got {type(layer).__name__}")
    if batch_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"expected batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, {world_size}"
        )
    if overwrite and world_size > 1:
        raise ValueError("overwrite=True with world_size > 1 would let workers delete each other's work;"
                         " delete the store before launching the workers")  # fmt: skip
    images = _Images(data, labels)
    path = Path(path)
    # What a re-run must agree on; the layout (block_images, chunk_rows) is read from the store.
    signature = {
        "model_spec": str(getattr(model, "spec", type(model).__name__)), "layer": layer, "pooling": pooling,
        "n_images": images.n, "dtype": dtype, "has_labels": images.has_labels,
        "dataset_name": dataset_name or getattr(data, "name", None) or type(data).__name__,
    }  # fmt: skip
    import zarr

    device, was_training = module_device(model), model.training
    model.eval()  # BatchNorm / dropout in inference behaviour; the caller's mode is restored below

    def run(start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        x, y = images.get(start, stop)
        with torch.inference_mode():
            rows = _pool(model.activations(x.to(device), layer)[layer], pooling)
            return rows.to("cpu", torch.float32).numpy(), y

    try:
        if overwrite and (path / "zarr.json").exists():
            ActivationStore(path, allow_incomplete=True)  # raises unless it is an activation store: never
            shutil.rmtree(path)  # delete a directory we did not make
        if not (path / "zarr.json").exists():
            probe, _ = run(0, 1)  # one image tells rows_per_image and C, so every rank agrees on the layout
            _create(path, signature, probe.shape, images, model, data, chunk_bytes, batch_size, compress)
        store = ActivationStore(path, allow_incomplete=True)
        store._check_signature(signature)
        group = zarr.open_group(path, mode="r+", zarr_format=3)
        meta, done_arr, acts = store.meta, group["done"], group["activations"]
        block, rpi, n = meta["block_images"], meta["rows_per_image"], images.n
        done = done_arr[:]
        todo = [b for b in range(rank, len(done), world_size) if not done[b]]
        from tqdm.auto import tqdm

        def write(b: int, lo: int, hi: int, buf: np.ndarray, ys: list) -> None:
            acts[lo * rpi : hi * rpi] = buf
            if images.has_labels:
                group["labels"][lo:hi] = np.concatenate(ys)
            done_arr[b] = True  # after the data: a block is never marked done before it is on disk

        total = sum(min(n, (b + 1) * block) - b * block for b in todo)
        pending = None
        with (
            tqdm(total=total, desc=f"activations {layer}", disable=not progress, leave=False) as bar,
            ThreadPoolExecutor(1) as writer,
        ):
            for b in todo:
                lo, hi = b * block, min(n, (b + 1) * block)
                buf, ys = np.empty(((hi - lo) * rpi, meta["shape"][1]), dtype=dtype), []
                for s in range(lo, hi, batch_size):
                    rows, y = run(s, min(hi, s + batch_size))
                    buf[(s - lo) * rpi : (s - lo) * rpi + len(rows)] = rows
                    ys.append(y)
                    bar.update(len(rows) // rpi)
                if pending is not None:
                    pending.result()  # at most one block in flight: memory stays bounded; errors surface
                pending = writer.submit(write, b, lo, hi, buf, ys)
            if pending is not None:
                pending.result()
        store._complete, store.allow_incomplete = None, False  # reading an unfinished store must fail
        return store
    finally:
        model.train(was_training)


def _create(path: Path, signature: dict, probe_shape: tuple, images: _Images, model: Any, data: Any,
            chunk_bytes: int, batch_size: int, compress: bool) -> None:  # fmt: skip
    """Create an empty store in a temporary sibling and rename it into place (atomic; racing ranks agree)."""
    import zarr
    from zarr.codecs import ZstdCodec

    (rpi, channels), n, dtype = probe_shape, images.n, signature["dtype"]
    block, chunk_rows = _geometry(batch_size, rpi, channels * np.dtype(dtype).itemsize, n, chunk_bytes)
    if path.exists() and any(path.iterdir()) and not (path / "zarr.json").exists():
        raise ValueError(f"{path} exists and is not an activation store; choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    group = zarr.open_group(tmp, mode="w", zarr_format=3)
    # zstd level 1 compresses activations as well as zarr's default level and writes 2-3x faster
    group.create_array("activations", shape=(n * rpi, channels), chunks=(chunk_rows, channels), dtype=dtype,
                       fill_value=np.nan, compressors=ZstdCodec(level=1) if compress else None)  # fmt: skip
    group.create_array("done", shape=(math.ceil(n / block),), chunks=(1,), dtype="bool", fill_value=False)
    if images.has_labels:
        group.create_array("labels", shape=(n,), chunks=(block,), dtype=images.label_dtype, fill_value=0)
    prep = {k: _jsonable(getattr(model, k)) for k in ("mean", "std", "input_size") if hasattr(model, k)}
    group.attrs.update(_jsonable({
        **signature, "format": FORMAT, "rows_per_image": rpi, "batch_size": batch_size, "shape": [n * rpi, channels],
        "block_images": block, "chunk_rows": chunk_rows, "compressed": compress, "dataset_config": getattr(data, "config", None),
        "preprocessing": prep, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "workbench_version": _version(),
    }))  # fmt: skip
    try:
        os.rename(tmp, path)  # fails if another rank got there first: use theirs (its signature is checked)
    except OSError:
        if not (path / "zarr.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ActivationStore:
    """An activation store written by :func:`extract_activations`, opened for reading.

    Parameters
    ----------
    path
        The store directory.
    allow_incomplete
        Read a store whose extraction has not finished: unwritten rows read as NaN, and
        :meth:`batches` yields only the rows of finished blocks. Otherwise reading raises.
    """

    def __init__(self, path: str | os.PathLike, allow_incomplete: bool = False):
        import zarr

        self.path = Path(path)
        if not (self.path / "zarr.json").exists():
            raise FileNotFoundError(f"no activation store at {self.path} (expected a zarr v3 group)")
        self._group = zarr.open_group(self.path, mode="r", zarr_format=3)
        self.meta: dict[str, Any] = dict(self._group.attrs)
        if self.meta.get("format") != FORMAT:
            raise ValueError(
                f"{self.path} is a zarr group but not an activation store (format={self.meta.get('format')!r})"
            )
        self._acts = self._group["activations"]
        self.allow_incomplete = allow_incomplete
        self._complete: bool | None = None

    def __repr__(self) -> str:
        m = self.meta
        return (f"ActivationStore({str(self.path)!r}, shape={self.shape}, layer={m['layer']!r}, "
                f"pooling={m['pooling']!r}, model={m['model_spec']!r}, complete={self.complete})")  # fmt: skip

    def __len__(self) -> int:
        return self.meta["shape"][0]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, channels)."""
        return tuple(self.meta["shape"])

    @property
    def rows_per_image(self) -> int:
        return self.meta["rows_per_image"]

    @property
    def done(self) -> np.ndarray:
        """Completion flag per write block (read from disk each time)."""
        return self._group["done"][:]

    @property
    def complete(self) -> bool:
        """Whether every write block is on disk."""
        if not self._complete:  # once complete, always complete: skip re-reading the flags
            self._complete = bool(self.done.all())
        return self._complete

    def _check_readable(self) -> None:
        if self.allow_incomplete or self.complete:
            return
        done = self.done
        raise RuntimeError(
            f"activation store {self.path} is incomplete: {int((~done).sum())} of {len(done)} write blocks"
            f" ({self.meta['block_images']} images each) are missing. Re-run extract_activations with the same"
            " arguments to finish it, or open it with allow_incomplete=True to read what is there"
        )

    def _check_signature(self, signature: dict) -> None:
        diff = [
            f"{k}={self.meta.get(k)!r} (this call: {v!r})" for k, v in signature.items() if self.meta[k] != v
        ]
        if diff:
            raise ValueError(f"the store at {self.path} was made with different arguments: {', '.join(diff)};"
                             " pass overwrite=True to replace it, or choose another path")  # fmt: skip

    @property
    def image_labels(self) -> torch.Tensor | None:
        """One label per image, or None when the data had no labels."""
        return torch.from_numpy(self._group["labels"][:]) if "labels" in self._group else None

    @property
    def labels(self) -> torch.Tensor | None:
        """One label per row (each image's label repeated ``rows_per_image`` times), or None."""
        y = self.image_labels
        return None if y is None else y.repeat_interleave(self.rows_per_image)

    def __getitem__(self, idx: int | slice | Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Rows as a float32 tensor: an int gives (C,), a slice or a 1-D index array (K, C)."""
        self._check_readable()
        if isinstance(idx, int | np.integer | slice):
            out = self._acts[idx]
        else:  # zarr's orthogonal indexing takes unsorted, repeated and negative indices
            out = self._acts.oindex[np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx, np.int64)]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def to_tensor(self, max_bytes: int | None = 2 * 2**30) -> torch.Tensor:
        """All rows as one float32 tensor; refuses stores above ``max_bytes`` (None: no limit)."""
        nbytes = len(self) * self.shape[1] * 4
        if max_bytes is not None and nbytes > max_bytes:
            raise MemoryError(f"the store holds {nbytes / 2**30:.2f} GiB of float32 activations, above max_bytes ="
                              f" {max_bytes / 2**30:.2f} GiB; stream it with store.batches() or raise max_bytes")  # fmt: skip
        return self[:]

    def _read_chunks(self, chunk_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the given chunks, as float32, and their row ids (a slice per chunk: zarr's integer
        indexing is 3x slower)."""
        cr, n = self.meta["chunk_rows"], len(self)
        spans = [(c * cr, min(n, (c + 1) * cr)) for c in np.sort(chunk_ids)]
        x = np.concatenate([self._acts[a:b] for a, b in spans]).astype(np.float32, copy=False)
        return x, np.concatenate([np.arange(a, b) for a, b in spans])

    def _chunk_row_ids(self, chunk_ids: np.ndarray) -> np.ndarray:
        """Row ids of the given chunks, in the order :meth:`_read_chunks` returns their rows."""
        cr, n = self.meta["chunk_rows"], len(self)
        return np.concatenate([np.arange(c * cr, min(n, (c + 1) * cr)) for c in np.sort(chunk_ids)])

    def batches(
        self,
        batch_size: int = 1024,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        device: str | torch.device | None = None,
        epochs: int = 1,
        buffer_rows: int | None = None,
        return_labels: bool = False,
    ) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Stream rows as float32 tensors (B, C), shuffled with bounded memory.

        Shuffle scheme: each epoch draws a random order of the chunks (``seed`` and the epoch number
        seed a numpy generator), walks it in windows of ``buffer_rows // chunk_rows`` chunks, and
        permutes the rows of each window together with the rows left over from the previous window.
        Every row appears exactly once per epoch. A background thread reads the next window while
        this one is consumed, so memory holds two windows. Rows far apart in the store meet in a
        batch only through the chunk order: the larger the window, the closer to a full shuffle.

        Parameters
        ----------
        batch_size
            Rows per batch; the last batch of an epoch is smaller unless ``drop_last``.
        shuffle
            False reads rows in store order.
        seed
            Same seed, same batches.
        drop_last
            Drop each epoch's final short batch.
        device
            Move batches there (default CPU).
        epochs
            Passes over the data, each with a fresh order.
        buffer_rows
            Shuffle-window size in rows (default: about 128 MiB of float32 rows, at least one chunk).
        return_labels
            Yield (rows, labels) pairs, labels being the per-row image labels.
        """
        self._check_readable()
        if batch_size < 1 or epochs < 0:
            raise ValueError(f"expected batch_size >= 1 and epochs >= 0, got {batch_size}, {epochs}")
        y_img = self.image_labels
        if return_labels and y_img is None:
            raise ValueError(f"return_labels=True but the store at {self.path} has no labels")
        cr, rpi = self.meta["chunk_rows"], self.rows_per_image
        chunks = np.arange(math.ceil(len(self) / cr))
        if not self.complete:  # allow_incomplete: only chunks of finished blocks (a chunk lies in one block)
            chunks = chunks[self.done[(chunks * cr) // (self.meta["block_images"] * rpi)]]
        window = max(1, (buffer_rows or default_window_rows(self.shape[1])) // cr)
        for epoch in range(epochs):
            rng = np.random.default_rng([seed, epoch])
            order = rng.permutation(chunks) if shuffle else chunks
            windows = [order[w : w + window] for w in range(0, len(order), window)]
            for x, r in shuffle_window_batches(windows, batch_size, rng if shuffle else None, self._chunk_row_ids,
                                               lambda w: self._read_chunks(w)[0], tail=not drop_last):  # fmt: skip
                yield self._emit(x, r, y_img, device, return_labels)

    def _emit(self, x: np.ndarray, rows: np.ndarray, y_img: torch.Tensor | None, device, return_labels: bool):
        xt = torch.from_numpy(np.ascontiguousarray(x)).to(device or "cpu")
        if not return_labels:
            return xt
        return xt, y_img[torch.from_numpy(rows // self.rows_per_image)].to(device or "cpu")
