"""How fast PlantedShapes generates: images per second at 64 px and 224 px.

Goal: 10,000 images at 64 px in under 10 s on a 2-core CPU.

    python benchmarks/planted_shapes.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from workbench.data.planted import planted_shapes

GOAL_N, GOAL_SIZE, GOAL_SECONDS = 10_000, 64, 10.0

CASES = [  # (label, n, size, keyword arguments)
    ("default", 10_000, 64, {}),
    ("patch cue + 3 distractors", 10_000, 64, {"shortcut": "patch", "n_distractors": 3}),
    ("tint cue", 10_000, 64, {"shortcut": "tint"}),
    ("default", 1_000, 224, {}),
    ("patch cue + 3 distractors", 1_000, 224, {"shortcut": "patch", "n_distractors": 3}),
]


def timed(n: int, size: int, repeat: int, **kwargs) -> float:
    """Best wall-clock seconds over ``repeat`` runs (the least disturbed by other load)."""
    best = float("inf")
    for r in range(repeat):
        start = time.perf_counter()
        planted_shapes(n, size=size, seed=r, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the best is reported")
    args = parser.parse_args()

    planted_shapes(64, size=64)  # warm-up: imports, allocator
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, load average {load:.1f}")
    print(f"{'case':<28} {'n':>7} {'size':>5} {'seconds':>8} {'images/s':>9}")
    results = {}
    for label, n, size, kwargs in CASES:
        seconds = timed(n, size, args.repeat, **kwargs)
        results[(label, n, size)] = seconds
        print(f"{label:<28} {n:>7,} {size:>5} {seconds:>8.2f} {n / seconds:>9,.0f}")
    seconds = results[("default", GOAL_N, GOAL_SIZE)]
    verdict = "holds" if seconds < GOAL_SECONDS else "FAILS"
    print(
        f"goal: {GOAL_N:,} images at {GOAL_SIZE} px in under {GOAL_SECONDS:.0f} s -> {verdict} ({seconds:.2f} s)"
    )


if __name__ == "__main__":
    main()
