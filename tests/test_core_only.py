"""`import workbench` and every method work with only the core extra installed.

The UI, notebook and dev packages are blocked at import time in a subprocess, which is what a
GPU server or CI worker without them sees.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = [
    "panel", "holoviews", "bokeh", "ipywidgets", "jupyterlab", "papermill", "nbclient", "nbconvert",
    "nbval", "ipykernel", "matplotlib", "captum", "sklearn", "skimage", "playwright", "IPython",
]  # fmt: skip


def test_core_runs_without_ui_notebook_or_dev_packages(tmp_path):
    code = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        BLOCKED = {BLOCKED!r}
        # A None entry in sys.modules is exactly how "not installed" looks: import raises
        # ModuleNotFoundError and importlib.util.find_spec returns None (optional-import probes).
        for name in BLOCKED:
            sys.modules[name] = None
        import torch
        import workbench
        skipped = ("workbench.widgets",)
        for mod in pkgutil.walk_packages(workbench.__path__, "workbench."):
            if not mod.name.startswith(skipped):
                importlib.import_module(mod.name)
        loaded = [m for m, mod in sys.modules.items() if m.split(".")[0] in BLOCKED and mod is not None]
        assert not loaded, loaded

        from workbench.data import extract_activations, planted_shapes
        model = workbench.load_model("zoo:resnet_shapes")
        data = planted_shapes(16, size=64, seed=0)
        g, h = model.split("layer3")
        assert torch.allclose(h(g(data.images)), model(data.images), atol=1e-5)
        store = extract_activations(model, "layer3", data, {str(tmp_path / "acts.zarr")!r}, progress=False)
        assert store.complete and len(store) == 16
        print("CORE-ONLY OK")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "CORE-ONLY OK" in out.stdout, out.stderr[-3000:]
