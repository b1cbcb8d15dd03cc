"""The README is executable documentation: its Python blocks run, and its methods table points at real
files, notebooks, tests and importable functions.

A new user copies the blocks one after the other into a session; the test does the same (one
namespace, in order, in an empty folder so that ``runs/`` lands there), on the embedded defaults:
zoo models, PlantedShapes, no network.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TABLE_HEADING = "## Methods: paper, function, file, notebook, test"


def python_blocks(text: str) -> list[str]:
    """The ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def methods_table(text: str) -> list[dict[str, str]]:
    """Rows of the methods table as dicts keyed by the header's column names."""
    section = text.split(TABLE_HEADING, 1)[1].splitlines()
    first = next(i for i, line in enumerate(section) if line.startswith("|"))
    lines = []
    for line in section[first:]:  # the table ends at its first non-table line
        if not line.startswith("|"):
            break
        lines.append(line)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, rows = cells[0], cells[2:]  # cells[1] is the --- separator
    return [dict(zip(header, row, strict=True)) for row in rows]


def code_names(cell: str) -> list[str]:
    """The `backticked` names of a table cell."""
    return re.findall(r"`([^`]+)`", cell)


def test_python_blocks_are_found():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    # first look, attribution, metrics, sparse dictionaries, concepts, feature visualization
    assert len(blocks) == 6, [b.splitlines()[0] for b in blocks]


@pytest.mark.slow
def test_readme_python_blocks_run_in_order(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)  # the SAE block writes runs/ under the working directory
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(python_blocks(README.read_text(encoding="utf-8"))):
        code = compile(block, f"README.md python block {i + 1}", "exec")
        exec(code, namespace)  # noqa: S102 - the README's own code, run as a user would

    # What the comments of the blocks promise (shapes written next to the calls).
    ns = namespace
    assert ns["logits"].shape == (64, 5)
    assert {k: tuple(v.shape) for k, v in ns["feats"].items()} == {
        "layer2": (64, 48, 8, 8),
        "layer4": (64, 96, 8, 8),
    }
    for name in ("maps", "smooth_maps", "filtered"):
        assert ns[name].shape == (4, 64, 64), name
    assert ns["curves"].auc.shape == (4,) and ns["curves"].curve.shape == (4, 11)
    assert ns["mu"].shape == (4,) and ns["auc"].shape == (4,)
    assert ns["acts"].shape == (4096, 96)
    assert ns["codes"].shape == (4096, 256) and ns["x_hat"].shape == (4096, 96)
    # k = 8 active atoms per row at most (the TopK encoder of the RA-SAE)
    assert int((ns["codes"] != 0).sum(dim=1).max()) <= 8
    assert torch.isfinite(torch.tensor(ns["fit"]))
    assert (tmp_path / "runs" / "ra").is_dir()
    n_pos = len(ns["pos"])
    assert ns["importance"].shape == (6,) and ns["concept_maps"].shape == (4, 6, 64, 64)
    assert ns["gi"].shape == (n_pos, 6) and ns["cdel"].auc.shape == (n_pos,)
    assert ns["tree"]["children"] and ns["groups"].sizes.sum() == n_pos
    assert ns["fv"].image.shape == (4, 3, 64, 64) and ns["fv"].transparency.shape == (4, 1, 64, 64)
    assert ns["fv"].history.shape == (64, 4) and ns["class_probs"].shape == (4, 4)
    assert bool((ns["fa"].info["distance"] <= 0.1 + 1e-5).all())


def test_methods_table_points_at_real_things():
    rows = methods_table(README.read_text(encoding="utf-8"))
    assert len(rows) >= 30, len(rows)
    problems = []
    for row in rows:
        method = row["method"]
        files = code_names(row["file"])
        assert len(files) == 1, (method, row["file"])
        file = ROOT / files[0]
        if not file.is_file():
            problems.append(f"{method}: file {files[0]} does not exist")
        for col in ("notebook", "test"):
            for path in code_names(row[col]):
                if not (ROOT / path).is_file():
                    problems.append(f"{method}: {col} {path} does not exist")
        assert row["test"] != "-", f"{method}: every method has a test"
        functions = code_names(row["function"])
        assert functions, method
        for dotted in functions:
            package, _, name = dotted.rpartition(".")
            try:
                obj = getattr(importlib.import_module(package), name)
            except (ImportError, AttributeError) as err:
                problems.append(f"{method}: {dotted} is not importable: {err}")
                continue
            # The function is defined in the named file, so the table says where to read it.
            source = Path(inspect.getsourcefile(inspect.unwrap(obj))).resolve()
            if source != file.resolve():
                problems.append(
                    f"{method}: {dotted} is defined in {source.relative_to(ROOT)}, not {files[0]}"
                )
        # The notebook and the test exercise the method: one of the row's names appears in each.
        short = [d.rpartition(".")[2] for d in functions]
        for col in ("notebook", "test"):
            for path in code_names(row[col]):
                text = (ROOT / path).read_text(encoding="utf-8") if (ROOT / path).is_file() else ""
                if text and not any(re.search(rf"\b{re.escape(s)}\b", text) for s in short):
                    problems.append(f"{method}: {path} never mentions {', '.join(short)}")
    assert not problems, "\n".join(problems)
