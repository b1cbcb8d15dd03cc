"""``workbench explore MODEL [--images DIR | --planted N]``: serve the Explorer app on 127.0.0.1.

The app (:class:`workbench.widgets.Explorer`) is served by :func:`workbench.widgets.explorer_server.serve_explorer`
on a free local port. Unless ``--no-token``, the printed URL carries a random token (``?token=...``): a request
without it (or the cookie the first authorized request sets) is refused with 403. Every browser tab gets its own
Explorer; all share one :class:`~workbench.explain.session.ExploreSession`, so each result is computed once.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any


def load_folder(folder: str | Path, size: int) -> tuple[Any, list[str]]:
    """The images under ``folder`` (recursively, sorted), center-cropped and resized to ``size``: (N, 3, size,
    size) in [0, 1] and their relative paths. Unreadable files are skipped with one warning listing them;
    a folder without a readable image raises ValueError."""
    import torch

    from workbench.data import load_image
    from workbench.data.images import IMAGE_EXTENSIONS

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--images: {str(root)!r} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    images, names, bad = [], [], []
    for path in files:
        try:
            images.append(load_image(path, size))
            names.append(str(path.relative_to(root)))
        except Exception as err:  # noqa: BLE001 - any unreadable file is skipped and listed
            bad.append(f"{path.relative_to(root)} ({type(err).__name__})")
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s): {', '.join(bad)}", stacklevel=2)
    if not images:
        raise ValueError(
            f"--images: no readable image in {str(root)!r} (extensions {', '.join(IMAGE_EXTENSIONS)})"
        )
    return torch.stack(images), names


def add_parser(sub: Any) -> None:
    """Register ``explore`` on the ``workbench`` subparsers."""
    p = sub.add_parser("explore", help="serve the Explorer: linked views of a model on images (127.0.0.1)")
    p.add_argument("model", help="a load_model spec: zoo:NAME, timm:NAME, torchvision:NAME")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--images", metavar="DIR", help="a folder of images (searched recursively)")
    src.add_argument("--planted", type=int, metavar="N", help="N PlantedShapes images (default 16)")
    p.add_argument("--rule", default=None, help="PlantedShapes rule (default: the zoo model's)")
    p.add_argument(
        "--methods", default="saliency,gradient_input", help="attribution methods, comma-separated"
    )
    p.add_argument(
        "--layer", default=None, help="layer of the concepts and atoms (default: the last spatial one)"
    )
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument(
        "--no-token", action="store_true", help="serve without a token (any local process may connect)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def build_session(args: Any) -> tuple[Any, dict[str, Any]]:
    """The ExploreSession of the arguments and the Explorer's extra keywords (PlantedShapes concepts)."""
    from workbench.data import planted_shapes
    from workbench.explain.session import ExploreSession
    from workbench.models import load_model

    model = load_model(args.model)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    size = model.input_size[-1]
    extra: dict[str, Any] = {}
    if args.images:
        images, names = load_folder(args.images, size)
        session = ExploreSession(
            model, images, names=names, methods=methods, layer=args.layer, seed=args.seed
        )
    else:
        rule = args.rule or (getattr(model, "card", None) or {}).get("data", {}).get("rule", "shape")
        data = planted_shapes(args.planted or 16, size=size, seed=args.seed, rule=rule)
        session = ExploreSession(model, data.images, labels=data.labels, masks=data.object_masks, methods=methods,
                                 layer=args.layer, seed=args.seed)  # fmt: skip
        extra = {"concepts": data.concepts, "concept_names": data.concept_names}
    return session, extra


def run(args: Any) -> int:
    """Serve the Explorer until interrupted; bad input exits with code 2 and a message."""
    try:
        if args.planted is not None and args.planted < 1:
            raise ValueError(f"--planted: expected a positive number of images, got {args.planted}")
        session, extra = build_session(args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        # a KeyError's str() adds quotes around its message
        text = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"workbench explore: {text}", file=sys.stderr)
        return 2
    from workbench.widgets.explorer_server import serve_explorer

    def ready(url: str) -> None:
        print(f"Explorer of {args.model} on {session.n} images: {url}", flush=True)

    session.dictionary()  # start training the dictionary before the first page asks for it
    try:
        serve_explorer(session, port=args.port, token=not args.no_token, title=f"Explorer \u00b7 {args.model}",
                       on_ready=ready, **extra)  # fmt: skip
    finally:
        session.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m workbench.cli.explore_command MODEL ...`` (the same as ``workbench explore``)."""
    parser = argparse.ArgumentParser(prog="workbench")
    add_parser(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["explore", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
