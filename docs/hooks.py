"""MkDocs hooks that generate the documentation site from the project's own sources (``mkdocs.yml``).

Nothing here is written by hand twice:

- the home page and the capability pages are the README's sections, and each capability page gets the
  rows of the README's methods table (paper -> function -> notebook) whose functions live in its
  packages, parsed by ``docs/readme_parser.py`` (the parser ``tests/test_readme.py`` uses);
- the API pages are ``::: workbench.<package>`` blocks that mkdocstrings fills from the numpydoc
  docstrings (members: each package's ``__all__``);
- the notebook pages are ``notebooks/*.ipynb`` rendered to Markdown: text and code, and their outputs
  when ``WORKBENCH_DOCS_EXECUTE=1`` (``make docs EXECUTE=1``) executes them first with papermill at
  ``scale="ci"`` (cached in ``build/docs/executed`` by the hash of the notebook and of ``workbench/``);
- math (``$...$``, ``$$...$$``) becomes MathML at build time, as in the offline HTML reports
  (``workbench.cli.report``): the site loads nothing from a CDN (the theme's web fonts are off too).

A README row whose functions belong to no page's package stops the build: a new package needs a page.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import readme_parser  # docs/readme_parser.py: MkDocs puts the hooks' folder on sys.path while loading
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.workbench")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "docs" / "executed"
EXECUTE_ENV = "WORKBENCH_DOCS_EXECUTE"


@dataclass(frozen=True)
class Capability:
    """One page of the site: README sections, methods-table rows and API pages of some packages."""

    slug: str
    title: str
    summary: str
    readme_sections: tuple[str, ...]
    packages: tuple[str, ...]  # rows whose functions live in these packages land on this page


CAPABILITIES = (
    Capability(
        "models",
        "Models, zoo and data",
        "load any model and split it into g / h; the embedded zoo; PlantedShapes and the ActivationStore",
        ("A first look", "The zoo"),
        ("workbench.models", "workbench.data", "workbench.training"),
    ),
    Capability(
        "attribution",
        "Attribution",
        "where a model looks: gradient, CAM and black-box maps, FORGrad",
        ("Attribution",),
        ("workbench.attribution",),
    ),
    Capability(
        "metrics",
        "Metrics",
        "whether a map is right: fidelity, localization, sanity checks, stability, baselines",
        ("Metrics",),
        ("workbench.metrics",),
    ),
    Capability(
        "sparse-dictionaries",
        "Sparse dictionaries",
        "what a layer encodes: SAEs, matching pursuit, archetypal and universal dictionaries",
        ("Sparse dictionaries",),
        ("workbench.sae",),
    ),
    Capability(
        "concepts",
        "Concepts",
        "what a class is made of: CRAFT and the holistic framework",
        ("Concepts",),
        ("workbench.concepts",),
    ),
    Capability(
        "feature-visualization",
        "Feature visualization",
        "what makes a channel, an atom, a concept or a class fire: MACO and feature accentuation",
        ("Feature visualization",),
        ("workbench.featviz",),
    ),
    Capability(
        "widgets",
        "Widgets",
        "Panel views of the results, in JupyterLab and in the HTML reports",
        (),
        ("workbench.widgets",),
    ),
)

HOME_EXCLUDED = {readme_parser.METHODS_HEADING[3:]}  # the full table has its own page


# ---------------------------------------------------------------------------------------------------
# MkDocs events


API_PAGES: dict[str, list[str]] = {}  # page slug -> modules, from mkdocs.yml's extra.api_modules


def on_config(config):
    API_PAGES.clear()
    for module in config.extra["api_modules"]:
        API_PAGES.setdefault(module.split(".")[1], []).append(module)
    config.nav = _nav()
    return config


def on_files(files: Files, config) -> Files:
    readme = README.read_text(encoding="utf-8")
    sections = dict(readme_parser.sections(readme))
    rows = readme_parser.methods_table(readme)
    notebooks = _notebooks()
    pages = {"index.md": _home_page(readme, sections), "methods.md": _methods_page(rows, notebooks)}
    placed = set()
    for cap in CAPABILITIES:
        cap_rows = [r for r in rows if _row_packages(r) & set(cap.packages)]
        placed.update(id(r) for r in cap_rows)
        pages[f"capabilities/{cap.slug}.md"] = _capability_page(cap, sections, cap_rows, notebooks)
    orphans = [r["method"] for r in rows if id(r) not in placed]
    if orphans:
        raise ValueError(f"README methods-table rows with no capability page in docs/hooks.py: {orphans}")
    pages["api/index.md"] = _api_index()
    for slug, modules in API_PAGES.items():
        pages[f"api/{slug}.md"] = _api_page(modules)
    pages["notebooks/index.md"] = _notebooks_index(notebooks, rows)
    for nb in notebooks:
        text, assets = _notebook_page(nb)
        pages[f"notebooks/{nb.stem}.md"] = text
        for name, data in assets.items():
            files.append(File.generated(config, f"notebooks/{nb.stem}/{name}", content=data))
        files.append(File.generated(config, f"notebooks/{nb.stem}.ipynb", abs_src_path=str(nb.path)))
        if nb.report is not None:
            files.append(
                File.generated(config, f"notebooks/{nb.stem}.report.html", abs_src_path=str(nb.report))
            )
    for uri, text in pages.items():
        files.append(File.generated(config, uri, content=text))
    return files


_MATH: dict[str, list[str]] = {}


def on_page_markdown(markdown: str, page, config, files) -> str:
    """LaTeX to MathML placeholders before Markdown sees it (underscores in math are not emphasis)."""
    from workbench.cli.report import _math_to_placeholders  # the reports' converter, reused as is

    text, rendered = _math_to_placeholders(markdown)
    _MATH[page.file.src_uri] = rendered
    return text


def on_page_content(html: str, page, config, files) -> str:
    from workbench.cli.report import _PLACEHOLDER

    for i, mathml in enumerate(_MATH.pop(page.file.src_uri, [])):
        html = html.replace(_PLACEHOLDER.format(i), mathml)
    return html


# ---------------------------------------------------------------------------------------------------
# Pages


def _nav() -> list:
    return [
        {"Home": "index.md"},
        {
            "Capabilities": [{c.title: f"capabilities/{c.slug}.md"} for c in CAPABILITIES]
            + [{"All methods": "methods.md"}]
        },
        {"Notebooks": ["notebooks/index.md"] + [f"notebooks/{p.stem}.md" for p in _notebook_paths()]},
        {"API reference": ["api/index.md"] + [{f"workbench.{s}": f"api/{s}.md"} for s in API_PAGES]},
    ]


def _home_page(readme: str, sections: dict[str, str]) -> str:
    """The README's introduction, the capabilities, then every README section no other page shows."""
    shown = {s for c in CAPABILITIES for s in c.readme_sections} | HOME_EXCLUDED
    out = [sections[""]]
    out.append("## What it does\n")
    out += [f"- [{c.title}](capabilities/{c.slug}.md): {c.summary}." for c in CAPABILITIES]
    out.append(
        "- [All methods](methods.md): the README's table of papers, functions, files, notebooks and tests."
    )
    out.append(
        "- [Notebooks](notebooks/index.md): one per paper and the tour; "
        "[API reference](api/index.md): every public name, from its docstring.\n"
    )
    for title, body in readme_parser.sections(readme)[1:]:
        if title not in shown:
            out.append(f"## {title}\n\n{body}")
    return "\n".join(out)


def _capability_page(cap: Capability, sections: dict[str, str], rows: list, notebooks: list) -> str:
    out = [f"# {cap.title}\n"]
    for i, name in enumerate(cap.readme_sections):
        if name not in sections:
            raise ValueError(f"README has no section '## {name}' (docs/hooks.py, page {cap.slug})")
        out.append(sections[name] if i == 0 else f"## {name}\n\n{sections[name]}")
    if cap.slug == "widgets":
        out.append(_widgets_section(notebooks))
    out.append("## Papers, functions and notebooks\n")
    if rows:
        out.append(
            "From the README's methods table (its single source): each row's functions link to their API "
            "entry, its notebook to the rendered notebook.\n"
        )
        out.append(_table(rows, notebooks, prefix="../"))
    else:
        packages = ", ".join(f"`{p}`" for p in cap.packages)
        out.append(f"The README's methods table has no row for {packages} yet.\n")
    out.append("## API\n")
    for pkg in cap.packages:
        slug = pkg.split(".")[1]
        out.append(f"- [`{pkg}`](../api/{slug}.md)")
    return "\n".join(out) + "\n"


def _methods_page(rows: list, notebooks: list) -> str:
    return (
        "# All methods\n\nThe README's methods table, as it is: every method with its paper, the functions "
        "that implement it (linked to the API), the file they live in, the notebook that reproduces the "
        "paper's claim and the test that checks it. A dash: no notebook of its own yet.\n\n"
        + _table(
            rows, notebooks, prefix="", columns=("method", "paper", "function", "file", "notebook", "test")
        )
    )


def _table(
    rows: list, notebooks: list, prefix: str, columns=("method", "paper", "function", "notebook", "test")
):
    titles = {nb.stem: nb.title for nb in notebooks}
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        cells = []
        for col in columns:
            if col == "function":
                cells.append(
                    ", ".join(f"[`{f.rpartition('.')[2]}`][{f}]" for f in readme_parser.code_names(row[col]))
                )
            elif col == "notebook":
                links = []
                for path in readme_parser.code_names(row[col]):
                    stem = Path(path).stem
                    links.append(f'[{stem}]({prefix}notebooks/{stem}.md "{titles.get(stem, stem)}")')
                cells.append(", ".join(links) or "-")
            else:
                cells.append(row[col])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _row_packages(row: dict) -> set[str]:
    return {".".join(f.split(".")[:2]) for f in readme_parser.code_names(row["function"])}


def _api_index() -> str:
    out = [
        "# API reference\n",
        "Generated from the numpydoc docstrings by mkdocstrings. Each page shows the names of one package's "
        "`__all__`; `workbench.load_model`, `workbench.Model` and `workbench.list_zoo` are those of "
        "[`workbench.models`](models.md).\n",
        "| package | what it holds |",
        "| --- | --- |",
    ]
    for slug, modules in API_PAGES.items():
        doc = _module_docstring(modules[0]).split("\n\n")[0].replace("\n", " ")
        out.append(f"| [`{modules[0]}`]({slug}.md) | {_strip_roles(doc)} |")
    return "\n".join(out) + "\n"


def _api_page(modules: list[str]) -> str:
    """A package's members (its ``__all__``), then its public submodules; each module a heading."""
    return "\n".join(
        f"::: {module}\n    options:\n      show_root_heading: true\n      heading_level: {1 if i == 0 else 2}\n"
        for i, module in enumerate(modules)
    )


def _widgets_section(notebooks: list) -> str:
    """The widgets, their one-line summaries (docstrings) and the notebooks that show them."""
    init = ROOT / "workbench" / "widgets" / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    out = [
        _strip_roles(ast.get_docstring(tree) or ""),
        "\n## The widgets\n",
        "| widget | what it shows | notebooks |",
        "| --- | --- | --- |",
    ]
    sources = {
        alias.asname or alias.name: node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    for name in _module_all("workbench.widgets"):
        summary = _first_line(_object_docstring(sources[name], name))
        used = [nb for nb in notebooks if re.search(rf"\b{re.escape(name)}\b", nb.source_text)]
        links = ", ".join(f"[{nb.stem}](../notebooks/{nb.stem}.md)" for nb in used) or "-"
        out.append(f"| [`{name}`][workbench.widgets.{name}] | {_strip_roles(summary)} | {links} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------
# Notebooks


@dataclass
class Notebook:
    path: Path  # the committed notebook (no outputs)
    nb: dict  # what the page shows: the executed notebook when executing, else the committed one
    executed: bool
    report: Path | None  # the offline HTML report of the executed notebook

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def title(self) -> str:
        for cell in self.nb["cells"]:
            if cell["cell_type"] == "markdown":
                match = re.search(r"^# (.+)$", _source(cell), flags=re.M)
                if match:
                    return match.group(1).strip()
        return self.stem

    @property
    def source_text(self) -> str:
        return "\n".join(_source(c) for c in self.nb["cells"])


def _notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def _notebooks() -> list[Notebook]:
    execute = os.environ.get(EXECUTE_ENV, "") not in ("", "0")
    out = []
    for path in _notebook_paths():
        if execute:
            executed, report = _execute(path)
            nb = json.loads(executed.read_text(encoding="utf-8"))
            out.append(Notebook(path, nb, True, report))
        else:
            out.append(Notebook(path, json.loads(path.read_text(encoding="utf-8")), False, None))
    return out


def _execute(path: Path) -> tuple[Path, Path]:
    """The notebook executed at scale="ci" by ``workbench run``'s function, cached by content hash."""
    from workbench.cli.main import run_notebook

    digest = hashlib.sha256(path.read_bytes())
    for source in sorted((ROOT / "workbench").rglob("*.py")):  # the code the notebook runs
        digest.update(source.relative_to(ROOT).as_posix().encode() + b"\0" + source.read_bytes())
    key = digest.hexdigest()
    executed, report, stamp = (EXECUTED / f"{path.stem}{s}" for s in (".ipynb", ".html", ".key"))
    if executed.is_file() and report.is_file() and stamp.is_file() and stamp.read_text() == key:
        log.info(f"{path.name}: executed copy is up to date")
        return executed, report
    log.info(f"{path.name}: executing at scale='ci' (papermill)")
    executed, report = run_notebook(path, {"scale": "ci"}, out_dir=EXECUTED, progress=False)
    stamp.write_text(key)
    return executed, report


def _notebooks_index(notebooks: list[Notebook], rows: list) -> str:
    pages = {}
    for cap in CAPABILITIES:
        for row in rows:
            if _row_packages(row) & set(cap.packages):
                for p in readme_parser.code_names(row["notebook"]):
                    pages.setdefault(Path(p).stem, []).append(cap)
    out = [
        "# Notebooks\n",
        "One notebook per paper, plus the tour. Each reproduces its paper's claim at small scale on the zoo "
        "models and PlantedShapes (whose answers are known) and asserts it; papermill parameters `scale`, "
        '`model`, `device` and `seed` switch to a real model and `scale="full"`. Run one with '
        "`workbench run notebooks/NAME.ipynb` (an executed copy and an offline HTML report in `reports/`) or "
        "open them all in JupyterLab with `workbench lab`.\n",
        _execution_note(notebooks),
        "| notebook | title | capability |",
        "| --- | --- | --- |",
    ]
    for nb in notebooks:
        caps = list(dict.fromkeys(pages.get(nb.stem, [])))
        links = ", ".join(f"[{c.title}](../capabilities/{c.slug}.md)" for c in caps) or "-"
        out.append(f"| [{nb.stem}]({nb.stem}.md) | {nb.title} | {links} |")
    return "\n".join(out) + "\n"


def _execution_note(notebooks: list[Notebook]) -> str:
    if notebooks and notebooks[0].executed:
        return (
            '!!! success "Executed"\n    These pages show the notebooks executed with papermill at '
            '`scale="ci"` when this site was built (`make docs EXECUTE=1`).\n'
        )
    return (
        '!!! info "Not executed"\n    This build shows the notebooks\' text and code without outputs (they are '
        "committed without outputs). `make docs EXECUTE=1` executes them first with papermill at "
        '`scale="ci"` (several minutes on a CPU) and shows their figures and printed results.\n'
    )


def _notebook_page(nb: Notebook) -> tuple[str, dict[str, bytes]]:
    """A notebook as Markdown (text, code, outputs) and the files of its figures."""
    assets: dict[str, bytes] = {}
    out: list[str] = []
    first_markdown = True
    for index, cell in enumerate(nb.nb["cells"]):
        source = _source(cell)
        if cell["cell_type"] == "markdown":
            out.append(_fix_markdown(source))
            if first_markdown:
                out.append(_notebook_banner(nb))
                first_markdown = False
        elif cell["cell_type"] == "code":
            tags = cell.get("metadata", {}).get("tags", [])
            if "parameters" in tags:
                out.append("*Parameters (papermill, `workbench run ... -p key value`):*")
            elif "injected-parameters" in tags:
                out.append("*Parameters papermill injected for this build:*")
            out.append(f"```python\n{source.rstrip()}\n```")
            for k, output in enumerate(cell.get("outputs", [])):
                rendered = _output(output, f"cell{index}_{k}", nb.stem, assets)
                if rendered:
                    out.append(rendered)
    return "\n\n".join(out) + "\n", assets


def _notebook_banner(nb: Notebook) -> str:
    lines = [
        f"[Download the notebook]({nb.stem}.ipynb) · run it with `workbench run notebooks/{nb.stem}.ipynb` "
        "or in JupyterLab (`workbench lab`)"
    ]
    if nb.executed:
        lines.append(
            f'Executed at `scale="ci"` for this site; the [offline HTML report]({nb.stem}.report.html) that '
            "`workbench run` writes shows the same run."
        )
    else:
        lines.append(
            'Shown without outputs: `make docs EXECUTE=1` builds the site with the notebooks executed at `scale="ci"`.'
        )
    return '!!! note ""\n' + "\n\n".join("    " + line for line in lines)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _output(output: dict, name: str, stem: str, assets: dict[str, bytes]) -> str:
    kind = output["output_type"]
    if kind == "stream":
        if output.get("name") == "stderr":  # progress bars and warnings: noise on a page
            return ""
        return _text_block(_source(output, "text"))
    if kind == "error":
        return _text_block("\n".join(output.get("traceback", [])))
    data = output.get("data", {})
    if "application/vnd.holoviews_exec.v0+json" in data:
        return (
            '!!! tip "Interactive widget"\n    A Panel widget: it runs live in JupyterLab (`workbench lab`), '
            "where selecting, hovering and the detail views work."
        )
    if any(k.startswith("application/vnd.holoviews") for k in data) or "application/javascript" in data:
        return ""  # Panel's and Bokeh's JavaScript: what the widget needs in a live notebook
    for mime, ext in (("image/png", "png"), ("image/jpeg", "jpg")):
        if mime in data:
            assets[f"{name}.{ext}"] = base64.b64decode(_source(data, mime))
            return f"![output {name}]({stem}/{name}.{ext})"
    if "image/svg+xml" in data:
        assets[f"{name}.svg"] = _source(data, "image/svg+xml").encode()
        return f"![output {name}]({stem}/{name}.svg)"
    if "text/html" in data and "<script" not in _source(data, "text/html"):
        html = _source(data, "text/html").strip()
        return f'<div class="wb-nb-output" markdown="0">\n{html}\n</div>' if html else ""
    if "text/markdown" in data:
        return _source(data, "text/markdown")
    if "text/plain" in data:
        return _text_block(_source(data, "text/plain"))
    return ""


def _text_block(text: str) -> str:
    text = _ANSI.sub("", text)
    text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n")).strip("\n")
    return f"```text\n{text}\n```" if text.strip() else ""


def _fix_markdown(text: str) -> str:
    """Jupyter's Markdown lets a list start right under a paragraph; Python-Markdown needs a blank line."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        is_item = re.match(r"(?:[-*+]|\d+\.) ", line)
        prev = lines[i - 1] if i else ""
        if (
            i
            and is_item
            and prev.strip()
            and not re.match(r"\s*(?:[-*+]|\d+\.) ", prev)
            and not prev.startswith(" ")
        ):
            out.append("")
        out.append(line)
    return "\n".join(out)


def _source(obj: dict, key: str = "source") -> str:
    value = obj.get(key, "")
    return "".join(value) if isinstance(value, list) else value


# ---------------------------------------------------------------------------------------------------
# Docstrings read statically (no import: the widgets' package loads Panel)


def _module_path(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _module_docstring(module: str) -> str:
    return ast.get_docstring(ast.parse(_module_path(module).read_text(encoding="utf-8"))) or ""


def _module_all(module: str) -> list[str]:
    for node in ast.parse(_module_path(module).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise ValueError(f"{module} has no __all__")


def _object_docstring(module: str, name: str) -> str:
    for node in ast.parse(_module_path(module).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name:
            return ast.get_docstring(node) or ""
    return ""


def _first_line(doc: str) -> str:
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def _strip_roles(text: str) -> str:
    """Sphinx roles (:func:`~a.b`) as code spans: the text reads the same without Sphinx."""
    return re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: f"`{m.group(1)}`", text)
