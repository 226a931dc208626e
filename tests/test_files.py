"""helpers.files: atomic writes keep the old file on failure, leave recognisable temporaries
that the next write of the same file cleans up, respect the umask, and output folders are
checked before any work."""

import errno
import os
import subprocess
import sys

import pytest

from helpers import files
from helpers.errors import InputError


def test_written_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = files.atomic_write_text(tmp_path / "a.txt", "hi")
        assert oct(p.stat().st_mode & 0o777) == oct(0o644)  # mkstemp alone gives 0o600
        os.umask(0o077)
        q = files.atomic_write_json(tmp_path / "b.json", {"x": 1})
        assert oct(q.stat().st_mode & 0o777) == oct(0o600)
        os.chmod(p, 0o640)  # a replaced file keeps its permissions
        files.atomic_write_text(p, "ho")
        assert oct(p.stat().st_mode & 0o777) == oct(0o640) and p.read_text() == "ho"
    finally:
        os.umask(old)


def test_temporaries_are_named_and_stale_ones_are_cleaned(tmp_path):
    target = tmp_path / "last.pt"
    # a writer killed with -9 in the middle of a write leaves its (empty) temporary behind
    code = (
        "import os, sys\n"
        "from helpers import files\n"
        "with files.atomic_path(sys.argv[1]) as tmp:\n"
        "    print(tmp.name, flush=True)\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(target)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == -9
    name = proc.stdout.strip()
    assert name.startswith(".last.pt.tmp-") and name.endswith(".pt")
    assert (tmp_path / name).is_file()
    # a temporary of a live writer (this process) is never touched
    live = tmp_path / f".last.pt.tmp-{os.getpid()}-abcd.pt"
    live.write_bytes(b"")
    files.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert not (tmp_path / name).exists()  # the dead writer's leftover is gone
    assert live.exists()
    live.unlink()
    # the documented folder-wide cleanup
    (tmp_path / ".x.json.tmp-999999999-dead.json").write_bytes(b"")
    assert [p.name for p in files.remove_stale_temporaries(tmp_path)] == [
        ".x.json.tmp-999999999-dead.json"
    ]


def test_disk_full_keeps_the_old_file_and_says_so(tmp_path, monkeypatch):
    target = files.atomic_write_text(tmp_path / "h.json", "old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(files.WriteError) as e:
        files.atomic_write_text(target, "new")
    assert isinstance(e.value, InputError) and e.value.errno == errno.ENOSPC
    assert "disk is full" in str(e.value) and "\n" not in str(e.value)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.json"]  # no temporary left


def test_check_output_dir(tmp_path, monkeypatch):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(InputError, match=r"^--out .*f is a file, not a folder"):
        files.check_output_dir(a_file)
    with pytest.raises(InputError, match="lies below .*f, which is a file"):
        files.check_output_dir(a_file / "sub" / "run", "--out")
    assert files.check_output_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # the write probe is gone

    def read_only(path, flags, mode=0o777):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.os, "open", read_only)
    with pytest.raises(InputError, match="cannot be written .*read-only"):
        files.check_output_dir(tmp_path / "run", "out_dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_check_output_dir_without_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(InputError, match="cannot be written"):
            files.check_output_dir(locked / "run")
    finally:
        locked.chmod(0o755)
