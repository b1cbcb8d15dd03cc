"""Attribution speed: black-box methods against bare forward passes, and ours against Captum.

Two tables per model (the zoo CNN at 64 px and a timm resnet18 at 224 px, random weights: speed does
not depend on them):

1. **Overhead of the black-box methods.** Each method runs once under a forward hook that records the
   size of every batch the network sees; then the method and the *same* sequence of bare forward passes
   (``model.net`` on already-normalized random batches of those sizes, under ``inference_mode``) are timed
   in alternation. The ratio is what building masks, perturbing, and estimating costs on top of the
   network. Goal: at most 1.10.
2. **Ours against Captum** for the methods both have, Captum's batch knob (``internal_batch_size``,
   ``nt_samples_batch_size`` or ``perturbations_per_eval``) set so that its forward passes have our
   ``batch_size`` rows. The forward-pass counts (calls, rows) are printed for both.

On a CPU the budgets are cut (printed in the header), so the run takes minutes; with ``--full`` or on
a GPU every method runs at its reference defaults. Run: ``python benchmarks/attribution.py [--full]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import BatchLog, bare_passes, interleaved, machine, sync, table  # noqa: E402

import workbench.attribution as A  # noqa: E402
from workbench.attribution.lime_kernel_shap import grid_segments  # noqa: E402
from workbench.models import load_model  # noqa: E402


def black_box_budgets(side: int, full: bool) -> dict[str, dict]:
    """Method -> keyword arguments; the reference defaults with ``full``, cut budgets otherwise."""
    patch = max(3, side // 8)
    if full:
        return {
            "occlusion": {"patch_size": patch, "stride": patch},
            "rise": {},
            "lime": {},
            "kernel_shap": {},
            "sobol": {},
            "hsic": {},
        }
    return {
        "occlusion": {"patch_size": patch, "stride": patch},
        "rise": {"n_masks": 512},
        "lime": {"n_samples": 150},
        "kernel_shap": {"n_samples": 256},
        "sobol": {"nb_design": 8},
        "hsic": {"nb_design": 256},
    }


def overhead_rows(model, x, y, batch_size: int, full: bool, repeats: int) -> list[dict]:
    log = BatchLog(model.net)
    rows = []
    try:
        for name, kw in black_box_budgets(x.shape[-1], full).items():
            fn = A.get_method(name)
            run = lambda fn=fn, kw=kw: fn(model, x, y, batch_size=batch_size, **kw)  # noqa: E731
            run()
            sizes = log.take()
            log.close()
            bare = bare_passes(model, sizes, x.shape[1:], x.device)
            t = interleaved({"method": run, "bare": bare}, repeats=repeats, warmup=0)
            log = BatchLog(model.net)
            rows.append(
                {
                    "method": name,
                    "params": ", ".join(f"{k}={v}" for k, v in kw.items()) or "defaults",
                    "passes": len(sizes),
                    "rows": sum(sizes),
                    "method s": f"{t['method']:.3f}",
                    "bare s": f"{t['bare']:.3f}",
                    "ratio": f"{t['method'] / t['bare']:.3f}",
                }
            )
            print(f"  {name}: ratio {t['method'] / t['bare']:.3f}", flush=True)
    finally:
        log.close()
    return rows


def captum_rows(model, x, y, batch_size: int, full: bool, repeats: int) -> list[dict]:
    from captum.attr import IntegratedGradients, KernelShap, Lime, NoiseTunnel, Occlusion, Saliency

    forward = lambda inp: model(inp, check=False)  # noqa: E731
    n, c, h, _ = x.shape
    patch = max(3, h // 8)
    samples = {"lime": 150, "kernel_shap": 800 if full else 256, "smoothgrad": 50, "ig": 50}
    # Captum evaluates all N images in each forward pass: perturbations_per_eval * N rows.
    per_eval = max(1, batch_size // n)
    segments = grid_segments(h, x.shape[-1], 8, x.device)  # (H, W) integer cell ids, as ours uses

    def captum_per_image(cls, n_samples: int):
        # Captum's LIME and KernelSHAP fit one surrogate per example: one image per call
        return lambda: [
            cls(forward).attribute(
                x[i : i + 1],
                target=int(y[i]),
                feature_mask=segments[None, None].expand(1, c, h, h),
                n_samples=n_samples,
                perturbations_per_eval=batch_size,
                baselines=0.0,
            )
            for i in range(n)
        ]

    pairs = {
        "saliency": (
            lambda: A.saliency(model, x, y, batch_size=batch_size),
            lambda: Saliency(forward).attribute(x, target=y, abs=True).amax(1),
        ),
        "integrated_gradients": (
            lambda: A.integrated_gradients(model, x, y, steps=samples["ig"], batch_size=batch_size),
            lambda: IntegratedGradients(forward).attribute(
                x, target=y, baselines=0.0, n_steps=samples["ig"], internal_batch_size=batch_size
            ),
        ),
        "smoothgrad": (
            lambda: A.smoothgrad(model, x, y, n_samples=samples["smoothgrad"], batch_size=batch_size),
            lambda: NoiseTunnel(Saliency(forward)).attribute(
                x,
                target=y,
                nt_type="smoothgrad",
                nt_samples=samples["smoothgrad"],
                nt_samples_batch_size=max(1, batch_size // n),
                stdevs=0.2,
                abs=False,
            ),
        ),
        "occlusion": (
            lambda: A.occlusion(model, x, y, patch_size=patch, stride=patch, batch_size=batch_size),
            lambda: Occlusion(forward).attribute(
                x,
                target=y,
                sliding_window_shapes=(c, patch, patch),
                strides=(c, patch, patch),
                baselines=0.0,
                perturbations_per_eval=per_eval,
            ),
        ),
        "lime": (
            lambda: A.lime(model, x, y, n_samples=samples["lime"], batch_size=batch_size),
            captum_per_image(Lime, samples["lime"]),
        ),
        "kernel_shap": (
            lambda: A.kernel_shap(model, x, y, n_samples=samples["kernel_shap"], batch_size=batch_size),
            captum_per_image(KernelShap, samples["kernel_shap"]),
        ),
    }
    log = BatchLog(model.net)
    rows = []
    try:
        for name, (ours, theirs) in pairs.items():
            counts = {}
            for who, fn in (("ours", ours), ("captum", theirs)):
                fn()
                sizes = log.take()
                counts[who] = (len(sizes), sum(sizes))
            t = interleaved({"ours": ours, "captum": theirs}, repeats=repeats, warmup=0)
            log.take()
            rows.append(
                {
                    "method": name,
                    "ours passes/rows": "{}/{}".format(*counts["ours"]),
                    "captum passes/rows": "{}/{}".format(*counts["captum"]),
                    "ours s": f"{t['ours']:.3f}",
                    "captum s": f"{t['captum']:.3f}",
                    "ours / captum": f"{t['ours'] / t['captum']:.3f}",
                }
            )
            print(f"  {name}: ours / captum {t['ours'] / t['captum']:.3f}", flush=True)
    finally:
        log.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="reference budgets even on a CPU")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    full = args.full or device == "cuda"
    repeats = args.repeats or (7 if device == "cuda" else 3)
    cases = [
        # spec, load kwargs, side, images, batch size
        ("zoo:resnet_shapes", {}, 64, 4, 64),
        (
            "timm:resnet18",
            {"num_classes": 1000},
            224,
            4 if device == "cuda" else 1,
            64 if device == "cuda" else 32,
        ),
    ]
    print(
        f"Attribution benchmark ({machine()}); budgets: {'reference defaults' if full else 'cut for a CPU'}"
    )
    for spec, kw, side, n_images, batch_size in cases:
        model = load_model(spec, device=device, **kw)
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(n_images, 3, side, side, generator=gen).to(device)
        y = torch.randint(0, model.num_classes, (n_images,), generator=gen).to(device)
        print(f"\n{spec} · {n_images} images of {side} px · batch_size {batch_size} · repeats {repeats}")
        rows = overhead_rows(model, x, y, batch_size, full, repeats)
        print("Black-box method time / same forward passes bare (goal <= 1.10)")
        print(table(rows, list(rows[0])))
        rows = captum_rows(model, x, y, batch_size, full, repeats)
        print("Ours vs Captum (same rows per forward pass)")
        print(table(rows, list(rows[0])))
        sync()


if __name__ == "__main__":
    main()
