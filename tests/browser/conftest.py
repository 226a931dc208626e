"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, and one Jupyter front
end per test module parameter (JupyterLab 4 + ipywidgets 8, classic Notebook + ipywidgets 7.7.1)
with the Q2 forms notebook executed in it.

Screenshots and the versions used (``versions.json``) go to ``$BROWSER_ARTIFACTS`` (default
``build/browser/<front end>/``). Whatever
cannot run here (no Chromium, no Playwright, no classic env) skips with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import jupyter_fronts
import pytest

ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", jupyter_fronts.ROOT / "build" / "browser"))
CHROMIUM_FLAGS = [  # a closed network: no background calls home, no sandbox as root
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
RUN_ALL_TIMEOUT_MS = 900_000  # kernel start, the whole Q2 notebook with random-weight models


@pytest.fixture(scope="session")
def browser():
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not chromium:
        pytest.skip(
            "no Chromium: install Debian's package (apt-get install chromium; .ci/browser-env "
            "does) or point $CHROMIUM at a Chromium binary"
        )
    try:  # a stub (Ubuntu's snap wrapper in a container) is there but does not start
        subprocess.run([chromium, "--version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"{chromium} does not start ({type(e).__name__}); install Debian's chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install -e '.[browser]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module", params=["lab", "classic"])
def front(request, browser, tmp_path_factory):
    """A started front end with forms.ipynb open and every cell run, as a :class:`Session`.
    The server, its kernels and the browser context are stopped afterwards, whatever failed."""
    kind = request.param
    why = jupyter_fronts.missing(kind)
    if why:
        pytest.skip(why)
    out = ARTIFACTS / kind
    shutil.rmtree(out, ignore_errors=True)  # screenshots of this run only
    out.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        server = jupyter_fronts.start(kind, tmp_path_factory.mktemp(f"jupyter-{kind}"))
        stack.callback(_stop_checked, server)
        context = browser.new_context(viewport={"width": 1280, "height": 1700})
        stack.callback(context.close)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.goto(server.url)
        run_all_cells(page, kind)
        _wait_for_all_cells(page, kind, server, out, console)
        versions = {**server.versions(), "chromium": browser.version}
        (out / "versions.json").write_text(json.dumps(versions, indent=1) + "\n")
        yield Session(kind, page, out, console, server)


def _stop_checked(server) -> None:
    jupyter_fronts.stop(server)
    left = jupyter_fronts.pids_mentioning(str(server.runtime_dir))
    assert not left, f"{server.kind}: kernel processes left running: {left}"


def _wait_for_all_cells(page, kind: str, server, out: Path, console: list[str]) -> None:
    """Wait for the last cell's READY line; fail at once, with the traceback, if a cell fails."""
    error = ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"
    error = error if kind == "lab" else ".output_error"
    ready = page.get_by_text(jupyter_fronts.READY, exact=True)
    try:
        ready.or_(page.locator(error)).first.wait_for(timeout=RUN_ALL_TIMEOUT_MS)
    except Exception:
        pass
    if ready.count() and not page.locator(error).count():
        return
    page.screenshot(path=str(out / "run-all-failed.png"), full_page=True)
    errors = page.locator(error).all_inner_texts()
    log = server.log_path.read_text(errors="replace")[-3000:]
    pytest.fail(f"{kind}: the Q2 notebook did not finish.\nerrors: {errors}\n"
                f"console: {console[-20:]}\nserver log:\n{log}")  # fmt: skip


class Session:
    def __init__(self, kind, page, artifacts: Path, console: list[str], server):
        self.kind, self.page, self.artifacts = kind, page, artifacts
        self.console, self.server = console, server

    def form(self, css: str):
        return self.page.locator(f".{css}")

    def cell_of(self, css: str):
        """The notebook cell whose output holds the form."""
        cell = ".jp-Cell" if self.kind == "lab" else ".cell"
        return self.page.locator(f"{cell}:has(.{css})")

    def stderr_in(self, cell) -> list[str]:
        """stderr blocks under the cell. Only classic Notebook puts a button callback's output
        there (JupyterLab sends it to its log console), so this finds noise in classic; in both
        front ends the form's own folded ``run-log`` is checked too."""
        sel = (
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
            if self.kind == "lab"
            else ".output_stderr"
        )
        return cell.locator(sel).all_inner_texts()

    def outputs_in(self, cell) -> int:
        """How many outputs the cell shows (the form alone: 1; printed text or a progress
        bar under it would add one)."""
        own = (  # the cell's own outputs, not those inside the form's Output widget
            ".jp-Cell-outputArea > .jp-OutputArea-child"
            if self.kind == "lab"
            else ":scope > .output_wrapper > .output > .output_area"
        )
        return cell.locator(own).count()


def run_all_cells(page, kind: str) -> None:
    """Run every cell once the kernel is connected (Lab: its command; classic: Jupyter.notebook)."""
    if kind == "lab":
        page.wait_for_function("() => window.jupyterapp !== undefined", timeout=120_000)
        page.evaluate(
            """async () => {
                const app = window.jupyterapp;
                let w = null;
                for (let i = 0; i < 600 && !(w && w.sessionContext); i++) {
                    await new Promise(r => setTimeout(r, 100));
                    w = app.shell.currentWidget;
                }
                await w.sessionContext.ready;
                await app.commands.execute('notebook:run-all-cells');
            }"""
        )
    else:
        page.wait_for_function(
            "() => window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel"
            " && Jupyter.notebook.kernel.is_connected() && Jupyter.notebook.kernel.widget_manager",
            timeout=120_000,
        )
        # The widget manager first asks the kernel for its widgets (with ipywidgets 7 through
        # comm_info, answered in the order the kernel gets requests). Cells run before that
        # answer can come back blank, so ask once more and run the cells after the reply.
        page.evaluate("() => Jupyter.notebook.kernel.widget_manager._get_comm_info()")
        page.evaluate("() => Jupyter.notebook.execute_all_cells()")
