"""``workbench explain MODEL (--images DIR | --planted N [--rule R]) ...``: a thin shell over
:func:`workbench.explain.explain`. Bad input exits with code 2 and a message that says what was expected."""

from __future__ import annotations

import argparse
import sys
import warnings

EXIT_BAD_INPUT = 2


def add_parser(sub) -> None:
    """Register the ``explain`` subcommand on ``sub`` (the subparsers of ``workbench``)."""
    from workbench.explain.settings import DEFAULT_METHODS, SCALES

    p = sub.add_parser(
        "explain",
        help="explain a model on images: attribution maps and their fidelity, concepts, a sanity check, an HTML report",
        description=(
            "Explain MODEL on images and write a self-contained HTML report, the executed notebook and the raw"
            " results (a resumable zarr store) to --out. Re-running with the same arguments skips what is done."
            " Under torchrun, the work is shared between the ranks."
        ),
    )
    p.add_argument("model", help="zoo:NAME, timm:NAME, torchvision:NAME, or a .py / .pt file with a module")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", help="a folder of images (or of class subfolders)")
    src.add_argument("--planted", metavar="N", type=int, help="N PlantedShapes images (labels known)")
    p.add_argument("--rule", default=None, help="PlantedShapes rule (default: the zoo model's training rule)")
    p.add_argument(
        "--classes", nargs="+", default=None, help="class names or indices whose concepts to extract"
    )
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                   help=f"attribution methods, or forgrad_<method> (default: {' '.join(DEFAULT_METHODS)})")  # fmt: skip
    p.add_argument("--concepts", type=int, default=5, help="CRAFT concepts per class (default 5)")
    p.add_argument("--layer", default=None, help="concept layer (default: the last non-negative spatial map)")
    p.add_argument(
        "--patch-size",
        type=int,
        default=None,
        help="CRAFT crop side (default: 64/224 of the side, whole images below 128 px)",
    )
    p.add_argument("--out", default=None, help="output folder (default: reports/explain-<model name>)")
    p.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK under torchrun), cpu, cuda, ...")
    p.add_argument(
        "--scale", default="ci", choices=list(SCALES), help="budgets: ci (small) or full (the papers')"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--block-images", type=int, default=16, help="images per write block (resume/shard unit)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace results made with other arguments")
    p.add_argument("--no-report", action="store_true", help="compute the results only")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _default_out(model: str) -> str:
    from pathlib import Path

    name = (
        Path(model).stem
        if model.endswith((".py", ".pt", ".pth"))
        else model.replace(":", "-").replace("/", "-")
    )
    return f"reports/explain-{name}"


def run(args: argparse.Namespace) -> int:
    from workbench.explain import ExplainInputError, explain

    def show(message, category, filename, lineno, file=None, line=None):  # warnings as one plain line
        print(f"warning: {message}", file=sys.stderr, flush=True)

    warnings.showwarning = show
    try:
        res = explain(
            args.model, args.images, planted=args.planted, rule=args.rule, classes=args.classes,
            methods=args.methods, concepts=args.concepts, out=args.out or _default_out(args.model),
            device=args.device, scale=args.scale, layer=args.layer, patch_size=args.patch_size, seed=args.seed,
            block_images=args.block_images, batch_size=args.batch_size, overwrite=args.overwrite,
            report=not args.no_report, progress=not args.no_progress,
        )  # fmt: skip
    except ExplainInputError as err:
        print(f"workbench explain: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.no_report and res.report.exists():
        print(f"results:           {res.store_path.resolve()}")
        print(f"executed notebook: {res.notebook.resolve()}")
        print(f"HTML report:       {res.report.resolve()}")
    return 0
