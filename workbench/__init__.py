"""workbench: a Jupyter-first workbench that explains vision models.

Layers (imports point down only): widgets -> methods -> metrics -> data -> models -> _core.
Importing this package imports no UI library.
"""

__version__ = "0.1.0"

from workbench.models import Model, list_zoo, load_model  # noqa: E402

__all__ = ["Model", "__version__", "list_zoo", "load_model"]


def __getattr__(name: str):
    # `workbench.explain(...)`: the explain package (a callable module) is imported on first use, so
    # `import workbench` stays as light as before
    if name == "explain":
        import importlib

        return importlib.import_module("workbench.explain")
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
