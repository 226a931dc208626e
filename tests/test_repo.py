"""helpers.repo: the repository's location lives in one place, and `python -m helpers repo`
points every badge, setup cell and asset URL at another one (a fork), idempotently."""

import json
import re
import shutil
from pathlib import Path

import pytest

from helpers import repo
from helpers.cli import main
from helpers.errors import InputError

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


def _setup(notebook: Path) -> dict[str, str]:
    """REPO and BRANCH as a notebook's setup cell sets them, and the pip requirement it
    installs from them (the f-string evaluated as the cell would)."""
    nb = json.loads(notebook.read_text())
    cell = next("".join(c["source"]) for c in nb["cells"] if "REPO = " in "".join(c["source"]))
    found = dict(re.findall(r'^(REPO|BRANCH) = "([^"]*)"', cell, re.M))
    spec = re.search(r'f"((?:vit-cifar-textseg\[q2\] @ )?git\+\{REPO\}@\{BRANCH\})"', cell)
    assert spec, "the setup cell installs git+{REPO}@{BRANCH}"
    found["pip"] = spec.group(1).format(**found)
    return found


def test_every_copy_agrees_with_the_one_place():
    """README, both notebooks: badges, setup cells and the asset URL all name helpers.repo."""
    assert repo.set_repo(ROOT, repo.REPO, write=False)["changed"] == {}
    q1 = (ROOT / "notebooks" / "q1_vit_cifar10.ipynb").read_text()
    q2 = (ROOT / "notebooks" / "q2_text_segmentation.ipynb").read_text()
    assert repo.colab_url("q1_vit_cifar10.ipynb") in q1
    assert repo.colab_url("q2_text_segmentation.ipynb") in q2
    assert repo.raw_url("assets/") in q2
    for name in ("q1_vit_cifar10.ipynb", "q2_text_segmentation.ipynb"):
        setup = _setup(ROOT / "notebooks" / name)
        assert setup["REPO"] == repo.github_url() and setup["BRANCH"] == repo.BRANCH
        assert setup["pip"].endswith(f"git+{repo.github_url()}@{repo.BRANCH}")


def test_set_repo_rewrites_a_copy_and_is_idempotent(tmp_path, capsys):
    root = _copy(tmp_path)
    before = {p: p.read_text() for p in repo.target_files(root)}
    assert main(["repo", "my-name/my-fork", "--branch", "feature/colab", "--root", str(root)]) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert res["repo"] == "my-name/my-fork" and res["branch"] == "feature/colab" and res["written"]
    assert set(res["changed"]) == {
        "README.md",
        "notebooks/q1_vit_cifar10.ipynb",
        "notebooks/q2_text_segmentation.ipynb",
        "helpers/repo.py",
    }
    # the REPO = / BRANCH = lines are counted apart from the URLs
    assert res["changed"]["helpers/repo.py"] == {"urls": 0, "settings": 2}
    for name in ("notebooks/q1_vit_cifar10.ipynb", "notebooks/q2_text_segmentation.ipynb"):
        assert res["changed"][name]["settings"] == 2, name
    readme_urls = res["changed"]["README.md"]["urls"]
    assert readme_urls >= 2 and res["changed"]["README.md"]["settings"] == 0
    assert f"README.md: changed {readme_urls} URL(s) -> my-name/my-fork (feature/colab)" in err
    assert "helpers/repo.py: changed 2 setting line(s) (REPO/BRANCH)" in err
    # what each notebook would install in Colab: the fork's branch, not its default branch
    for name in ("q1_vit_cifar10.ipynb", "q2_text_segmentation.ipynb"):
        setup = _setup(root / "notebooks" / name)
        assert setup["pip"].endswith("git+https://github.com/my-name/my-fork@feature/colab")
    for path, old in before.items():
        new = path.read_text()
        assert repo.REPO not in new, path  # nothing points at the old place any more
        assert len(new.splitlines()) == len(old.splitlines())  # only URLs changed
    q1 = (root / "notebooks" / "q1_vit_cifar10.ipynb").read_text()
    q2 = (root / "notebooks" / "q2_text_segmentation.ipynb").read_text()
    json.loads(q1), json.loads(q2)  # still valid notebooks
    fork = {"repo": "my-name/my-fork", "branch": "feature/colab"}
    assert repo.colab_url("q1_vit_cifar10.ipynb", **fork) in q1
    assert repo.colab_url("q2_text_segmentation.ipynb", **fork) in q2
    assert repo.raw_url("assets/", **fork) in q2
    readme_text = (root / "README.md").read_text()
    assert repo.colab_url("q1_vit_cifar10.ipynb", **fork) in readme_text
    # a pip line written out in the README follows the branch too
    for line in re.findall(r"vit-cifar-textseg\S* @ git\+\S+", readme_text):
        assert "my-name/my-fork@feature/colab" in line, line
    assert repo.current(root) == ("my-name/my-fork", "feature/colab")
    # again: nothing to do, nothing written; and a URL form of the same name is the same
    assert main(["repo", "https://github.com/my-name/my-fork.git", "--root", str(root)]) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert res["changed"] == {} and res["written"] is False
    assert "already points at my-name/my-fork (feature/colab)" in err
    # a copy edited by hand to point elsewhere is reported, then brought back in line
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("my-name/my-fork", "someone/else", 1))
    assert main(["repo", "--root", str(root)]) == 0
    assert json.loads(capsys.readouterr()[0])["stale"] == {"README.md": {"urls": 1, "settings": 0}}
    assert main(["repo", "my-name/my-fork", "--root", str(root)]) == 0
    assert "someone/else" not in readme.read_text()


def test_dry_run_writes_nothing(tmp_path, capsys):
    root = _copy(tmp_path)
    before = {p: p.read_text() for p in repo.target_files(root)}
    assert main(["repo", "x/y", "--dry-run", "--root", str(root)]) == 0
    assert "would change" in capsys.readouterr()[1]
    assert {p: p.read_text() for p in repo.target_files(root)} == before


@pytest.mark.parametrize(
    "bad",
    ["nope", "a/b/c", "a_b/c", "https://gitlab.com/a/b", "a/..", "me-/x", "a--b/x"],
)
def test_bad_repository_names_exit_2(tmp_path, capsys, bad):
    root = _copy(tmp_path)
    assert main(["repo", bad, "--root", str(root)]) == 2
    err = capsys.readouterr()[1].strip()
    assert err.startswith("error: ") and "OWNER/NAME" in err and "\n" not in err


def test_not_a_repository_root_exits_2(tmp_path, capsys):
    assert main(["repo", "a/b", "--root", str(tmp_path)]) == 2
    assert "not the repository root" in capsys.readouterr()[1]


@pytest.mark.parametrize("owner", ["me", "a-b", "a1-b2-c3", "x" * 39])
def test_github_owner_rules_accept(owner):
    assert repo.parse_repo(f"{owner}/proj") == f"{owner}/proj"


@pytest.mark.parametrize("owner", ["x" * 40, "-me", "me-", "a--b", "a_b", ""])
def test_owners_github_refuses_are_refused(owner):
    with pytest.raises(InputError, match="OWNER/NAME"):
        repo.parse_repo(f"{owner}/proj")


@pytest.mark.parametrize("good", ["main", "dev", "feature/colab", "release/v1.2", "a_b-c/d.e"])
def test_branch_names_with_slashes_are_accepted(good):
    assert repo.check_branch(good) == good


@pytest.mark.parametrize(
    "bad", ["", "a..b", "/x", "x/", "feat//x", ".x", "x/.y", "x.lock", "a b", "x.", "-x", "a~b"]
)
def test_bad_branch_names_exit_2(tmp_path, capsys, bad):
    root = _copy(tmp_path)
    assert main(["repo", "a/b", f"--branch={bad}", "--root", str(root)]) == 2
    err = capsys.readouterr()[1].strip()
    assert err.startswith("error: ") and "branch" in err and "\n" not in err


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (temporaries included) and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_notebook_that_is_not_utf8_changes_nothing(tmp_path, capsys):
    root = _copy(tmp_path)
    nb = root / "notebooks" / "q2_text_segmentation.ipynb"
    nb.write_bytes(nb.read_bytes().replace(b'"cells"', b'"cells\xff\xfe"', 1))
    before = _snapshot(root)
    assert main(["repo", "my-name/my-fork", "--root", str(root)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "q2_text_segmentation.ipynb is not UTF-8" in lines[0] and "nothing was changed" in err
    assert "Traceback" not in err and out == ""
    assert _snapshot(root) == before  # README.md (read before it) is untouched too
    assert main(["repo", "--root", str(root)]) == 2  # the report reads every copy too
    assert capsys.readouterr()[1].startswith("error: ")


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_a_failure_at_any_file_leaves_every_file_as_it_was(tmp_path, capsys, monkeypatch, k):
    """The k-th of the four replacements fails (a full disk): the k files already replaced
    get their old versions back, nothing is left beside them."""
    import errno
    import os

    from helpers import files

    root = _copy(tmp_path)
    before = _snapshot(root)
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(Path(dst))
        if len(calls) == k + 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    assert main(["repo", "my-name/my-fork", "--root", str(root)]) == 2
    err = capsys.readouterr()[1].strip()
    assert err.startswith("error: could not write") and "the disk is full" in err, err
    assert "Nothing was changed" in err and "\n" not in err
    assert len(calls) > k  # the failure came after k files were replaced
    monkeypatch.setattr(files.os, "replace", real)
    assert _snapshot(root) == before  # the same files, the same bytes, no temporaries
    # and a run that can write does it all
    assert main(["repo", "my-name/my-fork", "--root", str(root)]) == 0
    assert len(json.loads(capsys.readouterr()[0])["changed"]) == 4
    assert not [p for p in root.rglob(".*") if p.is_file()]


def test_a_failure_while_staging_writes_nothing(tmp_path, capsys, monkeypatch):
    """The disk fills while the new versions are staged: no file is replaced."""
    import errno

    from helpers import files

    root = _copy(tmp_path)
    before = _snapshot(root)
    real, made = files._make_temporary, []

    def make(path, suffix):
        made.append(path)
        if len(made) == 5:  # the third file's new version
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, suffix)

    monkeypatch.setattr(files, "_make_temporary", make)
    assert main(["repo", "my-name/my-fork", "--root", str(root)]) == 2
    assert "the disk is full" in capsys.readouterr()[1]
    assert _snapshot(root) == before


def test_atomic_write_many_alone(tmp_path):
    from helpers.files import atomic_write_many

    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b.txt"
    b.parent.mkdir()
    a.write_text("old a")
    atomic_write_many({a: b"new a", b: b"new b"})  # b is new
    assert a.read_text() == "new a" and b.read_text() == "new b"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "b.txt", "sub"]
