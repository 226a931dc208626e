"""The README is a short front page; its depth lives in docs/. Every command written out in
their code blocks uses only options its program's ``--help`` lists, and every link between
these pages resolves."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 220


def _code_lines(page: Path) -> list[str]:
    """Shell lines of a page's fenced code blocks: continuations joined, comments dropped."""
    text = page.read_text(encoding="utf-8")
    lines: list[str] = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def _commands() -> list[tuple[str, tuple[str, ...], list[str]]]:
    """(page, program, flags) of each ``python -m helpers SUB`` (also under torchrun, or as
    ``cvkit SUB``) and ``python benchmarks/X.py`` / ``python scripts/X.py`` command."""
    found = []
    for page in PAGES:
        for line in _code_lines(page):
            for part in re.split(r"&&|\|\||;|\|", line):
                try:
                    words = shlex.split(part)
                except ValueError:
                    words = part.split()
                program: tuple[str, ...] | None = None
                rest: list[str] = []
                for i, w in enumerate(words):
                    nxt = words[i + 1] if i + 1 < len(words) else ""
                    if w == "-m" and nxt == "helpers" or w == "cvkit":
                        start = i + 2 if w == "-m" else i + 1
                        if start < len(words) and not words[start].startswith("-"):
                            program = ("helpers", words[start])
                            rest = words[start + 1 :]
                        break
                    if re.fullmatch(r"(benchmarks|scripts)/\w+\.py", w):
                        program, rest = ("script", w), words[i + 1 :]
                        break
                if program is None:
                    continue
                flags = sorted({w.split("=", 1)[0] for w in rest if w.startswith("--")})
                found.append((page.relative_to(ROOT).as_posix(), program, flags))
    return found


def _help_argv(program: tuple[str, ...]) -> list[str]:
    if program[0] == "helpers":
        return [sys.executable, "-m", "helpers", program[1], "--help"]
    return [sys.executable, program[1], "--help"]


@functools.cache
def _help_options(program: tuple[str, ...]) -> frozenset[str]:
    """The options a program's ``--help`` lists (run once per program)."""
    res = subprocess.run(_help_argv(program), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, (program, res.stderr[-2000:])
    return frozenset(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", res.stdout))


def test_the_readme_is_a_short_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, len(lines)


def test_every_command_uses_only_options_its_help_lists():
    commands = _commands()
    programs = sorted({program for _, program, _ in commands})
    # the README's own commands are there: the main job, segment, track, the GPU report
    assert ("helpers", "train") in programs and ("script", "benchmarks/gpu_report.py") in programs
    for program in programs:
        assert program[0] == "helpers" or (ROOT / program[1]).is_file(), program
    with ThreadPoolExecutor(max_workers=4) as pool:  # each --help once, side by side
        helps = dict(zip(programs, pool.map(_help_options, programs), strict=True))
    bad = [
        (page, " ".join(program), flag)
        for page, program, flags in commands
        for flag in flags
        if flag not in helps[program]
    ]
    assert not bad, f"options their --help does not list: {bad}"


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    out = set()
    for title in re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("page", PAGES + [ROOT / "CHANGELOG.md"], ids=lambda p: p.name)
def test_every_link_to_the_docs_and_the_changelog_resolves(page):
    text = page.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    checked = 0
    for link in links:
        target, _, anchor = link.partition("#")
        if not re.search(r"(^|/)(docs/[\w-]+\.md|CHANGELOG\.md|README\.md|[\w-]+\.md)$", target):
            continue
        if "://" in target:
            continue
        path = (page.parent / target).resolve()
        assert path.is_file(), (page.name, link)
        if anchor:
            assert anchor in _anchors(path), (page.name, link)
        checked += 1
    if page.name == "README.md":
        named = {re.sub(r"#.*", "", link) for link in links}
        for doc in ("docs/q1.md", "docs/q2.md", "docs/benchmarks.md", "CHANGELOG.md"):
            assert doc in named, f"the README links {doc}"
    assert checked, page.name
