"""Benchmark the SAE trainer against overcomplete 0.3.0's ``train_sae``, and its memory on growing stores.

1. Throughput: training tokens (activation rows) per second of ``workbench.sae.train`` and of
   overcomplete's ``train_sae`` on the same rows, with the same sizes, batch, optimizer (Adam), gradient
   clipping (1.0) and loss (the mean squared error), for TopK and RA-SAE; timed alternately with
   ``_timing.interleaved``. Both loops get the rows in the fastest way each accepts: overcomplete a list of
   pre-shuffled batch tensors (a DataLoader over a TensorDataset is several times slower, which would
   flatter us), ours the tensor itself; and both read the same ActivationStore (ours streams it,
   overcomplete iterates ``store.batches``). A first pair of rows runs the *same* workbench model under
   both loops (overcomplete's ``scheduler`` hook calls ``constrain()``), which isolates the loops; the
   others compare each library with its own model. On a GPU ours runs with its default AMP (bf16) and the table
   adds the fraction of the measured bf16 matmul peak that the SAE's matmuls reach.
2. Memory: peak of a one-epoch run on an ActivationStore of N and 4N rows, each in a fresh process
   (tracemalloc peak of Python/numpy allocations, and the process's peak RSS). Streaming keeps both flat.

Run: ``python benchmarks/sae_training.py [--d 128 --atoms 1024 --k 16 --batch 512 --steps 32]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, machine, sync, table  # noqa: E402

from workbench.data.activation_store import ActivationStore, extract_activations  # noqa: E402
from workbench.sae.training import train  # noqa: E402


def overcomplete_sae():
    """overcomplete's module, after the shim its import needs with matplotlib >= 3.9."""
    import matplotlib
    import matplotlib.cm

    matplotlib.cm.get_cmap = lambda name=None, lut=None: (
        matplotlib.colormaps[name] if lut is None else matplotlib.colormaps[name].resampled(lut)
    )
    import overcomplete.sae as oc

    return oc


def rows_like_activations(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """Non-negative sparse mixtures of 4d random directions plus an offset: post-ReLU-like activations."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(4 * d, d, generator=g)
    out = torch.empty(n, d)
    for s in range(0, n, 8192):  # in slices: no (n, 4d) intermediate
        m = min(n, s + 8192) - s
        codes = torch.rand(m, 4 * d, generator=g) * (torch.rand(m, 4 * d, generator=g) < 0.03)
        out[s : s + m] = torch.relu(codes @ atoms + 0.5)
    return out


def make_store(n: int, d: int, path: Path, seed: int = 0) -> ActivationStore:
    """An ActivationStore of ``rows_like_activations(n, d)``: tiny images encode the row index."""

    class Lookup(nn.Module):
        spec = f"bench:rows{seed}"

        def activations(self, x, layer):
            idx = (x[:, :, 0, 0] * 255).round().long()
            i = idx[:, 0] + 256 * idx[:, 1] + 65536 * idx[:, 2]
            return {layer: rows[i]}

    rows = rows_like_activations(n, d, seed)
    i = torch.arange(n)
    images = (torch.stack([i % 256, i // 256 % 256, i // 65536], 1).float() / 255)[:, :, None, None]
    return extract_activations(Lookup(), "rows", images, path, batch_size=4096, progress=False, compress=False,
                               chunk_bytes=1 * 2**20)  # fmt: skip


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Measured FLOP/s of a large square matmul (the reference for 'fraction of peak')."""
    a = torch.randn(8192, 8192, device=device, dtype=dtype)
    for _ in range(3):
        a @ a
    sync()
    t = interleaved({"mm": lambda: [a @ a for _ in range(10)]}, repeats=3, warmup=0)["mm"]
    return 10 * 2 * 8192**3 / t


def throughput(args, device: torch.device, store: ActivationStore) -> list[dict]:
    import workbench.sae as ours

    oc = overcomplete_sae()
    d, n, k, b, steps = args.d, args.atoms, args.k, args.batch, args.steps
    x = rows_like_activations(b * steps, d, seed=1).to(device)
    batches = [x[p] for p in torch.randperm(len(x)).split(b)]  # overcomplete's fastest input

    def mse(x, x_hat, pre, z, dictionary):
        return (x - x_hat).square().mean()

    class StoreLoader:  # overcomplete iterates its dataloader once per epoch
        def __iter__(self):
            return store.batches(b, seed=0, drop_last=True, device=device)

    def theirs(model, data):
        opt = torch.optim.Adam(model.parameters(), lr=4e-4)

        def run():
            with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per epoch
                oc.train.train_sae(
                    model, data, mse, opt, nb_epochs=1, clip_grad=1.0, monitoring=1, device=device
                )

        return run

    def ours_fn(model, data, n_steps):
        return lambda: train(model, data, steps=n_steps, batch_size=b, lr=4e-4, progress=False, log_every=n_steps,
                             device=device, seed=0)  # fmt: skip

    candidates = x[:n]  # RA-SAE's points C (a k-means of the activations in practice)
    cases = [("TopK", lambda: ours.TopKSAE(d, n, k), lambda: oc.TopKSAE(d, n, top_k=k, device=str(device)))]
    if hasattr(ours, "RASAE"):
        cases.append(("RA-SAE", lambda: ours.RASAE(d, n, candidates, k),
                      lambda: oc.RATopKSAE(d, n, points=candidates, top_k=k, delta=1.0, device=str(device))))  # fmt: skip
    else:
        print("RA-SAE: workbench.sae.RASAE does not exist yet; skipped")

    class OnTheirLoop(nn.Module):
        """A workbench SAE seen through overcomplete's interface: isolates the loops from the models."""

        def __init__(self, sae):
            super().__init__()
            self.sae = sae

        def forward(self, x):
            codes, x_hat = self.sae(x)
            return codes, codes, x_hat

        def get_dictionary(self):
            return self.sae.dictionary

    class Constrain:  # train_sae calls scheduler.step() right after optimizer.step(): constrain there
        def __init__(self, sae):
            self.sae = sae

        def step(self):
            self.sae.constrain()

    def theirs_loop(sae):
        model, opt = OnTheirLoop(sae), torch.optim.Adam(sae.parameters(), lr=4e-4)

        def run():
            with contextlib.redirect_stdout(io.StringIO()):
                oc.train.train_sae(model, batches, mse, opt, scheduler=Constrain(sae), nb_epochs=1, clip_grad=1.0,
                                   monitoring=1, device=device)  # fmt: skip

        return run

    store_steps = len(store) // b
    peak = matmul_peak(device, torch.bfloat16) if device.type == "cuda" else None
    rows = []
    for name, mk_ours, _ in cases:  # the same (workbench) model under both loops
        fns = {
            "ours": ours_fn(mk_ours().to(device), x, steps),
            "overcomplete": theirs_loop(mk_ours().to(device)),
        }
        t = interleaved(fns, repeats=args.repeats, warmup=1)
        tok = {key: steps * b / s for key, s in t.items()}
        rows.append({"model": f"{name} (workbench model in both loops)", "data": "tensor",
                     "ours tok/s": f"{tok['ours']:,.0f}", "overcomplete tok/s": f"{tok['overcomplete']:,.0f}",
                     "ratio": f"{tok['ours'] / tok['overcomplete']:.2f}"})  # fmt: skip
    for name, mk_ours, mk_theirs in cases:  # each library with its own model
        for source, ours_data, their_data, n_steps in (
            ("tensor", x, batches, steps),
            ("store", store, StoreLoader(), store_steps),
        ):
            fns = {"ours": ours_fn(mk_ours().to(device), ours_data, n_steps),
                   "overcomplete": theirs(mk_theirs().to(device), their_data)}  # fmt: skip
            t = interleaved(fns, repeats=args.repeats, warmup=1)
            tok = {key: n_steps * b / s for key, s in t.items()}
            row = {"model": name, "data": source, "ours tok/s": f"{tok['ours']:,.0f}",
                   "overcomplete tok/s": f"{tok['overcomplete']:,.0f}",
                   "ratio": f"{tok['ours'] / tok['overcomplete']:.2f}"}  # fmt: skip
            if peak is not None:  # encoder + decoder matmuls, forward and backward: 12 B d n per step
                row["ours % matmul peak"] = f"{100 * 12 * d * n * tok['ours'] / peak:.1f}"
            rows.append(row)
    return rows


def memory_child(path: str, batch: int, buffer_rows: int) -> None:
    """One epoch over the store at ``path``; print the peaks as JSON (run in a fresh process)."""
    import workbench.sae as ours

    torch.set_num_threads(1)
    store = ActivationStore(path)
    tracemalloc.start()
    sae = ours.TopKSAE(store.shape[1], 512, 16)
    train(sae, store, steps=len(store) // batch, batch_size=batch, progress=False, buffer_rows=buffer_rows)
    peak = tracemalloc.get_traced_memory()[1]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"tracemalloc": peak, "rss": rss}))


def memory(args, tmp: Path) -> list[dict]:
    out = []
    for factor in (1, 4):
        n = args.mem_rows * factor
        path = tmp / f"mem{factor}"
        make_store(n, args.d, path, seed=factor)
        res = subprocess.run([sys.executable, __file__, "--memory-child", str(path), "--batch", str(args.batch),
                              "--buffer-rows", str(args.buffer_rows)], capture_output=True, text=True, check=True)  # fmt: skip
        peaks = json.loads(res.stdout.strip().splitlines()[-1])
        out.append({"store rows": f"{n:,}", "store MiB": f"{n * args.d * 4 / 2**20:.0f}",
                    "tracemalloc peak MiB": f"{peaks['tracemalloc'] / 2**20:.1f}",
                    "peak RSS MiB": f"{peaks['rss'] / 2**20:.0f}"})  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--atoms", type=int, default=1024)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=32, help="steps per timed run on the tensor")
    p.add_argument("--store-rows", type=int, default=16384)
    p.add_argument("--mem-rows", type=int, default=32768, help="rows of the smaller memory-test store")
    p.add_argument("--buffer-rows", type=int, default=4096, help="shuffle window of the memory test")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args.batch, args.buffer_rows)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(machine())
    print(f"d={args.d}, atoms={args.atoms}, k={args.k}, batch={args.batch}; Adam, clip 1.0, MSE\n")
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(args.store_rows, args.d, Path(tmp) / "store")
        cols = ["model", "data", "ours tok/s", "overcomplete tok/s", "ratio"]
        print(
            table(
                throughput(args, device, store),
                cols + (["ours % matmul peak"] if device.type == "cuda" else []),
            )
        )
        print(
            f"\npeak memory, one epoch on a store (shuffle window {args.buffer_rows} rows), fresh process each:"
        )
        print(
            table(
                memory(args, Path(tmp)), ["store rows", "store MiB", "tracemalloc peak MiB", "peak RSS MiB"]
            )
        )


if __name__ == "__main__":
    main()
