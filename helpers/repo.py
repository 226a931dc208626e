"""Where this project is published: the one place that holds the GitHub repository.

``REPO`` and ``BRANCH`` below are the single source; the Colab badges (README and both
notebooks), the notebooks' setup cells (``REPO = ...``, ``BRANCH = ...``, from which they
``pip install git+https://github.com/REPO@BRANCH``) and the sample-media download URL are
copies that ``python -m helpers repo OWNER/NAME [--branch B]`` rewrites in place (a fork
included), printing what changed. Running it again changes nothing;
``python -m helpers repo`` alone lists copies that disagree with ``REPO``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from helpers.errors import InputError

REPO = "cvkit-lab/vit-cifar-textseg"
BRANCH = "main"

# the files holding copies of the location (relative to the repository root; globs allowed)
TARGETS = ("README.md", "notebooks/*.ipynb", "helpers/repo.py")

# GitHub's rules: an owner is 1-39 letters, digits and single hyphens, neither first nor last
_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}(?![A-Za-z0-9-])"
_NAME = r"[A-Za-z0-9._-]{1,100}"
_REPO_RE = re.compile(rf"^{_OWNER}/{_NAME}$")
_ANY = rf"{_OWNER}/{_NAME}"
# a branch as it appears inside a URL (git's own rules are checked by check_branch)
_BRANCH_IN_URL = r"[\w./-]+?"


def github_url(repo: str = REPO) -> str:
    return f"https://github.com/{repo}"


def colab_url(notebook: str, repo: str = REPO, branch: str = BRANCH) -> str:
    """The "Open in Colab" address of ``notebooks/<notebook>``."""
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/{notebook}"


def raw_url(path: str, repo: str = REPO, branch: str = BRANCH) -> str:
    """The download address of a file of the repository (e.g. ``assets/sample.jpg``)."""
    return f"https://raw.githubusercontent.com/{repo}/{branch}/{path}"


def parse_repo(text: str) -> str:
    """``OWNER/NAME`` from ``OWNER/NAME`` or a GitHub address (``https://github.com/O/N.git``)."""
    s = text.strip()
    s = re.sub(r"^(?:git\+)?(?:https?://)?(?:www\.)?github\.com/", "", s)
    s = re.sub(r"(?:\.git)?/?$", "", s)
    if not _REPO_RE.match(s) or s.split("/")[1] in (".", ".."):
        raise InputError(
            f"{text!r} is not a GitHub repository; give OWNER/NAME (e.g. my-name/vit-cifar-textseg) "
            "or its https://github.com/OWNER/NAME address."
        )
    return s


def check_branch(branch: str) -> str:
    """``branch`` if git accepts it as a branch name (``feature/colab`` included), else
    InputError (the rules of ``git check-ref-format --branch``)."""
    parts = branch.split("/")
    bad = (
        not branch
        or len(branch) > 200
        or re.search(r"[\x00-\x20\x7f~^:?*\[\\]", branch)
        or ".." in branch
        or "@{" in branch
        or branch == "@"
        or branch.endswith(".")
        or branch.startswith("-")
        or any(not p or p.startswith(".") or p.endswith(".lock") for p in parts)
    )
    if bad:
        raise InputError(
            f"--branch {branch!r} is not a branch name: use letters, digits, '.', '_', '-' and "
            "'/' between parts (e.g. feature/colab), no '..', no part starting with '.'."
        )
    return branch


# a rule: (what it sets, pattern, replacement); "url" rules rewrite addresses, "setting" rules
# the REPO = / BRANCH = lines that the notebooks and this module build addresses from
Rule = tuple[str, re.Pattern, str]


def _rules(repo: str, branch: str) -> list[Rule]:
    """The rules that set every copy of the location to ``repo``/``branch``. The patterns
    match any repository, so a copy edited by hand is brought back in line too."""
    return [
        (
            "url",
            re.compile(
                rf"(https://colab\.research\.google\.com/github/){_ANY}/blob/{_BRANCH_IN_URL}/"
                r"(?=notebooks/)"
            ),
            rf"\g<1>{repo}/blob/{branch}/",
        ),
        (
            "url",
            re.compile(
                rf"(https://raw\.githubusercontent\.com/){_ANY}/{_BRANCH_IN_URL}/(?=assets/)"
            ),
            rf"\g<1>{repo}/{branch}/",
        ),
        # the notebooks' setup cells (JSON-escaped quotes): REPO = "https://github.com/..."
        # and BRANCH = "..."; they install f"git+{REPO}@{BRANCH}"
        (
            "setting",
            re.compile(rf'(REPO = \\?"https://github\.com/){_ANY}(\\?")'),
            rf"\g<1>{repo}\g<2>",
        ),
        ("setting", re.compile(r'(\bBRANCH = \\")[^"\\]*(\\")'), rf"\g<1>{branch}\g<2>"),
        # a pip install line written out in full (README): ...git+https://github.com/O/N@B
        (
            "url",
            re.compile(
                rf"(vit-cifar-textseg(?:\[[\w,]+\])? @ git\+https://github\.com/){_ANY}"
                rf"(?:@[\w./-]*[\w-])?"
            ),
            rf"\g<1>{repo}@{branch}",
        ),
    ]


def _module_rules(repo: str, branch: str) -> list[Rule]:
    """The two assignments in this module (helpers/repo.py)."""
    return [
        ("setting", re.compile(r'^(REPO = ")[^"]*(")$', re.M), rf"\g<1>{repo}\g<2>"),
        ("setting", re.compile(r'^(BRANCH = ")[^"]*(")$', re.M), rf"\g<1>{branch}\g<2>"),
    ]


def current(root: str | Path) -> tuple[str, str]:
    """``(REPO, BRANCH)`` as written in ``root/helpers/repo.py`` (not the imported module's,
    so a copy of the repository can be inspected)."""
    path = Path(root) / "helpers" / "repo.py"
    if not path.is_file():
        raise InputError(
            f"{Path(root)} is not the repository root (no helpers/repo.py); run the command "
            "there or pass --root."
        )
    text = _read(path, Path(root))
    repo = re.search(r'^REPO = "([^"]*)"$', text, re.M)
    branch = re.search(r'^BRANCH = "([^"]*)"$', text, re.M)
    if not repo or not branch:
        raise InputError(f'{path} has no REPO = "..." / BRANCH = "..." lines.')
    return repo.group(1), branch.group(1)


def target_files(root: str | Path) -> list[Path]:
    root = Path(root)
    out: list[Path] = []
    for pattern in TARGETS:
        out += sorted(p for p in root.glob(pattern) if p.is_file())
    return out


def plan(root: str | Path, repo: str, branch: str) -> dict[Path, tuple[str, dict[str, int]]]:
    """``{file: (new text, {"urls": n, "settings": m})}`` for the files that would change:
    how many addresses and how many ``REPO =`` / ``BRANCH =`` lines were rewritten."""
    changes: dict[Path, tuple[str, dict[str, int]]] = {}
    old_repo, _ = current(root)
    rules = _rules(repo, branch)
    # any other mention of the old address (e.g. a link in prose) follows it too
    if old_repo != repo:
        rules.append(
            (
                "url",
                re.compile(rf"(github\.com/){re.escape(old_repo)}(?![\w-])"),
                rf"\g<1>{repo}",
            )
        )
    module = (Path(root) / "helpers" / "repo.py").resolve()
    for path in target_files(root):
        text = _read(path, Path(root))
        new, counts = text, {"urls": 0, "settings": 0}
        extra = _module_rules(repo, branch) if path.resolve() == module else []
        for kind, pattern, repl in rules + extra:
            new, n = _subn_changed(pattern, repl, new)
            counts[kind + "s"] += n
        if new != text:
            changes[path] = (new, counts)
    return changes


def _read(path: Path, root: Path) -> str:
    """The text of ``path``, or one InputError naming it (checked before anything is written)."""
    try:
        name = path.relative_to(root)
    except ValueError:
        name = path
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(
            f"cannot read {name} ({e.strerror or type(e).__name__}); nothing was changed. "
            "Fix its permissions and run again."
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(
            f"{name} is not UTF-8 text (byte {e.start:,}, line {line}); nothing was changed. "
            f"Restore it (git checkout -- {name}) or re-save it as UTF-8, then run again."
        ) from None


def _subn_changed(pattern: re.Pattern, repl: str, text: str) -> tuple[str, int]:
    """``re.subn`` that counts only the matches it actually changes."""
    count = 0

    def sub(m: re.Match) -> str:
        nonlocal count
        out = m.expand(repl)
        count += out != m.group(0)
        return out

    return pattern.sub(sub, text), count


def set_repo(root: str | Path, repo: str, branch: str | None = None, write: bool = True) -> dict:
    """Point every badge, setup cell and asset URL under ``root`` at ``repo`` (``OWNER/NAME``).

    Returns ``{"repo", "branch", "changed": {relative path: {"urls": n, "settings": m}}}``
    (addresses, and REPO/BRANCH lines, rewritten per file); with ``write``
    False nothing is written (a dry run). Idempotent. Every file is read and checked before
    any is written, and they are written as one unit: all of them change, or none does."""
    from helpers.files import atomic_write_many

    root = Path(root)
    repo = parse_repo(repo)
    branch = check_branch(branch if branch is not None else current(root)[1])
    changes = plan(root, repo, branch)
    if write and changes:  # every file read and rewritten above; now all of them or none
        atomic_write_many({path: text.encode("utf-8") for path, (text, _) in changes.items()})
    return {
        "repo": repo,
        "branch": branch,
        "changed": {str(p.relative_to(root)): n for p, (_, n) in changes.items()},
    }


# ----------------------------------------------------------------------------- command line


def register(sub) -> None:
    p = sub.add_parser(
        "repo",
        help="point the badges, setup cells and asset URLs at a GitHub repository (a fork)",
        description="Rewrite README.md, both notebooks and helpers/repo.py in place so every "
        "Colab badge, setup cell and sample-media URL points at OWNER/NAME (idempotent). "
        "Without OWNER/NAME: show the current repository and any copy that disagrees.",
    )
    p.add_argument("repo", nargs="?", help="OWNER/NAME or https://github.com/OWNER/NAME")
    p.add_argument(
        "--branch",
        help="branch the badges, pip installs and downloads use, e.g. dev or feature/colab "
        "(default: unchanged)",
    )
    p.add_argument("--root", default=".", help="repository root (default: the current folder)")
    p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    p.set_defaults(func=cmd_repo)


def cmd_repo(args) -> dict:
    root = Path(args.root)
    repo_now, branch_now = current(root)
    if args.repo is None:  # report: does every copy agree with helpers/repo.py?
        result = set_repo(root, repo_now, args.branch or branch_now, write=False)
        for name, n in result["changed"].items():
            print(f"{name}: {_count(n)} do not point at {repo_now}", file=sys.stderr)
        return {"command": "repo", **result, "stale": result.pop("changed"), "written": False}
    result = set_repo(root, args.repo, args.branch, write=not args.dry_run)
    verb = "would change" if args.dry_run else "changed"
    for name, n in result["changed"].items():
        target = f"{result['repo']} ({result['branch']})"
        print(f"{name}: {verb} {_count(n)} -> {target}", file=sys.stderr)
    if not result["changed"]:
        print(
            f"every URL already points at {result['repo']} ({result['branch']}).", file=sys.stderr
        )
    return {"command": "repo", **result, "written": bool(result["changed"]) and not args.dry_run}


def _count(n: dict[str, int]) -> str:
    """``2 URL(s)``, ``2 URL(s) and 2 setting line(s)``, ``1 setting line(s)``."""
    parts = [f"{n['urls']} URL(s)"] if n["urls"] else []
    parts += [f"{n['settings']} setting line(s) (REPO/BRANCH)"] if n["settings"] else []
    return " and ".join(parts)


__all__ = [
    "BRANCH",
    "REPO",
    "check_branch",
    "colab_url",
    "github_url",
    "parse_repo",
    "raw_url",
    "set_repo",
]
