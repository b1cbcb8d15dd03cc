"""The `workbench` command line."""

from __future__ import annotations

import json

import nbformat
import pytest

from workbench.cli.main import _parse_value, build_parser, main, run_notebook


def test_zoo_list_and_info(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "resnet_shapes" in out and "vit_shapes" in out and "resnet_shapes_shortcut" in out
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "device" in out and "zoo" in out


def test_parameters_parse_as_literals():
    assert _parse_value("3") == 3 and _parse_value("0.5") == 0.5 and _parse_value("ci") == "ci"
    args = build_parser().parse_args(["run", "nb.ipynb", "-p", "scale", "full", "-p", "seed", "2"])
    assert args.parameters == [["scale", "full"], ["seed", "2"]]


def _notebook(path, fail=False):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    body = "assert x == 2, 'parameter not applied'" if not fail else "raise RuntimeError('boom')"
    nb.cells = [params, nbformat.v4.new_code_cell(body), nbformat.v4.new_code_cell("print('done', x)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.mark.slow
def test_run_writes_executed_notebook_and_html(tmp_path):
    _notebook(tmp_path / "demo.ipynb")
    executed, html = run_notebook(tmp_path / "demo.ipynb", {"x": 2}, tmp_path / "out", progress=False)
    assert executed.exists() and html.exists()
    assert "done" in html.read_text()
    assert json.loads(executed.read_text())["cells"]


@pytest.mark.slow
def test_failed_run_leaves_no_half_written_report(tmp_path):
    _notebook(tmp_path / "bad.ipynb", fail=True)
    with pytest.raises(Exception, match="boom"):
        run_notebook(tmp_path / "bad.ipynb", {}, tmp_path / "out", progress=False)
    assert list((tmp_path / "out").iterdir()) == []
