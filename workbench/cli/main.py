"""``workbench``: lab, run, explain, explore, zoo, info.

Each subcommand is a thin shell over a library function, so what the CLI does can also be done
from Python.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_REPORTS = Path("reports")


def _find_notebooks_dir() -> Path:
    for base in (Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2]):
        if (base / "notebooks").is_dir():
            return base / "notebooks"
    raise FileNotFoundError("no notebooks/ folder found here or above; run from the repository")


def _parse_value(text: str):
    """Papermill parameters from the command line: Python literals when they parse, else strings."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run_notebook(
    notebook: str | Path,
    parameters: dict | None = None,
    out_dir: str | Path = DEFAULT_REPORTS,
    kernel: str | None = None,
    progress: bool = True,
    exclude_input: bool = False,
) -> tuple[Path, Path]:
    """Execute a notebook with papermill and export it to HTML.

    The executed notebook and the HTML are written under temporary names and renamed when
    complete, so a failed run never leaves a half-written report behind. The HTML needs no network:
    math is rendered to MathML and no script comes from a CDN (see :mod:`workbench.cli.report`).
    ``exclude_input=True`` leaves the code out of the HTML (the executed notebook keeps it).

    Returns
    -------
    (executed notebook path, HTML path)
    """
    import nbformat
    import papermill as pm

    from workbench.cli.report import notebook_to_html

    notebook = Path(notebook)
    if not notebook.exists():
        candidate = _find_notebooks_dir() / notebook.name
        if not candidate.exists():
            raise FileNotFoundError(f"notebook {notebook} not found")
        notebook = candidate
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / notebook.name
    html = executed.with_suffix(".html")
    tmp_nb = out_dir / f".{notebook.stem}.tmp-{os.getpid()}.ipynb"
    try:
        pm.execute_notebook(
            str(notebook),
            str(tmp_nb),
            parameters=parameters or {},
            kernel_name=kernel,
            progress_bar=progress,
            cwd=str(notebook.parent),
        )
        body = notebook_to_html(nbformat.read(str(tmp_nb), as_version=4), exclude_input=exclude_input)
        tmp_html = html.with_name(f".{html.name}.tmp-{os.getpid()}")
        tmp_html.write_text(body, encoding="utf-8")
        os.replace(tmp_nb, executed)
        os.replace(tmp_html, html)
    finally:
        tmp_nb.unlink(missing_ok=True)
    return executed, html


def _cmd_run(args) -> int:
    params = {}
    for key, value in args.parameters or []:
        params[key] = _parse_value(value)
    executed, html = run_notebook(args.notebook, params, args.out, kernel=args.kernel)
    print(f"executed notebook: {executed.resolve()}")
    print(f"HTML report:       {html.resolve()}")
    print(f"open it with a browser (file://{html.resolve()}), or explore interactively with: workbench lab")
    return 0


def _cmd_lab(args) -> int:
    nb_dir = Path(args.dir) if args.dir else _find_notebooks_dir()
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        f"--notebook-dir={nb_dir}",
        f"--port={args.port}",
        "--ip=127.0.0.1",
        *args.extra,
    ]
    if args.no_browser:
        cmd.append("--no-browser")
    print(" ".join(cmd))
    return subprocess.call(cmd)


def _cmd_zoo(args) -> int:
    from workbench.models import list_zoo

    if args.zoo_cmd == "list":
        for name, card in list_zoo().items():
            acc = card.get("accuracy", {})
            acc_text = ", ".join(f"{k} {v:.3f}" for k, v in acc.items()) or "not trained"
            print(f"{name:26s} {card.get('arch', ''):14s} {acc_text}")
            print(f"{'':26s} {card.get('description', '')}")
        return 0
    from workbench.training.zoo import DEFAULT_RECIPE, train_zoo

    recipe = {k: getattr(args, k) for k in DEFAULT_RECIPE if getattr(args, k) is not None}
    card = train_zoo(args.name, out_dir=args.out, **recipe)
    print(json.dumps({k: card[k] for k in ("name", "accuracy", "train_seconds", "sha256")}, indent=1))
    return 0


def _cmd_info(_args) -> int:
    import platform

    import torch

    import workbench
    from workbench._core.devices import resolve_device
    from workbench.models import list_zoo

    versions = {
        "workbench": workbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for pkg in ("torchvision", "timm", "numpy", "zarr", "panel", "holoviews", "papermill"):
        try:
            versions[pkg] = __import__(pkg).__version__
        except ImportError:
            versions[pkg] = "not installed"
    for k, v in versions.items():
        print(f"{k:12s} {v}")
    device = resolve_device("auto")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"{'device':12s} {device} ({name}), {torch.get_num_threads()} CPU threads")
    for zoo_name, card in list_zoo().items():
        print(f"{'zoo':12s} {zoo_name}: {card.get('accuracy', 'not trained')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    lab = sub.add_parser("lab", help="JupyterLab on notebooks/")
    lab.add_argument("--dir", help="notebook folder (default: the repository's notebooks/)")
    lab.add_argument("--port", type=int, default=8888)
    lab.add_argument("--no-browser", action="store_true")
    lab.add_argument("extra", nargs=argparse.REMAINDER, help="more arguments for jupyter lab")
    lab.set_defaults(func=_cmd_lab)

    run = sub.add_parser("run", help="execute a notebook with papermill, write it and an HTML report")
    run.add_argument("notebook")
    run.add_argument(
        "-p", "--parameter", dest="parameters", nargs=2, action="append", metavar=("KEY", "VALUE")
    )
    run.add_argument("--out", default=str(DEFAULT_REPORTS), help="output folder (default: reports/)")
    run.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    run.set_defaults(func=_cmd_run)

    from workbench.cli.explain_command import add_parser as add_explain

    add_explain(sub)

    zoo = sub.add_parser("zoo", help="list or retrain the embedded models")
    zsub = zoo.add_subparsers(dest="zoo_cmd", required=True)
    zsub.add_parser("list", help="zoo names with accuracies")
    train = zsub.add_parser("train", help="retrain one zoo model reproducibly")
    train.add_argument("name")
    train.add_argument("--out", default=None, help="output folder (default: the package's zoo folder)")
    for key, typ in (
        ("n_train", int),
        ("n_test", int),
        ("epochs", int),
        ("batch_size", int),
        ("lr", float),
        ("seed", int),
        ("occlusion", float),
    ):
        train.add_argument(f"--{key.replace('_', '-')}", dest=key, type=typ, default=None)
    zoo.set_defaults(func=_cmd_zoo)

    info = sub.add_parser("info", help="versions, device, zoo")
    info.set_defaults(func=_cmd_info)

    from workbench.cli.explore_command import add_parser as add_explore

    add_explore(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
