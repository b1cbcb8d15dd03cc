"""Every notebook in notebooks/ runs end to end at scale="ci" (papermill), and declares its parameters.

The kernel is always this interpreter (``sys.executable``): a kernelspec named ``python3`` pointing to
it is written into a temporary JUPYTER_PATH, which Jupyter searches before any user or system kernel,
so the test works in a fresh clone where ``python -m ipykernel install`` was never run.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REQUIRED_PARAMETERS = {"scale", "model", "device", "seed"}


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _parameters_cell(nb: dict) -> dict | None:
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


def test_notebooks_exist():
    assert NOTEBOOKS, "notebooks/ should hold at least the tour"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_declares_parameters(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    cell = _parameters_cell(nb)
    assert cell is not None, f"{path.name}: no code cell tagged 'parameters' (papermill needs one)"
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    assert cell is first_code, f"{path.name}: the 'parameters' cell should be the first code cell"
    source = "".join(cell["source"])
    assigned = {
        target.id
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    missing = REQUIRED_PARAMETERS - assigned
    assert not missing, f"{path.name}: the parameters cell does not set {sorted(missing)}"
    assert 'scale = "ci"' in source or 'scale = "full"' in source, (
        f"{path.name}: scale should default to 'ci' or 'full'"
    )
    outputs = [c for c in nb["cells"] if c["cell_type"] == "code" and c.get("outputs")]
    assert not outputs, f"{path.name}: commit notebooks without outputs ({len(outputs)} cells have some)"


@pytest.fixture(scope="session")
def venv_kernel(tmp_path_factory) -> str:
    """A kernelspec 'python3' running this interpreter, first on JUPYTER_PATH for the session."""
    pytest.importorskip("papermill")
    pytest.importorskip("ipykernel")
    root = tmp_path_factory.mktemp("jupyter_path")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": f"Python 3 ({sys.prefix})",
                "language": "python",
                "metadata": {"debugger": False},
            }
        )
    )
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root), *([old] if old else [])])
    from jupyter_client.kernelspec import KernelSpecManager

    found = KernelSpecManager().get_kernel_spec("python3")
    assert found.argv[0] == sys.executable, f"kernel python3 resolves to {found.argv}, not {sys.executable}"
    yield "python3"
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_at_ci_scale(path: Path, tmp_path: Path, venv_kernel: str):
    import papermill as pm

    out = tmp_path / path.name
    start = time.perf_counter()
    pm.execute_notebook(
        str(path),
        str(out),
        parameters={"scale": "ci"},
        kernel_name=venv_kernel,
        cwd=str(path.parent),
        progress_bar=False,
        execution_timeout=600,
    )
    elapsed = time.perf_counter() - start
    nb = json.loads(out.read_text(encoding="utf-8"))
    errors = [
        o
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, f"{path.name}: cells raised {[e.get('ename') for e in errors]}"
    # Panel widgets embed their JavaScript inline (pn.extension(inline=True)): nothing from a CDN.
    text = out.read_text(encoding="utf-8")
    for cdn in ("cdn.bokeh.org", "cdn.holoviz.org", "unpkg.com", "cdn.jsdelivr.net/npm/@holoviz"):
        assert cdn not in text, (
            f"{path.name}: output references {cdn}; widgets must load their resources inline"
        )
    print(f"{path.name}: executed at scale='ci' in {elapsed:.1f} s")
