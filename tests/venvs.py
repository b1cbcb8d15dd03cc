"""New virtual environments for the install tests (tests/test_install.py, tests/test_binder.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def run(cmd, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd``; fail the test with the tail of its output when it fails."""
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def new_venv(path: Path, with_pip: bool) -> Path:
    """A new venv from the base interpreter (not this venv's); returns its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", *([] if with_pip else ["--without-pip"]), str(path)])
    return path / "bin" / "python"


def venv_site_packages(python: Path) -> Path:
    """The purelib folder of the venv of ``python``."""
    out = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    return Path(out.stdout.strip())
