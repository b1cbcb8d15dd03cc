"""Train any sparse dictionary: one loop for every variant, on a tensor, an ActivationStore or batches.

:func:`train` drives a :class:`~workbench.sae.base.SparseAutoencoder` through its fixed interface
(``sae(x) -> (codes, x_hat)``, ``sae.loss(...)["loss"]``, ``sae.constrain()`` after every step). It
streams an :class:`~workbench.data.activation_store.ActivationStore` window by window (memory holds two
shuffle windows, whatever the store's size), resumes exactly from its checkpoints, and runs unchanged
under ``torchrun`` with DistributedDataParallel.

Dead atoms
----------
An atom is dead when it fired on no input during the last ``dead_window`` steps (over all ranks). Two
methods of :class:`~workbench.sae.base.SparseAutoencoder`, no-ops there, let a variant act on them; the
trainer calls only those a class overrides:

``aux_loss(x, codes, x_hat, dead_mask) -> Tensor | None``
    An auxiliary term added to ``loss`` at every step where some atom is dead (TopK-aux, Gao et al.
    2024, arXiv:2406.04093, section A.2). The trainer does not call it while no atom can be dead (TopK-aux
    costs a second encoder pass and a decoder pass): it keeps ``min(last fired step) + dead_window``,
    the first step at which an atom could be dead, and reads it from the device only when that step is
    reached. The term is logged as ``"aux"`` (0 at steps without it).
``revive(x, dead_mask) -> int``
    Called without gradient every ``revive_every`` steps when some atom is dead (matching-pursuit SAEs
    re-seed dead atoms from the current batch ``x`` of this rank). Under DDP every rank calls it and the
    parameters and buffers of rank 0 are then broadcast, so the ranks stay identical. Revived atoms get
    a fresh ``dead_window`` before they can count as dead again.

The pieces live in their own modules: data sources in :mod:`workbench.sae.training_sources`,
checkpoints (and :func:`~workbench.sae.checkpoints.load_sae`) in :mod:`workbench.sae.checkpoints`,
process groups and reductions over ranks in :mod:`workbench.sae.distributed`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench._core.devices import module_device, resolve_device
from workbench._core.progress import progress as _progress
from workbench._core.serialization import load_result, save_result
from workbench._core.validation import check_int
from workbench.sae.base import SparseAutoencoder, overrides
from workbench.sae.checkpoints import (
    CHECKPOINT_NAME,
    gather_rng_states,
    read_checkpoint,
    set_rng_state,
    write_checkpoint,
)
from workbench.sae.distributed import (
    all_max,
    all_mean,
    broadcast_module,
    join_process_group,
    r2_mean,
    r2_stats,
)
from workbench.sae.training_sources import data_source

__all__ = ["TrainHistory", "train", "fit", "CHECKPOINT_NAME"]


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


def _lr_lambda(schedule: str, warmup_steps: int, steps: int) -> Callable[[int], float]:
    def f(s: int) -> float:
        w = min(1.0, (s + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        if schedule == "cosine":
            return w * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(1, steps)))
        return w

    return f


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


def _optimizer(
    params: list[nn.Parameter], lr: float, betas: tuple[float, float], weight_decay: float
) -> torch.optim.Optimizer:
    opt_cls = torch.optim.AdamW if weight_decay > 0 else torch.optim.Adam
    try:  # the fused kernel is 2-3x faster than the per-tensor loop on CPU, and exists on CUDA
        return opt_cls(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):  # a device or dtype without a fused kernel (MPS, old torch)
        return opt_cls(params, lr=lr, betas=betas, weight_decay=weight_decay)


# -- the loop ------------------------------------------------------------------------------------------------
def train(
    sae: SparseAutoencoder,
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
        A :class:`~workbench.sae.base.SparseAutoencoder`; its ``aux_loss`` and ``revive`` are used when
        its class overrides them (see this module's docstring).
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
        Steps between calls to ``sae.revive(x, dead_mask)`` when the SAE's class overrides it (default
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
    if not isinstance(sae, SparseAutoencoder):
        raise ValueError(f"sae: expected a SparseAutoencoder (with .loss and .constrain), got {type(sae).__name__}")  # fmt: skip
    revive_every = dead_window if revive_every is None else revive_every

    rank, world, _ = join_process_group()
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
    source = data_source(data, sae.d, batch_size, seed, rank, world, buffer_rows)
    amp_dtype = _amp_dtype(amp, device)

    # A process group that train() joined stays joined: torchrun's rendezvous cannot be joined twice
    # in one process, so a later train() (or the caller) reuses it; the process ends it on exit.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # for random draws inside the SAE (revive, dropout-like tricks)
        params = [p for p in sae.parameters() if p.requires_grad]
        opt = _optimizer(params, lr, betas, weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(schedule, warmup_steps, steps))
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        last_fired = torch.zeros(sae.n_atoms, dtype=torch.long, device=device)
        history, start, seconds0 = TrainHistory(), 0, 0.0

        ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        if ckpt_path is not None and resume and ckpt_path.exists():
            state = read_checkpoint(ckpt_path, seed, batch_size)
            sae.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            last_fired.copy_(state["last_fired"])
            history = TrainHistory(**state["history"])
            start, seconds0 = int(state["step"]), float(state["seconds"])
            rngs = state["rng"]  # one per rank of the run that wrote it; rank 0's when the world changed
            set_rng_state(rngs[rank] if len(rngs) == world else rngs[0], device)

        model = sae
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # DDP broadcasts rank 0's parameters and buffers here, so every rank starts identical.
            model = DistributedDataParallel(sae, device_ids=[device.index] if device.type == "cuda" else None,
                                            find_unused_parameters=find_unused_parameters)  # fmt: skip
        has_aux = overrides(sae, "aux_loss")
        # No atom can be dead before this step (last_fired only grows): exact, and a host read only when
        # it is reached, so TopK-aux costs nothing while every atom fires.
        first_death = int(last_fired.min()) + dead_window
        has_revive = overrides(sae, "revive")
        autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if amp_dtype is not None else nullcontext

        def save_checkpoint(step: int, seconds: float) -> None:
            rngs = gather_rng_states(device, world)  # a collective: every rank takes part
            if rank == 0:
                state = {
                    "step": step, "seconds": seconds, "sae": sae.spec(), "model": sae.state_dict(),
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                    "last_fired": last_fired.cpu(), "history": asdict(history), "rng": rngs,
                    "config": {"seed": seed, "batch_size": batch_size, "world_size": world},
                }  # fmt: skip
                write_checkpoint(ckpt_path, state, asdict(history))

        sae.train()
        stream = source.iterate(start)
        keys: list[str] | None = None  # the model's extra loss terms, fixed by the first step
        acc, n_acc, r2_acc = None, 0, []
        t0 = time.perf_counter()
        bar = _progress(range(start, steps), enabled=progress and rank == 0, desc="SAE", total=steps - start)
        step = start
        for step in bar:
            x = next(stream, None)
            if x is None:
                warnings.warn(
                    f"data ran out after {step} steps (steps={steps}); stopping there", stacklevel=2
                )
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
                fired = all_max(fired, world)  # an atom is alive when it fired on any rank
                last_fired = torch.where(fired, step + 1, last_fired)
                if keys is None:
                    keys = sorted(k for k in terms if terms[k].numel() == 1)
                    if "aux" not in keys and has_aux:
                        keys.append("aux")
                zero = loss.new_zeros(()).float()
                vals = torch.stack([loss.detach().float(), l0,
                                    *[terms[k].detach().float() if k in terms else zero for k in keys]])  # fmt: skip
                acc, n_acc = (vals if acc is None else acc + vals), n_acc + 1
                r2_acc.append(r2_stats(x, x_hat))

                if has_revive and (step + 1) % revive_every == 0:
                    dead_mask = (step + 1 - last_fired) >= dead_window
                    if bool(dead_mask.any()):
                        sae.revive(x, dead_mask)
                        # ranks revived from different batches: keep rank 0's atoms
                        broadcast_module(sae, world)
                        last_fired = torch.where(dead_mask, step + 1, last_fired)

            done = step + 1
            if done % log_every == 0 or done == steps:
                means = all_mean(acc / n_acc, world).tolist()
                means.insert(1, r2_mean(torch.stack(r2_acc), world))
                acc, n_acc, r2_acc = None, 0, []
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


def fit(
    sae: SparseAutoencoder,
    x: torch.Tensor,
    steps: int,
    lr: float = 4e-4,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> SparseAutoencoder:
    """Train ``sae`` on activations ``x`` (N, d) with :func:`train` and return it in eval mode.

    The short form the paper notebooks use (mini-batches of 256 rows, no progress bar, ``seed`` sets the
    data order, training where the data is); any other :func:`train` argument passes through ``kwargs``.
    """
    kwargs.setdefault("progress", False)
    if device is None and isinstance(x, torch.Tensor):
        device = x.device  # the SAE follows the data (created on the CPU, trained beside a GPU tensor)
    train(sae, x, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device, **kwargs)
    return sae.eval()
