"""The import rules of DESIGN.md, checked on the source: imports point down only.

- ``_core`` imports no other workbench package; ``models`` never imports ``data``;
- ``metrics`` imports nothing above ``models`` and ``data`` (so methods may tune with it, as FORGrad does);
- only ``widgets`` imports the UI packages;
- no package exports a public name equal to one of its submodules (``workbench.metrics.mufidelity`` is
  the function, never the module).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import types
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"
ALLOWED = {
    "_core": {"_core"},
    "models": {"_core", "models"},
    "data": {"_core", "models", "data"},
    "metrics": {"_core", "models", "data", "metrics"},
    # a method layer: feature visualization never reaches concepts, SAEs or widgets (they call it)
    "featviz": {"_core", "models", "data", "featviz"},
    # the pipeline over every method package; "cli" only for the one notebook runner (run_notebook) that
    # renders its report, imported when the report is rendered
    "explain": {
        "_core",
        "models",
        "data",
        "metrics",
        "attribution",
        "concepts",
        "sae",
        "featviz",
        "explain",
        "cli",
    },
}
UI = {"panel", "holoviews", "bokeh", "ipywidgets"}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down(layer):
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in imports(path):
            parts = name.split(".")
            if parts[0] == "workbench" and len(parts) > 1:
                assert parts[1] in ALLOWED[layer], f"{path.relative_to(PACKAGE)} imports {name}"


def test_only_widgets_import_ui_packages():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "widgets" in path.relative_to(PACKAGE).parts:
            continue
        ui = {n for n in imports(path) if n.split(".")[0] in UI}
        assert not ui, f"{path.relative_to(PACKAGE)} imports {sorted(ui)}"


def _packages() -> list[str]:
    import workbench

    return ["workbench"] + sorted(
        m.name for m in pkgutil.walk_packages(workbench.__path__, "workbench.") if m.ispkg
    )


def test_no_public_name_equals_a_submodule():
    """One rule in every package: ``from workbench.<pkg> import <name>`` never has two meanings, so a
    package never rebinds a submodule's name to a function (metrics used to rebind ``mufidelity``)."""
    offenders = {}
    for name in _packages():
        package = importlib.import_module(name)
        submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
        public = getattr(package, "__all__", None)
        if public is None:  # no __all__: the public non-module attributes
            public = [
                k
                for k, v in vars(package).items()
                if not k.startswith("_") and not isinstance(v, types.ModuleType)
            ]
        clash = sorted(set(public) & submodules)
        if clash:
            offenders[name] = clash
    assert not offenders, f"public names that equal a submodule (rename the file after its idea): {offenders}"
