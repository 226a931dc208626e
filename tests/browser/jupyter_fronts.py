"""Start a Jupyter front end (JupyterLab 4 or classic Notebook 6.5) on 127.0.0.1 with the Q2
forms notebook, and stop it and every kernel it started.

The notebook is the whole of ``notebooks/q2_text_segmentation.ipynb`` (every section, the
forms among them) with one last cell that says when all ran, so the browser sees exactly what
a user's Run all shows; the kernel runs this project's venv in smoke mode
(random-weight models, offline). For classic Notebook the kernel gets ipywidgets 7.7.1 first on
its path (``.venv-classic/kernel-ipywidgets7``, made by ``.ci/browser-env``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
Q2_NOTEBOOK = ROOT / "notebooks" / "q2_text_segmentation.ipynb"
CLASSIC_VENV = Path(os.environ.get("Q2_CLASSIC_VENV", ROOT / ".venv-classic"))
KERNEL = "q2-forms"
SAMPLES = ("sample.jpg", "sample_video.mp4")
READY = "forms ready"


def forms_notebook(path: Path) -> Path:
    """The whole Q2 notebook, then one cell that prints READY when all ran."""
    nb = nbformat.read(Q2_NOTEBOOK, as_version=4)
    cells = list(nb.cells)
    tagged = "\n".join(c.source for c in cells if "forms" in c.metadata.get("tags", []))
    assert "segmentation_ui(" in tagged and "video_ui(" in tagged, "form cells not tagged"
    cells.append(nbformat.v4.new_code_cell('print("forms" + " ready")'))  # output only
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Q2 forms", "language": "python"}
    nbformat.write(nb, path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Front:
    kind: str  # "lab" or "classic"
    url: str  # the notebook's page, token included
    base: str
    token: str
    proc: subprocess.Popen
    runtime_dir: Path
    log_path: Path

    def versions(self) -> dict:
        return front_versions(self.kind)


def front_versions(kind: str) -> dict:
    """Front-end and widget versions of ``kind``, read from the installed packages."""
    packages = ["jupyterlab", "ipywidgets", "jupyterlab_widgets"]
    python = sys.executable
    if kind == "classic":
        packages, python = ["notebook", "widgetsnbextension"], classic_python()
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [str(python), "-c", code, *packages], capture_output=True, text=True, check=True
    )
    versions = json.loads(out.stdout)
    if kind == "classic":  # the kernel's ipywidgets is the one first on its PYTHONPATH
        versions["ipywidgets"] = _kernel_ipywidgets7_version()
    return versions


def classic_python() -> Path:
    return CLASSIC_VENV / "bin" / "python"


def _kernel_ipywidgets7_version() -> str:
    import importlib.metadata

    found = importlib.metadata.distributions(path=[str(CLASSIC_VENV / "kernel-ipywidgets7")])
    return next((d.version for d in found if d.metadata["Name"] == "ipywidgets"), "missing")


def missing(kind: str) -> str | None:
    """Why ``kind`` cannot run here (None: it can)."""
    if kind == "lab":
        try:
            import jupyterlab  # noqa: F401
        except ImportError:
            return "JupyterLab is not installed (pip install -e '.[browser]')"
        return None
    if not (CLASSIC_VENV / "bin" / "jupyter-notebook").exists():
        return f"classic Notebook env {CLASSIC_VENV} is missing (run .ci/browser-env)"
    if not (CLASSIC_VENV / "kernel-ipywidgets7" / "ipywidgets").is_dir():
        return "kernel-side ipywidgets 7.7.1 is missing (run .ci/browser-env)"
    return None


def _write_config(home: Path, kind: str) -> dict:
    """Kernel spec, Lab settings and the environment the server runs with, all under ``home``."""
    path = [str(ROOT)]
    if kind == "classic":
        path.insert(0, str(CLASSIC_VENV / "kernel-ipywidgets7"))
    kernel_dir = home / "jupyter" / "kernels" / KERNEL
    kernel_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Q2 forms",
        "language": "python",
        "env": {
            "HELPERS_SMOKE": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join(path),
        },
    }
    (kernel_dir / "kernel.json").write_text(json.dumps(spec))
    settings = home / "lab-settings"
    # every cell in the DOM (Lab 4 otherwise leaves off-screen cells out), and no news fetch
    for name, value in {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "MPLBACKEND"))}
    env.update(
        JUPYTER_PATH=str(home / "jupyter"),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        PYTHONPATH=os.pathsep.join(path),
    )
    return env


def start(kind: str, home: Path, timeout: float = 90) -> Front:
    """Start the ``kind`` front end serving ``home/nb`` (holding forms.ipynb and the SAMPLES);
    wait until it answers. Its output goes to ``home/server.log``."""
    nb_dir = home / "nb"
    nb_dir.mkdir(parents=True)
    forms_notebook(nb_dir / "forms.ipynb")
    for name in SAMPLES:  # beside the notebook: the forms take them by their bare names
        shutil.copyfile(ROOT / "assets" / name, nb_dir / name)
    env = _write_config(home, kind)
    port, token = _free_port(), secrets.token_hex(16)
    if kind == "lab":
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={nb_dir}", "--LabApp.expose_app_in_browser=True",
            "--ServerApp.allow_root=True",
        ]  # fmt: skip
        page = f"/lab/tree/forms.ipynb?token={token}"
    else:
        cmd = [
            str(classic_python()), "-m", "notebook", "--no-browser", "--ip=127.0.0.1",
            f"--port={port}", f"--NotebookApp.token={token}", f"--notebook-dir={nb_dir}", "--allow-root",
        ]  # fmt: skip
        page = f"/notebooks/forms.ipynb?token={token}"
    base = f"http://127.0.0.1:{port}"
    log_path = home / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=nb_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    front = Front(kind, base + page, base, token, proc, home / "runtime", log_path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                return front
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(front)
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{kind} server did not start:\n{tail}") from None
            time.sleep(0.5)


def stop(front: Front) -> None:
    """Shut down the server's kernels, then the server; kill whatever is left of either."""
    try:
        req = urllib.request.Request(f"{front.base}/api/kernels?token={front.token}")
        with urllib.request.urlopen(req, timeout=5) as r:
            kernels = json.loads(r.read())
        for k in kernels:
            url = f"{front.base}/api/kernels/{k['id']}?token={front.token}"
            urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10)
    except OSError:
        pass
    if front.proc.poll() is None:
        front.proc.terminate()
        try:
            front.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(front.proc.pid, signal.SIGKILL)
            front.proc.wait(timeout=5)
    for pid in pids_mentioning(str(front.runtime_dir)):  # kernels run in their own session
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while pids_mentioning(str(front.runtime_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (a kernel's connection file path)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(proc.name))
    return pids
