"""Train any sparse dictionary: one loop for every variant, on a tensor, an ActivationStore or batches.

:func:`train` drives a :class:`~workbench.sae.base.SparseAutoencoder` through its fixed interface
(``sae(x) -> (codes, x_hat)``, ``sae.loss(...)["loss"]``, ``sae.constrain()`` after every step). It
streams an :class:`~workbench.data.activation_store.ActivationStore` window by window (memory holds two
shuffle windows, whatever the store's size), resumes exactly from its checkpoints, and runs unchanged
under ``torchrun`` with DistributedDataParallel.

Optional hooks a dictionary may define
--------------------------------------
The trainer looks for two methods on the SAE and uses them when present; a variant needs neither.

``aux_loss(x, codes, x_hat, dead_mask) -> Tensor | None``
    An auxiliary term added to ``loss`` at every step where some atom is dead, already weighted by the
    model's own coefficient. ``dead_mask`` is a bool tensor (n_atoms,) on the model's device: True for
    atoms that fired on no input during the last ``dead_window`` steps (over all ranks). The trainer
    does not call it while no atom can be dead (TopK-aux costs a second encoder pass and a decoder
    pass): it keeps ``min(last fired step) + dead_window``, the first step at which an atom could be
    dead, and reads it from the device only when that step is reached. It is meant for TopK-aux (Gao et al.
    2024, arXiv:2406.04093, section A.2): reconstruct the residual ``x - x_hat.detach()`` from the
    ``k_aux`` largest pre-activations of the dead atoms only, and return
    ``aux_coeff * mse(residual_hat, residual) / residual.var()``-style scaling of the variant's choice.
    Return a zero (or None) when no atom is dead. The term is logged as ``"aux"`` (0 at steps without it).
``revive(dead_mask, x) -> None`` (or MPSAE's ``revive_dead_atoms(x, dead)``)
    Called without gradient every ``revive_every`` steps when some atom is dead (matching-pursuit SAEs
    re-seed dead atoms from the current batch ``x`` of this rank). Under DDP every rank calls it and the
    parameters and buffers of rank 0 are then broadcast, so the ranks stay identical. Revived atoms get
    a fresh ``dead_window`` before they can count as dead again.

Checkpoints
-----------
``checkpoint_dir/checkpoint.pt`` holds the model, optimizer, scheduler, GradScaler, dead-atom tracker,
history, the torch CPU and CUDA random states of every rank, and the step. The data position is a
function of ``(seed, step)`` for tensors and stores (each epoch's order is drawn from ``[seed, epoch]``),
so resuming seeks to it without reading the skipped data; an iterable of batches is replayed and the
first ``step`` batches skipped. Files are written under a temporary name and renamed, so a process
killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench._core.devices import module_device, resolve_device
from workbench._core.progress import progress as _progress
from workbench._core.serialization import atomic_write_bytes, load_result, save_result
from workbench._core.validation import check_int

__all__ = ["TrainHistory", "train", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = "workbench.sae.checkpoint/1"
_BUFFER_BYTES = 128 * 2**20  # default shuffle window of a store, as in ActivationStore.batches


@dataclass
class TrainHistory:
    """What :func:`train` logged, one entry per logged step.

    ``loss``, ``r2``, ``l0`` and the ``terms`` are means over the steps since the previous log (and over
    all ranks); ``dead_fraction`` is the fraction of atoms that fired on no input during the last
    ``dead_window`` steps, at the logged step.

    Attributes
    ----------
    step
        Number of optimizer steps done at each log.
    tokens
        Activation rows seen at each log (``step * batch_size``).
    loss
        The minimized loss (the model's ``"loss"`` plus the auxiliary term, if any).
    r2
        Explained variance of each batch as :func:`workbench.sae.metrics.r2` defines it (per dimension,
        about the batch mean, averaged over dimensions), over the global batch under DDP.
    l0
        Mean number of non-zero codes per row.
    dead_fraction
        Fraction of dead atoms.
    lr
        Learning rate at each log.
    terms
        Every other term the model's loss returned (``"mse"``, ``"l1"``, ``"aux"``, ...).
    seconds
        Wall-clock seconds spent training up to each log (summed over resumed runs).
    """

    step: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    r2: list[float] = field(default_factory=list)
    l0: list[float] = field(default_factory=list)
    dead_fraction: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.step)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path.json`` (and an empty ``path.safetensors``) with :func:`save_result`."""
        return save_result(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainHistory:
        """Read what :meth:`save` wrote."""
        return load_result(path, cls)


# -- data -----------------------------------------------------------------------------------------------
def _epoch_rng(seed: int, *keys: int) -> np.random.Generator:
    # Drawn from (seed, epoch[, rank, world]) rather than advanced from one generator: any position
    # can be reached on resume without replaying the draws before it.
    return np.random.default_rng([int(seed), *map(int, keys)])


class _TensorSource:
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


class _StoreSource:
    """Rows of an ActivationStore, streamed with bounded memory; each rank reads only its own chunks.

    Each epoch draws one order of the chunks (the same on every rank); rank r takes chunks r, r+R, ...
    of it, walks them in windows of about ``buffer_rows`` rows, permutes the rows of each window with
    the rows left from the previous one and cuts local batches (``batch_size / R`` rows). A background
    thread reads the next window while this one is consumed. Every rank stops each epoch after the same
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
        rows = buffer_rows if buffer_rows is not None else _BUFFER_BYTES // (4 * d)
        self.window = max(1, int(rows) // self.cr)

    def _read(self, chunks: np.ndarray) -> np.ndarray:
        # Slices, one per chunk (the store's integer indexing is several times slower).
        return np.concatenate([self.store[int(c) * self.cr : int(c) * self.cr + int(self.sizes[c])].numpy()
                               for c in chunks])  # fmt: skip

    def _ids(self, chunks: np.ndarray) -> np.ndarray:
        return np.concatenate([np.arange(c * self.cr, c * self.cr + self.sizes[c]) for c in chunks])

    def iterate(self, start: int) -> Iterator[torch.Tensor]:
        epoch, skip = divmod(start, self.steps_per_epoch)
        with ThreadPoolExecutor(1) as reader:
            while True:
                yield from self._epoch(epoch, skip, reader)
                epoch, skip = epoch + 1, 0

    def _epoch(self, epoch: int, skip: int, reader: ThreadPoolExecutor) -> Iterator[torch.Tensor]:
        order = _epoch_rng(self.seed, epoch).permutation(self.n_chunks)
        mine = order[self.rank :: self.world]
        windows = [mine[w : w + self.window] for w in range(0, len(mine), self.window)]
        rng = _epoch_rng(self.seed, epoch, self.rank, self.world)
        b, k = self.b, 0  # k: local batches emitted (or skipped) in this epoch
        ids_left, x_left = np.empty(0, np.int64), None  # x_left None: rows known by id only (skipped)
        ahead = None
        for j, win in enumerate(windows):
            ids = np.concatenate([ids_left, self._ids(win)])
            perm = rng.permutation(len(ids))
            full = len(ids) - len(ids) % b
            n_batches = min(full // b, self.steps_per_epoch - k)
            if k + n_batches <= skip:  # this whole window lies before the resume point: ids only
                ids_left, x_left, k = ids[perm][full:], None, k + n_batches
                if k >= self.steps_per_epoch:
                    return
                continue
            x = ahead.result() if ahead is not None else self._read(win)
            if j + 1 < len(windows):  # prefetch: reading overlaps the training steps on this window
                ahead = reader.submit(self._read, windows[j + 1])
            if len(ids_left):
                if x_left is None:  # rows left by a skipped window: fetch them by id (< one batch)
                    x_left = self.store[ids_left].numpy()
                x = np.concatenate([x_left, x])
            x = x[perm]
            for s in range(n_batches):
                if k >= skip:
                    yield torch.from_numpy(x[s * b : (s + 1) * b])
                k += 1
            if k >= self.steps_per_epoch:
                if ahead is not None:
                    ahead.cancel() or ahead.result()  # do not leave a read running into the next epoch
                return
            ids_left, x_left = ids[perm][full:], x[full:]


def _as_rows(batch: Any) -> torch.Tensor:
    """A batch from an iterable: a tensor, or the first element of a tuple / list."""
    if isinstance(batch, tuple | list) and batch:
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise ValueError(f"data: expected batches that are tensors (B, d) or tuples of them, got {type(batch).__name__}")  # fmt: skip
    return batch


class _IterableSource:
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


def _source(data: Any, d: int, batch_size: int, seed: int, rank: int, world: int, buffer_rows: int | None):
    from workbench.data.activation_store import ActivationStore

    if isinstance(data, torch.Tensor):
        if data.ndim != 2 or data.shape[1] != d or not data.is_floating_point():
            raise ValueError(f"data: expected float activations of shape (N, {d}), got {data.dtype} {tuple(data.shape)}")  # fmt: skip
        if len(data) < batch_size:
            raise ValueError(f"data: {len(data)} rows, fewer than one batch of batch_size={batch_size}")
        return _TensorSource(data, batch_size, seed, rank, world)
    if isinstance(data, ActivationStore):
        if data.shape[1] != d:
            raise ValueError(
                f"data: the store holds rows of dimension {data.shape[1]}, the SAE expects d={d}"
            )
        src = _StoreSource(data, batch_size, seed, rank, world, buffer_rows)
        if src.steps_per_epoch < 1:
            raise ValueError(f"data: the store's {len(data)} rows do not fill one batch of {batch_size} over {world} ranks")  # fmt: skip
        return src
    if isinstance(data, Iterable):
        return _IterableSource(data, rank, world)
    raise ValueError(f"data: expected a tensor (N, {d}), an ActivationStore or an iterable of batches, got {type(data).__name__}")  # fmt: skip


# -- distributed ----------------------------------------------------------------------------------------
def _distributed() -> tuple[int, int, bool]:
    """(rank, world_size, created): joins the torchrun process group when the environment names one."""
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def _all_mean(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
        t = t / world
    return t


# -- metrics ------------------------------------------------------------------------------------------------
# R2 has the definition of workbench.sae.metrics.r2 (per dimension, each about its own mean, then averaged),
# but is computed here from per-step sufficient statistics: under DDP the ranks sum them at log time, so
# the logged value is the global batch's, equal to a 1-process run's, at no per-step communication.
def _r2_stats(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-step sums (1 + 4d values) from which the R2 of the union of the ranks' batches follows.

    float64, because pooling the ranks' variances subtracts squared means that can dwarf the variance.
    """
    dt = torch.float32 if x.device.type == "mps" else torch.float64  # MPS has no float64
    m = x.mean(0)
    rows = x.new_full((1,), float(len(x)), dtype=dt)
    sse = (x - x_hat).pow(2).sum(0).to(dt)
    m2 = (x - m).pow(2).sum(0).to(dt)  # centred on this rank's mean: no cancellation here
    md = m.to(dt)
    return torch.cat([rows, sse, m2, rows * md.pow(2), rows * md])


def _r2_mean(stats: torch.Tensor, world: int) -> float:
    """Mean over steps of each global batch's R2, from stacked :func:`_r2_stats` (steps, 1 + 4d)."""
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(stats)
    rows, (sse, m2, q, s) = stats[:, :1], stats[:, 1:].chunk(4, dim=1)
    sst = m2 + q - s.pow(2) / rows  # per dimension, about the global batch's mean
    keep = sst > 1e-12 * sst.amax(1, keepdim=True).clamp_min(1e-30)  # constant dimensions: undefined
    r2 = ((1 - sse / sst.clamp_min(1e-30)) * keep).sum(1) / keep.sum(1).clamp_min(1)
    return float(r2.mean())


# -- learning rate ----------------------------------------------------------------------------------------
def _lr_lambda(schedule: str, warmup_steps: int, steps: int) -> Callable[[int], float]:
    def f(s: int) -> float:
        w = min(1.0, (s + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        if schedule == "cosine":
            return w * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(1, steps)))
        return w

    return f


# -- AMP ---------------------------------------------------------------------------------------------------
def _amp_dtype(amp: bool | str | None, device: torch.device) -> torch.dtype | None:
    if amp in (None, False, "off", "none"):
        return None
    if device.type != "cuda":
        if amp == "auto":
            return None  # CPU autocast is slower than float32 for these matmuls on most CPUs
        raise ValueError(f"amp={amp!r}: mixed precision is supported on CUDA only, the SAE is on {device}")
    if amp in ("auto", True):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp in ("bf16", "bfloat16"):
        return torch.bfloat16
    if amp in ("fp16", "float16"):
        return torch.float16
    raise ValueError(f"amp: expected 'auto', 'bf16', 'fp16' or False, got {amp!r}")


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# -- the loop ------------------------------------------------------------------------------------------------
def train(
    sae: nn.Module,
    data: torch.Tensor | Any | Iterable[torch.Tensor],
    steps: int,
    batch_size: int = 4096,
    lr: float = 4e-4,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    *,
    checkpoint_every: int = 1000,
    resume: bool = True,
    log_every: int = 50,
    dead_window: int = 1000,
    revive_every: int | None = None,
    warmup_steps: int = 0,
    schedule: str = "constant",
    clip_grad: float | None = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    amp: bool | str | None = "auto",
    buffer_rows: int | None = None,
    find_unused_parameters: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> TrainHistory:
    """Train a sparse dictionary in place with Adam; return its history.

    Parameters
    ----------
    sae
        A :class:`~workbench.sae.base.SparseAutoencoder` (any module with its interface). It may define
        the optional ``aux_loss`` and ``revive`` hooks described in this module's docstring.
    data
        Activations: a float tensor (N, d) (shuffled each epoch, partial last batch dropped), an
        :class:`~workbench.data.activation_store.ActivationStore` (streamed window by window, never
        loaded whole), or an iterable of batches (tensors (B, d) or tuples whose first item is one),
        iterated again each epoch.
    steps
        Total number of optimizer steps, counting those of a resumed checkpoint.
    batch_size
        Rows per step over all ranks (each of R ranks takes ``batch_size / R``); for an iterable, its
        own batch size applies.
    lr
        Peak learning rate of Adam.
    seed
        Seeds the data order and the torch random state inside the loop (the caller's random state is
        left untouched). Same seed, same data, same device: same weights.
    checkpoint_dir
        Where to write ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the end) and
        ``history.json``; with ``resume``, training continues from a checkpoint found there.
    device
        Where to train (the SAE is moved there). Default: the SAE's device; under torchrun with CUDA,
        ``cuda:LOCAL_RANK``.
    checkpoint_every
        Steps between checkpoints.
    resume
        Continue from ``checkpoint_dir/checkpoint.pt`` when it exists (it must have the same ``seed`` and
        ``batch_size``); False starts over and overwrites it.
    log_every
        Steps between history entries (and progress-bar updates); metrics are accumulated on the
        device in between, so logging costs one synchronisation per log, not per step.
    dead_window
        An atom is dead when it fired on no row during this many consecutive steps.
    revive_every
        Steps between calls to ``sae.revive(dead_mask, x)`` when the SAE has it (default
        ``dead_window``).
    warmup_steps
        Linear learning-rate warm-up from ``lr / warmup_steps`` to ``lr``.
    schedule
        "constant" (after warm-up) or "cosine" (decay to 0 at ``steps``). A cosine schedule depends on
        ``steps``: resuming with another ``steps`` bends it from that point.
    clip_grad
        Maximal gradient norm (None: no clipping).
    betas, weight_decay
        Adam's parameters (``weight_decay`` > 0 uses AdamW).
    amp
        Mixed precision on CUDA: "auto" (bf16 where supported, otherwise fp16 with a GradScaler),
        "bf16", "fp16" or False. "auto" is off on CPU; asking for it explicitly on CPU raises.
    buffer_rows
        Shuffle-window size in rows for a store (default about 128 MiB of float32 rows). Memory holds
        about three windows, whatever the store's size.
    find_unused_parameters
        Passed to DistributedDataParallel, for SAEs with parameters that receive no gradient at some
        steps.
    callback
        Called on rank 0 after each log with the logged record (a dict of floats).
    progress
        Show a tqdm bar over steps.

    Returns
    -------
    TrainHistory
        One entry per ``log_every`` steps (and the final step), including those of a resumed run.
        The SAE is left in eval mode.

    Notes
    -----
    Under ``torchrun`` the process group is joined (and stays joined for later calls), the
    SAE is wrapped in DistributedDataParallel, every rank reads its own shard (its slice of each global
    batch for a tensor, its own chunks for a store) and rank 0 writes checkpoints and history. The
    gradient of the mean loss over the global batch is the mean of the ranks' gradients for losses that
    are means over rows (all the variants but BatchTopK, whose batch-level threshold becomes per-rank).
    """
    for value, name, low in ((steps, "steps", 0), (batch_size, "batch_size", 1), (log_every, "log_every", 1),
                             (dead_window, "dead_window", 1), (checkpoint_every, "checkpoint_every", 1)):  # fmt: skip
        check_int(value, name, low)
    if not lr > 0:
        raise ValueError(f"lr: expected a number > 0, got {lr!r}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule: expected 'constant' or 'cosine', got {schedule!r}")
    for name in ("loss", "constrain"):
        if not callable(getattr(sae, name, None)):
            raise ValueError(f"sae: expected a SparseAutoencoder (with .loss and .constrain), got {type(sae).__name__}")  # fmt: skip
    revive_every = dead_window if revive_every is None else revive_every

    rank, world, created_group = _distributed()
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} does not split evenly over {world} ranks")
    if device is None:
        device = module_device(sae)
        if world > 1 and torch.cuda.is_available() and device.type == "cpu":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count())))
    device = resolve_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    sae.to(device)
    source = _source(data, sae.d, batch_size, seed, rank, world, buffer_rows)
    amp_dtype = _amp_dtype(amp, device)

    # A process group that train() joined stays joined: torchrun's rendezvous cannot be joined twice
    # in one process, so a later train() (or the caller) reuses it; the process ends it on exit.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return _loop(**locals())


def _loop(*, sae, source, steps, batch_size, lr, seed, checkpoint_dir, device, checkpoint_every, resume,
          log_every, dead_window, revive_every, warmup_steps, schedule, clip_grad, betas, weight_decay,
          amp_dtype, find_unused_parameters, callback, progress, rank, world, **_) -> TrainHistory:  # fmt: skip
    """The body of :func:`train`, inside a forked random state."""
    torch.manual_seed(seed)  # for random draws inside the SAE (revive, dropout-like tricks)
    params = [p for p in sae.parameters() if p.requires_grad]
    opt_cls = torch.optim.AdamW if weight_decay > 0 else torch.optim.Adam
    try:  # the fused kernel is 2-3x faster than the per-tensor loop on CPU, and exists on CUDA
        opt = opt_cls(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):  # a device or dtype without a fused kernel (MPS, old torch)
        opt = opt_cls(params, lr=lr, betas=betas, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(schedule, warmup_steps, steps))
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    last_fired = torch.zeros(sae.n_atoms, dtype=torch.long, device=device)
    history, start, seconds0 = TrainHistory(), 0, 0.0

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if ckpt_path is not None and resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state.get("format") != _FORMAT:
            raise ValueError(f"{ckpt_path} is not an SAE checkpoint (format={state.get('format')!r})")
        saved = state["config"]
        if (saved["seed"], saved["batch_size"]) != (seed, batch_size):
            raise ValueError(f"{ckpt_path} was written with seed={saved['seed']}, batch_size={saved['batch_size']};"
                             f" this call has seed={seed}, batch_size={batch_size}. Pass the same values, or"
                             " resume=False to start over")  # fmt: skip
        sae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        last_fired.copy_(state["last_fired"])
        history = TrainHistory(**state["history"])
        start, seconds0 = int(state["step"]), float(state["seconds"])
        rngs = state["rng"]  # one per rank of the run that wrote it; rank 0's when the world changed
        _set_rng_state(rngs[rank] if len(rngs) == world else rngs[0], device)

    model = sae
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # DDP broadcasts rank 0's parameters and buffers here, so every rank starts identical.
        model = DistributedDataParallel(sae, device_ids=[device.index] if device.type == "cuda" else None,
                                        find_unused_parameters=find_unused_parameters)  # fmt: skip
    has_aux = callable(getattr(sae, "aux_loss", None))
    # No atom can be dead before this step (last_fired only grows): exact, and a host read only when
    # it is reached, so TopK-aux costs nothing while every atom fires.
    first_death = int(last_fired.min()) + dead_window
    # revive(dead_mask, x) is the hook; MPSAE's revive_dead_atoms(x, dead) is accepted as the same thing
    if callable(getattr(sae, "revive", None)):
        revive = sae.revive
    elif callable(getattr(sae, "revive_dead_atoms", None)):
        revive = lambda dead, x: sae.revive_dead_atoms(x, dead)  # noqa: E731
    else:
        revive = None
    autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if amp_dtype is not None else nullcontext

    def save_checkpoint(step: int, seconds: float) -> None:
        rng = _rng_state(device)
        rngs = [rng]
        if world > 1:
            import torch.distributed as dist

            rngs = [None] * world
            dist.all_gather_object(rngs, {k: v.cpu() for k, v in rng.items()})
        if rank != 0:
            return
        state = {
            "format": _FORMAT, "step": step, "seconds": seconds, "model": sae.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
            "last_fired": last_fired.cpu(), "history": asdict(history), "rng": rngs,
            "config": {"seed": seed, "batch_size": batch_size, "world_size": world},
        }  # fmt: skip
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(ckpt_path, buf.getvalue())  # temporary name + fsync + rename
        atomic_write_bytes(ckpt_path.with_name("history.json"), json.dumps(asdict(history)).encode())

    sae.train()
    stream = source.iterate(start)
    keys: list[str] | None = None  # the model's extra loss terms, fixed by the first step
    acc, n_acc, r2_stats = None, 0, []
    t0 = time.perf_counter()
    bar = _progress(range(start, steps), enabled=progress and rank == 0, desc="SAE", total=steps - start)
    step = start
    for step in bar:
        x = next(stream, None)
        if x is None:
            warnings.warn(f"data ran out after {step} steps (steps={steps}); stopping there", stacklevel=3)
            break
        x = x.to(device, non_blocking=True)
        with autocast():
            codes, x_hat = model(x)
            terms = dict(sae.loss(x, codes, x_hat))
            loss = terms.pop("loss")
            if has_aux and step >= first_death:  # the bound is reached: read the true one (host sync)
                first_death = int(last_fired.min()) + dead_window
            if has_aux and step >= first_death:  # still reached: some atom is dead
                dead_mask = (step - last_fired) >= dead_window
                aux = sae.aux_loss(x, codes, x_hat, dead_mask)
                if aux is not None:
                    loss = loss + aux
                    terms["aux"] = aux
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        scaler.step(opt)
        scaler.update()
        sched.step()
        sae.constrain()

        with torch.no_grad():
            x, x_hat = x.float(), x_hat.detach().float()
            # float reductions: on CPU, (codes != 0).any(0) / .sum() on bools are 5x slower than these
            mag = codes.detach().float().abs()
            fired = mag.amax(0) > 0
            l0 = mag.sign_().sum() / len(mag)
            if world > 1:  # an atom is alive when it fired on any rank
                import torch.distributed as dist

                fired = fired.to(torch.uint8)
                dist.all_reduce(fired, op=dist.ReduceOp.MAX)
                fired = fired.bool()
            last_fired = torch.where(fired, step + 1, last_fired)
            if keys is None:
                keys = sorted(k for k in terms if terms[k].numel() == 1)
                if "aux" not in keys and has_aux:
                    keys.append("aux")
            zero = loss.new_zeros(()).float()
            vals = torch.stack([loss.detach().float(), l0,
                                *[terms[k].detach().float() if k in terms else zero for k in keys]])  # fmt: skip
            acc, n_acc = (vals if acc is None else acc + vals), n_acc + 1
            r2_stats.append(_r2_stats(x, x_hat))

            if revive is not None and (step + 1) % revive_every == 0:
                dead_mask = (step + 1 - last_fired) >= dead_window
                if bool(dead_mask.any()):
                    revive(dead_mask, x)
                    if world > 1:  # ranks revived from different batches: keep rank 0's atoms
                        import torch.distributed as dist

                        for t in (*sae.parameters(), *sae.buffers()):
                            dist.broadcast(t.data, 0)
                    last_fired = torch.where(dead_mask, step + 1, last_fired)

        done = step + 1
        if done % log_every == 0 or done == steps:
            means = _all_mean(acc / n_acc, world).tolist()
            means.insert(1, _r2_mean(torch.stack(r2_stats), world))
            acc, n_acc, r2_stats = None, 0, []
            dead = float(((done - last_fired) >= dead_window).float().mean())
            record = {"step": done, "tokens": done * batch_size, "loss": means[0], "r2": means[1], "l0": means[2],
                      "dead_fraction": dead, "lr": opt.param_groups[0]["lr"],
                      "seconds": seconds0 + time.perf_counter() - t0}  # fmt: skip
            for name in ("step", "tokens", "loss", "r2", "l0", "dead_fraction", "lr", "seconds"):
                getattr(history, name).append(record[name])
            for k, v in zip(keys, means[3:]):
                history.terms.setdefault(k, []).append(v)
                record[k] = v
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(
                    loss=f"{means[0]:.4g}", r2=f"{means[1]:.3f}", l0=f"{means[2]:.1f}", dead=f"{dead:.2f}"
                )
            if callback is not None and rank == 0:
                callback(record)
        if ckpt_path is not None and (done % checkpoint_every == 0 or done == steps):
            save_checkpoint(done, seconds0 + time.perf_counter() - t0)
    if hasattr(bar, "close"):
        bar.close()
    stream.close()  # stops a store's reader thread
    sae.eval()
    return history
