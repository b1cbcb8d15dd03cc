"""``workbench explore MODEL [--images DIR | --planted N]``: serve the Explorer app on 127.0.0.1.

The app (:class:`workbench.widgets.Explorer`) is served by :func:`workbench.widgets.explorer_server.serve_explorer`
on a free local port. Unless ``--no-token``, the printed URL carries a random token (``?token=...``): a request
without it (or the cookie the first authorized request sets) is refused with 403. Every browser tab gets its own
Explorer; all share one :class:`~workbench.explain.session.ExploreSession`, so each result is computed once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


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
    from workbench.explain.inputs import resolve_model, scan_images
    from workbench.explain.session import ExploreSession

    model = resolve_model(args.model)  # what `workbench explain` accepts: zoo:, timm:, torchvision:, a file
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    size = model.input_size[-1]
    extra: dict[str, Any] = {}
    if args.images:
        # the folder is read as `workbench explain` reads it: unreadable files skipped with one warning,
        # class subfolders named like the model's classes give labels
        source = scan_images(args.images, size, list(model.labels))
        session = ExploreSession(model, source.get(range(source.n)), labels=source.labels, names=source.names,
                                 methods=methods, layer=args.layer, seed=args.seed)  # fmt: skip
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
