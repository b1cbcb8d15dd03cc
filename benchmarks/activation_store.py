"""Benchmark the ActivationStore: extraction overhead over bare forward passes, and read throughput.

Run ``python benchmarks/activation_store.py`` (about a minute on 2 CPU cores); ``--help`` for options,
e.g. ``--device cuda --n 8192 --size 128`` on a GPU machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from workbench.data.activation_store import ActivationStore, extract_activations


def load(spec: str, size: int, device: str) -> torch.nn.Module:
    """A workbench Model: the given spec, else zoo:resnet_shapes if its weights exist, else timm resnet18."""
    from workbench.models import load_model

    if spec == "auto":
        try:
            return load_model("zoo:resnet_shapes", device=device)
        except Exception:  # no trained zoo weights yet: a random-init resnet18 runs the same code
            spec = "timm:resnet18"
    return load_model(spec, pretrained=False, device=device, input_size=(3, size, size))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_forward(model, x: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Seconds for the same forward passes extraction makes (same batches, inference_mode, no hooks)."""
    start = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            model(x[s : s + batch_size].to(device))
    sync(device)
    return time.perf_counter() - start


class Replay(torch.nn.Module):
    """Returns one precomputed batch of activations for any input: extraction minus the model."""

    def __init__(self, model, layer: str, x: torch.Tensor):
        super().__init__()
        self.spec, self.layer = model.spec, layer
        with torch.inference_mode():
            self.register_buffer("acts", model.activations(x, layer)[layer].clone())

    def activations(self, x: torch.Tensor, layer: str) -> dict[str, torch.Tensor]:
        return {layer: self.acts[: len(x)]}


def extract(model, layer: str, x: torch.Tensor, path: Path, pooling: str, args) -> tuple[float, object]:
    shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    store = extract_activations(model, layer, x, path, pooling=pooling, batch_size=args.batch_size,
                                dtype=args.dtype, compress=not args.no_compress, progress=False)  # fmt: skip
    sync(torch.device(args.device))
    return time.perf_counter() - start, store


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default="auto", help="a load_model spec; auto: zoo:resnet_shapes or timm:resnet18"
    )
    p.add_argument("--layer", default="layer3")
    p.add_argument("--n", type=int, default=128, help="images")
    p.add_argument(
        "--repeats", type=int, default=3, help="timings are the best of this many interleaved runs"
    )
    p.add_argument(
        "--replay-factor", type=int, default=16, help="store-only runs write this many times N images"
    )
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--read-batch", type=int, default=4096)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-compress", action="store_true", help="store chunks uncompressed")
    p.add_argument("--dir", default=None, help="where to write the stores (default: a temporary directory)")
    args = p.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = load(args.model, args.size, args.device)
    x = torch.rand(args.n, *model.input_size)
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench_store_"))
    print(f"model {model.spec}  layer {args.layer}  N={args.n}  input {tuple(model.input_size)}  "
          f"batch {args.batch_size}  dtype {args.dtype}  device {device}  torch threads {torch.get_num_threads()}")  # fmt: skip

    bare_forward(model, x[: args.batch_size], args.batch_size, device)  # warm-up (allocator, kernels)
    replay = Replay(model, args.layer, x[: args.batch_size])
    x_many = torch.rand(args.n * args.replay_factor, 3, 4, 4)  # the replay ignores pixels: keep them small
    # Interleaved repeats, best of each: on a shared machine the slowest runs measure the neighbours.
    times: dict[str, float] = {}
    stores = {}
    for _ in range(args.repeats):
        times["bare"] = min(times.get("bare", 1e9), bare_forward(model, x, args.batch_size, device))
        for pooling in ("mean", "none"):
            for name, m, xs in ((pooling, model, x), (f"{pooling} (store only)", replay, x_many)):
                t, store = extract(m, args.layer, xs, root / f"{pooling}-{m is model}.zarr", pooling, args)
                times[name] = min(times.get(name, 1e9), t)
                stores[name] = store
    t_bare = times["bare"]
    print(f"\nbare forward: {t_bare:.2f} s  ({args.n / t_bare:,.0f} img/s)")
    print(f"store only: extracting {len(x_many)} images with a model that replays one precomputed batch")
    print("vs bare: extraction time / bare forward time; for store only, the store's time per image as a")
    print("         share of the forward's time per image (the overhead, free of the forward's noise)\n")
    header = (f"{'extraction':20} {'rows':>9} {'C':>5} {'time s':>7} {'img/s':>8} {'rows/s':>10} {'MB/s':>7}"
              f" {'disk MB':>8} {'vs bare':>8}")  # fmt: skip
    print(header + "\n" + "-" * len(header))
    for name, t in times.items():
        if name == "bare":
            continue
        store = stores[name]
        rows, c = store.shape
        n_img = store.meta["n_images"]
        ratio = f"{t / t_bare:.2f}x" if n_img == args.n else f"+{100 * (t / n_img) / (t_bare / args.n):.1f}%"
        mb = rows * c * (2 if args.dtype == "float16" else 4) / 2**20
        print(f"{name:20} {rows:>9,} {c:>5} {t:>7.2f} {store.meta['n_images'] / t:>8,.0f} {rows / t:>10,.0f} {mb / t:>7.1f}"
              f" {disk_mb(store.path):>8.1f} {ratio:>8}")  # fmt: skip

    print(f"\nreading (batches of {args.read_batch}, float32 out)")
    header = f"{'store':20} {'mode':22} {'chunk rows':>10} {'time s':>7} {'rows/s':>11} {'MB/s':>7}"
    print(header + "\n" + "-" * len(header))
    for pooling, store in stores.items():
        if "store only" not in pooling:  # read the larger stores
            continue
        store = ActivationStore(store.path)
        for mode, kw in [("sequential", {"shuffle": False}), ("shuffled (default buf)", {"shuffle": True}),
                         ("shuffled (4 chunks)", {"buffer_rows": 4 * store.meta["chunk_rows"]})]:  # fmt: skip
            start = time.perf_counter()
            n = sum(len(b) for b in store.batches(args.read_batch, seed=0, **kw))
            t = time.perf_counter() - start
            print(f"{pooling:20} {mode:22} {store.meta['chunk_rows']:>10,} {t:>7.2f} {n / t:>11,.0f}"
                  f" {n * store.shape[1] * 4 / 2**20 / t:>7.1f}")  # fmt: skip
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
