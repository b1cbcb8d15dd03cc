"""Griffe extension for the API pages (``mkdocs.yml``: mkdocstrings' python handler, ``extensions``).

Griffe reads the code statically, without importing it. Two things in workbench's docstrings need more:

- A few docstrings are completed at import time: ``fn.__doc__ += _PARAMS_DOC`` (deletion, insertion,
  c_deletion, c_insertion share their parameters) or a ``{params}`` placeholder filled by a decorator
  (smoothgrad, vargrad, squaregrad). For the modules whose source assigns ``__doc__``, the docstring of
  each function and class is taken from the imported object, as ``help()`` shows it.
- Docstrings use Sphinx roles (``:func:`~workbench.models.Model```). They become cross-references when
  the target is an object of the rendered API, and plain code otherwise, so no page shows ``:func:``.
"""

from __future__ import annotations

import importlib
import inspect
import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|data|mod|obj|exc|const):`(~?)([^`<>]+?)`")


class RuntimeDocstrings(griffe.Extension):
    """Docstrings completed at import time, and Sphinx roles as links (see the module docstring).

    Parameters
    ----------
    api_modules
        The modules the API pages render (``mkdocs.yml``): a role links only to their public names.
    """

    def __init__(self, api_modules: list[str]) -> None:
        super().__init__()
        self.api_modules = list(api_modules)

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.name != "workbench":
            return
        for module in _modules(pkg):
            if module.filepath and "__doc__" in module.filepath.read_text(encoding="utf-8"):
                _runtime_docstrings(module)
        public = _public_paths(pkg, self.api_modules)
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _ROLE.sub(
                    lambda m, o=obj: _reference(o, m, public), obj.docstring.value
                )


def _modules(module: griffe.Module):
    yield module
    for sub in module.modules.values():
        if not sub.is_alias:
            yield from _modules(sub)


def _objects(obj):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def _runtime_docstrings(module: griffe.Module) -> None:
    runtime = importlib.import_module(module.path)
    for name, member in module.members.items():
        if member.is_alias or not (member.is_function or member.is_class) or member.docstring is None:
            continue
        doc = inspect.getdoc(getattr(runtime, name, None))
        if doc and doc != member.docstring.value:
            member.docstring.value = doc


def _public_paths(pkg: griffe.Module, api_modules: list[str]) -> dict[str, str]:
    """Canonical path -> the path an API page renders it under (``workbench.models.Model``)."""
    public: dict[str, str] = {}
    for path in api_modules:
        module = _lookup(pkg, path)
        public.setdefault(module.path, path)
        names = (
            module.exports
            if module.exports is not None
            else [n for n, m in module.members.items() if not n.startswith("_") and not m.is_alias]
        )
        for name in names:
            name = name if isinstance(name, str) else name.name
            try:
                target = _lookup(pkg, f"{path}.{name}")
            except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            public.setdefault(target.path, f"{path}.{name}")
    return public


def _reference(obj, match: re.Match, public: dict[str, str]) -> str:
    """``[`name`][path]`` when the role's target is a public object (rendered on a page), else code."""
    short, target = match.group(1) == "~", match.group(2).strip()
    shown = target.rpartition(".")[2] if short else target
    try:
        found = _find(obj, target)
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        found = None
    path = None
    if found is not None:
        path = public.get(found.path)
        parent = found.parent
        if path is None and parent is not None and parent.is_class and parent.path in public:
            path = f"{public[parent.path]}.{found.name}"  # a method or attribute of a public class
    return f"[`{shown}`][{path}]" if path else f"`{shown}`"


def _find(obj, target: str):
    """The object a role names: an absolute ``workbench.`` path, or a name seen from obj's scope."""
    if target.split(".")[0] == "workbench":
        return _lookup(obj, target)
    scope = obj
    while scope is not None:
        if target.split(".")[0] in scope.members:
            return _lookup(obj, f"{scope.path}.{target}")
        scope = scope.parent
    return None


def _lookup(obj, path: str):
    root = obj
    while root.parent is not None:
        root = root.parent
    parts = path.split(".")
    if parts[0] != root.name:
        raise KeyError(path)
    current = root
    for part in parts[1:]:
        current = current.members[part]
        if current.is_alias:
            current = current.final_target
    return current
