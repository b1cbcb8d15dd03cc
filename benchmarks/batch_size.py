"""Rows per second of the grid methods' forward passes against the batch size, per image size.

What sets ``workbench._core.batching.default_batch_size``: the perturbed-image pipeline of Sobol, HSIC
and RISE (``perturbations.masked_scores``: nearest-upsampled masks, ``x * M``, one forward pass per
batch) on the zoo CNN at 64 px and on a timm resnet18 at 224 px (random weights: the speed does not
depend on them). Each batch size is timed in alternation with the others (median of ``repeats``), on
the same total number of rows.

Each table is measured at 1 and at 2 intra-op threads (``make test`` runs each of its two pytest-xdist
workers on one). The passes go through ``forward_fn``, which feeds a workbench Model channels-last
batches on a CPU (see ``workbench.models.scoring``).

Run: python benchmarks/batch_size.py [--quick] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, machine, table  # noqa: E402

from workbench.attribution._base import forward_fn  # noqa: E402
from workbench.attribution.perturbations import inpainting, masked_scores  # noqa: E402
from workbench.models import load_model  # noqa: E402


def measure(model, size: int, batch_sizes: list[int], rows: int, repeats: int) -> list[dict]:
    x = torch.rand(1, 3, size, size)
    y = torch.zeros(1, dtype=torch.long)
    masks = (torch.rand(rows, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    forward = forward_fn(model)
    fns = {bs: (lambda bs=bs: masked_scores(forward, x, y, masks, inpainting, bs)) for bs in batch_sizes}
    secs = interleaved(fns, repeats=repeats, warmup=1)
    return [{"batch_size": bs, "rows/s": f"{rows / secs[bs]:.1f}"} for bs in batch_sizes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rows and repeats")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts")
    args = parser.parse_args()
    print(machine())
    cases = [
        ("zoo:resnet_textures", 64, [8, 16, 32, 64, 128, 256, 512], 1024),
        ("timm:resnet18 (random weights)", 224, [8, 16, 32, 64, 128, 256], 256),
    ]
    for name, size, sizes, rows in cases:
        if name.startswith("zoo:"):
            model = load_model(name)
        else:
            model = load_model("timm:resnet18")  # random init: never downloads
        rows = rows // 2 if args.quick else rows
        for threads in args.threads:
            torch.set_num_threads(threads)
            print(f"\n{name}, {size} px, {rows} rows per timing, {threads} thread(s)")
            print(
                table(
                    measure(model, size, sizes, rows, repeats=2 if args.quick else 3),
                    ["batch_size", "rows/s"],
                )
            )


if __name__ == "__main__":
    main()
