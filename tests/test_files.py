"""mdi_mlmm.files: whole files or nothing."""
from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from mdi_mlmm import files


def test_writes_replace_whole_files(tmp_path):
    p = tmp_path / "sub" / "a.json"
    files.write_json(p, {"x": 1}, indent=1)
    assert json.loads(p.read_text()) == {"x": 1}
    files.write_text(p, "new")
    assert p.read_text() == "new"
    files.write_with(tmp_path / "a.npy", lambda fh: np.save(fh, np.arange(3)))
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2]
    assert sorted(x.name for x in tmp_path.rglob("*") if x.is_file()) == ["a.json", "a.npy"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "state.txt"
    files.write_text(p, "old")
    with pytest.raises(RuntimeError):
        with files.atomic_open(p) as fh:
            fh.write("half")
            raise RuntimeError("crash")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["state.txt"]


def test_permissions_and_write_if_changed(tmp_path):
    p = tmp_path / "secret.json"
    files.write_json(p, {"key": "k"}, perms=0o600)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    q = tmp_path / "src.cpp"
    assert files.write_if_changed(q, b"int x;") and not files.write_if_changed(q, "int x;")
    assert files.write_if_changed(q, "int y;") and q.read_text() == "int y;"
    with pytest.raises(ValueError):
        with files.atomic_open(q, "a"):
            pass


def test_run_checked_raises_the_callers_error_with_the_reason(tmp_path):
    from mdi_mlmm import processes
    from mdi_mlmm.errors import HostError

    r = processes.run_checked(["sh", "-c", "echo fine"], cwd=tmp_path)
    assert r.stdout == "fine\n"
    with pytest.raises(HostError) as e:
        processes.run_checked(["sh", "-c", "echo out; echo 'Fatal: no' >&2; exit 3"], what="sh test", error=HostError,
                              cwd=tmp_path, show_cwd=True, explain=lambda r: r.stderr.strip())
    assert str(e.value) == f"sh test failed (exit 3) in {tmp_path}:\nFatal: no"
    assert processes.children() == []


def test_progress_file_round_trip_and_md_status_line(tmp_path):
    import io

    from mdi_mlmm import progress

    assert progress.read_fraction(tmp_path) is None
    report = progress.file_writer(tmp_path)
    report(5, 20)
    assert progress.read_fraction(tmp_path) == 0.25
    report(6, 20)                                   # within a second: not written
    assert progress.read_fraction(tmp_path) == 0.25
    report(20, 20)                                  # the end always is
    assert progress.read_fraction(tmp_path) == 1.0
    out = io.StringIO()
    status = progress.MDStatus(100, 2.0, True, out)
    status.update(50, -1234.5, 300.0)
    assert "50/100 steps 0.100 ps" in out.getvalue() and "ns/day" in out.getvalue() and "T  300.0 K" in out.getvalue()
    bar = progress.Bar(10, desc="units", stream=io.StringIO())
    bar.update_to(4, "2/5 done")
    bar.update_to(3)                                # never back
    assert bar.bar.n == 4
    bar.close()


def test_publish_dir_replaces_a_directory_whole(tmp_path):
    import tempfile
    from pathlib import Path

    out = tmp_path / "out"
    for content in ("first", "second"):
        tmp = Path(tempfile.mkdtemp(prefix=".out.partial-", dir=tmp_path))
        (tmp / "f.txt").write_text(content)
        files.publish_dir(tmp, out)
        assert (out / "f.txt").read_text() == content and not tmp.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask      # not mkdtemp's 0700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]     # nothing left aside
