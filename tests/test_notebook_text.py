"""The notebooks say what they hold and what they will ask of the user: each intro lists every
section, Google Drive is asked for in the setup cell (so a Run all needs one click, at the
start) and the intro says so, and no cell points a Colab user at files the pip-installed
package does not contain."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["q1_vit_cifar10.ipynb", "q2_text_segmentation.ipynb"]


def _cells(name: str) -> list[dict]:
    nb = json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))
    return [{"type": c["cell_type"], "source": "".join(c["source"])} for c in nb["cells"]]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_intro_lists_every_section(name):
    cells = _cells(name)
    headings = [
        line[3:]
        for c in cells
        if c["type"] == "markdown"
        for line in c["source"].splitlines()
        if line.startswith("## ")
    ]
    items = re.findall(r"^\d+\. (.+)$", cells[0]["source"], re.M)
    assert len(items) == len(headings), (items, headings)
    numbered = [h for h in headings if re.match(r"\d+\. ", h)]
    for h in numbered:  # "## 8. SAM 3: ..." is item 8 of the list
        number = int(h.split(".")[0])
        assert number <= len(items), h


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_drive_is_asked_for_in_the_setup_cell_and_the_intro_says_so(name):
    cells = _cells(name)
    code = [c["source"] for c in cells if c["type"] == "code"]
    setup = code[0]
    assert "cache_models_on_drive(mount=True)" in setup  # mounts Drive: the one dialog
    later = "\n".join(code[1:])
    assert "cache_models_on_drive(" not in later and "drive.mount(" not in later
    intro = cells[0]["source"]
    assert "Run all needs you once, at the start" in intro and "Google Drive" in intro


def test_q1_keeps_runs_in_the_session_when_drive_is_off():
    code = "\n".join(c["source"] for c in _cells("q1_vit_cifar10.ipynb") if c["type"] == "code")
    assert 'USE_DRIVE = True  # @param {type:"boolean"}' in code
    assert 'OUT_ROOT = OUT_ROOT or "runs"' in code  # output_dir(root=...) never mounts Drive


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_cell_points_at_files_the_package_lacks(name):
    for c in _cells(name):
        src = c["source"]
        assert not re.search(r"\b(benchmarks|scripts|tests)/\w", src), src[:200]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_text_speaks_of_the_product_and_its_users(name):
    text = "\n".join(c["source"] for c in _cells(name))
    for word in (r"\bCI\b", r"\bthe tests\b", r"/work/"):
        assert not re.search(word, text), word


def _front_page_and_docs() -> str:
    """README.md and the pages it links for depth (docs/*.md): what a user reads."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(p.read_text(encoding="utf-8") for p in pages)


def test_readme_has_no_unexplained_references():
    readme = _front_page_and_docs()
    for phrase in ("2-core machine's disk", "this machine", "seed 00", "published seed"):
        assert phrase not in readme, phrase
    assert "cvkit" in readme  # the console script is named
    # every "write-up NNN" quoted is described in the sources table
    quoted = set(re.findall(r"write-ups? (\d{3})", readme))
    table = set(re.findall(r"^\| (\d{3}) \|", readme, re.M))
    assert quoted and quoted <= table, quoted - table


def test_readme_opens_with_the_two_commands_for_a_fresh_machine():
    """Before the first section: the main job, and the tests exactly as CI runs them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    top = readme.split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", top, re.S)
    assert block, "no commands before the first section"
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert any(
        line.startswith('pip install -e ".[q1,q2]"') and "python -m helpers train" in line
        for line in lines
    ), lines
    assert "bash .ci/run" in lines and (ROOT / ".ci" / "run").is_file()


# options of other programs the README shows (pip, torchrun)
FOREIGN_OPTIONS = {"--no-build-isolation", "--no-deps", "--nproc-per-node", "--nnodes",
                   "--rdzv-backend", "--rdzv-endpoint", "--help"}  # fmt: skip (pip's, torchrun's)


def _known_options() -> set[str]:
    """Every option of ``python -m helpers`` (all subcommands) and of the benchmark scripts
    and scripts/ (read from their ``add_argument`` calls, without running them)."""
    import argparse

    from helpers.cli import build_parser

    known: set[str] = set()
    parsers = [build_parser()]
    while parsers:
        p = parsers.pop()
        for action in p._actions:
            known.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    for script in [*ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py")]:
        known.update(re.findall(r'add_argument\(\s*"(--[a-z0-9-]+)"', script.read_text()))
    return known


def test_every_option_the_readme_names_exists():
    readme = _front_page_and_docs()
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", readme))
    missing = named - _known_options() - FOREIGN_OPTIONS
    assert not missing, f"the README names options no command has: {sorted(missing)}"


def test_q2_switches_and_sample_media_are_named_alike_in_the_notebook_and_the_readme():
    """One Drive switch, SAM 3 (and its token) behind its own switch, an upload button instead
    of a checkbox, and the sample media's prompts: the same words in Q2's text and the README."""
    cells = _cells("q2_text_segmentation.ipynb")
    notebook = "\n".join(c["source"] for c in cells)
    intro = cells[0]["source"]
    readme = _front_page_and_docs()
    for text in (notebook, readme):
        for gone in (
            "CACHE_MODELS_ON_DRIVE",
            "OUTPUT_ROOT",
            "UPLOAD_WITH_COLAB",
            "Upload with Colab",
        ):
            assert gone not in text, gone
    for text in (intro, readme):
        assert "USE_DRIVE" in text and "RUN_SAM3" in text and "HF_TOKEN" in text
        assert '"cat"' in text and "cup. spoon" in text  # the sample media's prompts
    assert "assets/cat.jpg" in readme and "assets/coffee_video.mp4" in readme
