"""NMF speed: time for ours (torch, HALS) to reach scikit-learn's reconstruction error, ours / scikit-learn.

Same data for both: planted non-negative low-rank activations ``A = U W + noise`` (default 50,000 x 512,
rank 25, half of ``U`` and ``W`` zero, uniform noise of 5 % of the signal's scale), float32, and the same
number of threads (``torch.set_num_threads`` and ``threadpoolctl`` for NumPy's BLAS and OpenMP).

1. scikit-learn's ``NMF(solver="cd", init="nndsvda")`` with its default stopping rule (``tol=1e-4``) runs
   to convergence: its time, iterations and relative error ``||A - U W|| / ||A||``. That error is the
   target.
2. Ours, ``workbench.concepts.nmf(A, r, solver="hals")`` (also nndsvda), runs until its relative error
   reaches the target: a callback reads the objective after every iteration (it costs O(r d), from the
   products the update computed anyway) and stops the run there.
3. For information: ours with its own default stopping rule (``tol=1e-4`` on the relative decrease of the
   objective), and the multiplicative updates (``solver="mu"``) stopped at the target or at 500
   iterations.

Every run includes the initialisation. Runs are timed alternately (``_timing.interleaved``) and the
median is reported. Goal: ours / scikit-learn <= 0.5 on a CPU.

Run: ``python benchmarks/concepts_nmf.py [--small] [--n 50000 --d 512 --rank 25] [--threads T]
[--repeats R]``; ``--small`` is 5,000 x 256 at rank 10, for a quick check.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, machine, table  # noqa: E402

from workbench.concepts import nmf  # noqa: E402


def planted(n: int, d: int, r: int, seed: int = 0) -> torch.Tensor:
    """``U W + noise`` with ``U, W >= 0``, half their entries zero."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, r, generator=g) * (torch.rand(n, r, generator=g) < 0.5)
    w = torch.rand(r, d, generator=g) * (torch.rand(r, d, generator=g) < 0.5)
    return u @ w + 0.05 * torch.rand(n, d, generator=g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--rank", type=int, default=25)
    parser.add_argument("--small", action="store_true", help="5,000 x 256 at rank 10")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mu-iters", type=int, default=500, help="cap of the mu row (0 skips it)")
    parser.add_argument("--device", default="cpu", help="where ours runs (scikit-learn runs on the CPU)")
    args = parser.parse_args()
    n, d, r = (5_000, 256, 10) if args.small else (args.n, args.d, args.rank)
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):  # NumPy's BLAS and every OpenMP runtime, for the whole run
        run(args, n, d, r)


def run(args: argparse.Namespace, n: int, d: int, r: int) -> None:
    a = planted(n, d, r)
    a_np = a.numpy()
    a_dev = a.to(args.device)
    norm = float(a.double().norm())
    print(f"NMF benchmark ({machine()}; threads {args.threads}; ours on {args.device})")
    print(f"data: planted {n} x {d}, rank {r}, float32; repeats {args.repeats} (medians)")

    from sklearn.decomposition import NMF

    sk: dict = {}

    def run_sklearn() -> None:
        model = NMF(r, solver="cd", init="nndsvda", tol=1e-4, max_iter=500)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            u = model.fit_transform(a_np)
        sk["iters"] = model.n_iter_
        sk["error"] = float(np.linalg.norm(a_np - u @ model.components_) / norm)

    run_sklearn()  # the target, before timing ours against it
    target = sk["error"]

    def ours(solver: str, to_target: bool, max_iter: int = 500):
        log: dict = {}

        def callback(it: int, objective: float) -> bool:
            log["iters"], log["error"] = it, (2 * max(objective, 0.0)) ** 0.5 / norm
            return to_target and log["error"] <= target

        def fit() -> None:
            tol = 0.0 if to_target else 1e-4
            nmf(a_dev, r, solver=solver, max_iter=max_iter, tol=tol, check_every=1, callback=callback)

        return fit, log

    hals, hals_log = ours("hals", True)
    hals_tol, hals_tol_log = ours("hals", False)
    runs = {"sklearn": run_sklearn, "hals": hals, "hals_tol": hals_tol}
    if args.mu_iters:
        runs["mu"], mu_log = ours("mu", True, max_iter=args.mu_iters)
    times = interleaved(runs, repeats=args.repeats, warmup=0)

    def row(name: str, key: str, log: dict) -> dict:
        return {
            "method": name,
            "iterations": log["iters"],
            "rel. error": f"{log['error']:.5f}",
            "seconds": f"{times[key]:.2f}",
            "/ sklearn": f"{times[key] / times['sklearn']:.2f}",
        }

    rows = [
        row("scikit-learn NMF (cd, nndsvda, tol 1e-4)", "sklearn", sk),
        row("ours hals, to sklearn's error", "hals", hals_log),
        row("ours hals, own stop (tol 1e-4)", "hals_tol", hals_tol_log),
    ]
    if args.mu_iters:
        rows.append(row(f"ours mu, to sklearn's error (cap {args.mu_iters})", "mu", mu_log))
    print(table(rows, list(rows[0])))
    ratio = times["hals"] / times["sklearn"]
    print(f"\nours (hals) / scikit-learn, time to scikit-learn's error: {ratio:.2f} (goal <= 0.5)")


if __name__ == "__main__":
    main()
