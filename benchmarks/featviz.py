"""Feature visualization: ours (``workbench.featviz.visualize``, MACO) against Horama, and a page of atoms
batched against one at a time.

1. **Against Horama** (``horama==0.3.0``, the MACO authors' toolbox; run through ``tests/horama_peer.py``,
   whose docstring says how: its ``values_range`` is the model's pixel range [0, 1] in normalized units,
   MACO's magnitude is the workbench's ``planted_shapes_64`` for both, the network is frozen and in eval
   mode). Same model (``zoo:resnet_textures``), objective (each class logit, and the ``layer4`` channel
   with the largest weight toward the last class), number of steps, crops per step (Horama's
   ``crops_per_iteration`` = our ``n_crops``), optimizer (NAdam, lr 1.0) and thread count; each toolbox
   keeps its own crop scales and noise (ours: ``default_crop_scale``, sides 0.6-1.0 of a 64-px image;
   Horama: ``box_size=(0.20, 0.25)``, which its code turns into sides 0.25-0.30).

   a. Speed: steps/s of each, medians of short runs timed in alternation (the machine's load moves
      both alike), and their ratio (goal >= 1).
   b. Final objective: the objective of the whole final image, evaluated by the same function for both
      (``objectives.evaluate`` in pixel space; for class logits also the softmax probability of the
      class), per objective and seed. Goal: ours >= Horama's - 10 % of |Horama's|. With ``--matched``,
      also Horama with ``box_size=(0.2, 0.6)``, which its code turns into our sides 0.6-1.0: what is
      left of the gap once the crop sides are the same.
2. **A page of 32 atoms**: 32 ``direction(layer, v, cosine=True)`` objectives (random non-negative unit
   vectors: SAE-atom-like directions of post-ReLU activations) in ``layer3`` and in ``layer4``, optimized
   by one ``visualize`` call with the 32 objectives (one batch of 32 x n_crops crops per step) and by 32
   calls with one objective each; same steps, crops and seed. Reported: seconds per visualization and the
   ratio (goal >= 4 on a CPU), beside the same ratio for the bare network steps (objective forward and
   backward to the crops, batch of 32 x n_crops rows against 32 batches of n_crops rows): the bound on
   what batching can gain when the network dominates a step.

Run: ``python benchmarks/featviz.py [--steps 256] [--seeds 2] [--n-crops 6] [--speed-steps 32]
[--page-steps 32] [--threads 2] [--skip-peer] [--skip-page]`` (``--help`` lists the rest).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))  # the Horama runner shared with the tests
from _timing import interleaved, machine, table  # noqa: E402
from horama_peer import HORAMA_AVAILABLE, run_horama  # noqa: E402

from workbench.featviz import load_spectrum, visualize  # noqa: E402
from workbench.featviz import objectives as obj  # noqa: E402
from workbench.featviz.objectives import evaluate_groups  # noqa: E402
from workbench.models import load_model  # noqa: E402

SPEC = "zoo:resnet_textures"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def whole_image(model, objective, image: torch.Tensor) -> tuple[float, float | None]:
    """The objective of the whole image (pixel space) and, for a class logit, the class probability."""
    with torch.no_grad():
        value = float(obj.evaluate(model, objective, image)[0])
        if objective.name.startswith("logit("):
            c = int(objective.name[len("logit(") : -1])
            return value, float(model(image).softmax(-1)[0, c])
    return value, None


def peer_objectives(model) -> list[tuple[str, obj.Objective]]:
    """Each class logit, and the layer4 channel with the largest weight toward the last class."""
    out = [(f"logit {name}", obj.logit(c)) for c, name in enumerate(model.labels)]
    c = int(model.net.fc.weight[-1].argmax())
    out.append((f"layer4 ch {c} (top for {model.labels[-1]})", obj.channel("layer4", c)))
    return out


def peer_runs(model, objective, magnitude, workdir, steps: int, n_crops: int, seed: int, matched: bool):
    """The runs of one comparison: ours, Horama, and (``matched``) Horama with ``box_size=(0.2, 0.6)``,
    which its code turns into sides 0.6-1.0, our crop sides on this model."""
    runs = {
        "ours": lambda: (
            visualize(model, objective, "maco", steps=steps, n_crops=n_crops, seed=seed, progress=False).image
        ),
        "horama": lambda: run_horama(model, objective, magnitude, workdir, steps, n_crops, seed),
    }
    if matched:
        runs["horama, our crop sides"] = lambda: run_horama(
            model, objective, magnitude, workdir, steps, n_crops, seed, box_size=(0.2, 0.6)
        )
    return runs


def quality_rows(
    model, magnitude, workdir, steps: int, seeds: int, n_crops: int, matched: bool
) -> list[dict]:
    """Whole-image objective of each toolbox's final image, per objective and seed."""
    rows = []
    for i, (label, objective) in enumerate(peer_objectives(model)):
        for seed in range(seeds):
            runs = peer_runs(model, objective, magnitude, workdir, steps, n_crops, seed, matched)
            names = list(runs)
            if (i + seed) % 2:  # alternate which goes first
                names.reverse()
            out = {name: timed(runs[name]) for name in names}
            value = {name: whole_image(model, objective, image) for name, (image, _) in out.items()}
            ours, theirs = value["ours"][0], value["horama"][0]
            row = {
                "objective": label,
                "seed": seed,
                "ours st/s": f"{steps / out['ours'][1]:.1f}",
                "horama st/s": f"{steps / out['horama'][1]:.1f}",
            }
            for name in runs:
                row[f"{name} final"] = f"{value[name][0]:.2f}"
                if value[name][1] is not None:
                    row[f"{name} p"] = f"{value[name][1]:.2f}"
            row["ours >= 0.9 horama"] = "yes" if ours >= theirs - 0.1 * abs(theirs) else "NO"
            rows.append(row)
            print(f"  {label} seed {seed}: final {ours:.2f} (ours) vs {theirs:.2f} (Horama)", flush=True)
    return rows


def speed_rows(model, magnitude, workdir, steps: int, n_crops: int, repeats: int) -> list[dict]:
    """Steps/s of each toolbox, medians of runs timed in alternation (``_timing.interleaved``)."""
    rows = []
    labels = dict(peer_objectives(model))
    for label in (f"logit {model.labels[1]}", list(labels)[-1]):
        runs = peer_runs(model, labels[label], magnitude, workdir, steps, n_crops, 0, matched=False)
        t = interleaved(runs, repeats=repeats, warmup=1)
        rows.append(
            {
                "objective": label,
                "steps": steps,
                "ours st/s": f"{steps / t['ours']:.1f}",
                "horama st/s": f"{steps / t['horama']:.1f}",
                "ours / horama": f"{t['horama'] / t['ours']:.2f}",
            }
        )
        print(f"  {label}: steps/s ours / Horama {t['horama'] / t['ours']:.2f}", flush=True)
    return rows


def page_directions(model, layer: str, k: int, seed: int = 0) -> list[obj.Objective]:
    """``k`` cosine direction objectives: random non-negative unit vectors in ``layer``'s channels."""
    with torch.no_grad():
        channels = obj.capture(model, torch.zeros(1, *model.input_size), [layer], False).acts[layer].shape[1]
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(k, channels, generator=g).abs()
    v = v / v.norm(dim=1, keepdim=True)
    return [obj.direction(layer, row, cosine=True, name=f"atom {i} ({layer})") for i, row in enumerate(v)]


def bare_steps(model, objectives: list[obj.Objective], n_crops: int, batched: bool):
    """One step's network work: the objectives forward and backward to the crops (no parameterization,
    no crop sampling), as one batch of K * n_crops rows or K batches of n_crops rows."""
    side = model.input_size[-1]
    k = len(objectives)
    g = torch.Generator().manual_seed(0)
    crops = torch.rand(k * n_crops, 3, side, side, generator=g)

    def one(objs, x):
        x = x.detach().requires_grad_(True)
        torch.autograd.grad(evaluate_groups(model, objs, x).sum(), x)

    if batched:
        return lambda: one(objectives, crops)
    return lambda: [one([o], crops[i * n_crops : (i + 1) * n_crops]) for i, o in enumerate(objectives)]


def page_rows(model, layers: list[str], k: int, steps: int, n_crops: int, repeats: int) -> list[dict]:
    rows = []
    for layer in layers:
        objectives = page_directions(model, layer, k)

        def batched(objectives=objectives):
            return visualize(model, objectives, "maco", steps=steps, n_crops=n_crops, seed=0, progress=False)

        def one_at_a_time(objectives=objectives):
            return [
                visualize(model, o, "maco", steps=steps, n_crops=n_crops, seed=0, progress=False)
                for o in objectives
            ]

        # first calls build the convolutions' kernels for each batch shape: warm both up
        visualize(model, objectives, "maco", steps=1, n_crops=n_crops, progress=False)
        visualize(model, objectives[0], "maco", steps=1, n_crops=n_crops, progress=False)
        t = interleaved({"batched": batched, "single": one_at_a_time}, repeats=repeats, warmup=0)
        bare = interleaved(
            {
                "batched": bare_steps(model, objectives, n_crops, True),
                "single": bare_steps(model, objectives, n_crops, False),
            },
            repeats=max(3, repeats),
        )
        rows.append(
            {
                "layer": layer,
                "atoms": k,
                "steps": steps,
                "crops": n_crops,
                "batched s/viz": f"{t['batched'] / k:.3f}",
                "one at a time s/viz": f"{t['single'] / k:.3f}",
                "ratio": f"{t['single'] / t['batched']:.2f}",
                "bare network step ratio": f"{bare['single'] / bare['batched']:.2f}",
            }
        )
        print(f"  {layer}: one at a time / batched {t['single'] / t['batched']:.2f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=256, help="steps of each visualization against Horama")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--n-crops", type=int, default=6, help="crops per step (Horama's default is 6)")
    parser.add_argument("--page-steps", type=int, default=32, help="steps of each visualization of the page")
    parser.add_argument("--page-size", type=int, default=32)
    parser.add_argument("--page-layers", default="layer3,layer4")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats of each page (medians)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speed-steps", type=int, default=32, help="steps of each timed run against Horama")
    parser.add_argument("--speed-repeats", type=int, default=7)
    parser.add_argument("--matched", action="store_true", help="also Horama with our crop sides (1b)")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-page", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(SPEC)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"Feature visualization benchmark ({machine()}); torch threads {torch.get_num_threads()};"
        f" {os.cpu_count()} cores, load average {load}; {SPEC}"
    )

    if not args.skip_peer:
        if not HORAMA_AVAILABLE:
            print(
                "\nHorama is not installed (pip install -c constraints.txt -e '.[dev]'): comparison skipped"
            )
        else:
            magnitude = load_spectrum("planted_shapes_64")["magnitude"]
            with tempfile.TemporaryDirectory() as workdir:
                print(
                    f"\n1a. Speed, ours vs Horama 0.3.0: MACO, {args.speed_steps} steps, {args.n_crops} crops"
                    f" per step, medians of {args.speed_repeats} alternated runs"
                )
                rows = speed_rows(
                    model, magnitude, workdir, args.speed_steps, args.n_crops, args.speed_repeats
                )
                print(table(rows, list(rows[0])))
                ratios = [float(r["ours / horama"]) for r in rows]
                print(f"steps/s ours / Horama: {', '.join(f'{r:.2f}' for r in ratios)} (goal >= 1)")
                print(
                    f"\n1b. Final objective, ours vs Horama 0.3.0: MACO, {args.steps} steps, {args.n_crops}"
                    f" crops per step, seeds 0..{args.seeds - 1}; whole final image (p: class probability)"
                )
                rows = quality_rows(
                    model, magnitude, workdir, args.steps, args.seeds, args.n_crops, args.matched
                )
                print(table(rows, list(dict.fromkeys(k for r in rows for k in r))))
                met = sum(r["ours >= 0.9 horama"] == "yes" for r in rows)
                probs = [float(r["ours p"]) for r in rows if "ours p" in r]
                print(f"ours >= Horama's - 10 % of |Horama's|: {met} of {len(rows)} runs")
                print(f"ours: lowest whole-image class probability {min(probs):.2f} (issue goal >= 0.5)")

    if not args.skip_page:
        print(
            f"\n2. A page of {args.page_size} atoms (cosine directions), MACO, {args.page_steps} steps,"
            f" {args.n_crops} crops: one visualize call vs one call per atom (repeats {args.repeats})"
        )
        rows = page_rows(
            model, args.page_layers.split(","), args.page_size, args.page_steps, args.n_crops, args.repeats
        )
        print(table(rows, list(rows[0])))
        print("goal: one at a time / batched >= 4 on a CPU")
    print(f"\nload average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
