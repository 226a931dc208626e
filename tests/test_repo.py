"""helpers.repo: the repository's location lives in one place, and `python -m helpers repo`
points every badge, setup cell and asset URL at another one (a fork), idempotently."""

import json
import re
import shutil
from pathlib import Path

import pytest

from helpers import repo
from helpers.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _copy(tmp_path) -> Path:
    """README, notebooks and helpers/repo.py copied: the real files are never rewritten."""
    root = tmp_path / "checkout"
    (root / "helpers").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", root / "README.md")
    shutil.copy(ROOT / "helpers" / "repo.py", root / "helpers" / "repo.py")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    return root


def _urls(text: str) -> set[str]:
    return set(
        re.findall(
            r"https://(?:colab\.research\.google\.com|raw\.githubusercontent\.com|"
            r"github\.com)/[^\s)\"\\]+",
            text,
        )
    )


def test_every_copy_agrees_with_the_one_place():
    """README, both notebooks: badges, setup cells and the asset URL all name helpers.repo."""
    assert repo.set_repo(ROOT, repo.REPO, write=False)["changed"] == {}
    q1 = (ROOT / "notebooks" / "q1_vit_cifar10.ipynb").read_text()
    q2 = (ROOT / "notebooks" / "q2_text_segmentation.ipynb").read_text()
    assert repo.colab_url("q1_vit_cifar10.ipynb") in q1
    assert f'REPO = \\"{repo.github_url()}\\"' in q1
    assert repo.colab_url("q2_text_segmentation.ipynb") in q2
    assert repo.raw_url("assets/") in q2 and f"git+{repo.github_url()}" in q2


def test_set_repo_rewrites_a_copy_and_is_idempotent(tmp_path, capsys):
    root = _copy(tmp_path)
    before = {p: p.read_text() for p in repo.target_files(root)}
    assert main(["repo", "my-name/my-fork", "--branch", "dev", "--root", str(root)]) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert res["repo"] == "my-name/my-fork" and res["branch"] == "dev" and res["written"]
    assert set(res["changed"]) == {
        "README.md",
        "notebooks/q1_vit_cifar10.ipynb",
        "notebooks/q2_text_segmentation.ipynb",
        "helpers/repo.py",
    }
    assert "README.md: changed 2 URL(s) -> my-name/my-fork" in err
    for path, old in before.items():
        new = path.read_text()
        assert repo.REPO not in new, path  # nothing points at the old place any more
        assert len(new.splitlines()) == len(old.splitlines())  # only URLs changed
    q1 = (root / "notebooks" / "q1_vit_cifar10.ipynb").read_text()
    q2 = (root / "notebooks" / "q2_text_segmentation.ipynb").read_text()
    json.loads(q1), json.loads(q2)  # still valid notebooks
    fork = {"repo": "my-name/my-fork", "branch": "dev"}
    assert repo.colab_url("q1_vit_cifar10.ipynb", **fork) in q1
    assert 'REPO = \\"https://github.com/my-name/my-fork\\"' in q1
    assert repo.raw_url("assets/", **fork) in q2
    assert "@ git+https://github.com/my-name/my-fork" in q2
    assert "git+https://github.com/facebookresearch/sam2" in q2  # other repositories untouched
    assert repo.current(root) == ("my-name/my-fork", "dev")
    # again: nothing to do; and a URL form of the same name is the same
    assert main(["repo", "https://github.com/my-name/my-fork.git", "--root", str(root)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["changed"] == {} and "already points at my-name/my-fork" in err
    # a copy edited by hand to point elsewhere is reported, then brought back in line
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("my-name/my-fork", "someone/else", 1))
    assert main(["repo", "--root", str(root)]) == 0
    assert json.loads(capsys.readouterr()[0])["stale"] == {"README.md": 1}
    assert main(["repo", "my-name/my-fork", "--root", str(root)]) == 0
    assert "someone/else" not in readme.read_text()


def test_dry_run_writes_nothing(tmp_path, capsys):
    root = _copy(tmp_path)
    before = {p: p.read_text() for p in repo.target_files(root)}
    assert main(["repo", "x/y", "--dry-run", "--root", str(root)]) == 0
    assert "would change" in capsys.readouterr()[1]
    assert {p: p.read_text() for p in repo.target_files(root)} == before


@pytest.mark.parametrize("bad", ["nope", "a/b/c", "a_b/c", "https://gitlab.com/a/b", "a/.."])
def test_bad_repository_names_exit_2(tmp_path, capsys, bad):
    root = _copy(tmp_path)
    assert main(["repo", bad, "--root", str(root)]) == 2
    err = capsys.readouterr()[1].strip()
    assert err.startswith("error: ") and "OWNER/NAME" in err and "\n" not in err


def test_not_a_repository_root_exits_2(tmp_path, capsys):
    assert main(["repo", "a/b", "--root", str(tmp_path)]) == 2
    assert "not the repository root" in capsys.readouterr()[1]
