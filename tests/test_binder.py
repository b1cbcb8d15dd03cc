"""binder/ builds the tour's environment from its own files, as repo2docker (mybinder) would.

repo2docker reads ``binder/runtime.txt`` (the Python version), creates that Python and runs
``binder/postBuild`` from the repository root. The same steps here, in new venvs made from this
interpreter (the suite runs on Python 3.11, which runtime.txt asks for):

1. The files: runtime.txt names Python 3.11, postBuild is an executable bash script that stops at the
   first failure.
2. Resolution: postBuild itself runs in a new, empty venv with pip told to resolve and not install
   (``WORKBENCH_PIP_OPTIONS="--dry-run --report ..."``, which postBuild adds to its pip command line).
   Every package it picks is at the version constraints.txt pins, and the tour's and Voila's packages are
   among them; no test or lint tool is.
3. Running: a second new venv that sees exactly the resolved distributions (linked from this
   environment, whose versions step 2 proved equal to the resolved ones) and the project as postBuild's
   ``-e .`` installs it (a path entry to the repository) imports what the tour and Voila import and
   runs the tour's first steps, from outside the repository.

A real install unpacks torch's CUDA wheels from PyPI (a 6.3 GB venv), too slow for the suite:
``WORKBENCH_FULL_BINDER_TEST=1`` adds it, a new venv where postBuild really installs everything, then the
tour run in it with ``workbench run`` (measured on this project's 2-core machine with other jobs running:
postBuild 3.5 min, the tour 1.7 min, 5.3 min in all; the CUDA wheels lay on the machine's local index).
On mybinder, postBuild takes CPU builds of torch and torchvision from the PyTorch index instead
(``WORKBENCH_TORCH_INDEX``, see binder/postBuild); that index is not reachable from this project's
machines, so the tests set it empty and take the same pinned versions from PyPI.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import sysconfig
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from venvs import canonical, new_venv, run

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
# What the tour and its web page need (the ui and notebooks extras, Voila among them).
TOUR_PACKAGES = {"torch", "torchvision", "timm", "panel", "holoviews", "bokeh", "ipywidgets", "papermill",
                 "nbconvert", "ipykernel", "matplotlib", "pandas", "voila", "jupyterlab"}  # fmt: skip
NOT_BINDER = {
    "ruff",
    "playwright",
    "captum",
    "scikit-learn",
    "overcomplete",
    "horama",
    "mkdocs",
}  # dev and docs tools (pytest comes with nbval)

SMOKE = textwrap.dedent(
    """
    import sys
    import panel, papermill, voila  # noqa: F401  (the page and the runner)
    import workbench
    from workbench.data import planted_shapes
    from workbench.models import load_model
    from workbench.widgets import AtomBrowser, AttributionViewer, ConceptGallery, DatasetViewer, MetricsBoard  # noqa: F401

    assert workbench.__file__.startswith(sys.argv[1]), workbench.__file__  # postBuild's -e .: the repository
    net = load_model("zoo:resnet_shape_color")
    data = planted_shapes(8, size=64, seed=0, rule="shape_color")
    viewer = DatasetViewer(data.images, labels=data.labels, predictions=net(data.images).argmax(1),
                           class_names=data.class_names)
    print("BINDER ENV OK", voila.__version__, panel.__version__)
    """
)


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """This process's environment without its Python settings, with ``venv``'s bin first on PATH."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PIP_")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    return {**env, **extra}


def pins() -> dict[str, str]:
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pinned[canonical(name)] = version.strip()
    return pinned


def test_binder_files_say_python_311_and_a_strict_script():
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    post = BINDER / "postBuild"
    assert post.stat().st_mode & stat.S_IXUSR, "binder/postBuild must be executable (repo2docker runs it)"
    text = post.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert '-c constraints.txt -e ".[ui,notebooks]"' in text


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict[str, str]:
    """{canonical name: version} that binder/postBuild resolves in a new, empty venv (nothing installed)."""
    if sys.version_info[:2] != (3, 11):
        pytest.skip(f"runtime.txt asks for Python 3.11; this is {sys.version.split()[0]}")
    tmp = tmp_path_factory.mktemp("binder_resolve")
    venv = tmp / "venv"
    new_venv(venv, with_pip=True)
    report = tmp / "report.json"
    options = f"--dry-run --ignore-installed --quiet --report {report}"
    env = clean_env(venv, WORKBENCH_PIP_OPTIONS=options, WORKBENCH_TORCH_INDEX="")
    run(["bash", str(BINDER / "postBuild")], cwd=tmp, env=env, timeout=900)
    return {
        canonical(i["metadata"]["name"]): i["metadata"]["version"]
        for i in json.loads(report.read_text())["install"]
    }


@pytest.mark.slow
def test_postbuild_resolves_the_pinned_tour_environment(resolved):
    pinned = pins()
    assert TOUR_PACKAGES <= set(resolved), sorted(TOUR_PACKAGES - set(resolved))
    assert not NOT_BINDER & set(resolved), sorted(NOT_BINDER & set(resolved))
    # pip freeze (how constraints.txt is made) leaves out pip's own tools: setuptools, pip, wheel.
    unpinned = sorted(set(resolved) - set(pinned) - {"xai-workbench", "setuptools", "pip", "wheel"})
    assert not unpinned, f"resolved but not pinned in constraints.txt: {unpinned}"
    off = {n: (v, pinned[n]) for n, v in resolved.items() if n in pinned and v != pinned[n]}
    assert not off, f"resolved versions differ from constraints.txt: {off}"


@pytest.mark.slow
def test_binder_environment_runs_the_tour_imports(resolved, tmp_path):
    here = Path(sysconfig.get_paths()["purelib"])
    python = new_venv(tmp_path / "venv", with_pip=False)
    site = Path(
        run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    linked = tmp_path / "resolved"
    linked.mkdir()
    for name, version in resolved.items():
        if name == "xai-workbench":
            continue
        dist = metadata.distribution(name)
        assert dist.version == version, (
            name,
            dist.version,
            version,
        )  # so the linked files are the resolved ones
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            if (here / top).exists() and not (linked / top).exists():
                (linked / top).symlink_to(here / top)
    (site / "resolved.pth").write_text(f"{linked}\n{ROOT}\n")  # the resolved packages, then -e .
    out = run(
        [str(python), "-c", SMOKE, str(ROOT)], cwd=tmp_path, env=clean_env(tmp_path / "venv"), timeout=600
    )
    assert "BINDER ENV OK" in out.stdout, out.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("WORKBENCH_FULL_BINDER_TEST") != "1",
    reason="a real postBuild installs 6.3 GB (torch from PyPI), then runs the tour: about 5 min here; set WORKBENCH_FULL_BINDER_TEST=1",
)
def test_full_binder_build_then_the_tour(tmp_path):
    if sys.version_info[:2] != (3, 11):
        pytest.skip(f"runtime.txt asks for Python 3.11; this is {sys.version.split()[0]}")
    venv = tmp_path / "venv"
    python = new_venv(venv, with_pip=True)
    env = clean_env(venv, WORKBENCH_TORCH_INDEX="")
    run(["bash", str(BINDER / "postBuild")], cwd=tmp_path, env=env, timeout=3600)
    # The tour, as `make tour` runs it, with the kernel of this venv (not a user's or the system's python3).
    spec = tmp_path / "share" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "binder", "language": "python"})
    )
    env["JUPYTER_PATH"] = str(tmp_path / "share")
    out = run([str(venv / "bin" / "workbench"), "run", str(ROOT / "notebooks" / "00_tour.ipynb"), "--out",
               str(tmp_path / "reports")], cwd=tmp_path, env=env, timeout=1200)  # fmt: skip
    assert (tmp_path / "reports" / "00_tour.html").exists(), out.stdout[-2000:]
    executed = (tmp_path / "reports" / "00_tour.ipynb").read_text()
    assert "every claim holds on zoo:resnet_shape_color" in executed
