"""The package's shape: a shared ground at ``helpers/`` and two wings, ``helpers.classify`` (Q1)
and ``helpers.textseg`` (Q2), that never import each other, and no import circle anywhere.

Every ``import`` statement of every module counts, the ones inside functions included (a lazy
import is still a dependency), read from the source with ``ast`` so nothing is executed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "helpers"
WINGS = ("helpers.classify", "helpers.textseg")
DISPATCHER = {"helpers.cli", "helpers.__main__"}  # the one door to both wings' commands


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """``{"helpers.textseg.media": path, ...}`` for every module and package of ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that the module ``name`` (its source at ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from ..y import z
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # ``from pkg import sub`` imports the module pkg.sub; ``from mod import name`` imports mod
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # import helpers.a.b.c -> the nearest module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    files = module_files(package)
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def wing_of(module: str) -> str | None:
    return next((w for w in WINGS if module == w or module.startswith(w + ".")), None)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_lazy_and_aliased_imports(tmp_path):
    pkg = tmp_path / "helpers"
    (pkg / "textseg").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "textseg" / "__init__.py").write_text("")
    (pkg / "textseg" / "a.py").write_text(
        "def f():\n    from helpers.textseg import b as other\n    return other\n"
    )
    (pkg / "textseg" / "b.py").write_text("from . import a\nimport helpers.errors\n")
    (pkg / "errors.py").write_text("")
    graph = import_graph(pkg)
    assert graph["helpers.textseg.a"] == {"helpers.textseg.b"}
    assert graph["helpers.textseg.b"] == {"helpers.textseg.a", "helpers.errors"}
    assert circles(graph) == [["helpers.textseg.a", "helpers.textseg.b"]]


def test_the_layout_has_a_shared_ground_and_two_wings():
    graph = import_graph()
    assert {"helpers.classify", "helpers.textseg"} <= set(graph)
    for wing in WINGS:
        assert len([m for m in graph if wing_of(m) == wing]) >= 10, wing
    shared = [m for m in graph if wing_of(m) is None]
    assert {"helpers.errors", "helpers.files", "helpers.fetch", "helpers.cli"} <= set(shared)


@pytest.mark.parametrize("wing", WINGS)
def test_a_wing_never_imports_the_other(wing):
    other = next(w for w in WINGS if w != wing)
    graph = import_graph()
    crossing = {
        m: sorted(t for t in targets if wing_of(t) == other)
        for m, targets in graph.items()
        if wing_of(m) == wing
    }
    assert not {m: t for m, t in crossing.items() if t}, f"{wing} imports {other}"


def test_the_shared_ground_imports_no_wing_but_the_dispatcher():
    graph = import_graph()
    leaks = {
        m: sorted(t for t in targets if wing_of(t))
        for m, targets in graph.items()
        if wing_of(m) is None and m not in DISPATCHER
    }
    assert not {m: t for m, t in leaks.items() if t}


def test_no_import_circle_in_helpers():
    """Before the re-cut, cli <-> cli_segment <-> cli_sam3 was one (the SAM 3 commands borrowed
    the SAM 2 commands' private checks); now the checks, the model cache and the track summary
    are modules of their own that both route commands import."""
    assert circles(import_graph()) == []


def _top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


def unresolved_imports(package: Path = PACKAGE) -> list[str]:
    """``module: target`` for every ``helpers...`` import that names no module of the package
    (nor a name its ``__init__`` defines): an import left behind by a move."""
    files = module_files(package)
    defined = {  # what each package's __init__ defines at its top level
        name: _top_level_names(path) for name, path in files.items() if path.name == "__init__.py"
    }
    bad = []
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "helpers"]
                bad += [f"{name}: {t}" for t in targets if t not in files]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                base = node.module or ""
                if base.split(".")[0] != "helpers":
                    continue
                if base not in files:
                    bad.append(f"{name}: {base}")
                    continue
                for a in node.names:
                    if f"{base}.{a.name}" not in files and base in defined:
                        if a.name not in defined[base]:
                            bad.append(f"{name}: {base}.{a.name}")
    return bad


def test_every_helpers_import_names_a_module_that_exists(tmp_path):
    assert unresolved_imports() == []
    pkg = tmp_path / "helpers"
    (pkg / "textseg").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from helpers.errors import InputError\n")
    (pkg / "errors.py").write_text("")
    (pkg / "textseg" / "__init__.py").write_text("")
    (pkg / "textseg" / "a.py").write_text(
        "from helpers import InputError, naming\nfrom helpers.media import x\n"
        "def f():\n    from helpers.textseg import a, gone\n"
    )
    assert sorted(unresolved_imports(pkg)) == [
        "helpers.textseg.a: helpers.media",
        "helpers.textseg.a: helpers.naming",
        "helpers.textseg.a: helpers.textseg.gone",
    ]
