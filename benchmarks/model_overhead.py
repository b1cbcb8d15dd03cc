"""Model.forward against the bare timm network on the same inputs (goal: ratio <= 1.05).

The wrapper adds one normalization (and, with check=True, one min/max pass for the range check).
Run: python benchmarks/model_overhead.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, machine, table  # noqa: E402

from workbench.models import load_model  # noqa: E402


@torch.inference_mode()
def _measure(model, x: torch.Tensor) -> dict[str, float]:
    # The bare network gets the already-normalized batch: what a user of timm alone would feed it.
    xn = model.normalize(x)
    fns = {
        "bare": lambda: model.net(xn),
        "wrapped": lambda: model(x),
        "unchecked": lambda: model(x, check=False),
    }
    return interleaved(fns, repeats=15)


def main() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cases = [
        ("zoo:resnet_shapes", {}, 64, 64),
        ("zoo:vit_shapes", {}, 64, 64),
        ("timm:resnet18", {"num_classes": 1000}, 224, 16),
    ]
    rows = []
    for spec, kw, side, batch in cases:
        model = load_model(spec, device=device, **kw)
        t = _measure(model, torch.rand(batch, 3, side, side, device=device))
        rows.append(
            {
                "model": spec,
                "input": f"{batch}x3x{side}x{side}",
                "bare ms": f"{t['bare'] * 1e3:.2f}",
                "Model ms": f"{t['wrapped'] * 1e3:.2f}",
                "ratio": f"{t['wrapped'] / t['bare']:.3f}",
                "ratio (check=False)": f"{t['unchecked'] / t['bare']:.3f}",
            }
        )
    print(f"Model.forward overhead ({machine()}); goal ratio <= 1.05")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
