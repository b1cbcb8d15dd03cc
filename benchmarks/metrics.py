"""Metric speed: each metric's time divided by the time of the same forward passes run bare.

For the zoo CNN at 64 px and a timm resnet18 at 224 px (random weights: speed does not depend on
them), each metric runs once under a forward hook that records the size of every batch the network
sees; then the metric and the *same* sequence of bare forward passes (``model.net`` on
already-normalized random batches of those sizes, under ``inference_mode``) are timed in alternation.
The ratio is what building the perturbed images and reducing the scores costs on top of the network.
Goal: at most 1.10.

Run: ``python benchmarks/metrics.py [--repeats R]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import BatchLog, bare_passes, interleaved, machine, sync, table  # noqa: E402

from workbench.metrics import deletion, insertion  # noqa: E402
from workbench.metrics.mufidelity_correlation import mufidelity  # noqa: E402
from workbench.models import load_model  # noqa: E402


def metric_calls(model, x, y, maps, batch_size: int) -> dict[str, callable]:
    return {
        "deletion (10 steps)": lambda: deletion(model, x, y, maps, batch_size=batch_size),
        "insertion (10 steps)": lambda: insertion(model, x, y, maps, batch_size=batch_size),
        "deletion (blur baseline)": lambda: deletion(
            model,
            x,
            y,
            maps,
            batch_size=batch_size,
            baseline=lambda v: v.mean((2, 3), keepdim=True).expand_as(v),
        ),
        "mufidelity (200 subsets)": lambda: mufidelity(model, x, y, maps, batch_size=batch_size),
    }


def overhead_rows(model, x, y, maps, batch_size: int, repeats: int) -> list[dict]:
    rows = []
    for name, run in metric_calls(model, x, y, maps, batch_size).items():
        log = BatchLog(model.net)
        try:
            run()
            sizes = log.take()
        finally:
            log.close()
        bare = bare_passes(model, sizes, x.shape[1:], x.device)
        t = interleaved({"metric": run, "bare": bare}, repeats=repeats, warmup=1)
        rows.append(
            {
                "metric": name,
                "passes": len(sizes),
                "rows": sum(sizes),
                "metric s": f"{t['metric']:.3f}",
                "bare s": f"{t['bare']:.3f}",
                "ratio": f"{t['metric'] / t['bare']:.3f}",
            }
        )
        print(f"  {name}: ratio {t['metric'] / t['bare']:.3f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cpu = device == "cpu"
    cases = [
        # spec, load kwargs, side, images, batch size, repeats (a zoo-CNN call takes 0.2 s on a CPU:
        # many repeats, so that the median is not one scheduler hiccup)
        ("zoo:resnet_shapes", {}, 64, 16, 64, 11 if cpu else 7),
        ("timm:resnet18", {"num_classes": 1000}, 224, 2 if cpu else 16, 32 if cpu else 64, 3 if cpu else 7),
    ]
    print(f"Metrics benchmark ({machine()})")
    for spec, kw, side, n_images, batch_size, repeats in cases:
        repeats = args.repeats or repeats
        model = load_model(spec, device=device, **kw)
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(n_images, 3, side, side, generator=gen).to(device)
        y = torch.randint(0, model.num_classes, (n_images,), generator=gen).to(device)
        maps = torch.rand(n_images, side, side, generator=gen).to(device)
        print(f"\n{spec} · {n_images} images of {side} px · batch_size {batch_size} · repeats {repeats}")
        rows = overhead_rows(model, x, y, maps, batch_size, repeats)
        print("Metric time / same forward passes bare (goal <= 1.10)")
        print(table(rows, list(rows[0])))
        sync()


if __name__ == "__main__":
    main()
