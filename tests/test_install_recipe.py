"""One way to install SAM 2, pinned, everywhere: the README, both notebooks, the error messages
and the test command all give helpers.install's recipe, and no other."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from helpers import install
from helpers.errors import InputError

ROOT = Path(__file__).resolve().parents[1]

# anything that installs SAM 2: a pip line naming sam2, Meta's git source, a version spec
PIP_SAM2 = re.compile(r"pip install[^`\n\"']*?[\"']?sam2\b[^`\n]*?(?=`|$|\n)", re.M)
GIT_SOURCE = re.compile(r"git\+https://github\.com/facebookresearch/sam2")
VERSION_SPEC = re.compile(r"\bsam2\s*(?:==|>=|<=|~=|!=|>|<)\s*[\d.]+")


def _texts() -> dict[str, str]:
    """Every text a user or CI reads: README and its docs/, the changelog, DEVELOPERS, notebook
    cells, package sources."""
    pages = [ROOT / "README.md", ROOT / "DEVELOPERS.md", ROOT / "CHANGELOG.md"]
    pages += sorted((ROOT / "docs").glob("*.md"))
    out = {
        p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in pages if p.is_file()
    }
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        out[nb.name] = "\n".join("".join(c["source"]) for c in cells)
    for py in sorted((ROOT / "helpers").rglob("*.py")):
        out[py.relative_to(ROOT).as_posix()] = py.read_text(encoding="utf-8")
    ci = ROOT / ".ci" / "run"
    if ci.is_file():
        out[".ci/run"] = ci.read_text(encoding="utf-8")
    return out


def test_the_recipe_is_pinned_and_builds_against_the_installed_torch():
    assert re.fullmatch(r"\d+\.\d+\.\d+", install.SAM2_VERSION)
    assert install.SAM2_INSTALL == (
        f'SAM2_BUILD_CUDA=0 pip install --no-build-isolation "sam2=={install.SAM2_VERSION}"'
    )
    assert install.SAM2_PIP_ARGS == ("--no-build-isolation", f"sam2=={install.SAM2_VERSION}")
    assert install.SAM2_ENV == {"SAM2_BUILD_CUDA": "0"}


def test_every_sam2_install_recipe_is_the_same_one():
    texts = _texts()
    found = 0
    for name, text in texts.items():
        assert not GIT_SOURCE.search(text), f"{name} installs SAM 2 from git (unpinned)"
        for spec in VERSION_SPEC.findall(text):
            assert spec.replace(" ", "") == f"sam2=={install.SAM2_VERSION}", (name, spec)
            found += 1
        if name in (".ci/run", "helpers/install.py"):
            continue  # CI's own pip invocation (checked by its version spec); the definition
        env = "SAM2_BUILD_CUDA=0 "
        for m in PIP_SAM2.finditer(text):
            line = re.sub(r"\s+#.*$", "", m.group(0)).strip().rstrip(".,;")  # a shell comment
            line = text[max(0, m.start() - len(env)) : m.start()] + line
            assert line == install.SAM2_INSTALL, (name, line)
            found += 1
    assert found >= 2  # the README's recipe and CI's pin at least
    readme = texts["README.md"]
    assert install.SAM2_INSTALL in readme, "the README gives the recipe in full"


def test_the_q2_notebook_installs_sam2_with_the_recipe():
    cells = json.loads((ROOT / "notebooks" / "q2_text_segmentation.ipynb").read_text())["cells"]
    setup = "".join(cells[2]["source"])
    assert "install.SAM2_PIP_ARGS" in setup and "install.SAM2_ENV" in setup


@pytest.mark.parametrize("module", ["helpers.textseg.segment", "helpers.textseg.sam2_video"])
def test_the_missing_sam2_message_gives_the_recipe(monkeypatch, module):
    import importlib

    mod = importlib.import_module(module)
    for name in (
        "sam2",
        "sam2.build_sam",
        "sam2.sam2_image_predictor",
        "sam2.sam2_video_predictor",
    ):
        monkeypatch.setitem(sys.modules, name, None)  # import sam2... raises ImportError
    with pytest.raises(InputError) as e:
        if module == "helpers.textseg.segment":
            mod.load_segmenter("tiny", random_weights=True, device="cpu")
        else:
            mod.load_video_tracker("tiny", random_weights=True, device="cpu")
    msg = str(e.value)
    assert install.SAM2_INSTALL in msg and "\n" not in msg
