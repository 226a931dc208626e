"""tests/test_widgets.py once more under ipywidgets 7.7.1 (Colab's version) when the suite's
own venv has ipywidgets 8: the kernel-side 7.7.1 from .ci/browser-env goes first on the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IPYWIDGETS7 = Path(os.environ.get("Q2_CLASSIC_VENV", ROOT / ".venv-classic"), "kernel-ipywidgets7")


def test_widget_tests_pass_on_ipywidgets_7_7_1():
    import ipywidgets

    if ipywidgets.__version__.startswith("7."):
        pytest.skip("the suite itself already runs on ipywidgets 7")
    if not (IPYWIDGETS7 / "ipywidgets").is_dir():
        pytest.skip(f"no ipywidgets 7.7.1 at {IPYWIDGETS7} (run .ci/browser-env)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(IPYWIDGETS7), str(ROOT)])}
    version = subprocess.run(
        [sys.executable, "-c", "import ipywidgets; print(ipywidgets.__version__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert version == "7.7.1"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_widgets.py",
         "tests/test_forms_first_use.py", "tests/test_form_layout.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout
